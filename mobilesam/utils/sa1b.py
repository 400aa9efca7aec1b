"""SA-1B style JSON for automatic mask generator output.

One JSON document per image, in the layout of the SA-1B dataset's per-image
annotation files::

    {
      "image": {"image_id": 0, "width": W, "height": H, "file_name": "photo.jpg"},
      "annotations": [
        {
          "id": 0,
          "segmentation": {"size": [H, W], "counts": "<COCO compressed RLE>"},
          "area": 1234,                       # pixels in the mask
          "bbox": [x0, y0, w, h],             # XYWH
          "predicted_iou": 0.97,
          "point_coords": [[x, y]],           # the prompt point that made the mask
          "stability_score": 0.96,
          "crop_box": [x0, y0, w, h]          # XYWH crop the mask was made in
        },
        ...
      ]
    }

Decode a segmentation with ``pycocotools.mask.decode(ann["segmentation"])`` or,
without pycocotools, `mobilesam.utils.amg.coco_rle_to_mask`.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Sequence

import numpy as np
import torch

from .amg import coco_encode_rle, mask_to_rle_pytorch

__all__ = ["to_coco_rle", "sa1b_annotation", "sa1b_json"]


def to_coco_rle(segmentation: Any) -> Dict[str, Any]:
    """A segmentation in any output mode of the generator, as a COCO RLE.

    Args:
        segmentation: an (H, W) bool/0-1 array ("binary_mask"), an uncompressed
            RLE with list counts ("uncompressed_rle"), or a COCO RLE with str or
            bytes counts ("coco_rle").

    Returns:
        ``{"size": [H, W], "counts": str}``.
    """
    if isinstance(segmentation, dict):
        counts = segmentation["counts"]
        size = [int(s) for s in segmentation["size"]]
        if isinstance(counts, bytes):
            return {"size": size, "counts": counts.decode("ascii")}
        if isinstance(counts, str):
            return {"size": size, "counts": counts}
        return coco_encode_rle({"size": size, "counts": counts})
    mask = np.asarray(segmentation)
    if mask.ndim != 2:
        raise ValueError(f"a binary mask must be 2-D (H, W), got shape {mask.shape}")
    rle = mask_to_rle_pytorch(torch.from_numpy(mask.astype(bool))[None])[0]
    return coco_encode_rle(rle)


def sa1b_annotation(record: Dict[str, Any], ann_id: int) -> Dict[str, Any]:
    """One SA-1B annotation from one record of `SamAutomaticMaskGenerator.generate`."""
    return {
        "id": int(ann_id),
        "segmentation": to_coco_rle(record["segmentation"]),
        "area": int(record["area"]),
        "bbox": [_number(v) for v in record["bbox"]],
        "predicted_iou": float(record["predicted_iou"]),
        "point_coords": [[float(v) for v in point] for point in record["point_coords"]],
        "stability_score": float(record["stability_score"]),
        "crop_box": [_number(v) for v in record["crop_box"]],
    }


def sa1b_json(
    records: Iterable[Dict[str, Any]],
    image_size: Sequence[int],
    file_name: Optional[str] = None,
    image_id: int = 0,
) -> Dict[str, Any]:
    """The SA-1B JSON document of one image (see the module docstring).

    Args:
        records: output of `SamAutomaticMaskGenerator.generate`, any output mode.
        image_size: (H, W) of the image.
        file_name: name of the image file, stored in ``image.file_name`` when given.
        image_id: stored in ``image.image_id``.

    Returns:
        A JSON-serializable dict ``{"image": {...}, "annotations": [...]}``.
    """
    height, width = (int(s) for s in image_size[:2])
    image: Dict[str, Any] = {"image_id": int(image_id), "width": width, "height": height}
    if file_name is not None:
        image["file_name"] = str(file_name)
    annotations = [sa1b_annotation(record, i) for i, record in enumerate(records)]
    for ann in annotations:
        if ann["segmentation"]["size"] != [height, width]:
            raise ValueError(
                f"annotation {ann['id']} has size {ann['segmentation']['size']}, image is {[height, width]}"
            )
    return {"image": image, "annotations": annotations}


def _number(value: Any) -> Any:
    """A plain int or float from a numpy/torch/python scalar."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if float(value).is_integer() else float(value)
