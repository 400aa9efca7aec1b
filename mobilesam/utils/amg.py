"""Helpers of the automatic mask generator, with the semantics of segment-anything's
``segment_anything/utils/amg.py``.

Differences from the official module are in dependencies only:

* `remove_small_regions` labels connected components with
  ``scipy.ndimage.label`` and a 3x3 structuring element, which is the
  8-connectivity of ``cv2.connectedComponentsWithStats(mask, 8)``; where the
  official result depends on OpenCV's numbering of the components (which of
  equally large islands is kept), `largest_component_like_opencv` reproduces
  it. OpenCV is not needed.
* `coco_encode_rle` writes the COCO compressed RLE string itself (the encoding
  of ``pycocotools``' ``rleToString``); pycocotools is not needed.
* `batched_nms` (re-exported from `mobilesam.utils.nms`) replaces
  ``torchvision.ops.batched_nms``.

Conventions: boxes are ``(x0, y0, x1, y1)`` ("XYXY") unless a name says XYWH;
an *uncompressed RLE* is ``{"size": [h, w], "counts": [int, ...]}`` with run
lengths over the column-major (Fortran order) flattened mask, starting with a
run of zeros (possibly of length 0); a *COCO RLE* is the same with ``counts``
compressed to a string.
"""
from __future__ import annotations

import math
from copy import deepcopy
from itertools import product
from typing import Any, Dict, Generator, ItemsView, List, Sequence, Tuple

import numpy as np
import torch

from .nms import batched_nms, box_area

__all__ = [
    "MaskData",
    "area_from_rle",
    "batch_iterator",
    "batched_mask_to_box",
    "batched_nms",
    "box_area",
    "box_xyxy_to_xywh",
    "build_all_layer_point_grids",
    "build_point_grid",
    "calculate_stability_score",
    "coco_decode_rle_counts",
    "coco_encode_rle",
    "coco_rle_to_mask",
    "generate_crop_boxes",
    "is_box_near_crop_edge",
    "mask_to_rle_pytorch",
    "remove_small_regions",
    "rle_to_mask",
    "uncrop_boxes_xyxy",
    "uncrop_masks",
    "uncrop_points",
]


# --------------------------------------------------------------------------- #
# MaskData: a dict of per-mask columns that are filtered and concatenated together
# --------------------------------------------------------------------------- #


class MaskData:
    """Columns of per-mask data (tensors, arrays or lists, all of length N) that
    are filtered and concatenated together."""

    _SUPPORTED = (list, np.ndarray, torch.Tensor)

    def __init__(self, **kwargs: Any) -> None:
        for value in kwargs.values():
            self._check(value)
        self._stats: Dict[str, Any] = dict(**kwargs)

    @classmethod
    def _check(cls, value: Any) -> None:
        if not isinstance(value, cls._SUPPORTED):
            raise TypeError(
                f"MaskData only holds lists, numpy arrays and torch tensors, got {type(value).__name__}"
            )

    def __setitem__(self, key: str, item: Any) -> None:
        self._check(item)
        self._stats[key] = item

    def __delitem__(self, key: str) -> None:
        del self._stats[key]

    def __getitem__(self, key: str) -> Any:
        return self._stats[key]

    def __contains__(self, key: str) -> bool:
        return key in self._stats

    def keys(self):
        return self._stats.keys()

    def items(self) -> ItemsView[str, Any]:
        return self._stats.items()

    def filter(self, keep: torch.Tensor) -> None:
        """Keep the rows selected by `keep`, a (N,) bool mask or (K,) index tensor."""
        keep = torch.as_tensor(keep)
        for key, value in self._stats.items():
            if value is None:
                self._stats[key] = None
            elif isinstance(value, torch.Tensor):
                self._stats[key] = value[keep.to(value.device)]
            elif isinstance(value, np.ndarray):
                self._stats[key] = value[keep.detach().cpu().numpy()]
            elif isinstance(value, list) and keep.dtype == torch.bool:
                self._stats[key] = [a for a, k in zip(value, keep.tolist()) if k]
            elif isinstance(value, list):
                self._stats[key] = [value[i] for i in keep.tolist()]
            else:
                raise TypeError(f"MaskData key {key} has an unsupported type {type(value)}.")

    def cat(self, new_stats: "MaskData") -> None:
        """Append the rows of `new_stats` (same keys) after this data's rows.

        Tensors and arrays are copied; lists are copied one level deep only:
        their items (e.g. RLE dicts) are shared with `new_stats`, not duplicated
        (a deep copy of millions of run lengths costs seconds).
        """
        for key, value in new_stats.items():
            if key not in self._stats or self._stats[key] is None:
                self._stats[key] = _copy_column(value)
            elif isinstance(value, torch.Tensor):
                self._stats[key] = torch.cat([self._stats[key], value], dim=0)
            elif isinstance(value, np.ndarray):
                self._stats[key] = np.concatenate([self._stats[key], value], axis=0)
            elif isinstance(value, list):
                self._stats[key] = self._stats[key] + value
            else:
                raise TypeError(f"MaskData key {key} has an unsupported type {type(value)}.")

    def to_numpy(self) -> None:
        """Convert every tensor column to a numpy array (on the CPU)."""
        for key, value in self._stats.items():
            if isinstance(value, torch.Tensor):
                self._stats[key] = value.detach().cpu().numpy()


def _copy_column(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, list):
        return list(value)
    return value


# --------------------------------------------------------------------------- #
# Boxes, points and batches
# --------------------------------------------------------------------------- #


def is_box_near_crop_edge(
    boxes: torch.Tensor, crop_box: Sequence[int], orig_box: Sequence[int], atol: float = 20.0
) -> torch.Tensor:
    """Which boxes touch an edge of the crop that is not also an edge of the image.

    Args:
        boxes: (N, 4) XYXY boxes in the crop's coordinates.
        crop_box: XYXY crop in the image's coordinates.
        orig_box: XYXY box of the whole image, ``[0, 0, w, h]``.
        atol: how close (in pixels) counts as touching.

    Returns:
        (N,) bool tensor, True for boxes near a crop edge.
    """
    crop_box_torch = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    orig_box_torch = torch.as_tensor(orig_box, dtype=torch.float, device=boxes.device)
    boxes = uncrop_boxes_xyxy(boxes, crop_box).float()
    near_crop_edge = torch.isclose(boxes, crop_box_torch[None, :], atol=atol, rtol=0)
    near_image_edge = torch.isclose(boxes, orig_box_torch[None, :], atol=atol, rtol=0)
    near_crop_edge = torch.logical_and(near_crop_edge, ~near_image_edge)
    return torch.any(near_crop_edge, dim=1)


def box_xyxy_to_xywh(box_xyxy: Any) -> Any:
    """``[x0, y0, x1, y1]`` to ``[x0, y0, w, h]`` (a copy; list, array or tensor of 4)."""
    box_xywh = deepcopy(box_xyxy)
    box_xywh[2] = box_xywh[2] - box_xywh[0]
    box_xywh[3] = box_xywh[3] - box_xywh[1]
    return box_xywh


def batch_iterator(batch_size: int, *args: Sequence) -> Generator[List[Any], None, None]:
    """Yield ``[arg[i:i + batch_size] for arg in args]`` over equally long sequences."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if len(args) == 0 or not all(len(a) == len(args[0]) for a in args):
        raise ValueError("Batched iteration must have inputs of all the same size.")
    n_batches = len(args[0]) // batch_size + int(len(args[0]) % batch_size != 0)
    for b in range(n_batches):
        yield [arg[b * batch_size : (b + 1) * batch_size] for arg in args]


def batched_mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes around masks; an empty mask gets ``[0, 0, 0, 0]``.

    The box is inclusive of its last pixel row/column: a mask that is a single
    pixel at ``(x, y)`` gets ``[x, y, x, y]``.

    Args:
        masks: (..., H, W) bool masks.

    Returns:
        (..., 4) int64 boxes ``(x0, y0, x1, y1)``.
    """
    if torch.numel(masks) == 0:
        # int64 like non-empty results (the official code returns float32 here,
        # which turned whole columns of boxes into floats when concatenated).
        return torch.zeros(*masks.shape[:-2], 4, dtype=torch.int64, device=masks.device)

    shape = masks.shape
    h, w = shape[-2:]
    masks = masks.flatten(0, -3) if len(shape) > 2 else masks.unsqueeze(0)
    masks = masks.bool()

    # Top and bottom edges: rows that contain any pixel.
    in_height, _ = torch.max(masks, dim=-1)
    in_height_coords = in_height * torch.arange(h, device=in_height.device)[None, :]
    bottom_edges, _ = torch.max(in_height_coords, dim=-1)
    in_height_coords = in_height_coords + h * (~in_height)
    top_edges, _ = torch.min(in_height_coords, dim=-1)

    # Left and right edges: columns that contain any pixel.
    in_width, _ = torch.max(masks, dim=-2)
    in_width_coords = in_width * torch.arange(w, device=in_width.device)[None, :]
    right_edges, _ = torch.max(in_width_coords, dim=-1)
    in_width_coords = in_width_coords + w * (~in_width)
    left_edges, _ = torch.min(in_width_coords, dim=-1)

    # Empty masks: the right edge is left of the left edge; give them [0, 0, 0, 0].
    empty_filter = (right_edges < left_edges) | (bottom_edges < top_edges)
    out = torch.stack([left_edges, top_edges, right_edges, bottom_edges], dim=-1)
    out = out * (~empty_filter).unsqueeze(-1)

    return out.reshape(*shape[:-2], 4) if len(shape) > 2 else out[0]


# --------------------------------------------------------------------------- #
# Run-length encoding
# --------------------------------------------------------------------------- #


def mask_to_rle_pytorch(tensor: torch.Tensor) -> List[Dict[str, Any]]:
    """Uncompressed RLEs of a batch of masks (COCO's column-major run lengths).

    Args:
        tensor: (B, H, W) bool masks.

    Returns:
        B dicts ``{"size": [H, W], "counts": [run, ...]}``; the first run counts
        zeros (0 when the first pixel is set) and the runs sum to ``H * W``.
    """
    b, h, w = tensor.shape
    flat = tensor.bool().permute(0, 2, 1).flatten(1)  # (B, H*W), column-major

    # Positions where the value changes, per mask (nonzero() is row-major sorted).
    change_indices = (flat[:, 1:] ^ flat[:, :-1]).nonzero()
    per_mask = torch.bincount(change_indices[:, 0], minlength=b).cpu().tolist()
    positions = (change_indices[:, 1] + 1).cpu().numpy()
    first_values = flat[:, 0].cpu().tolist() if h * w > 0 else [False] * b

    out = []
    start = 0
    for i in range(b):
        boundaries = np.concatenate([[0], positions[start : start + per_mask[i]], [h * w]])
        start += per_mask[i]
        counts = [0] if first_values[i] else []
        counts.extend(np.diff(boundaries).tolist())
        out.append({"size": [h, w], "counts": counts})
    return out


def rle_to_mask(rle: Dict[str, Any]) -> np.ndarray:
    """Decode an uncompressed RLE to an (H, W) bool mask."""
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.sum() != h * w:
        raise ValueError(f"RLE counts sum to {int(counts.sum())}, expected {h} * {w} = {h * w}")
    values = np.arange(len(counts)) % 2 == 1  # runs alternate 0, 1, 0, ...
    mask = np.repeat(values, counts)
    return mask.reshape(w, h).transpose()  # column-major back to (H, W)


def area_from_rle(rle: Dict[str, Any]) -> int:
    """Number of set pixels of an uncompressed RLE."""
    return int(sum(rle["counts"][1::2]))


def coco_encode_rle(uncompressed_rle: Dict[str, Any]) -> Dict[str, Any]:
    """Compress an uncompressed RLE to COCO's string form.

    The string is what ``pycocotools.mask.frPyObjects(rle, h, w)["counts"]``
    gives (decoded to ``str``): each run length, from the fourth on replaced by
    its difference to the run two before it, is written as a signed
    little-endian base-32 number, 5 bits per character, with bit 0x20 marking
    "more characters follow", offset by 48 into printable ASCII.

    Args:
        uncompressed_rle: ``{"size": [H, W], "counts": [run, ...]}``.

    Returns:
        ``{"size": [H, W], "counts": str}``.
    """
    h, w = uncompressed_rle["size"]
    counts = [int(c) for c in uncompressed_rle["counts"]]
    return {"size": [int(h), int(w)], "counts": _encode_rle_counts(counts)}


def _encode_rle_counts(counts: Sequence[int]) -> str:
    chars: List[str] = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: negative deltas end in x == -1
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return "".join(chars)


def coco_decode_rle_counts(counts: str) -> List[int]:
    """Inverse of the string compression of `coco_encode_rle`: the run lengths."""
    out: List[int] = []
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            c = ord(counts[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)  # sign-extend
        if len(out) > 2:
            x += out[-2]
        out.append(x)
    return out


def coco_rle_to_mask(rle: Dict[str, Any]) -> np.ndarray:
    """Decode a COCO RLE (string counts) to an (H, W) bool mask."""
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return rle_to_mask({"size": rle["size"], "counts": coco_decode_rle_counts(counts)})


# --------------------------------------------------------------------------- #
# Mask quality
# --------------------------------------------------------------------------- #


def calculate_stability_score(
    masks: torch.Tensor, mask_threshold: float, threshold_offset: float
) -> torch.Tensor:
    """Stability score: IoU of the masks binarized at ``threshold + offset`` and
    at ``threshold - offset``.

    The higher threshold's mask is a subset of the lower one's, so the IoU is
    the ratio of their areas.

    Args:
        masks: (..., H, W) mask logits.
        mask_threshold: the logit threshold of the mask.
        threshold_offset: how far the threshold is moved each way.

    Returns:
        (...,) float32 scores in [0, 1] (NaN if both masks are empty).
    """
    # Sum rows in int16 first (W <= 32767) to save memory, as the official code does.
    intersections = (
        (masks > (mask_threshold + threshold_offset)).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    )
    unions = (
        (masks > (mask_threshold - threshold_offset)).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    )
    return intersections / unions


# --------------------------------------------------------------------------- #
# Point grids and crops
# --------------------------------------------------------------------------- #


def build_point_grid(n_per_side: int) -> np.ndarray:
    """An evenly spaced n x n grid of points in [0, 1] x [0, 1], at pixel-like
    centers ``(i + 0.5) / n``.

    Returns:
        (n * n, 2) float64 points (x, y), x varying fastest.
    """
    offset = 1 / (2 * n_per_side)
    points_one_side = np.linspace(offset, 1 - offset, n_per_side)
    points_x = np.tile(points_one_side[None, :], (n_per_side, 1))
    points_y = np.tile(points_one_side[:, None], (1, n_per_side))
    return np.stack([points_x, points_y], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> List[np.ndarray]:
    """Point grids for crop layers 0..n_layers; layer i has
    ``int(n_per_side / scale_per_layer**i)`` points per side."""
    points_by_layer = []
    for i in range(n_layers + 1):
        n_points = int(n_per_side / (scale_per_layer**i))
        points_by_layer.append(build_point_grid(n_points))
    return points_by_layer


def _crop_len(orig_len: int, n_crops: int, overlap: int) -> int:
    return int(math.ceil((overlap * (n_crops - 1) + orig_len) / n_crops))


def generate_crop_boxes(
    im_size: Tuple[int, ...], n_layers: int, overlap_ratio: float
) -> Tuple[List[List[int]], List[int]]:
    """Crop boxes of every layer: layer 0 is the whole image, layer i >= 1 is a
    ``2**i x 2**i`` grid of overlapping crops.

    Args:
        im_size: (H, W) of the image.
        n_layers: number of crop layers after the whole image.
        overlap_ratio: overlap of neighbouring crops as a fraction of the image's
            short side (for layer 1; it halves with each further layer).

    Returns:
        (crop_boxes, layer_idxs): XYXY int boxes and the layer of each.
    """
    crop_boxes, layer_idxs = [], []
    im_h, im_w = im_size
    short_side = min(im_h, im_w)

    crop_boxes.append([0, 0, im_w, im_h])
    layer_idxs.append(0)

    for i_layer in range(n_layers):
        n_crops_per_side = 2 ** (i_layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / n_crops_per_side))

        crop_w = _crop_len(im_w, n_crops_per_side, overlap)
        crop_h = _crop_len(im_h, n_crops_per_side, overlap)

        crop_box_x0 = [int((crop_w - overlap) * i) for i in range(n_crops_per_side)]
        crop_box_y0 = [int((crop_h - overlap) * i) for i in range(n_crops_per_side)]

        # Crops in XYXY format, x0 varying slowest (as the official code orders them).
        for x0, y0 in product(crop_box_x0, crop_box_y0):
            box = [x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)]
            crop_boxes.append(box)
            layer_idxs.append(i_layer + 1)

    return crop_boxes, layer_idxs


def uncrop_boxes_xyxy(boxes: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """Move (N, 4) or (B, N, 4) XYXY boxes from crop to image coordinates."""
    x0, y0, _, _ = crop_box
    offset = torch.tensor([[x0, y0, x0, y0]], device=boxes.device)
    if len(boxes.shape) == 3:
        offset = offset.unsqueeze(1)
    return boxes + offset


def uncrop_points(points: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """Move (N, 2) or (B, N, 2) points (x, y) from crop to image coordinates."""
    x0, y0, _, _ = crop_box
    offset = torch.tensor([[x0, y0]], device=points.device)
    if len(points.shape) == 3:
        offset = offset.unsqueeze(1)
    return points + offset


def uncrop_masks(masks: torch.Tensor, crop_box: Sequence[int], orig_h: int, orig_w: int) -> torch.Tensor:
    """Zero-pad (..., h_crop, w_crop) masks of a crop to (..., orig_h, orig_w)."""
    x0, y0, x1, y1 = crop_box
    if x0 == 0 and y0 == 0 and x1 == orig_w and y1 == orig_h:
        return masks
    pad_x, pad_y = orig_w - (x1 - x0), orig_h - (y1 - y0)
    pad = (x0, pad_x - x0, y0, pad_y - y0)  # (left, right, top, bottom)
    return torch.nn.functional.pad(masks, pad, value=0)


# --------------------------------------------------------------------------- #
# Small region removal
# --------------------------------------------------------------------------- #

_EIGHT_CONNECTIVITY = np.ones((3, 3), dtype=bool)


def largest_component_like_opencv(regions: np.ndarray, sizes: np.ndarray) -> int:
    """The label of the largest component, breaking ties as the official ``np.argmax(sizes)`` does on
    the labels of ``cv2.connectedComponentsWithStats(m, 8)``: the component OpenCV numbers first.

    OpenCV's default 8-connectivity labelling is block-based (Spaghetti; checked with OpenCV 4.14): it
    scans 2×2 blocks in block-raster order (block row r // 2, then block column c // 2) and numbers
    the components in the order of the first block that holds one of their pixels. Two set pixels of
    one 2×2 block are always 8-adjacent, so a block never holds two components and this order is
    strict. It is not pixel raster order: with pixels (0, 6) and (1, 1) of a 2×8 mask, (1, 1) comes
    first (block column 0, against 3).

    Args:
        regions: (H, W) int labels of any numbering, 0 for the background, 1..n for the components.
        sizes: (n,) pixel count of labels 1..n.

    Returns:
        The label, in `regions`' numbering.
    """
    largest = np.flatnonzero(sizes == sizes.max()) + 1
    if len(largest) == 1:
        return int(largest[0])
    rows, cols = np.nonzero(np.isin(regions, largest))
    blocks_per_row = (regions.shape[1] + 1) // 2
    first = np.argmin((rows // 2) * blocks_per_row + cols // 2)  # the earliest 2×2 block of any of them
    return int(regions[rows[first], cols[first]])


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> Tuple[np.ndarray, bool]:
    """Remove small disconnected islands or fill small holes of a mask, as segment_anything's
    `remove_small_regions` does with OpenCV.

    Components are 8-connected, as with ``cv2.connectedComponentsWithStats(m, 8)``.

    * ``"holes"``: connected components of the *unset* pixels with fewer than
      `area_thresh` pixels are set. This includes the background touching the
      border, if it is small.
    * ``"islands"``: connected components of the set pixels with fewer than
      `area_thresh` pixels are unset; if every component is small, the largest
      one is kept: among equally large ones, the one OpenCV numbers first, by
      first 2×2 block in block-raster order, not by first pixel in raster order
      (`largest_component_like_opencv`).

    Args:
        mask: (H, W) bool mask.
        area_thresh: components with an area below this are small.
        mode: ``"holes"`` or ``"islands"``.

    Returns:
        (new_mask, changed): the (H, W) bool mask and whether anything was
        small; when nothing was, `mask` itself is returned.
    """
    from scipy import ndimage

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    correct_holes = mode == "holes"
    working_mask = np.logical_xor(correct_holes, np.asarray(mask, dtype=bool))
    regions, n_components = ndimage.label(working_mask, structure=_EIGHT_CONNECTIVITY)
    sizes = np.bincount(regions.ravel(), minlength=n_components + 1)[1:]  # label 0 is background
    small_regions = [i + 1 for i, s in enumerate(sizes) if s < area_thresh]
    if len(small_regions) == 0:
        return mask, False
    fill_labels = [0] + small_regions
    if not correct_holes:
        fill_labels = [i for i in range(n_components + 1) if i not in fill_labels]
        # If every region is below threshold, keep the largest (of equally large ones, OpenCV's first).
        if len(fill_labels) == 0:
            fill_labels = [largest_component_like_opencv(regions, sizes)]
    return np.isin(regions, fill_labels), True
