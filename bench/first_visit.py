"""A first visit over a real connection: from opening the page to the first mask, in headless Chromium.

    python bench/first_visit.py --checkpoint CKPT [--down 20 --up 5 --rtt 60] [--photo PATH]
                                [--baseline-root DIR] [--json]

Starts app.py (this checkout; its cache folder persists between runs, so exports are reused) and
waits for its fast encoder. The link is emulated with the DevTools protocol
(Network.emulateNetworkConditions: --down / --up Mbit/s, --rtt ms). Then:

- first visit (a fresh profile): page open -> first upload control there (the early control of
  web/early.js when the page has one, else the upload box), -> decoder ready; the photo is chosen as
  soon as that control is there and the centre clicked as soon as the photo is on screen; photo
  chosen -> first mask drawn, and page open -> first mask drawn (the whole visit);
- on the same page, now ready, another photo (new content) chosen -> first mask drawn;
- a return visit (the same profile, its HTTP cache kept): the same as the first visit.

The photo (default: examples/truck.jpg upscaled to a 12 MP 4032x3024 JPEG at quality 90, as a phone
takes them) gets new content for each visit (mirrored / tinted), so the server's embedding cache
never answers.

Baseline (the default): what the official SAM web demo ships, over the same link, from the same
server encoder: bench/official_demo.py (the quantized official-interface decoder, the full photo
uploaded, a float32 .npy embedding, the mask computed and drawn at full size); the same
measurements in the same run, and the ratios. --baseline-root DIR instead measures another checkout
of the project (e.g. the commit before a change, with web/node_modules); --no-baseline skips it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, CHROMIUM, CHROMIUM_ARGS, emit, free_port, machine  # noqa: E402
from first_mask import start_app, stop_app, wait_encoder_export  # noqa: E402
from support import wait_for_http  # noqa: E402

# In the page, from the input's change event: click the centre as soon as the page takes a click
# (it keeps it until it can answer), then wait until that click's mask is drawn: first on screen
# (`shown`: the server's decode while the page's decoder loads, or the page's), and by the page's own
# decoder (`drawn`; the same moment when the page's decoder answered first).
WATCH = """
() => {
  window.__fv = new Promise((resolve, reject) => {
    const marks = {};
    const start = window.msam && window.msam._app;
    // the previous photo (a ready page): not clicked, not measured. Its info and image id may still
    // change (its original adopted: the copy's id -> the original's); the picture shown does not.
    const before = start ? start.image : null;
    // on window, capturing: before the page's own listener (web/upload.js stops the user's event and
    // hands it on to the upload box later), so that the mark is the user's choice
    window.addEventListener("change", (e) => {
      if (e.target && e.target.type === "file" && marks.change == null) marks.change = performance.now();
    }, true);
    const deadline = performance.now() + (window.__fvTimeout || 300000);
    const poll = async () => {
      const app = window.msam && window.msam._app;
      // the click: once the photo is on screen (the page's view attached), as a visitor clicks it
      if (marks.change != null && app && app.info && app.info.width && marks.click == null
          && app.image && app.image !== before && app.view) {
        const before = app.entry;
        window.msam.addPoint(app.info.width / 2, app.info.height / 2, 1);
        if (app.entry !== before) marks.click = performance.now();
      }
      if (marks.click != null && marks.shown == null && app.entry.result) {
        // the first mask on screen: the server's (web/bridge.js) while the page's decoder loads, or the page's
        marks.shownFrom = app.entry.result.server ? "server" : "page";
        await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
        marks.shown = performance.now();
        marks.encodeMs = app.info && app.info.encode_ms; // the server's encode of the copy, as it timed it
      }
      if (marks.click != null && app.entry.result && !app.entry.result.server && app.ready) {
        await window.msam.whenIdle();
        await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
        marks.drawn = performance.now();
        marks.ready = app.readyAt || null;
        const st = window.msam.getState();
        resolve({ marks, hasMask: st.selectedIndex >= 0, imageId: st.imageId,
                  decoder: app.model && app.model.loadTimings, upload: app.upload ? app.upload.last : null });
        return;
      }
      if (performance.now() > deadline) {
        const e = app && app.entry;
        reject(new Error("timed out: " + JSON.stringify({ marks, ready: app && app.ready, status: app && app.status.text,
          result: e && e.result ? (e.result.server ? "server" : "page") : null, pending: e && e.pending,
          queued: app && app.queue.commits.length, info: app && app.info && { local: app.info.local, id: app.info.image_id } })));
        return;
      }
      setTimeout(poll, 10);
    };
    poll();
  });
  return true;
}
"""


def make_photos(source: Path, folder: Path, count: int) -> list:
    """`count` JPEGs (quality 90) of the photo with new content each: as is, mirrored, tinted."""
    base = np.asarray(Image.open(source).convert("RGB"))
    if base.shape[:2] != (3024, 4032) and base.shape[:2] != (4032, 3024):
        base = np.asarray(Image.fromarray(base).resize((4032, 3024), Image.BICUBIC))
    out = []
    for i in range(count):
        img = base if i == 0 else (base[:, ::-1] if i % 2 else base)
        if i >= 2:
            img = np.clip(img.astype(np.int16) + i // 2, 0, 255).astype(np.uint8)
        path = folder / f"photo{i}.jpg"
        Image.fromarray(np.ascontiguousarray(img)).save(path, quality=90)
        out.append(path)
    return out


def emulate(context, page, args) -> None:
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": args.rtt, "downloadThroughput": args.down * 1e6 / 8,
        "uploadThroughput": args.up * 1e6 / 8})


# The first upload control a visitor can use: the early one (web/early.js, shown with the page's HTML)
# when the page has it, else the upload box. 'early' or 'box'.
FIRST_CONTROL = """
() => { const pick = document.querySelector("#msam-early .msam-early-pick");
        if (pick && pick.offsetParent !== null) return "early";
        return document.querySelector(%s) ? "box" : null; }
"""
EARLY_INPUT = "#msam-early input[type=file]"


def open_page(context, url: str, args, upload_selector: str):
    """A new page of `url` over the emulated link, waiting for its first upload control (the early
    control if the page has one, else `upload_selector`): (page, locator of that first control,
    locator of `upload_selector`, ms from page open to the first control, page errors)."""
    page = context.new_page()
    page.set_viewport_size({"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    emulate(context, page, args)
    page.goto(url, wait_until="commit")
    first = page.wait_for_function(FIRST_CONTROL % json.dumps(upload_selector), timeout=120_000).json_value()
    control_ms = page.evaluate("() => performance.now()")
    upload = page.locator(upload_selector).first
    return page, (page.locator(EARLY_INPUT) if first == "early" else upload), upload, control_ms, errors


def finish(page, out: dict, errors: list) -> dict:
    """Close the page; `out` with its page errors and seconds rounded to ms."""
    out["page_errors"] = errors[:5]
    page.close()
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}


def visit(context, url: str, args, photo: Path, second: Path = None) -> dict:
    """One visit: open the page, choose `photo` as soon as the upload control is there, click the
    centre; with `second`, then choose that one on the ready page. Times in seconds."""
    page, control, upload, control_ms, errors = open_page(context, url, args, "#msam-upload input[type=file]")
    page.evaluate(WATCH)  # (before the page's own modules may have run)
    control.set_input_files(str(photo))
    first = page.evaluate("() => window.__fv")
    page.wait_for_function("() => window.msam._app.model && window.msam._app.model.loadTimings", timeout=120_000)
    decoder = page.evaluate("() => window.msam._app.model.loadTimings")
    timeline = page.evaluate(TIMELINE)
    m = first["marks"]
    out = {"upload_control_s": control_ms / 1000, "decoder_ready_s": decoder["readyAt"] / 1000,
           "decoder_fetch_s": decoder["fetchMs"] / 1000, "photo_to_mask_s": (m["shown"] - m["change"]) / 1000,
           "page_open_to_mask_s": m["shown"] / 1000, "first_mask_from": m["shownFrom"],
           "server_encode_ms": m.get("encodeMs"),
           "page_open_to_page_decoder_mask_s": m["drawn"] / 1000, "mask_drawn": first["hasMask"],
           "upload": first["upload"], "timeline": timeline}
    if second is not None:
        # the first photo's original adopted first (its info then stays put): the click is the new photo's
        page.wait_for_function("() => window.msam.getShareLink()", timeout=120_000)
        page.evaluate(WATCH)
        upload.set_input_files(str(second))
        r = page.evaluate("() => window.__fv")
        out["ready_page_photo_to_mask_s"] = (r["marks"]["shown"] - r["marks"]["change"]) / 1000
        out["ready_page_first_mask_from"] = r["marks"]["shownFrom"]
        out["ready_page_server_encode_ms"] = r["marks"].get("encodeMs")
        out["ready_page_upload"] = r["upload"]
        try:  # the original arrives in the background; the share link once it is stored
            page.wait_for_function("() => window.msam.getShareLink()", timeout=60_000)
            out["share_link_s"] = (page.evaluate("() => performance.now()") - r["marks"]["change"]) / 1000
        except Exception:
            out["share_link_s"] = None
    return finish(page, out, errors)


# The app's requests so far (resource timings, seconds from page open): the copy's encode, the
# server's decode, the embedding, the decoder and the runtime.
TIMELINE = r"""
() => performance.getEntriesByType("resource")
  .filter((r) => /\/msam\/(encode|decode|embedding|models)|\.wasm/.test(r.name))
  .map((r) => ({ name: r.name.replace(location.origin, "").slice(0, 60), start: +(r.startTime / 1000).toFixed(3),
                 firstByte: +(r.responseStart / 1000).toFixed(3), end: +(r.responseEnd / 1000).toFixed(3),
                 bytes: r.encodedBodySize,
                 server: Object.fromEntries((r.serverTiming || []).map((t) => [t.name, t.duration])) }))
"""


# The baseline page (bench/web/official_demo.js): choose, wait for the photo's size, click the centre.
WATCH_OFFICIAL = """
() => {
  window.__fv = new Promise((resolve, reject) => {
    const marks = {};
    // on window, capturing: before the page's own listener (web/upload.js stops the user's event and
    // hands it on to the upload box later), so that the mark is the user's choice
    window.addEventListener("change", (e) => {
      if (e.target && e.target.type === "file" && marks.change == null) marks.change = performance.now();
    }, true);
    const deadline = performance.now() + (window.__fvTimeout || 300000);
    const poll = () => {
      const d = window.demo;
      if (d.error) { reject(new Error(d.error)); return; }
      const size = marks.change != null ? d.size() : null;
      if (size && marks.click == null && d.click(size[0] / 2, size[1] / 2)) marks.click = performance.now();
      if (marks.click != null && d.drawnAt) {
        marks.drawn = d.drawnAt;
        resolve({ marks, hasMask: true });
        return;
      }
      if (performance.now() > deadline) { reject(new Error("timed out")); return; }
      setTimeout(poll, 10);
    };
    poll();
  });
  return true;
}
"""


def visit_official(context, url: str, args, photo: Path, second: Path = None) -> dict:
    """`visit` on the baseline page (bench/official_demo.py)."""
    page, control, upload, control_ms, errors = open_page(context, url, args, "#upload")
    page.wait_for_function("() => window.demo", timeout=120_000)
    page.evaluate(WATCH_OFFICIAL)
    control.set_input_files(str(photo))
    m = page.evaluate("() => window.__fv")["marks"]
    page.wait_for_function("() => window.demo.readyAt || window.demo.error", timeout=120_000)
    d = page.evaluate("() => ({readyAt: window.demo.readyAt, fetchMs: window.demo.fetchMs})")
    out = {"upload_control_s": control_ms / 1000, "decoder_ready_s": d["readyAt"] / 1000,
           "decoder_fetch_s": d["fetchMs"] / 1000, "photo_to_mask_s": (m["drawn"] - m["change"]) / 1000,
           "page_open_to_mask_s": m["drawn"] / 1000, "mask_drawn": True, "upload": None}
    if second is not None:
        page.evaluate(WATCH_OFFICIAL)
        upload.set_input_files(str(second))
        r = page.evaluate("() => window.__fv")["marks"]
        out["ready_page_photo_to_mask_s"] = (r["drawn"] - r["change"]) / 1000
        out["share_link_s"] = None  # the demo has none
    return finish(page, out, errors)


def start_official_demo(checkpoint: Path, cache: Path, port: int):
    """bench/official_demo.py on `port`; (process, URL) once it serves."""
    log = open(cache / "official_demo.log", "w")
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve().parent / "official_demo.py"),
                             "--checkpoint", str(checkpoint), "--port", str(port), "--cache-dir", str(cache)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(url, proc, timeout=900)
    except Exception:
        proc.terminate()
        raise RuntimeError(f"the baseline server did not start; see {cache / 'official_demo.log'}") from None
    return proc, url


def browser_executable(args, folder: Path) -> str:
    """Chromium, or with --browser-nice N a wrapper that runs it at that CPU priority: the browser and
    the server share this machine's cores here, while a visitor's browser has its own. Playwright
    starts Chromium in a session of its own, and with the kernel's autogroup scheduling
    (/proc/sys/kernel/sched_autogroup_enabled) a session's processes share the CPU with other sessions
    as one group whatever their nice values (Chromium also sets its processes' nice values itself):
    the wrapper sets the group's nice (/proc/self/autogroup), and the processes' too."""
    if not args.browser_nice:
        return CHROMIUM
    wrapper = folder.parent / (folder.name + "-chromium.sh")
    nice = int(args.browser_nice)
    wrapper.write_text(f'#!/bin/sh\necho {nice} > /proc/self/autogroup 2>/dev/null\n'
                       f'exec nice -n {nice} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def measure(root: Path, args, photos: list, official: bool = False) -> dict:
    from playwright.sync_api import sync_playwright

    cache = args.cache_dir / ("app" if root == ROOT else "baseline")  # the official demo reuses the app's exports
    cache.mkdir(parents=True, exist_ok=True)
    if official:
        proc, url = start_official_demo(Path(args.checkpoint), cache, free_port())
    else:
        proc, url = start_app(Path(args.checkpoint), cache, free_port(), root=root)
    run_visit = visit_official if official else visit
    profile = Path(tempfile.mkdtemp(prefix="msam-first-visit-profile-"))
    try:
        ready = wait_encoder_export(cache)
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(str(profile), executable_path=browser_executable(args, profile),
                                                           args=CHROMIUM_ARGS, headless=True)
            try:
                first = run_visit(context, url, args, photos[0], second=photos[1])
                again = run_visit(context, url, args, photos[2])
            finally:
                context.close()
    finally:
        stop_app(proc)
        shutil.rmtree(profile, ignore_errors=True)
        (profile.parent / (profile.name + "-chromium.sh")).unlink(missing_ok=True)
    return {"first_visit": first, "return_visit": again, "encoder_export_ready": ready}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--down", type=float, default=20.0, help="download Mbit/s")
    parser.add_argument("--up", type=float, default=5.0, help="upload Mbit/s")
    parser.add_argument("--rtt", type=float, default=60.0, help="latency (ms)")
    parser.add_argument("--photo", type=Path, default=ROOT / "examples" / "truck.jpg",
                        help="a photo (default: examples/truck.jpg upscaled to 4032x3024, JPEG q=90)")
    parser.add_argument("--baseline-root", type=Path, help="another checkout whose app.py is the baseline "
                        "(instead of the official demo's way)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "mobilesam" / "bench-first-visit")
    parser.add_argument("--browser-nice", type=int, default=0,
                        help="run Chromium at this nice value, its autogroup's too (the server's encodes run at "
                             "10): on a machine that runs both, the browser then takes less of the server's CPU, as "
                             "on separate machines (19: the browser yields)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="msam-first-visit-"))
    photos = make_photos(args.photo, tmp, 6)
    photo_bytes = photos[0].stat().st_size
    ours = measure(ROOT, args, photos[:3])
    if args.no_baseline:
        base = None
    elif args.baseline_root:
        base = measure(args.baseline_root.resolve(), args, photos[3:])
    else:
        base = measure(ROOT, args, photos[3:], official=True)
    shutil.rmtree(tmp, ignore_errors=True)

    def ratio(key, visit="first_visit"):
        if not base or base[visit].get(key) in (None, 0) or ours[visit].get(key) is None:
            return None
        return round(ours[visit][key] / base[visit][key], 3)

    out = {"benchmark": "first_visit", "link": {"down_mbit": args.down, "up_mbit": args.up, "rtt_ms": args.rtt},
           "photo_bytes": photo_bytes, "ours": ours, "baseline": base,
           "baseline_is": (None if base is None else str(args.baseline_root) if args.baseline_root
                           else "the official web demo's way (bench/official_demo.py)"),
           "ratios": {"whole_first_visit": ratio("page_open_to_mask_s"),
                      "first_visit_photo_to_mask": ratio("photo_to_mask_s"),
                      "ready_page_photo_to_mask": ratio("ready_page_photo_to_mask_s"),
                      "return_visit": ratio("page_open_to_mask_s", "return_visit"),
                      "decoder_ready": ratio("decoder_ready_s")},
           "goals_s": {"whole_first_visit": 5.0, "return_visit": 3.0, "ready_page_photo_to_mask": 2.5},
           "machine": machine()}
    out["browser_nice"] = args.browser_nice
    lines = [f"first visit, {args.down:g}/{args.up:g} Mbit/s, {args.rtt:g} ms, photo {out['photo_bytes'] / 1e6:.2f} MB "
             f"(4032x3024), browser at nice {args.browser_nice}"]
    for name, r in (("ours", ours), ("baseline", base)):
        if r is None:
            continue
        f, a = r["first_visit"], r["return_visit"]
        lines += [f"  {name}:",
                  f"    first visit: upload control {f['upload_control_s']:.2f} s, decoder ready {f['decoder_ready_s']:.2f} s, "
                  f"photo -> mask {f['photo_to_mask_s']:.2f} s, page open -> mask {f['page_open_to_mask_s']:.2f} s "
                  f"(goal 5.0; first mask from {f.get('first_mask_from', 'page')}; by the page's decoder "
                  f"{f.get('page_open_to_page_decoder_mask_s', f['page_open_to_mask_s']):.2f} s; server encode "
                  f"{f.get('server_encode_ms')} ms)",
                  f"    ready page: photo -> mask {f['ready_page_photo_to_mask_s']:.2f} s (goal 2.5; from "
                  f"{f.get('ready_page_first_mask_from', 'page')}); share link after "
                  f"{f['share_link_s']} s",
                  f"    return visit: decoder ready {a['decoder_ready_s']:.2f} s, page open -> mask "
                  f"{a['page_open_to_mask_s']:.2f} s (goal 3.0; from {a.get('first_mask_from', 'page')})"]
    if base:
        lines.append(f"  ratios ours/baseline: {out['ratios']}")
    emit(out, args.json, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
