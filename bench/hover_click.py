"""A click where the pointer rests: from the click to its mask, and the browser's work per click.

    python bench/hover_click.py --checkpoint CKPT --baseline-root DIR [--image truck.jpg] [--clicks 20]
                                [--rounds 2] [--json]

On a desktop the page previews the mask under the pointer (a hover decode) before the click lands at
that same spot. This benchmark opens the app (1400x1000 viewport, headless Chromium), chooses the
photo, waits until its decoder is ready, and then, for each of `--clicks` points on a grid over the
photo: clears the prompts (Escape), moves the pointer there, rests `REST` ms (0: the click follows the
move at once, the hover decode still running; 300: the preview is on screen), clicks, and waits until
the page is idle (the click's mask decoded). It reports the click -> mask time (p50, in the page's
clock), the decoder runs per click (the page's decode counter) and the CPU seconds of all Chromium
processes per click (/proc, Linux).

Baseline: the same measurements of another checkout of the project (--baseline-root, e.g. the commit
before a change, with web/node_modules), started the same way and measured in the same run,
alternating round by round; the ratios are this checkout's over the baseline's.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, chromium, emit, find_sample, free_port, machine, median  # noqa: E402
from first_mask import start_app, stop_app  # noqa: E402

RESTS_MS = (0, 300)
MARK_POINTER_UP = """() => { window.addEventListener("pointerup", () => { window.__up = performance.now(); }, true); }"""
CLICK_TO_IDLE = """async () => { await window.msam.whenIdle(); return performance.now() - window.__up; }"""


def chromium_cpu_seconds() -> float:
    """CPU time (user + system) of every running Chromium process, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"chromium" not in f.read():
                    continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / tick


def grid(width: int, height: int, n: int) -> list:
    """`n` points spread over the photo (image pixels), away from its border."""
    cols = max(1, round((n * width / height) ** 0.5))
    rows = -(-n // cols)
    return [(int((0.1 + 0.8 * (i % cols + 0.5) / cols) * width), int((0.1 + 0.8 * (i // cols + 0.5) / rows) * height))
            for i in range(n)]


def measure_page(browser, url: str, photo: Path, clicks: int) -> dict:
    """One fresh page of the app at `url`: the figures of each rest time (module docstring)."""
    from mobilesam_app.store import image_id_of
    from PIL import Image
    import numpy as np

    image = np.asarray(Image.open(photo).convert("RGB"))
    height, width = image.shape[:2]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(url)
        page.wait_for_function("() => window.msam && typeof window.msam.getState === 'function'", timeout=120_000)
        page.locator("#msam-upload input[type=file]").first.set_input_files(str(photo))
        page.wait_for_function("(id) => { const s = window.msam.getState(); return s.ready && s.imageId === id; }",
                               arg=image_id_of(image), timeout=300_000)
        page.evaluate(MARK_POINTER_UP)
        page.wait_for_timeout(3000)  # the decoder's first runs and the page settle
        canvas = page.locator("#msam-root canvas").first.bounding_box()
        out = {}
        for rest in RESTS_MS:
            times, decodes = [], 0
            cpu0 = chromium_cpu_seconds()
            for x, y in grid(width, height, clicks):
                page.keyboard.press("Escape")
                page.evaluate("() => window.msam.whenIdle()")
                cx = canvas["x"] + (x + 0.5) * canvas["width"] / width
                cy = canvas["y"] + (y + 0.5) * canvas["height"] / height
                page.mouse.move(cx, cy)
                if rest:
                    page.wait_for_timeout(rest)
                before = page.evaluate("() => window.msam.getState().decodeCount")
                page.mouse.click(cx, cy)
                times.append(page.evaluate(CLICK_TO_IDLE))
                state = page.evaluate("() => window.msam.getState()")
                assert len(state["points"]) == 1 and state["scores"] is not None, "the click has no mask"
                decodes += state["decodeCount"] - before
                page.mouse.move(2, 2)  # off the photo: the next move starts a new hover
            out[rest] = {"click_to_mask_ms_p50": round(median(times), 1),
                         "decoder_runs_per_click": round(decodes / clicks, 2),
                         "chromium_cpu_s_per_click": round((chromium_cpu_seconds() - cpu0) / clicks, 3)}
        return out
    finally:
        page.close()


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="vit_t checkpoint (mobile_sam.pt or a stand-in)")
    parser.add_argument("--baseline-root", type=Path, required=True, help="another checkout, measured the same way")
    parser.add_argument("--image", default="truck.jpg", help="a photo in examples/, or a path")
    parser.add_argument("--clicks", type=int, default=20, help="clicks per rest time and round (default 20)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, each measuring both checkouts (default 2)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    photo = find_sample(args.image)
    roots = {"this": ROOT, "baseline": args.baseline_root.resolve()}
    procs, urls = {}, {}
    work = Path(tempfile.mkdtemp(prefix="mobilesam-hover-click-"))
    try:
        for name, root in roots.items():
            cache = work / name
            cache.mkdir()
            procs[name], urls[name] = start_app(Path(args.checkpoint).resolve(), cache, free_port(), root=root)
        runs = {name: [] for name in roots}
        with chromium() as browser:
            for _ in range(args.rounds):
                for name in roots:
                    runs[name].append(measure_page(browser, urls[name], photo, args.clicks))
    finally:
        for proc in procs.values():
            stop_app(proc)

    def median_of(name, rest, key):
        return median([run[rest][key] for run in runs[name]])

    result = {"machine": machine(), "photo": photo.name, "clicks": args.clicks, "rounds": args.rounds,
              "baseline_is": str(args.baseline_root), "rests_ms": {}}
    lines = [f"{photo.name}, {args.clicks} clicks x {args.rounds} rounds per rest time; medians over rounds "
             f"(this checkout / baseline = ratio)"]
    for rest in RESTS_MS:
        row = {}
        for key in ("click_to_mask_ms_p50", "decoder_runs_per_click", "chromium_cpu_s_per_click"):
            this, base = median_of("this", rest, key), median_of("baseline", rest, key)
            row[key] = {"this": this, "baseline": base, "ratio": round(this / base, 3) if base else None}
            lines.append(f"rest {rest:3d} ms  {key:26s} {this:8.3f} / {base:8.3f} = {row[key]['ratio']}")
        result["rests_ms"][rest] = row
    result["runs"] = runs
    emit(result, args.json, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
