"""`FastSamAutomaticMaskGenerator`: `SamAutomaticMaskGenerator` with the image encoded by
`ImageEncoder` (onnxruntime float32) and each point decoded by the fast decoder in onnxruntime.

The records equal the official generator's up to float rounding (a mask whose score sits within
~1e-5 of a threshold may fall on the other side); on 2 CPU cores a 32×32 grid takes about a seventh
of the official time (bench/segment_everything.py).
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

import numpy as np
import torch

from ..automatic_mask_generator import SamAutomaticMaskGenerator
from ..modeling import Sam
from ..onnx_cache import cached_fast_decoder
from .encoder import ImageEncoder
from .fast_decoder import FastDecoderSession


class FastSamAutomaticMaskGenerator(SamAutomaticMaskGenerator):
    def __init__(self, model: Sam, *args, image_encoder: Optional[ImageEncoder] = None,
                 cache_dir: Optional[os.PathLike] = None, **kwargs) -> None:
        """The arguments of `SamAutomaticMaskGenerator`, and:

        Arguments:
          image_encoder (ImageEncoder or None): the encoder to use (default: a new onnxruntime one).
          cache_dir (path or None): where the ONNX exports are kept (default:
            $MOBILESAM_CACHE/onnx or ~/.cache/mobilesam/onnx).
        """
        super().__init__(model, *args, **kwargs)
        self._encoder = image_encoder or ImageEncoder(model, "model", backend="onnxruntime",
                                                      cache_dir=cache_dir, background=False)
        self._decoder = FastDecoderSession(cached_fast_decoder(model, "model", cache_dir))

    def _set_crop_image(self, cropped_im: np.ndarray) -> None:
        embedding, _ = self._encoder.embed(cropped_im)
        self.predictor.set_image_embedding(torch.from_numpy(embedding), cropped_im.shape[:2])
        self._decoder.set_embedding(embedding)

    def _decode(self, transformed_points: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits (B, 3, 256, 256) and scores (B, 3) of the multimask outputs for B single
        positive points (in the 1024 frame); the padding point is fed as the web demo feeds it."""
        low, ious = [], []
        for x, y in transformed_points:
            iou, low_res = self._decoder.decode(np.array([[x, y], [0.0, 0.0]]), np.array([1.0, -1.0]))
            low.append(low_res[1:])
            ious.append(iou[1:])
        device = self.predictor.device
        return torch.from_numpy(np.stack(low)).to(device), torch.from_numpy(np.stack(ious)).to(device)
