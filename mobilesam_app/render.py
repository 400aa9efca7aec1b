"""Pictures of masks: coloured overlays with outlines."""
import colorsys
from typing import Iterable, Sequence, Tuple

import numpy as np

GOLDEN_RATIO = 0.618033988749895


def distinct_colors(n: int, saturation: float = 0.75, value: float = 0.95) -> np.ndarray:
    """n well-separated RGB colours (golden-ratio hue steps): n×3 uint8."""
    hues = (np.arange(n) * GOLDEN_RATIO) % 1.0
    return np.array([[int(c * 255) for c in colorsys.hsv_to_rgb(h, saturation, value)] for h in hues],
                    dtype=np.uint8).reshape(n, 3)


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of an H×W bool mask with a 4-neighbour outside the mask."""
    padded = np.pad(mask, 1, mode="constant", constant_values=False)
    interior = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask & ~interior


def overlay_masks(image: np.ndarray, masks: Sequence[np.ndarray], alpha: float = 0.5,
                  colors: Iterable[Tuple[int, int, int]] = None) -> np.ndarray:
    """Blend H×W bool masks onto a uint8 H×W×3 image in distinct colours, largest first, with outlines."""
    out = image.astype(np.float32).copy()
    masks = sorted(masks, key=lambda m: -int(m.sum()))
    palette = np.asarray(list(colors) if colors is not None else distinct_colors(len(masks)), dtype=np.float32)
    for mask, color in zip(masks, palette):
        out[mask] = (1 - alpha) * out[mask] + alpha * color
    for mask, color in zip(masks, palette):
        out[mask_outline(mask)] = color
    return np.clip(out, 0, 255).astype(np.uint8)
