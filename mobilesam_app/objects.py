"""Several objects on one image (the `segment_objects` API): each object's mask from its own
prompts, as `SamPredictor.predict` gives it, and the SA-1B-style JSON of all of them."""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from mobilesam.predictor import SamPredictor
from mobilesam.utils.amg import batched_mask_to_box, box_xyxy_to_xywh
from mobilesam.utils.sa1b import to_coco_rle

ObjectResult = Tuple[np.ndarray, float]  # (mask H×W bool, predicted IoU)


def predict_objects(predictor: SamPredictor, objects: Sequence[Dict[str, Any]],
                    multimask: bool) -> List[ObjectResult]:
    """Each object's best mask, in order: its own `predict` call when it has points; box-only
    objects together in one `predict_torch` run (boxes B×4). With `multimask`, the best-scoring
    of the three masks, else the single one. `objects` as `prompts.parse_objects` returns them."""
    results: List[Optional[ObjectResult]] = [None] * len(objects)
    box_only = [i for i, obj in enumerate(objects) if "point_coords" not in obj]
    for i, obj in enumerate(objects):
        if i not in box_only:
            masks, scores, _ = predictor.predict(**obj, multimask_output=multimask)
            results[i] = _best(masks, scores)
    if box_only:
        boxes = np.stack([objects[i]["box"] for i in box_only])  # B×4, original-image pixels
        for i, result in zip(box_only, predict_boxes(predictor, boxes, multimask)):
            results[i] = result
    return results


@torch.no_grad()
def predict_boxes(predictor: SamPredictor, boxes: np.ndarray, multimask: bool) -> List[ObjectResult]:
    """B box prompts (B×4 x0, y0, x1, y1, original-image pixels) in one decoder run: each box's best mask."""
    model_boxes = predictor.transform.apply_boxes(boxes, predictor.original_size)
    boxes_torch = torch.as_tensor(model_boxes, dtype=torch.float, device=predictor.device)
    masks, scores, _ = predictor.predict_torch(None, None, boxes_torch, multimask_output=multimask)
    masks, scores = masks.cpu().numpy(), scores.cpu().numpy()  # B×C×H×W, B×C
    return [_best(m, s) for m, s in zip(masks, scores)]


def _best(masks: np.ndarray, scores: np.ndarray) -> ObjectResult:
    index = int(np.argmax(scores))
    return masks[index], float(scores[index])


def object_annotation(ann_id: int, mask: np.ndarray, score: float, prompt: Dict[str, Any]) -> Dict[str, Any]:
    """One SA-1B-style annotation: the mask as COCO RLE (`size` [H, W], `counts` a string), its XYWH
    `bbox` (inclusive pixel bounds, as the mask generator's), `area`, `predicted_iou`, and the
    object's prompts (`point_coords`, `point_labels`, `box`)."""
    box = batched_mask_to_box(torch.from_numpy(mask)).tolist()
    return {
        "id": int(ann_id),
        "segmentation": to_coco_rle(mask),
        "area": int(mask.sum()),
        "bbox": [int(v) for v in box_xyxy_to_xywh(box)],
        "predicted_iou": float(score),
        "point_coords": [[float(v) for v in p] for p in prompt.get("point_coords", np.zeros((0, 2)))],
        "point_labels": [int(v) for v in prompt.get("point_labels", [])],
        "box": None if "box" not in prompt else [float(v) for v in prompt["box"]],
    }


def objects_json(results: Sequence[ObjectResult], objects: Sequence[Dict[str, Any]],
                 image_size: Tuple[int, int], file_name: Optional[str] = None) -> Dict[str, Any]:
    """`{"image": {...}, "annotations": [one per object, in order]}` for an image of (H, W)."""
    height, width = image_size
    image: Dict[str, Any] = {"image_id": 0, "width": int(width), "height": int(height)}
    if file_name:
        image["file_name"] = file_name
    return {"image": image,
            "annotations": [object_annotation(i, mask, score, prompt)
                            for i, ((mask, score), prompt) in enumerate(zip(results, objects))]}
