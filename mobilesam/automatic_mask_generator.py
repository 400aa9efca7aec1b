"""SamAutomaticMaskGenerator: masks for a whole image from a grid of point prompts.

The algorithm and API are those of segment-anything's
``segment_anything.SamAutomaticMaskGenerator``:

1. The image is split into crops: the whole image, plus ``crop_n_layers``
   layers of overlapping crops (see `generate_crop_boxes`).
2. For each crop, the crop is embedded once and a grid of single-point prompts
   is decoded in batches of ``points_per_batch``, three masks per point.
3. Masks are filtered by predicted IoU, by stability score, and dropped when
   their box touches a crop edge that is not an image edge; the rest are
   deduplicated by box NMS within the crop.
4. Masks of all crops are deduplicated by box NMS preferring smaller crops.
5. Optionally, small holes and islands are removed from each mask and
   duplicates this creates are removed by NMS.

Only the dependencies differ: no torchvision, OpenCV or pycocotools are needed.

Two deviations in how (not what) it computes:

* masks are filtered by predicted IoU while still low-res; only the survivors are upsampled to
  the image size (the official code upsamples every mask of a batch first). Upsampling is per mask,
  so the records are identical, for less time and memory.

`mobilesam.accel.mask_generator.FastSamAutomaticMaskGenerator` (what the app uses) is this class with
the image encoded and each point decoded by onnxruntime, both float32: the same records up to float
rounding (a mask whose score sits within ~1e-5 of a threshold may fall on the other side).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from .modeling import Sam
from .predictor import SamPredictor
from .utils.amg import (
    MaskData,
    area_from_rle,
    batch_iterator,
    batched_mask_to_box,
    batched_nms,
    box_area,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    calculate_stability_score,
    coco_encode_rle,
    generate_crop_boxes,
    is_box_near_crop_edge,
    mask_to_rle_pytorch,
    remove_small_regions,
    rle_to_mask,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from .utils.prompts import check_image

__all__ = ["SamAutomaticMaskGenerator", "OUTPUT_MODES", "validate_generator_args"]

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")

ProgressCallback = Callable[[int, int], None]


class SamAutomaticMaskGenerator:
    """Masks for everything in an image, from a grid of point prompts (see the module docstring).

    `upsample_all_first = True` (on an instance) makes it upsample every mask before filtering,
    as the official code does (same records, slower; for comparisons).

    The predictor is `self.predictor` (a `SamPredictor` of `model`); the
    generator only uses its set_image, reset_image, predict_torch, transform,
    device and model.mask_threshold (a real SamPredictor: its features and model's
    prompt encoder, mask decoder and postprocess_masks instead of predict_torch,
    for the low-res filtering; a subclass may override `_set_crop_image` and `_decode`).
    """

    upsample_all_first: bool = False

    def __init__(
        self,
        model: Sam,
        points_per_side: Optional[int] = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Optional[List[np.ndarray]] = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
    ) -> None:
        """
        Generates masks for a whole image with SAM, from a grid of point prompts
        over the image (and, optionally, over crops of it).

        Arguments:
          model (Sam): The SAM model to use for mask prediction.
          points_per_side (int or None): The number of points sampled along one
            side of the image; the grid has points_per_side**2 points. Exactly
            one of points_per_side and point_grids must be given.
          points_per_batch (int): How many points the model decodes at once.
            Higher is faster but uses more memory (each point makes three
            full-resolution float masks).
          pred_iou_thresh (float): Keep masks whose predicted IoU is above this
            (0 disables the filter).
          stability_score_thresh (float): Keep masks whose stability score is at
            least this (0 disables the filter).
          stability_score_offset (float): How far the mask threshold is moved
            each way when computing the stability score.
          box_nms_thresh (float): Box IoU cutoff of the NMS that removes
            duplicate masks within a crop.
          crop_n_layers (int): If > 0, masks are also predicted on crops of the
            image; layer i has (2**i)**2 crops.
          crop_nms_thresh (float): Box IoU cutoff of the NMS that removes
            duplicate masks between crops.
          crop_overlap_ratio (float): Overlap of neighbouring crops in layer 1,
            as a fraction of the image's short side; it halves in each further layer.
          crop_n_points_downscale_factor (int): The points per side in layer n
            are points_per_side / crop_n_points_downscale_factor**n.
          point_grids (list(np.ndarray) or None): Explicit grids of points, one
            per crop layer, each (N, 2) in [0, 1] x [0, 1] relative coordinates
            (x, y). Exclusive with points_per_side.
          min_mask_region_area (int): If > 0, holes and islands smaller than
            this area are removed from each mask.
          output_mode (str): The form of each record's "segmentation":
            'binary_mask' (H x W bool array), 'uncompressed_rle' or 'coco_rle'
            (dicts with "size" and "counts").
        """
        self.point_grids = _validate_args(
            points_per_side=points_per_side,
            points_per_batch=points_per_batch,
            stability_score_offset=stability_score_offset,
            box_nms_thresh=box_nms_thresh,
            crop_n_layers=crop_n_layers,
            crop_nms_thresh=crop_nms_thresh,
            crop_overlap_ratio=crop_overlap_ratio,
            crop_n_points_downscale_factor=crop_n_points_downscale_factor,
            point_grids=point_grids,
            min_mask_region_area=min_mask_region_area,
            output_mode=output_mode,
        )
        self.predictor = SamPredictor(model)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode

    @torch.no_grad()
    def generate(self, image: np.ndarray, progress: Optional[ProgressCallback] = None) -> List[Dict[str, Any]]:
        """
        Generates masks for the given image.

        Arguments:
          image (np.ndarray): The image, uint8 H x W x 3 in RGB.
          progress (callable or None): Called as progress(done, total) with the
            number of point batches decoded so far and in all (over all crops):
            once with done=0 before the first batch, then after each batch.

        Returns:
           list(dict(str, any)): One record per mask, with keys:
             segmentation (dict(str, any) or np.ndarray): The mask: an H x W
               bool array for 'binary_mask', else an RLE dict.
             area (int): The mask's area in pixels.
             bbox (list(int)): The mask's box in XYWH format, from its first
               to its last pixel column/row: w = x_last - x_first (one less than
               COCO's toBbox), as in the official code.
             predicted_iou (float): The model's own prediction of the mask's quality.
             point_coords (list(list(float))): The point (x, y) that made the mask.
             stability_score (float): A measure of the mask's quality.
             crop_box (list(int)): The crop the mask was made in, XYWH.
        """
        check_image(image)
        mask_data = self._generate_masks(image, progress)

        if self.min_mask_region_area > 0:
            mask_data = self.postprocess_small_regions(
                mask_data, self.min_mask_region_area, max(self.box_nms_thresh, self.crop_nms_thresh)
            )

        if self.output_mode == "coco_rle":
            segmentations = [coco_encode_rle(rle) for rle in mask_data["rles"]]
        elif self.output_mode == "binary_mask":
            segmentations = [rle_to_mask(rle) for rle in mask_data["rles"]]
        else:
            segmentations = mask_data["rles"]

        return [
            {
                "segmentation": segmentations[i],
                "area": area_from_rle(mask_data["rles"][i]),
                "bbox": box_xyxy_to_xywh(mask_data["boxes"][i]).tolist(),
                "predicted_iou": float(mask_data["iou_preds"][i]),
                "point_coords": [mask_data["points"][i].tolist()],
                "stability_score": float(mask_data["stability_score"][i]),
                "crop_box": box_xyxy_to_xywh(mask_data["crop_boxes"][i]).tolist(),
            }
            for i in range(len(segmentations))
        ]

    # ------------------------------------------------------------------ #
    # Pipeline steps
    # ------------------------------------------------------------------ #

    def _generate_masks(self, image: np.ndarray, progress: Optional[ProgressCallback]) -> MaskData:
        """All crops of `image` -> MaskData with numpy columns rles, boxes (N, 4) XYXY,
        iou_preds (N,), points (N, 2), stability_score (N,), crop_boxes (N, 4) XYXY."""
        orig_size = image.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes(orig_size, self.crop_n_layers, self.crop_overlap_ratio)
        tracker = _ProgressTracker(
            progress, sum(self._n_batches(len(self.point_grids[layer])) for layer in layer_idxs)
        )

        data = _empty_mask_data(self.predictor.device)
        for crop_box, layer_idx in zip(crop_boxes, layer_idxs):
            data.cat(self._process_crop(image, crop_box, layer_idx, orig_size, tracker))

        # Remove duplicate masks between crops, preferring masks from smaller crops.
        if len(crop_boxes) > 1 and len(data["rles"]) > 0:
            scores = 1 / box_area(data["crop_boxes"])
            scores = scores.to(data["boxes"].device)
            keep_by_nms = batched_nms(
                data["boxes"].float(),
                scores,
                torch.zeros_like(data["boxes"][:, 0]),
                iou_threshold=self.crop_nms_thresh,
            )
            data.filter(keep_by_nms)

        data.to_numpy()
        return data

    def _n_batches(self, n_points: int) -> int:
        return -(-n_points // self.points_per_batch)

    def _process_crop(
        self,
        image: np.ndarray,
        crop_box: List[int],
        crop_layer_idx: int,
        orig_size: Tuple[int, ...],
        tracker: "_ProgressTracker",
    ) -> MaskData:
        """Masks of one crop (XYXY `crop_box`), in whole-image coordinates."""
        x0, y0, x1, y1 = crop_box
        cropped_im = np.ascontiguousarray(image[y0:y1, x0:x1, :])
        cropped_im_size = cropped_im.shape[:2]
        self._set_crop_image(cropped_im)

        # Point grid in the crop's pixel coordinates.
        points_scale = np.array(cropped_im_size)[None, ::-1]
        points_for_image = self.point_grids[crop_layer_idx] * points_scale

        data = _empty_mask_data(self.predictor.device)
        for (points,) in batch_iterator(self.points_per_batch, points_for_image):
            data.cat(self._process_batch(points, cropped_im_size, crop_box, orig_size))
            tracker.step()
        self.predictor.reset_image()

        # Remove duplicates within this crop.
        keep_by_nms = batched_nms(
            data["boxes"].float(),
            data["iou_preds"],
            torch.zeros_like(data["boxes"][:, 0]),
            iou_threshold=self.box_nms_thresh,
        )
        data.filter(keep_by_nms)

        # Return to the original image frame.
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        data["crop_boxes"] = torch.tensor(crop_box, dtype=torch.int64).repeat(len(data["rles"]), 1)  # (N, 4)
        return data

    def _process_batch(
        self,
        points: np.ndarray,
        im_size: Tuple[int, ...],
        crop_box: List[int],
        orig_size: Tuple[int, ...],
    ) -> MaskData:
        """Decode (B, 2) points of a crop of size `im_size` (h, w); keep the good masks.

        Returns MaskData with rles (whole-image masks), boxes (K, 4) XYXY in crop
        coordinates, iou_preds (K,), points (K, 2) in crop coordinates and
        stability_score (K,).
        """
        orig_h, orig_w = orig_size

        # Run the model on this batch; one positive point per prompt.
        transformed_points = self.predictor.transform.apply_coords(points, im_size)
        if isinstance(self.predictor, SamPredictor):
            low_res, iou_preds = self._decode(transformed_points)  # (B, 3, 256, 256) logits, (B, 3)
            # Flatten the three masks per point; each point repeated for its masks.
            data = MaskData(
                low_res=low_res.flatten(0, 1),
                iou_preds=iou_preds.flatten(0, 1),
                points=torch.as_tensor(points.repeat(low_res.shape[1], axis=0)),
            )
            del low_res
            if self.upsample_all_first:  # the official order: every mask to full size, then filter
                self._upsample(data)
            if self.pred_iou_thresh > 0.0:
                data.filter(data["iou_preds"] > self.pred_iou_thresh)
            if not self.upsample_all_first:
                # Upsample the survivors only (per mask, so the same logits as upsampling all of them).
                self._upsample(data)
        else:  # another predictor (duck-typed): its predict_torch gives the masks at the crop's size
            in_points = torch.as_tensor(transformed_points, dtype=torch.float, device=self.predictor.device)
            in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=in_points.device)
            masks, iou_preds, _ = self.predictor.predict_torch(
                in_points[:, None, :], in_labels[:, None], multimask_output=True, return_logits=True
            )
            data = MaskData(
                masks=masks.flatten(0, 1),
                iou_preds=iou_preds.flatten(0, 1),
                points=torch.as_tensor(points.repeat(masks.shape[1], axis=0)),
            )
            del masks
            if self.pred_iou_thresh > 0.0:
                data.filter(data["iou_preds"] > self.pred_iou_thresh)

        mask_threshold = self.predictor.model.mask_threshold
        data["stability_score"] = calculate_stability_score(
            data["masks"], mask_threshold, self.stability_score_offset
        )
        if self.stability_score_thresh > 0.0:
            data.filter(data["stability_score"] >= self.stability_score_thresh)

        # Threshold masks and compute boxes.
        data["masks"] = data["masks"] > mask_threshold
        data["boxes"] = batched_mask_to_box(data["masks"])

        # Drop masks cut off by a crop edge that is not an image edge.
        keep_mask = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_w, orig_h])
        if not torch.all(keep_mask):
            data.filter(keep_mask)

        # Compress to RLE in whole-image coordinates.
        data["masks"] = uncrop_masks(data["masks"], crop_box, orig_h, orig_w)
        data["rles"] = mask_to_rle_pytorch(data["masks"])
        del data["masks"]
        return data

    def _upsample(self, data: MaskData) -> None:
        """Replace the low-res logits by the masks' logits at the crop's size (Sam.postprocess_masks)."""
        data["masks"] = self.predictor.model.postprocess_masks(
            data["low_res"][:, None], self.predictor.input_size, self.predictor.original_size
        )[:, 0]
        del data["low_res"]

    def _set_crop_image(self, cropped_im: np.ndarray) -> None:
        """Compute the embedding of one crop (uint8 H×W×3) into the predictor."""
        self.predictor.set_image(cropped_im)

    def _decode(self, transformed_points: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits (B, 3, 256, 256) and scores (B, 3) of the multimask outputs for B single
        positive points (in the 1024 frame), as SamPredictor.predict_torch computes them."""
        device = self.predictor.device
        in_points = torch.as_tensor(transformed_points, dtype=torch.float, device=device)
        in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=device)
        model = self.predictor.model
        sparse, dense = model.prompt_encoder(points=(in_points[:, None, :], in_labels[:, None]), boxes=None, masks=None)
        return model.mask_decoder(
            image_embeddings=self.predictor.features, image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=True,
        )

    @staticmethod
    def postprocess_small_regions(mask_data: MaskData, min_area: int, nms_thresh: float) -> MaskData:
        """
        Removes small disconnected regions and holes in masks, then reruns
        box NMS to remove any new duplicates.

        Edits mask_data in place (numpy columns, as after `_generate_masks`).
        Masks that changed are ranked below unchanged ones in the NMS, and have
        their RLE and box recomputed.
        """
        if len(mask_data["rles"]) == 0:
            return mask_data

        new_masks = []
        scores = []
        for rle in mask_data["rles"]:
            mask = rle_to_mask(rle)
            mask, changed = remove_small_regions(mask, min_area, mode="holes")
            unchanged = not changed
            mask, changed = remove_small_regions(mask, min_area, mode="islands")
            unchanged = unchanged and not changed
            new_masks.append(torch.as_tensor(mask).unsqueeze(0))
            # Give unchanged masks priority in the NMS.
            scores.append(float(unchanged))

        masks = torch.cat(new_masks, dim=0)
        boxes = batched_mask_to_box(masks)
        keep_by_nms = batched_nms(
            boxes.float(),
            torch.as_tensor(scores),
            torch.zeros_like(boxes[:, 0]),
            iou_threshold=nms_thresh,
        )

        # Only recalculate RLEs and boxes of masks that changed.
        for i_mask in keep_by_nms.tolist():
            if scores[i_mask] == 0.0:
                mask_data["rles"][i_mask] = mask_to_rle_pytorch(masks[i_mask].unsqueeze(0))[0]
                mask_data["boxes"][i_mask] = boxes[i_mask].numpy()
        mask_data.filter(keep_by_nms)
        return mask_data


# ---------------------------------------------------------------------- #
# Helpers
# ---------------------------------------------------------------------- #


class _ProgressTracker:
    """Counts decoded point batches and reports them to an optional callback."""

    def __init__(self, callback: Optional[ProgressCallback], total: int) -> None:
        self.callback = callback
        self.total = total
        self.done = 0
        if self.callback is not None:
            self.callback(0, total)

    def step(self) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total)


def _empty_mask_data(device: torch.device) -> MaskData:
    """MaskData with every column a crop produces, all of length 0."""
    return MaskData(
        iou_preds=torch.zeros(0, device=device),
        points=torch.zeros(0, 2, dtype=torch.float64),
        stability_score=torch.zeros(0, device=device),
        boxes=torch.zeros(0, 4, dtype=torch.int64, device=device),
        rles=[],
    )


def validate_generator_args(**kwargs: Any) -> None:
    """Raise the ValueError that `SamAutomaticMaskGenerator(model, **kwargs)`
    would raise for bad settings, without needing a model (e.g. to check
    command line options before loading one). Unset arguments take the
    constructor's defaults."""
    signature = inspect.signature(SamAutomaticMaskGenerator.__init__)
    try:
        bound = signature.bind(None, None, **kwargs)
    except TypeError as exc:
        raise ValueError(str(exc)) from exc
    bound.apply_defaults()
    args = dict(bound.arguments)
    for unused in ("self", "model", "pred_iou_thresh", "stability_score_thresh"):
        args.pop(unused)
    _validate_args(**args)


def _validate_args(
    points_per_side: Optional[int],
    points_per_batch: int,
    stability_score_offset: float,
    box_nms_thresh: float,
    crop_n_layers: int,
    crop_nms_thresh: float,
    crop_overlap_ratio: float,
    crop_n_points_downscale_factor: int,
    point_grids: Optional[List[np.ndarray]],
    min_mask_region_area: int,
    output_mode: str,
) -> List[np.ndarray]:
    """Check the generator's settings; return the point grid of each crop layer."""
    if (points_per_side is None) == (point_grids is None):
        raise ValueError("Exactly one of points_per_side or point_grids must be provided.")
    if output_mode not in OUTPUT_MODES:
        raise ValueError(f"Unknown output_mode {output_mode!r}; use one of {', '.join(OUTPUT_MODES)}.")
    _check_int("points_per_batch", points_per_batch, minimum=1)
    _check_int("crop_n_layers", crop_n_layers, minimum=0)
    _check_int("crop_n_points_downscale_factor", crop_n_points_downscale_factor, minimum=1)
    if min_mask_region_area < 0:
        raise ValueError(f"min_mask_region_area must be >= 0, got {min_mask_region_area}")
    for name, value in (("box_nms_thresh", box_nms_thresh), ("crop_nms_thresh", crop_nms_thresh)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if not 0.0 <= crop_overlap_ratio < 1.0:
        raise ValueError(f"crop_overlap_ratio must be in [0, 1), got {crop_overlap_ratio}")
    if not stability_score_offset >= 0:
        raise ValueError(f"stability_score_offset must be >= 0, got {stability_score_offset}")

    if point_grids is not None:
        return _check_point_grids(point_grids, crop_n_layers)
    _check_int("points_per_side", points_per_side, minimum=1)
    if int(points_per_side / crop_n_points_downscale_factor**crop_n_layers) < 1:
        raise ValueError(
            f"points_per_side={points_per_side} leaves no points in crop layer {crop_n_layers} "
            f"with crop_n_points_downscale_factor={crop_n_points_downscale_factor}"
        )
    return build_all_layer_point_grids(points_per_side, crop_n_layers, crop_n_points_downscale_factor)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_point_grids(point_grids: Any, crop_n_layers: int) -> List[np.ndarray]:
    """Validate explicit point grids: one (N, 2) array in [0, 1] per crop layer."""
    grids = [np.asarray(grid, dtype=np.float64) for grid in point_grids]
    if len(grids) != crop_n_layers + 1:
        raise ValueError(
            f"point_grids must have one grid per crop layer (crop_n_layers + 1 = {crop_n_layers + 1}), "
            f"got {len(grids)}"
        )
    for i, grid in enumerate(grids):
        if grid.ndim != 2 or grid.shape[1] != 2:
            raise ValueError(f"point_grids[{i}] must have shape (N, 2), got {grid.shape}")
        if not np.all(np.isfinite(grid)) or grid.min(initial=0.0) < 0.0 or grid.max(initial=0.0) > 1.0:
            raise ValueError(f"point_grids[{i}] must hold (x, y) coordinates in [0, 1]")
    return grids
