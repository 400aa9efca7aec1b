"""Non-maximum suppression in plain torch, with torchvision's semantics.

`torchvision.ops.nms` / `torchvision.ops.batched_nms` are the reference:

* boxes are ``(x0, y0, x1, y1)``; the area of a box is ``(x1 - x0) * (y1 - y0)``
  (no ``+1``), so a box with ``x0 == x1`` has area 0;
* candidates are visited by decreasing score with a *stable* sort, so among
  equal scores the lower index wins;
* a candidate is suppressed by an already kept box when their IoU is strictly
  greater than ``iou_threshold``; an IoU of ``0 / 0`` (two empty boxes) is NaN
  and never suppresses;
* the kept indices are returned sorted by decreasing score (visit order);
* `batched_nms` never suppresses across categories. Like torchvision it shifts
  each category's boxes by ``idx * (max_coordinate + 1)`` so that boxes of
  different categories cannot overlap, then runs a single NMS.

The IoU is computed in the boxes' floating dtype, in the same order of
operations as torchvision's CPU kernel, and compared with the threshold in
float64 like its C++ ``float > double`` comparison.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["box_area", "box_iou", "nms", "batched_nms"]


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of boxes.

    Args:
        boxes: (N, 4) boxes ``(x0, y0, x1, y1)``.

    Returns:
        (N,) tensor ``(x1 - x0) * (y1 - y0)``, in the dtype of `boxes`.
    """
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of two sets of boxes.

    Args:
        boxes1: (N, 4) boxes ``(x0, y0, x1, y1)``.
        boxes2: (M, 4) boxes ``(x0, y0, x1, y1)``.

    Returns:
        (N, M) IoU matrix (NaN where both boxes are empty and disjoint).
    """
    boxes1 = _as_float(boxes1)
    boxes2 = _as_float(boxes2)
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2[None, :] - inter)


def _as_float(boxes: torch.Tensor) -> torch.Tensor:
    return boxes if boxes.is_floating_point() else boxes.float()


def _check_inputs(boxes: torch.Tensor, scores: torch.Tensor) -> None:
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {tuple(boxes.shape)}")
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"scores must have shape ({boxes.shape[0]},), got {tuple(scores.shape)}"
        )


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression, like ``torchvision.ops.nms``.

    Args:
        boxes: (N, 4) boxes ``(x0, y0, x1, y1)``.
        scores: (N,) scores; higher is better.
        iou_threshold: boxes whose IoU with a kept box is greater than this are dropped.

    Returns:
        (K,) int64 indices of the kept boxes, sorted by decreasing score.
    """
    _check_inputs(boxes, scores)
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    device = boxes.device
    # The greedy loop is sequential: run it in numpy on the CPU (no device sync
    # per step, little overhead per operation). float16/bfloat16 go to float32.
    boxes = _as_float(boxes).cpu()
    if boxes.dtype not in (torch.float32, torch.float64):
        boxes = boxes.float()
    order = torch.sort(scores.cpu(), descending=True, stable=True).indices
    sorted_boxes = boxes[order].numpy()
    x0, y0, x1, y1 = (np.ascontiguousarray(sorted_boxes[:, k]) for k in range(4))
    areas = (x1 - x0) * (y1 - y0)
    suppressed = np.zeros(len(order), dtype=bool)
    kept_positions = []
    # Each kept box suppresses its overlaps in one vectorized step: O(kept * N)
    # time and no N x N matrix.
    for i in range(len(order)):
        if suppressed[i]:
            continue
        kept_positions.append(i)
        rest = slice(i + 1, None)
        inter_w = np.maximum(np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]), 0)
        inter_h = np.maximum(np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]), 0)
        inter = inter_w * inter_h
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / (areas[i] + areas[rest] - inter)
        # Compare in float64 (numpy would round the threshold to the IoU's float32).
        suppressed[rest] |= iou.astype(np.float64) > iou_threshold
    return order[torch.as_tensor(kept_positions, dtype=torch.int64)].to(device)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Per-category NMS, like ``torchvision.ops.batched_nms``.

    Args:
        boxes: (N, 4) boxes ``(x0, y0, x1, y1)``.
        scores: (N,) scores; higher is better.
        idxs: (N,) integer category of each box; boxes of different
            categories never suppress each other.
        iou_threshold: boxes whose IoU with a kept box of the same category
            is greater than this are dropped.

    Returns:
        (K,) int64 indices of the kept boxes, sorted by decreasing score.
    """
    _check_inputs(boxes, scores)
    if idxs.shape != scores.shape:
        raise ValueError(f"idxs must have shape ({boxes.shape[0]},), got {tuple(idxs.shape)}")
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    boxes = _as_float(boxes)
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return nms(boxes + offsets[:, None], scores, iou_threshold)
