#!/usr/bin/env python3
"""Deterministic stand-in checkpoints with the official key layouts (no download, no trained weights).

The key manifests in tests/data/golden (`vit_t_keys.json`: every key of the official `mobile_sam.pt`,
`vit_b_keys.json`: of `sam_vit_b_01ec64.pth`, each with shape and dtype) are filled by a fixed rule,
the same rule that made the checkpoints the goldens were computed from:

- integer tensors are zeros;
- every float tensor starts from float64 standard normal noise drawn by a `torch.Generator` seeded
  with `crc32(key) ^ seed` (31 bits), so a tensor does not depend on the other keys or their order;
- that noise is scaled by what the tensor is (its last key component and its rank): batch-norm
  running statistics stay near (0, 1), 1-D weights near 1, 1-D biases near 0, positional tables small,
  the random-Fourier matrix of the prompt encoder unscaled, and every other tensor divided by the
  square root of its fan-in (the product of all but its first dimension);
- the result is cast to the manifest's dtype.

    python tests/standin.py vit_t OUT_DIR [--seed 0]    # writes OUT_DIR/vit_t_seed0.pt

The weights are untrained, so masks made with them are meaningless as pictures, but two correct
implementations of the architecture agree on them to float rounding.
"""
import argparse
import json
import math
import zlib
from pathlib import Path

import torch

MANIFESTS = Path(__file__).resolve().parent / "data" / "golden"

SMALL_TABLES = frozenset({"pos_embed", "rel_pos_h", "rel_pos_w", "attention_biases"})


def manifest(model_type: str) -> dict:
    """{key: {"shape": [...], "dtype": "float32", ...}} of the official checkpoint of `model_type`."""
    with open(MANIFESTS / f"{model_type}_keys.json") as f:
        return json.load(f)


def _noise(key: str, shape: tuple, seed: int) -> torch.Tensor:
    generator = torch.Generator()
    generator.manual_seed((zlib.crc32(key.encode()) ^ seed) & 0x7FFFFFFF)
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def standin_tensor(key: str, shape, dtype: str, seed: int = 0) -> torch.Tensor:
    """The stand-in value of one state-dict entry."""
    shape = tuple(shape)
    torch_dtype = getattr(torch, dtype)
    if not dtype.startswith("float"):
        return torch.zeros(shape, dtype=torch_dtype)
    noise = _noise(key, shape, seed)
    leaf = key.split(".")[-1]
    if leaf == "running_var":
        scaled = noise.abs().mul(0.1).add(1.0)
    elif leaf == "running_mean":
        scaled = noise * 0.1
    elif leaf == "positional_encoding_gaussian_matrix":
        scaled = noise
    elif len(shape) < 2:
        scaled = noise.mul(0.1).add(1.0) if leaf == "weight" else noise * 0.05
    elif leaf in SMALL_TABLES:
        scaled = noise * 0.05
    else:
        scaled = noise / math.sqrt(math.prod(shape[1:]))
    return scaled.to(torch_dtype)


def standin_state_dict(model_type: str, seed: int = 0) -> dict:
    return {key: standin_tensor(key, spec["shape"], spec["dtype"], seed)
            for key, spec in manifest(model_type).items()}


def build_standin_checkpoint(model_type: str, out_dir, seed: int = 0) -> Path:
    """Write (once) and return `out_dir/<model_type>_seed<seed>.pt`, the stand-in checkpoint."""
    out = Path(out_dir) / f"{model_type}_seed{seed}.pt"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        torch.save(standin_state_dict(model_type, seed), partial)
        partial.replace(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_type", choices=["vit_t", "vit_b"])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(build_standin_checkpoint(args.model_type, args.out_dir, args.seed))


if __name__ == "__main__":
    main()
