"""Many boxes at once in the browser: a pasted list of boxes decoded in batches (the fast decoder's
batch axis, web/scheduler.js DECODE_BATCH a run) against the same list decoded one box a run, in
real Chromium, on the app's own page.

    python bench/batch_boxes.py --checkpoint CKPT [--boxes 50] [--image truck.jpg] [--repeats 3] [--batch N] [--json]

Starts app.py, uploads the photo, then pastes `--boxes` seeded random boxes ("Many boxes at once")
and times, in the page, from "Add boxes" until every object's mask is decoded and the frame after it
drawn; the objects are deleted between runs, and the two modes are interleaved (one by one, batched,
one by one, ...). Prints both medians, their ratio (batched / one by one; the issue's target is
<= 0.3), the decoder's own time per box in each mode, and that both modes gave the same masks (the
smallest per-object IoU between them).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_parser, emit, find_sample, machine, mask_iou, median  # noqa: E402

from support import AppProcess, chromium, load_photo, object_masks  # noqa: E402

# Runs "Add boxes" in the page and resolves when all objects are decoded and the next frame drawn:
# {ms, decodeMs (sum of the decoder's own times), decodes}.
TIME_BOXES = """async ([text, batchMax]) => {
  const app = window.msam._app;
  app.queue.batchMax = batchMax;
  const before = app.queue.decodeCount;
  const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const t0 = performance.now();
  const added = window.msam.addBoxes(text);
  await window.msam.whenIdle();
  await frame();
  const ms = performance.now() - t0;
  const objects = window.msam.getState().objects;
  return { ms, added, decodes: app.queue.decodeCount - before, lastDecodeMs: app.queue.lastDecodeMs,
    decoded: objects.filter((o) => o.box).length };
}"""

DELETE_ALL = """() => {
  for (const o of window.msam.getState().objects) window.msam.deleteObject(o.id);
  window.msam.clear();
}"""


def random_boxes(n: int, width: int, height: int, seed: int = 0) -> list:
    """n boxes [x0, y0, x1, y1] inside the image, 5-40 % of its sides."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w, h = rng.uniform(0.05, 0.4) * width, rng.uniform(0.05, 0.4) * height
        x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        out.append([round(x0), round(y0), round(x0 + w), round(y0 + h)])
    return out


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=None, help="boxes a decoder run (default: the page's DECODE_BATCH)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from mobilesam_app.images import load_rgb_image
    from mobilesam_app.store import image_id_of

    photo = find_sample(args.image)
    image = load_rgb_image(photo)
    height, width = image.shape[:2]
    text = "\n".join(",".join(map(str, b)) for b in random_boxes(args.boxes, width, height))
    with AppProcess(Path(args.checkpoint), Path(tempfile.mkdtemp(prefix="mobilesam-batch-boxes-"))) as app, \
            chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(app.url)
        page.wait_for_function("() => window.msam && typeof window.msam.getState === 'function'", timeout=120_000)
        load_photo(page, photo, image_id_of(image))
        batch = args.batch or page.evaluate("() => window.msam._app.queue.batchMax")
        info = page.evaluate("() => window.msam.getState()")
        modes = {"one_by_one": 1, "batched": batch}
        runs = {name: [] for name in modes}
        masks = {}
        for rep in range(args.repeats + 1):  # the first round warms the page up and is not counted
            for name, batch_max in modes.items():
                page.evaluate(DELETE_ALL)
                r = page.evaluate(TIME_BOXES, [text, batch_max])
                if r["added"] != args.boxes or r["decoded"] != args.boxes:
                    raise SystemExit(f"{name}: {r['added']} boxes added, {r['decoded']} decoded of {args.boxes}")
                if rep:
                    runs[name].append(r)
                masks[name] = list(object_masks(page).values())
        ious = [mask_iou(a, b) for a, b in zip(masks["one_by_one"], masks["batched"])]
        decoder = {k: info.get(k) for k in ("decoderUrl", "ort") if k in info}
    result = {"image": photo.name, "size": [width, height], "boxes": args.boxes, "batch": batch,
              "repeats": args.repeats, "decoder": decoder, "machine": machine()}
    for name in modes:
        result[name] = {"ms_median": round(median([r["ms"] for r in runs[name]]), 1),
                        "ms_runs": [round(r["ms"], 1) for r in runs[name]]}
    result["ratio_batched_over_one_by_one"] = round(result["batched"]["ms_median"] / result["one_by_one"]["ms_median"], 3)
    result["masks_equal_min_iou"] = round(min(ious), 5)
    lines = [f"{args.boxes} boxes on {photo.name} ({width}x{height}), batches of {batch}, "
             f"{args.repeats} interleaved runs each; machine {result['machine']}",
             f"one by one: {result['one_by_one']['ms_median']:.0f} ms  (runs {result['one_by_one']['ms_runs']})",
             f"batched:    {result['batched']['ms_median']:.0f} ms  (runs {result['batched']['ms_runs']})",
             f"ratio batched / one by one: {result['ratio_batched_over_one_by_one']:.3f} (target <= 0.3)",
             f"same masks: smallest per-object IoU between the modes {result['masks_equal_min_iou']:.5f}"]
    emit(result, args.json, lines)


if __name__ == "__main__":
    main()
