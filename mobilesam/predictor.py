"""SamPredictor: embed an image once, then predict masks for any number of prompts."""
from typing import Optional, Tuple

import numpy as np
import torch

from .modeling import Sam
from .utils import prompts as checks
from .utils.transforms import ResizeLongestSide


class SamPredictor:
    """The official predictor API (segment_anything.SamPredictor), with validated inputs."""

    def __init__(self, sam_model: Sam) -> None:
        self.model = sam_model
        self.transform = ResizeLongestSide(sam_model.image_encoder.img_size)
        self.reset_image()

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Compute the embedding of a uint8 H×W×3 image in `image_format` ("RGB" or "BGR")."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        checks.check_image(image)
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        input_image = self.transform.apply_image(np.ascontiguousarray(image))
        input_image_torch = torch.as_tensor(input_image, device=self.device).permute(2, 0, 1).contiguous()[None]
        self.set_torch_image(input_image_torch, image.shape[:2])

    @torch.no_grad()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: Tuple[int, ...]) -> None:
        """Compute the embedding of a 1×3×h×w image already resized to the long side (see `transform`)."""
        img_size = self.model.image_encoder.img_size
        if not (transformed_image.ndim == 4 and transformed_image.shape[1] == 3
                and max(*transformed_image.shape[2:]) == img_size):
            raise ValueError(f"set_torch_image expects a 1×3×h×w tensor with long side {img_size}, "
                             f"got {tuple(transformed_image.shape)}")
        self.reset_image()
        self.original_size = tuple(int(s) for s in original_image_size)
        self.input_size = tuple(int(s) for s in transformed_image.shape[-2:])
        self.features = self.model.image_encoder(self.model.preprocess(transformed_image.to(self.device)))
        self.is_image_set = True

    def set_image_embedding(self, embedding: torch.Tensor, original_size: Tuple[int, int]) -> None:
        """Reuse an embedding computed earlier (1×256×64×64) for an image of `original_size` (h, w)."""
        embedding = torch.as_tensor(embedding, dtype=torch.float32, device=self.device)
        if embedding.shape != (1, 256, 64, 64):
            raise ValueError(f"embedding must have shape 1×256×64×64, got {tuple(embedding.shape)}")
        self.reset_image()
        h, w = (int(s) for s in original_size)
        self.original_size = (h, w)
        self.input_size = self.transform.get_preprocess_shape(h, w, self.model.image_encoder.img_size)
        self.features = embedding
        self.is_image_set = True

    def predict(self, point_coords: Optional[np.ndarray] = None, point_labels: Optional[np.ndarray] = None,
                box: Optional[np.ndarray] = None, mask_input: Optional[np.ndarray] = None,
                multimask_output: bool = True,
                return_logits: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for prompts in original-image pixel coordinates.

        point_coords N×2 (x, y) with point_labels N (1 foreground, 0 background, -1 padding, 2 and 3
        box corners; bools as 1/0), box 4 or 1×4 (x0, y0, x1, y1), mask_input 1×256×256 (low-res
        logits of an earlier prediction). As officially, every prompt is optional (none at all gives
        the model's prompt-free masks), N may be 0, and coordinates may lie outside the image and box
        corners come in any order. NaN/inf, wrong shapes, unknown labels and point_labels without
        point_coords raise ValueError. Returns masks C×H×W (bool, or float logits with
        return_logits), scores C and low-res logits C×256×256, with C = 3 for multimask_output else 1.
        """
        self._require_image()
        if point_coords is None and point_labels is not None:
            raise ValueError("point_labels given without point_coords")
        coords_torch = labels_torch = box_torch = mask_torch = None
        if point_coords is not None:
            coords_torch, labels_torch = self._point_prompt_tensors(point_coords, point_labels)
        if box is not None:
            box_torch = self._box_prompt_tensor(box)
        if mask_input is not None:
            mask_torch = torch.as_tensor(checks.check_mask_input(mask_input), dtype=torch.float,
                                         device=self.device)[None]

        masks, iou_predictions, low_res_masks = self.predict_torch(
            coords_torch, labels_torch, box_torch, mask_torch, multimask_output, return_logits=return_logits)
        return (masks[0].detach().cpu().numpy(), iou_predictions[0].detach().cpu().numpy(),
                low_res_masks[0].detach().cpu().numpy())

    def _point_prompt_tensors(self, point_coords, point_labels) -> Tuple[torch.Tensor, torch.Tensor]:
        """Validated points -> coords 1×N×2 (float, model input frame) and labels 1×N (int)."""
        coords, labels = checks.point_prompt_arrays(point_coords, point_labels)
        coords = self.transform.apply_coords(coords, self.original_size)
        return (torch.as_tensor(coords, dtype=torch.float, device=self.device)[None],
                torch.as_tensor(labels, dtype=torch.int, device=self.device)[None])

    def _box_prompt_tensor(self, box) -> torch.Tensor:
        """A validated box -> 1×1×4 (float, model input frame)."""
        box_arr = checks.box_prompt_array(box)
        return torch.as_tensor(self.transform.apply_boxes(box_arr, self.original_size),
                               dtype=torch.float, device=self.device)[None]

    @torch.no_grad()
    def predict_torch(self, point_coords: Optional[torch.Tensor], point_labels: Optional[torch.Tensor],
                      boxes: Optional[torch.Tensor] = None, mask_input: Optional[torch.Tensor] = None,
                      multimask_output: bool = True,
                      return_logits: bool = False) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched prompts already in the model's input frame (apply `transform` first).

        point_coords B×N×2 with point_labels B×N, boxes B×4, mask_input B×1×256×256. Returns masks
        B×C×H×W, scores B×C and low-res logits B×C×256×256.
        """
        self._require_image()
        if (point_coords is None) != (point_labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        if point_coords is not None and (point_coords.ndim != 3 or point_coords.shape[-1] != 2
                                         or point_labels.shape != point_coords.shape[:2]):
            raise ValueError(f"point_coords must be B×N×2 and point_labels B×N, got "
                             f"{tuple(point_coords.shape)} and {tuple(point_labels.shape)}")
        if boxes is not None and boxes.shape[-1] != 4:
            raise ValueError(f"boxes must be B×4, got {tuple(boxes.shape)}")
        points = (point_coords, point_labels) if point_coords is not None else None
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        low_res_masks, iou_predictions = self.model.mask_decoder(
            image_embeddings=self.features, image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask_output)
        masks = self.model.postprocess_masks(low_res_masks, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou_predictions, low_res_masks

    def get_image_embedding(self) -> torch.Tensor:
        """The current image's embedding, 1×256×64×64."""
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) to generate an embedding.")
        return self.features

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_image(self) -> None:
        self.is_image_set = False
        self.features = None
        self.orig_h = self.orig_w = self.input_h = self.input_w = None
        self.original_size = None
        self.input_size = None

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
