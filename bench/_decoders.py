"""Decoder exports and prompts shared by the browser benchmarks (cached, keyed by checkpoint digest)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from _common import GOLDEN, ROOT, find_sample  # noqa: F401  (ROOT puts the repository on sys.path)
from support import golden_prompt_kwargs, mask_iou  # noqa: E402


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "mobilesam" / "bench"


def decoder_files(checkpoint: Path, model_type: str, cache_dir: Path, sam=None,
                  variants=("official", "official_single", "browser", "fast")) -> Dict[str, Path]:
    """Exports of the decoder of `checkpoint`: official (4 masks), official_single (return_single_mask),
    browser, fast. Reused from `cache_dir` when present and intact (cached_decoder's digest check)."""
    from mobilesam.export import EXPORT_FORMAT_VERSION, export_decoder
    from mobilesam.onnx_cache import cached_decoder, cached_file
    from mobilesam.utils.digest import sha256_of_file

    digest = sha256_of_file(checkpoint)
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for variant in variants:
        if variant == "official_single":
            name = f"mobilesam-{model_type}-{digest[:16]}-official-single-decoder-v{EXPORT_FORMAT_VERSION}.onnx"
            sam = sam if sam is not None else load_model(checkpoint, model_type)
            out[variant] = cached_file(cache_dir, name, lambda tmp: export_decoder(sam, tmp, variant="official",
                                                                                   return_single_mask=True))
        else:
            out[variant] = cached_decoder(checkpoint, model_type, cache_dir, variant=variant, sam=sam,
                                          checkpoint_sha256=digest)
    return out


def load_model(checkpoint: Path, model_type: str = "vit_t"):
    from mobilesam.hub import load_model_from

    return load_model_from(checkpoint, model_type, "cpu")


def image_prompts(image_name: str, height: int, width: int) -> List[dict]:
    """The prompts a benchmark decodes, in original-image pixels (the page's prompt format): the golden
    prompt sets of this image when there are some (truck.jpg, groceries.jpg), else the same kinds
    of prompts at fixed fractions of the image. The last one refines with the previous best mask."""
    key = Path(image_name).stem
    index_path = GOLDEN / "vit_t" / "index.json"
    prompts: List[dict] = []
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        entry = index["images"].get(key)
        if entry and entry["height"] == height and entry["width"] == width:
            for p in entry["prompts"]:
                points = [{"x": float(x), "y": float(y), "label": int(lbl)}
                          for (x, y), lbl in zip(p.get("point_coords", []), p.get("point_labels", []))]
                box = p.get("box")
                prompts.append({"name": p["name"], "points": points,
                                "box": None if box is None else dict(zip(("x0", "y0", "x1", "y1"), map(float, box))),
                                "refine": bool(p.get("mask_from"))})
            return prompts
    w, h = width, height
    return [
        {"name": "one_point", "points": [{"x": 0.45 * w, "y": 0.52 * h, "label": 1}], "box": None, "refine": False},
        {"name": "pos_neg_points", "points": [{"x": 0.3 * w, "y": 0.4 * h, "label": 1},
                                               {"x": 0.7 * w, "y": 0.65 * h, "label": 0}], "box": None, "refine": False},
        {"name": "box", "points": [], "box": {"x0": 0.1 * w, "y0": 0.2 * h, "x1": 0.65 * w, "y1": 0.85 * h},
         "refine": False},
        {"name": "box_and_negative_point", "points": [{"x": 0.55 * w, "y": 0.5 * h, "label": 0}],
         "box": {"x0": 0.2 * w, "y0": 0.15 * h, "x1": 0.9 * w, "y1": 0.8 * h}, "refine": False},
        {"name": "refine", "points": [{"x": 0.45 * w, "y": 0.52 * h, "label": 1}], "box": None, "refine": True},
    ]


def encode(sam, image: np.ndarray) -> Tuple[np.ndarray, Tuple[int, int]]:
    """fp32 embedding of `image` with the PyTorch predictor (the reference path) and the input size."""
    from mobilesam import SamPredictor

    predictor = SamPredictor(sam)
    predictor.set_image(image)
    return predictor.get_image_embedding().float().cpu().numpy(), tuple(predictor.input_size)


def client_info(image_id: str, height: int, width: int, input_size, embedding_url: str,
                model: str = "vit_t") -> dict:
    return {"image_id": image_id, "width": width, "height": height, "input_width": int(input_size[1]),
            "input_height": int(input_size[0]), "embedding_url": embedding_url, "model": model}


def golden_mask_ious(sam, embedding_of) -> dict:
    """Min / mean IoU of the masks decoded from `embedding_of(golden_embedding, image)` against those of
    the golden (official float32) embedding, over every golden image and prompt set of vit_t.
    `image` is the golden's uint8 RGB photo: a reduced-precision encoder embeds it, a codec
    transforms the golden embedding."""
    import json

    import torch

    from mobilesam import SamPredictor
    from mobilesam_app.images import load_rgb_image

    index = json.loads((GOLDEN / "vit_t" / "index.json").read_text())
    ious = []
    for key, entry in index["images"].items():
        emb = np.load(GOLDEN / "vit_t" / f"{key}_embedding.npy")
        image = load_rgb_image(str(find_sample(entry["image"])))
        preds = {}
        for name, e in (("ref", emb), ("ours", embedding_of(emb, image))):
            p = SamPredictor(sam)
            p.set_image_embedding(torch.from_numpy(np.asarray(e, np.float32)), (entry["height"], entry["width"]))
            preds[name] = p
        prev = {}
        for prompt in entry["prompts"]:
            out = {}
            for name, p in preds.items():
                previous = {k: v for (n, k), v in prev.items() if n == name}
                masks, scores, low = p.predict(**golden_prompt_kwargs(prompt, previous))
                prev[(name, prompt["name"])] = (low, scores)
                out[name] = masks
            ious += [mask_iou(a, b) for a, b in zip(out["ours"], out["ref"])]
    return {"min": round(min(ious), 5), "mean": round(float(np.mean(ious)), 5), "masks": len(ious)}
