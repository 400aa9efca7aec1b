"""Validation of prompts given in original-image pixel coordinates.

Each check raises ValueError with a message that names the problem, so callers never feed silent
garbage to the model. Two levels:

* `point_prompt_arrays`, `box_prompt_array`, `check_mask_input`: what SamPredictor.predict accepts,
  which is what segment_anything's predictor accepts (points and boxes anywhere, inside the image
  or not; box corners in any order; labels -1, 0, 1, 2, 3; bool labels), minus what it would
  crash on obscurely or turn into silent garbage (NaN/inf, wrong shapes, labels such as 0.5 or 7).
* `check_points`, `check_box`: stricter, for the app's API: everything inside the image and
  boxes with x0 <= x1, y0 <= y1.
"""
from typing import Tuple

import numpy as np
import torch

# The labels of segment_anything's prompt encoder: 1 foreground, 0 background, -1 padding ("not a
# point"), 2 and 3 a box's top-left and bottom-right corners given as points.
POINT_LABELS = (-1, 0, 1, 2, 3)
LOW_RES_MASK_SHAPE = (1, 256, 256)


def _finite_float_array(value, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):  # any device, with or without grad, as torch.as_tensor takes it
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {type(value).__name__}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _point_label_array(point_labels, count: int) -> np.ndarray:
    """N labels (bool, or integer-valued numbers in POINT_LABELS) -> int64 array of shape (N,)."""
    if isinstance(point_labels, torch.Tensor):
        point_labels = point_labels.detach().cpu().numpy()
    labels = np.asarray(point_labels)
    if labels.ndim != 1 or labels.shape[0] != count:
        raise ValueError(f"point_labels must have shape ({count},) to match point_coords, got {labels.shape}")
    if labels.dtype == np.bool_:  # True/False = 1/0, as torch.as_tensor(labels, dtype=torch.int) reads them
        return labels.astype(np.int64)
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise ValueError(f"point_labels must be integers, got dtype {labels.dtype}")
    known = np.isin(labels, POINT_LABELS)  # False for NaN, inf and non-integers such as 0.5
    if not np.all(known):
        bad = sorted(set(labels[~known].tolist()), key=str)
        raise ValueError(f"unknown point label(s) {bad}: use 1 (foreground), 0 (background), "
                         f"-1 (padding) or 2 and 3 (box corners)")
    return labels.astype(np.int64)


def point_prompt_arrays(point_coords, point_labels) -> Tuple[np.ndarray, np.ndarray]:
    """Validate point prompts as SamPredictor.predict takes them: (coords N×2 float64, labels N int64).

    Coordinates are (x, y) original-image pixels, any finite values (outside the image too); N may
    be 0. Labels: see POINT_LABELS; bools count as 1/0 and integer-valued floats as integers.
    """
    if point_labels is None:
        raise ValueError("point_labels must be given with point_coords (1 foreground, 0 background)")
    coords = _finite_float_array(point_coords, "point_coords")
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"point_coords must have shape N×2 (x, y), got {coords.shape}")
    return coords, _point_label_array(point_labels, coords.shape[0])


def box_prompt_array(box) -> np.ndarray:
    """Validate one box prompt (x0, y0, x1, y1), shape 4 or 1×4, as SamPredictor.predict takes it: any
    finite values, corners in any order. Returns shape (4,) float64."""
    arr = _finite_float_array(box, "box")
    if arr.shape not in ((4,), (1, 4)):
        raise ValueError(f"box must have shape (4,) as x0, y0, x1, y1, got {arr.shape}")
    return arr.reshape(4)


def check_points(point_coords, point_labels, image_size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Strict check of N×2 (x, y) points and their N labels against an image of (height, width).

    `point_prompt_arrays`, and every point must lie in [0, width] × [0, height] (edges included).
    """
    coords, labels = point_prompt_arrays(point_coords, point_labels)
    check_inside_image(coords, image_size, "point")
    return coords, labels


def check_box(box, image_size: Tuple[int, int]) -> np.ndarray:
    """Strict check of one box (x0, y0, x1, y1), shape 4 or 1×4: `box_prompt_array`, with x0 <= x1,
    y0 <= y1 and both corners inside an image of (height, width)."""
    arr = box_prompt_array(box)
    x0, y0, x1, y1 = arr
    if x1 < x0 or y1 < y0:
        raise ValueError(f"box must have x0 <= x1 and y0 <= y1, got ({x0}, {y0}, {x1}, {y1})")
    check_inside_image(arr.reshape(2, 2), image_size, "box corner")
    return arr


def check_mask_input(mask_input) -> np.ndarray:
    """Validate a low-resolution mask prompt: 1×256×256 logits, as returned by predict."""
    arr = _finite_float_array(mask_input, "mask_input")
    if arr.shape != LOW_RES_MASK_SHAPE:
        raise ValueError(f"mask_input must have shape 1×256×256 (a low_res_masks entry), got {arr.shape}")
    return arr


def check_inside_image(coords: np.ndarray, image_size: Tuple[int, int], what: str) -> None:
    """Raise if any N×2 (x, y) lies outside [0, width] × [0, height]."""
    h, w = image_size
    outside = (coords[:, 0] < 0) | (coords[:, 0] > w) | (coords[:, 1] < 0) | (coords[:, 1] > h)
    if np.any(outside):
        x, y = coords[np.argmax(outside)]
        raise ValueError(f"{what} ({x:g}, {y:g}) lies outside the {w}×{h} image")


def check_image(image, name: str = "image") -> np.ndarray:
    """Validate an RGB image: a uint8 numpy array of shape H×W×3 with H, W ≥ 1."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be a numpy array of shape H×W×3, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 (0-255), got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must have shape H×W×3, got {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name} is empty: shape {image.shape}")
    return image
