"""Image encoder time: SamPredictor.set_image in PyTorch float32 eager (the official computation)
against the app's encoder (mobilesam/accel/encoder.py ImageEncoder: onnxruntime float32 for vit_t).

    python bench/encoder.py --checkpoint CKPT --image IMG [--repeats 5] [--bf16] [--compile] [--json]

Both include the whole set_image: Pillow resize to the 1024 long side, normalisation, padding, the
encoder. Calls are interleaved (baseline, ours, baseline, ...) after one warm-up each; medians are
reported, and `ratio` = ours_s / baseline_s. With --bf16 the opt-in bf16 autocast path is timed too
(not the app's default: see accel.py). With --compile, torch.compile (inductor, frozen weights) is
timed in float32 and in bf16 autocast (its compilation is not timed). For each reduced-precision path
the golden masks are checked too: mask IoU against the official float32 embedding's masks, over every
golden image and prompt set (the precision rule: IoU >= 0.99). The ONNX export (once per checkpoint,
cached) is not timed.

The float32 floor is printed too: the encoder's multiply-adds (torch.utils.flop_counter, 77.5
GFLOP for vit_t at 1024×1024) at this machine's float32 matrix-product peak, measured in the same
run (a 4096×4096 torch.mm, MKL, all threads): no float32 implementation can be faster than that.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_parser, emit, find_sample, machine, median, time_interleaved  # noqa: E402
from _decoders import default_cache_dir, golden_mask_ious, load_model  # noqa: E402


def compiled_embed(sam, bf16: bool):
    """image -> embedding with sam.image_encoder under torch.compile (inductor, frozen weights), float32
    or bf16 autocast; the same preprocessing as set_image. Compiled (and run once) here."""
    import torch
    import torch._inductor.config as inductor_config

    from mobilesam.accel.encoder import preprocess
    from mobilesam.utils.transforms import ResizeLongestSide

    inductor_config.freezing = True
    compiled = torch.compile(sam.image_encoder)
    transform = ResizeLongestSide(sam.image_encoder.img_size)

    def embed(image: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x, _ = preprocess(sam, transform, image)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return compiled(x).float().numpy()

    embed(np.zeros((64, 64, 3), np.uint8))
    return embed


def main(argv=None) -> int:
    parser = bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bf16", action="store_true", help="also time the opt-in bf16 autocast path")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile (inductor) in float32 and in bf16 autocast")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from mobilesam import SamPredictor
    from mobilesam_app.images import load_rgb_image
    from mobilesam.accel.encoder import ImageEncoder

    image = load_rgb_image(str(find_sample(args.image)))
    sam = load_model(Path(args.checkpoint), args.model_type)
    predictor = SamPredictor(sam)
    ours = ImageEncoder(sam, args.model_type, backend="onnxruntime", cache_dir=args.cache_dir, background=False)
    if ours.active != "onnxruntime":
        print(f"error: onnxruntime encoder unavailable: {ours.error}", file=sys.stderr)
        return 1

    def baseline():
        with torch.no_grad():
            predictor.set_image(image)

    fns = {"baseline": baseline, "ours": lambda: ours.embed(image)}
    bf16 = None
    if args.bf16:
        bf16 = ImageEncoder(sam, args.model_type, backend="torch-bf16")
        fns["bf16"] = lambda: bf16.embed(image)
    reduced = {"bf16": lambda im: bf16.embed(im)[0]} if bf16 is not None else {}
    if args.compile:
        compiled_fp32, compiled_bf16 = compiled_embed(sam, bf16=False), compiled_embed(sam, bf16=True)
        fns["compiled_fp32"] = lambda: compiled_fp32(image)
        fns["compiled_bf16"] = lambda: compiled_bf16(image)
        reduced["compiled_bf16"] = compiled_bf16
    load_before = machine()
    times = time_interleaved(fns, args.repeats)
    floor = float32_floor(sam)
    reference = predictor.get_image_embedding().numpy()
    got, _ = ours.embed(image)
    out = {
        "benchmark": "encoder", "image": Path(args.image).name, "size": [image.shape[1], image.shape[0]],
        "model_type": args.model_type, "threads": torch.get_num_threads(),
        "baseline": "SamPredictor.set_image, PyTorch eager float32",
        "ours": "ImageEncoder onnxruntime float32 (ORT_ENABLE_ALL), same preprocessing",
        "baseline_s": round(median(times["baseline"]), 4), "ours_s": round(median(times["ours"]), 4),
        "ratio": round(median(times["ours"]) / median(times["baseline"]), 4),
        "baseline_all_s": [round(t, 3) for t in times["baseline"]], "ours_all_s": [round(t, 3) for t in times["ours"]],
        "max_abs_embedding_diff": float(np.abs(got - reference).max()),
        **floor, "floor_ratio": round(floor["float32_floor_s"] / median(times["baseline"]), 4),
        "machine_before": load_before, "machine_after": machine(),
    }
    if bf16 is not None:
        got16, _ = bf16.embed(image)
        out["bf16_s"] = round(median(times["bf16"]), 4)
        out["bf16_ratio"] = round(median(times["bf16"]) / median(times["baseline"]), 4)
        out["bf16_max_abs_embedding_diff"] = float(np.abs(got16 - reference).max())
    for name in ("compiled_fp32", "compiled_bf16"):
        if name in fns:
            out[f"{name}_s"] = round(median(times[name]), 4)
            out[f"{name}_ratio"] = round(median(times[name]) / median(times["baseline"]), 4)
    for name, embed in reduced.items():
        out[f"{name}_golden_mask_iou"] = golden_mask_ious(sam, lambda _golden, im, embed=embed: embed(im))
    lines = [
        f"encoder (set_image) on {out['image']} {out['size'][0]}x{out['size'][1]}, {args.model_type}, "
        f"{out['threads']} threads, median of {args.repeats}",
        f"  baseline PyTorch eager float32:  {out['baseline_s']:.3f} s",
        f"  ours onnxruntime float32:        {out['ours_s']:.3f} s   (max |diff| {out['max_abs_embedding_diff']:.1e})",
    ]
    if bf16 is not None:
        lines.append(f"  opt-in bf16 autocast:            {out['bf16_s']:.3f} s   "
                     f"(max |diff| {out['bf16_max_abs_embedding_diff']:.1e}, ratio {out['bf16_ratio']:.3f})")
    for name, label in (("compiled_fp32", "torch.compile float32:"), ("compiled_bf16", "torch.compile bf16 autocast:")):
        if f"{name}_s" in out:
            lines.append(f"  {label:<32} {out[name + '_s']:.3f} s   (ratio {out[name + '_ratio']:.3f})")
    for name, iou in ((k[: -len("_golden_mask_iou")], v) for k, v in out.items() if k.endswith("_golden_mask_iou")):
        lines.append(f"  {name} golden masks vs float32: IoU min {iou['min']} mean {iou['mean']} ({iou['masks']} masks; "
                     f"{'meets' if iou['min'] >= 0.99 else 'fails'} the 0.99 rule)")
    lines += [f"  ratio ours / baseline: {out['ratio']:.3f}",
              f"  float32 floor: {floor['encoder_gflop']:.1f} GFLOP at the measured float32 peak "
              f"{floor['float32_peak_gflops']:.0f} GFLOP/s = {floor['float32_floor_s']:.3f} s "
              f"(ratio {out['floor_ratio']:.3f})",
              f"  load average before/after: {load_before['loadavg']} / {out['machine_after']['loadavg']}"]
    emit(out, args.json, lines)
    return 0


def float32_floor(sam) -> dict:
    """The encoder's floating-point operations and this machine's float32 matrix-product peak
    (best of 3 torch.mm of 4096×4096): their quotient bounds any float32 encoder from below."""
    import time

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    size = sam.image_encoder.img_size
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        sam.image_encoder(torch.zeros(1, 3, size, size))
    flop = counter.get_total_flops()
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    a @ b
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    peak = 2 * 4096**3 / best
    return {"encoder_gflop": round(flop / 1e9, 2), "float32_peak_gflops": round(peak / 1e9, 1),
            "float32_floor_s": round(flop / peak, 4)}


if __name__ == "__main__":
    sys.exit(main())
