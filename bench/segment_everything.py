"""Segment everything (SamAutomaticMaskGenerator.generate) on one photo: the official computation
against the app's (filter by predicted IoU before upsampling + onnxruntime encoder + fast decoder).

    python bench/segment_everything.py --checkpoint CKPT --image IMG [--points-per-side 32] [--repeats 1] [--json]

Baseline: the generator with the official settings (32×32 grid, 64 points per batch, thresholds
0.88 / 0.95, NMS 0.7, no crops) computed as the official code does: PyTorch eager float32, every
mask of a batch upsampled to the image size before the IoU filter (`upsample_all_first`). Ours:
`FastSamAutomaticMaskGenerator` (float32 throughout) with the same settings. Both include the encoder. `ratio` =
ours_s / baseline_s; the records are compared (count, boxes, mask IoU).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_parser, emit, find_sample, machine, median  # noqa: E402
from _decoders import default_cache_dir, load_model  # noqa: E402


def main(argv=None) -> int:
    parser = bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from mobilesam.accel.mask_generator import FastSamAutomaticMaskGenerator
    from mobilesam.automatic_mask_generator import SamAutomaticMaskGenerator
    from mobilesam_app.images import load_rgb_image
    from mobilesam.utils.amg import rle_to_mask

    image = load_rgb_image(str(find_sample(args.image)))
    sam = load_model(Path(args.checkpoint), args.model_type)
    settings = dict(points_per_side=args.points_per_side, output_mode="uncompressed_rle")
    baseline = SamAutomaticMaskGenerator(sam, **settings)
    baseline.upsample_all_first = True
    ours = FastSamAutomaticMaskGenerator(sam, cache_dir=str(args.cache_dir), **settings)
    ours.generate(image[:64, :64].copy())  # warm-up (sessions, first-run allocations)

    load_before = machine()
    times = {"baseline": [], "ours": []}
    records = {}
    for _ in range(args.repeats):
        for name, gen in (("baseline", baseline), ("ours", ours)):
            start = time.perf_counter()
            with torch.no_grad():
                records[name] = gen.generate(image)
            times[name].append(time.perf_counter() - start)
    a, b = records["baseline"], records["ours"]
    ious = [float(np.logical_and(m1, m2).sum() / max(1, np.logical_or(m1, m2).sum()))
            for m1, m2 in ((rle_to_mask(x["segmentation"]), rle_to_mask(y["segmentation"])) for x, y in zip(a, b))]
    out = {
        "benchmark": "segment_everything", "image": Path(args.image).name, "size": [image.shape[1], image.shape[0]],
        "points_per_side": args.points_per_side, "threads": torch.get_num_threads(),
        "baseline": "official settings and order, PyTorch eager float32 (encoder + 16 batches of 64 points)",
        "ours": "filter by IoU at low res, then upsample survivors; onnxruntime float32 encoder + fast decoder",
        "baseline_s": round(median(times["baseline"]), 3), "ours_s": round(median(times["ours"]), 3),
        "ratio": round(median(times["ours"]) / median(times["baseline"]), 4),
        "records": {"baseline": len(a), "ours": len(b)},
        "records_min_mask_iou": min(ious) if ious else None,
        "machine_before": load_before, "machine_after": machine(),
    }
    lines = [
        f"segment everything on {out['image']} {out['size'][0]}x{out['size'][1]}, "
        f"{args.points_per_side}x{args.points_per_side} points, official thresholds, {out['threads']} threads",
        f"  baseline (official order, PyTorch float32): {out['baseline_s']:8.2f} s   {len(a)} records",
        f"  ours (low-res filter, fast backend):        {out['ours_s']:8.2f} s   {len(b)} records"
        + (f", min mask IoU vs baseline {min(ious):.4f}" if ious else ""),
        f"  ratio ours / baseline: {out['ratio']:.3f}",
        f"  load average before/after: {load_before['loadavg']} / {out['machine_after']['loadavg']}",
    ]
    emit(out, args.json, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
