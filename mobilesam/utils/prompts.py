"""Validation of prompts given in original-image pixel coordinates.

Each check raises ValueError with a message that names the problem, so callers (the
predictor, the app's APIs) never feed silent garbage to the model.
"""
from typing import Optional, Tuple

import numpy as np

VALID_POINT_LABELS = (-1, 0, 1)  # -1 padding ("not a point"), 0 background, 1 foreground
LOW_RES_MASK_SHAPE = (1, 256, 256)


def _finite_float_array(value, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {type(value).__name__}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_points(point_coords, point_labels, image_size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Validate N×2 (x, y) points and their N labels against an image of (height, width).

    Coordinates may lie anywhere in [0, width] × [0, height] (edges included).
    """
    if point_labels is None:
        raise ValueError("point_labels must be given with point_coords (1 foreground, 0 background)")
    coords = _finite_float_array(point_coords, "point_coords")
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"point_coords must have shape N×2 (x, y), got {coords.shape}")
    labels = np.asarray(point_labels)
    if labels.ndim != 1 or labels.shape[0] != coords.shape[0]:
        raise ValueError(f"point_labels must have shape ({coords.shape[0]},) to match point_coords, "
                         f"got {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.number):
        raise ValueError(f"point_labels must be integers, got dtype {labels.dtype}")
    if labels.size and (not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels))
                        or not np.all(np.isin(labels, VALID_POINT_LABELS))):
        bad = sorted(set(labels.tolist()) - set(VALID_POINT_LABELS))
        raise ValueError(f"unknown point label(s) {bad}: use 1 (foreground) or 0 (background)")
    check_inside_image(coords, image_size, "point")
    return coords, labels.astype(np.int64)


def check_box(box, image_size: Tuple[int, int]) -> np.ndarray:
    """Validate one box (x0, y0, x1, y1), shape 4 or 1×4, inside an image of (height, width)."""
    arr = _finite_float_array(box, "box")
    if arr.shape not in ((4,), (1, 4)):
        raise ValueError(f"box must have shape (4,) as x0, y0, x1, y1, got {arr.shape}")
    x0, y0, x1, y1 = arr.reshape(4)
    if x1 < x0 or y1 < y0:
        raise ValueError(f"box must have x0 <= x1 and y0 <= y1, got ({x0}, {y0}, {x1}, {y1})")
    check_inside_image(arr.reshape(2, 2), image_size, "box corner")
    return arr.reshape(4)


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


def has_prompt(coords: Optional[np.ndarray], box: Optional[np.ndarray], mask: Optional[np.ndarray]) -> bool:
    return (coords is not None and len(coords) > 0) or box is not None or mask is not None
