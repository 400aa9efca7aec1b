"""Decode time in a Hub-like <iframe> (a page of another origin without COOP/COEP embeds the app, as
the Hub shows a Space) against the full page, in real Chromium.

    python bench/iframe_decode.py --checkpoint PATH [--decodes 20] [--image examples/dogs.jpg]

Starts app.py and a plain HTTP server on another port whose page embeds the app in an iframe. In
each context (framed, then the full page opened from the framed page's notice link) it uploads the
photo, then times `--decodes` point prompts (getState().lastDecodeMs, the decoder's own time) and
prints the medians, whether each context was cross-origin isolated, and their ratio.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "tests"):  # the repository, and tests/support.py (shared with the tests)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from support import AppProcess, HubLikeParent, app_frame, load_photo  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]


def decode_times(frame, width: int, height: int, n: int) -> list:
    """lastDecodeMs of n single-point prompts spread over the photo (each after Clear)."""
    times = []
    rng = np.random.default_rng(0)
    for _ in range(n):
        x, y = int(rng.uniform(0.2, 0.8) * width), int(rng.uniform(0.2, 0.8) * height)
        frame.evaluate("() => window.msam.clear()")
        frame.evaluate("([x, y]) => window.msam.addPoint(x, y, 1)", [x, y])
        frame.evaluate("() => window.msam.whenIdle()")
        times.append(frame.evaluate("() => window.msam.getState().lastDecodeMs"))
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "dogs.jpg")
    parser.add_argument("--decodes", type=int, default=20)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from mobilesam_app.images import load_rgb_image
    from mobilesam_app.store import image_id_of

    image = load_rgb_image(args.image)
    h, w = image.shape[:2]
    out = {}
    with AppProcess(args.checkpoint, Path(tempfile.mkdtemp(prefix="mobilesam-iframe-"))) as app, \
            sync_playwright() as p:
        parent = HubLikeParent(app.url)
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(parent.url)
            frame = app_frame(page, app.url)
            load_photo(frame, args.image, image_id_of(image))
            framed = decode_times(frame, w, h, args.decodes)
            out["iframe"] = {"cross_origin_isolated": frame.evaluate("crossOriginIsolated"),
                             "decode_ms_median": round(float(np.median(framed[1:])), 1)}
            with page.context.expect_page() as popup:
                frame.locator("a.msam-full-page").click()
            full = popup.value
            full.wait_for_function("() => window.msam && typeof window.msam.getState === 'function'", timeout=120_000)
            load_photo(full, args.image, image_id_of(image))
            whole = decode_times(full, w, h, args.decodes)
            out["full_page"] = {"cross_origin_isolated": full.evaluate("crossOriginIsolated"),
                                "decode_ms_median": round(float(np.median(whole[1:])), 1)}
            out["iframe_over_full_page"] = round(out["iframe"]["decode_ms_median"]
                                                 / out["full_page"]["decode_ms_median"], 2)
        finally:
            browser.close()
            parent.close()
    print(json.dumps({"image": args.image.name, "decodes": args.decodes, **out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
