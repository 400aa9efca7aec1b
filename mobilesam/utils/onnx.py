"""ONNX-exportable wrappers of SAM's prompt encoder + mask decoder.

`SamOnnxModel` reproduces the interface of segment-anything's ``segment_anything/utils/onnx.py``
(the model behind ``scripts/export_onnx_model.py`` and the official web demo):

===================  =================  =====================================================
input                shape / dtype      meaning
===================  =================  =====================================================
image_embeddings     [1,256,64,64] f32  the image encoder's output
point_coords         [1,N,2] f32        x, y in the 1024-long-side frame (``apply_coords``)
point_labels         [1,N] f32          1 fg, 0 bg, 2/3 box corners, -1 padding point
mask_input           [1,1,256,256] f32  low-res logits of an earlier prediction (or zeros)
has_mask_input       [1] f32            1 when `mask_input` is to be used, else 0
orig_im_size         [2] f32            (h, w) of the original image
===================  =================  =====================================================

Outputs: ``masks`` [1,C,H,W] logits at the original size, ``iou_predictions`` [1,C],
``low_res_masks`` [1,C,256,256]; C = 4 (all mask tokens: the single-mask output first, then the
three multimask outputs) or C = 1 with ``return_single_mask``. N is dynamic.

`SamOnnxLowResModel` is the browser variant: the same inputs without ``orig_im_size``, outputs
``iou_predictions`` [1,4] and ``low_res_masks`` [1,4,256,256] only (the page upsamples the chosen
mask itself, which keeps the model small in work and the output small in size).
"""
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..modeling import Sam

# Input / output names of the exported graphs (a contract with the web demo and the app).
DECODER_INPUT_NAMES = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input",
                       "orig_im_size")
DECODER_OUTPUT_NAMES = ("masks", "iou_predictions", "low_res_masks")
DECODER_EXTRA_OUTPUT_NAMES = ("masks", "iou_predictions", "stability_scores", "areas", "low_res_masks")
BROWSER_INPUT_NAMES = DECODER_INPUT_NAMES[:-1]
BROWSER_OUTPUT_NAMES = ("iou_predictions", "low_res_masks")


def web_prompt_inputs(point_coords: Optional[np.ndarray], point_labels: Optional[np.ndarray],
                      box: Optional[np.ndarray], original_size: Tuple[int, int],
                      target_length: int = 1024) -> Tuple[np.ndarray, np.ndarray]:
    """``point_coords`` [1,N,2] and ``point_labels`` [1,N] (float32) as the official web demo feeds
    the decoder one prompt: points (original-image pixels, [K,2] with labels [K]) mapped to the
    `target_length` frame as ``ResizeLongestSide.apply_coords`` maps them, then the box's corners
    labelled 2 and 3, or, without a box, a padding point (0, 0) labelled -1."""
    from .transforms import ResizeLongestSide

    transform = ResizeLongestSide(target_length)
    coords, labels = [], []
    if point_coords is not None:
        coords.append(transform.apply_coords(np.asarray(point_coords, np.float64).reshape(-1, 2), original_size))
        labels.append(np.asarray(point_labels, np.float64).reshape(-1))
    if box is not None:
        coords.append(transform.apply_coords(np.asarray(box, np.float64).reshape(2, 2), original_size))
        labels.append(np.array([2.0, 3.0]))
    else:
        coords.append(np.zeros((1, 2)))
        labels.append(np.array([-1.0]))
    return (np.concatenate(coords)[None].astype(np.float32), np.concatenate(labels)[None].astype(np.float32))


def stability_score(masks: torch.Tensor, mask_threshold: float, threshold_offset: float) -> torch.Tensor:
    """IoU of the masks thresholded at ``threshold ± offset`` (as the official ``calculate_stability_score``).

    Counts in int32 rather than the official int16 row sums: the values are identical, and
    onnxruntime has no int16 ReduceSum kernel.
    """
    intersections = (masks > (mask_threshold + threshold_offset)).to(torch.int32).sum(-1).sum(-1)
    unions = (masks > (mask_threshold - threshold_offset)).to(torch.int32).sum(-1).sum(-1)
    return intersections.to(torch.float32) / unions.to(torch.float32)


class _PromptDecoder(nn.Module):
    """Shared part: prompt embedding without control flow, then all four mask tokens' outputs."""

    def __init__(self, model: Sam, use_stability_score: bool = False) -> None:
        super().__init__()
        self.model = model
        self.mask_decoder = model.mask_decoder
        self.img_size = model.image_encoder.img_size
        self.use_stability_score = use_stability_score
        self.stability_score_offset = 1.0

    def _embed_points(self, point_coords: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
        pe = self.model.prompt_encoder
        point_coords = point_coords + 0.5
        point_coords = point_coords / self.img_size
        point_embedding = pe.pe_layer._pe_encoding(point_coords)
        point_labels = point_labels.unsqueeze(-1).expand_as(point_embedding)

        point_embedding = point_embedding * (point_labels != -1)
        point_embedding = point_embedding + pe.not_a_point_embed.weight * (point_labels == -1)
        for i in range(pe.num_point_embeddings):
            point_embedding = point_embedding + pe.point_embeddings[i].weight * (point_labels == i)
        return point_embedding

    def _embed_masks(self, input_mask: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        pe = self.model.prompt_encoder
        mask_embedding = has_mask_input * pe.mask_downscaling(input_mask)
        return mask_embedding + (1 - has_mask_input) * pe.no_mask_embed.weight.reshape(1, -1, 1, 1)

    def _decode(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
                mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        sparse_embedding = self._embed_points(point_coords, point_labels)
        dense_embedding = self._embed_masks(mask_input, has_mask_input)
        masks, scores = self.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse_embedding,
            dense_prompt_embeddings=dense_embedding,
        )
        if self.use_stability_score:
            scores = stability_score(masks, self.model.mask_threshold, self.stability_score_offset)
        return masks, scores


class SamOnnxModel(_PromptDecoder):
    """The official ONNX decoder: prompts -> masks at the original image size (see the module doc)."""

    def __init__(self, model: Sam, return_single_mask: bool, use_stability_score: bool = False,
                 return_extra_metrics: bool = False) -> None:
        super().__init__(model, use_stability_score)
        self.return_single_mask = return_single_mask
        self.return_extra_metrics = return_extra_metrics

    @staticmethod
    def resize_longest_image_size(input_image_size: torch.Tensor, longest_side: int) -> torch.Tensor:
        input_image_size = input_image_size.to(torch.float32)
        scale = longest_side / torch.max(input_image_size)
        transformed_size = scale * input_image_size
        return torch.floor(transformed_size + 0.5).to(torch.int64)

    def mask_postprocessing(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        masks = F.interpolate(masks, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        prepadded_size = self.resize_longest_image_size(orig_im_size, self.img_size).to(torch.int64)
        masks = masks[..., : prepadded_size[0], : prepadded_size[1]]
        orig_im_size = orig_im_size.to(torch.int64)
        h, w = orig_im_size[0], orig_im_size[1]
        return F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=False)

    def select_masks(self, masks: torch.Tensor, iou_preds: torch.Tensor,
                     num_points: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The official best-mask pick without control flow: with more than two points (a padding point
        counts) the single-mask output 0 wins (+1000·(N-2.5)), otherwise the best multimask output."""
        score_reweight = torch.tensor(
            [[1000] + [0] * (self.mask_decoder.num_mask_tokens - 1)]).to(iou_preds.device)
        score = iou_preds + (num_points - 2.5) * score_reweight
        best_idx = torch.argmax(score, dim=1)
        masks = masks[torch.arange(masks.shape[0]), best_idx, :, :].unsqueeze(1)
        iou_preds = iou_preds[torch.arange(masks.shape[0]), best_idx].unsqueeze(1)
        return masks, iou_preds

    @torch.no_grad()
    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
                mask_input: torch.Tensor, has_mask_input: torch.Tensor, orig_im_size: torch.Tensor):
        masks, scores = self._decode(image_embeddings, point_coords, point_labels, mask_input, has_mask_input)
        if self.return_single_mask:
            masks, scores = self.select_masks(masks, scores, point_coords.shape[1])
        upscaled_masks = self.mask_postprocessing(masks, orig_im_size)
        if self.return_extra_metrics:
            stability_scores = stability_score(upscaled_masks, self.model.mask_threshold,
                                               self.stability_score_offset)
            areas = (upscaled_masks > self.model.mask_threshold).sum(-1).sum(-1)
            return upscaled_masks, scores, stability_scores, areas, masks
        return upscaled_masks, scores, masks


class SamOnnxLowResModel(_PromptDecoder):
    """The browser decoder: the official inputs minus ``orig_im_size``; outputs ``iou_predictions`` [1,4]
    and ``low_res_masks`` [1,4,256,256] (always all four mask tokens; no resize, no selection)."""

    @torch.no_grad()
    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
                mask_input: torch.Tensor, has_mask_input: torch.Tensor):
        masks, scores = self._decode(image_embeddings, point_coords, point_labels, mask_input, has_mask_input)
        return scores, masks
