#!/usr/bin/env python3
"""Derive the compact golden files in this folder from the full golden outputs.

    python tests/data/golden/make_compact.py FULL_GOLDEN_DIR [--out tests/data/golden]

e.g. `python tests/data/golden/make_compact.py FULL_GOLDEN_DIR`. FULL_GOLDEN_DIR holds the key
manifests (`vit_t_keys.json`, `vit_b_keys.json`) and one folder per model with `index.json`,
`<image>_embedding.npy` (float32 1x256x64x64) and `<image>_<prompt>.npz` (`masks` packed with
numpy.packbits along the last axis, `mask_shape`, `iou_predictions`, `low_res_masks` float32 logits).
See README.md beside this script for the format written; tests/conftest.py reads it.
"""
import argparse
import json
import lzma
import shutil
from pathlib import Path

import numpy as np

# Quantization steps (powers of two, so step * integer is exact in float32) and the stride of the
# exact float32 subsample (a prime, so the subsample visits every channel, row and column).
EMBEDDING_STEP = 2.0 ** -5
LOGIT_STEP = 2.0 ** -8
SAMPLE_STRIDE = 61
LOGIT_PERIOD = 4  # the decoder upscales 64 -> 256 with two stride-2 transposed convolutions


def quantize(x: np.ndarray, step: float) -> np.ndarray:
    return np.round(x.astype(np.float64) / step).astype(np.int64)


def diff2d(q: np.ndarray, period: int = 1) -> np.ndarray:
    """Residual of q predicted from its neighbours `period` pixels up and left (the inverse is two
    cumulative sums); small, so it compresses well. q: (..., H, W) integers."""
    *lead, h, w = q.shape
    g = q.reshape(*lead, h // period, period, w // period, period)
    g = np.diff(np.diff(g, axis=-2, prepend=0), axis=-4, prepend=0)
    return g.reshape(q.shape)


def xz(a: np.ndarray) -> np.ndarray:
    """The bytes of `a` (little-endian) compressed with LZMA (xz), as a uint8 array: a fifth smaller
    than what np.savez_compressed's deflate makes of these arrays."""
    data = np.ascontiguousarray(a, a.dtype.newbyteorder("<")).tobytes()
    return np.frombuffer(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME), np.uint8)


def int16(r: np.ndarray) -> np.ndarray:
    assert np.abs(r).max() < 2 ** 15, "residual out of int16 range"
    return r.astype(np.int16)


def compact_array(x: np.ndarray, step: float, period: int) -> dict:
    x = np.asarray(x, np.float32)
    q = quantize(x, step)
    approx = (q * step).astype(np.float32)
    assert np.abs(approx.astype(np.float64) - x).max() <= step / 2
    return {"residual_xz": xz(int16(diff2d(q, period))), "step": np.float64(step), "period": np.int64(period),
            "shape": np.array(x.shape, np.int64), "sample": x.reshape(-1)[::SAMPLE_STRIDE].copy(),
            "sample_stride": np.int64(SAMPLE_STRIDE)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="folder of the full goldens")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = ap.parse_args()
    src, out = args.source, args.out
    for name in ("vit_t_keys.json", "vit_b_keys.json"):
        shutil.copyfile(src / name, out / name)
    for model_dir in sorted(p for p in src.iterdir() if (p / "index.json").is_file()):
        dst = out / model_dir.name
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_dir / "index.json", dst / "index.json")
        index = json.loads((model_dir / "index.json").read_text())
        for key, entry in index["images"].items():
            emb = np.load(model_dir / f"{key}_embedding.npy")
            arrays = {f"embedding_{k}": v for k, v in compact_array(emb, EMBEDDING_STEP, 1).items()}
            np.savez_compressed(dst / f"{key}_embedding.npz", **arrays)
            for prompt in entry["prompts"]:
                full = np.load(model_dir / f"{key}_{prompt['name']}.npz")
                arrays = {"masks_xz": xz(full["masks"]), "masks_packed_shape": np.array(full["masks"].shape),
                          "mask_shape": full["mask_shape"],
                          "iou_predictions": full["iou_predictions"].astype(np.float32)}
                arrays.update({f"low_res_masks_{k}": v for k, v in
                               compact_array(full["low_res_masks"], LOGIT_STEP, LOGIT_PERIOD).items()})
                np.savez_compressed(dst / f"{key}_{prompt['name']}.npz", **arrays)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
