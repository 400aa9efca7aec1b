"""Would a batch axis in the fast decoder pay? N box prompts on one image's cache, decoded one by one
against one batched run (torch.func.vmap over the boxes of mobilesam.accel.fast_decoder.FastPromptPart),
in PyTorch on the CPU, interleaved; prints the ratio (batched / one by one) and the largest difference.

    python bench/batch_boxes_torch.py --checkpoint CKPT [--boxes 50] [--threads 1] [--repeats 2] [--json]

A probe before writing a batched ONNX export for the browser: if batching does not pay here, where
the same products run on the same CPU, the export is not worth its weight. Timing does not depend on
the embedding's content, so a seeded random one is used.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_parser, emit, machine, median, time_interleaved  # noqa: E402


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from mobilesam.accel.fast_decoder import FastImagePart, FastPromptPart
    from mobilesam.hub import load_model_from

    torch.set_num_threads(args.threads)
    sam = load_model_from(args.checkpoint, args.model_type, "cpu")
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(1, 256, 64, 64, generator=gen)
    n = args.boxes
    corner = torch.rand(n, 2, generator=gen) * 800
    coords = torch.stack([corner, corner + 50 + torch.rand(n, 2, generator=gen) * 200], 1)[:, None]  # [B,1,2,2]
    labels = torch.tensor([2.0, 3.0]).expand(n, 1, 2).contiguous()  # box corners
    mask, has = torch.zeros(1, 1, 256, 256), torch.zeros(1)
    with torch.no_grad():
        cache = FastImagePart(sam)(emb)
        part = FastPromptPart(sam, with_mask=False).eval()
        decode = lambda c, l: part(emb, *cache, c, l, mask, has)  # noqa: E731
        batched = torch.func.vmap(decode)
        one = [decode(coords[b], labels[b])[1] for b in range(n)]
        diff = float((batched(coords, labels)[1] - torch.stack(one)).abs().max())
        times = time_interleaved({
            "one_by_one": lambda: [decode(coords[b], labels[b]) for b in range(n)],
            "batched": lambda: batched(coords, labels),
        }, repeats=args.repeats, warmup=0)
    one_s, batch_s = median(times["one_by_one"]), median(times["batched"])
    result = {"boxes": n, "threads": args.threads, "one_by_one_s": round(one_s, 3), "batched_s": round(batch_s, 3),
              "ratio": round(batch_s / one_s, 3), "max_abs_diff": diff, "machine": machine()}
    emit(result, args.json, [
        f"{n} boxes, {args.threads} thread(s): one by one {one_s:.2f} s, batched (vmap) {batch_s:.2f} s, "
        f"ratio {batch_s / one_s:.2f}; largest logit difference {diff:.1e}",
        f"machine: {result['machine']}"])


if __name__ == "__main__":
    main()
