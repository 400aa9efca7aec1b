"""Command line automatic mask generation, like segment-anything's ``scripts/amg.py``.

Usage::

    python -m mobilesam.amg --input photo.jpg --output out/
    python -m mobilesam.amg --input photos/ --output out/ --convert-to-rle --points-per-side 16

``--input`` is an image file or a folder; of a folder, every file whose
extension Pillow knows is processed (sub-folders are not). Images are loaded
with Pillow, rotated by their EXIF orientation and converted to RGB.

Outputs, per image ``NAME.ext`` (NAME is the file name without its extension;
``NAME_ext`` when two inputs share a NAME):

* by default, a folder ``OUTPUT/NAME/`` with one PNG per mask, ``0.png``,
  ``1.png``, ... (8-bit, 255 inside the mask, 0 outside), and ``metadata.csv``
  with one row per mask and the header ::

      id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h

  (boxes in XYWH pixels; ``id`` is the PNG's number);
* with ``--convert-to-rle``, one file ``OUTPUT/NAME.json`` in the SA-1B
  annotation format (unlike the official script, which writes the bare list
  of records)::

      {"image": {"image_id": 0, "width": W, "height": H, "file_name": "NAME.ext"},
       "annotations": [{"id": 0, "segmentation": {"size": [H, W], "counts": "..."},
                        "area": ..., "bbox": [x, y, w, h], "predicted_iou": ...,
                        "point_coords": [[x, y]], "stability_score": ...,
                        "crop_box": [x, y, w, h]}, ...]}

  where ``segmentation`` is a COCO compressed RLE (``pycocotools.mask.decode``
  reads it; so does `mobilesam.utils.amg.coco_rle_to_mask`).

Existing outputs are not replaced unless ``--overwrite`` is given (which removes
only the files this command writes: ``N.png`` and ``metadata.csv``, or the JSON).

The model: with ``--checkpoint PATH`` that file is loaded with
``sam_model_registry[--model-type]``; without it, `mobilesam.hub.load_model`
finds the official checkpoint (environment variable or a verified download).

Exit status: 0 when every image was processed, 1 when some could not be read or
written (each is reported on stderr and the others are still processed), 2 for
bad arguments.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

__all__ = ["main", "build_parser", "load_image", "list_images", "write_masks_to_folder", "write_sa1b_json"]

METADATA_HEADER = (
    "id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,"
    "predicted_iou,stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h"
)

# (flag, type, help) of the SamAutomaticMaskGenerator settings; unset flags keep its defaults.
_AMG_SETTINGS = [
    ("--points-per-side", int, "Points sampled along one side of the image (points_per_side**2 in all)."),
    ("--points-per-batch", int, "Points decoded at once; lower it to save memory."),
    ("--pred-iou-thresh", float, "Drop masks whose predicted IoU is at or below this (0 to 1)."),
    ("--stability-score-thresh", float, "Drop masks whose stability score is below this (0 to 1)."),
    ("--stability-score-offset", float, "How far the logit threshold moves when measuring stability."),
    ("--box-nms-thresh", float, "Box IoU cutoff for removing duplicate masks within a crop."),
    ("--crop-n-layers", int, "Also run on this many layers of image crops (0: whole image only)."),
    ("--crop-nms-thresh", float, "Box IoU cutoff for removing duplicate masks between crops."),
    ("--crop-overlap-ratio", float, "Overlap of neighbouring crops, as a fraction of the short side."),
    ("--crop-n-points-downscale-factor", int, "Points per side shrink by this factor in each crop layer."),
    ("--min-mask-region-area", int, "Remove holes and islands smaller than this many pixels (0: off)."),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mobilesam.amg",
        description=(
            "Generate masks for whole images with SamAutomaticMaskGenerator. Writes a folder of PNG "
            "masks and metadata.csv per image, or with --convert-to-rle one SA-1B style JSON per image."
        ),
    )
    parser.add_argument("--input", required=True, help="An image file, or a folder of images.")
    parser.add_argument("--output", required=True, help="Folder for the outputs (created if missing).")
    parser.add_argument("--model-type", default="vit_t", help="Model type: vit_t (default), vit_b, vit_l or vit_h.")
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="Checkpoint file. Default: the official one, from $MOBILESAM_CHECKPOINT_<TYPE> or a download.",
    )
    parser.add_argument("--device", default="auto", help="'auto' (default: cuda if available), 'cpu', 'cuda:0', ...")
    parser.add_argument(
        "--convert-to-rle",
        action="store_true",
        help="Write one SA-1B style JSON with COCO RLE masks per image instead of PNG folders.",
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace outputs of an earlier run.")
    settings = parser.add_argument_group("mask generation settings (defaults: SamAutomaticMaskGenerator's)")
    for flag, kind, help_text in _AMG_SETTINGS:
        settings.add_argument(flag, type=kind, default=None, help=help_text)
    return parser


def amg_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    """The generator keyword arguments given on the command line."""
    kwargs = {}
    for flag, _, _ in _AMG_SETTINGS:
        name = flag[2:].replace("-", "_")
        value = getattr(args, name)
        if value is not None:
            kwargs[name] = value
    return kwargs


# --------------------------------------------------------------------------- #
# Inputs
# --------------------------------------------------------------------------- #


def list_images(path: Path) -> List[Path]:
    """`path` itself if it is a file, else the files in folder `path` with an
    image extension Pillow knows, sorted by name."""
    from PIL import Image

    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"input {str(path)!r} is neither a file nor a folder")
    extensions = {ext.lower() for ext in Image.registered_extensions()}
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in extensions)


def load_image(path: Path) -> np.ndarray:
    """An image file as uint8 H x W x 3 RGB, rotated upright by its EXIF orientation."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        return np.array(image.convert("RGB"))


def output_names(paths: Sequence[Path]) -> List[str]:
    """Output name per input: the file stem, or stem_ext where stems collide."""
    stems = [p.stem for p in paths]
    names = []
    for p, stem in zip(paths, stems):
        if stems.count(stem) > 1:
            stem = f"{stem}_{p.suffix.lstrip('.')}" if p.suffix else stem
        names.append(stem)
    return names


# --------------------------------------------------------------------------- #
# Outputs
# --------------------------------------------------------------------------- #

_OWN_PNG = re.compile(r"^\d+\.png$")


def write_masks_to_folder(records: List[Dict[str, Any]], folder: Path) -> None:
    """PNG masks ``i.png`` (0/255) and ``metadata.csv`` of binary_mask records."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rows = [METADATA_HEADER]
    for i, record in enumerate(records):
        mask = np.asarray(record["segmentation"], dtype=bool)
        Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(folder / f"{i}.png")
        values = [
            i,
            record["area"],
            *record["bbox"],
            *record["point_coords"][0],
            record["predicted_iou"],
            record["stability_score"],
            *record["crop_box"],
        ]
        rows.append(",".join(str(v) for v in values))
    (folder / "metadata.csv").write_text("\n".join(rows) + "\n")


def write_sa1b_json(records: List[Dict[str, Any]], path: Path, image_size: Sequence[int], file_name: str) -> None:
    """One SA-1B JSON document (see the module docstring)."""
    from mobilesam.utils.sa1b import sa1b_json

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(sa1b_json(records, image_size, file_name=file_name), f)


def _clear_old_outputs(target: Path, overwrite: bool) -> None:
    """Refuse to mix with an earlier run's outputs at `target`, or remove them."""
    if target.is_dir():
        old = [p for p in target.iterdir() if _OWN_PNG.match(p.name) or p.name == "metadata.csv"]
        if not old:
            return
        if not overwrite:
            raise FileExistsError(f"{str(target)!r} already holds masks; use --overwrite to replace them")
        for p in old:
            p.unlink()
    elif target.exists():
        if not overwrite:
            raise FileExistsError(f"{str(target)!r} already exists; use --overwrite to replace it")
        target.unlink()


# --------------------------------------------------------------------------- #
# Model
# --------------------------------------------------------------------------- #


def load_sam(model_type: str, checkpoint: Optional[str], device: str):
    """The Sam model on `device`, in eval mode, from `checkpoint` or the official weights."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if checkpoint is None:
        from mobilesam.hub import load_model

        return load_model(model_type, device=device)
    from mobilesam import sam_model_registry

    if model_type not in sam_model_registry:
        raise ValueError(f"unknown --model-type {model_type!r}; choose from {', '.join(sam_model_registry)}")
    return sam_model_registry[model_type](checkpoint=checkpoint).to(device).eval()


# --------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------- #


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    from mobilesam.automatic_mask_generator import SamAutomaticMaskGenerator

    try:
        targets = list_images(Path(args.input))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not targets:
        print(f"error: no image files in folder {args.input!r}", file=sys.stderr)
        return 2

    output_mode = "coco_rle" if args.convert_to_rle else "binary_mask"
    generator_kwargs = dict(amg_kwargs(args), output_mode=output_mode)
    try:
        _validate_settings(generator_kwargs)  # before the (slow) model load
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("Loading model...")
    try:
        sam = load_sam(args.model_type, args.checkpoint, args.device)
    except Exception as exc:  # a missing or corrupt file, an unknown type or device, no network...
        print(f"error: could not load the {args.model_type} model: {exc}", file=sys.stderr)
        return 1
    generator = SamAutomaticMaskGenerator(sam, **generator_kwargs)

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    failed = []
    for path, name in zip(targets, output_names(targets)):
        print(f"Processing '{path}'...")
        try:
            image = load_image(path)
        except Exception as exc:  # Pillow raises many kinds for unreadable files
            print(f"error: could not load '{path}' as an image ({exc}); skipping it", file=sys.stderr)
            failed.append(path)
            continue
        target = output / (f"{name}.json" if args.convert_to_rle else name)
        try:
            _clear_old_outputs(target, args.overwrite)
            records = generator.generate(image)
            if args.convert_to_rle:
                write_sa1b_json(records, target, image.shape[:2], path.name)
            else:
                write_masks_to_folder(records, target)
        except OSError as exc:
            print(f"error: could not write the masks of '{path}': {exc}", file=sys.stderr)
            failed.append(path)
            continue
        print(f"  {len(records)} masks -> {target}")

    done = len(targets) - len(failed)
    print(f"Done: {done} of {len(targets)} image(s).")
    if failed:
        print(f"{len(failed)} image(s) failed: {', '.join(str(p) for p in failed)}", file=sys.stderr)
        return 1
    return 0


def _validate_settings(kwargs: Dict[str, Any]) -> None:
    """Raise the generator's ValueError for bad settings, without a model."""
    from mobilesam.automatic_mask_generator import validate_generator_args

    validate_generator_args(**kwargs)


if __name__ == "__main__":
    sys.exit(main())
