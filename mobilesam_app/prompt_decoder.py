"""Prompts on encoded images decoded on the server: the `segment`, `segment_objects` and `compare`
APIs and a page whose own decoder is still loading (POST /msam/decode).

The official computation is SAM's prompt encoder + mask decoder in PyTorch (`SamPredictor.predict`):
~210 ms of CPU per prompt for MobileSAM on 2 cores. With the onnxruntime encoder (the CPU serving
path), prompts go through the fast decoder export instead (`mobilesam/accel/fast_decoder.py`,
float32: the same logits to ~1e-5, tests/test_page_decode.py): ~40 ms of one core per prompt once
its per-image part (~60 ms) is done, kept for the last few images prompted. Its export is made in
the background at start-up (or copied from the cache folder); until it is there, PyTorch decodes.
Only the mask a caller keeps is upsampled to the photo's size (`best_mask`).
"""
import logging
import threading
from pathlib import Path
from typing import Dict, Hashable, Optional, Tuple

import numpy as np
import torch

from mobilesam.accel.encoder import start_background_export
from mobilesam.modeling import Sam
from mobilesam.utils.onnx import SamOnnxLowResModel, web_prompt_inputs
from .store import LRUCache

log = logging.getLogger(__name__)

# per-image inputs of the fast decoder kept for the next prompts (10.5 MB per image: ~4 images)
IMAGE_INPUTS_BYTES = 48 * 2**20


class PromptDecoder:
    """`low_res_masks` (all four mask tokens, as the page's decoder gives them) and `predict` /
    `best_mask` (SamPredictor.predict's outputs) for one model. `fast`: decode with the fast decoder in
    onnxruntime (CPU) once its export is ready; else PyTorch always."""

    def __init__(self, model: Sam, model_type: str, onnx_dir: Optional[Path], fast: bool) -> None:
        self.model = model
        self.model_type = model_type
        self._eager = SamOnnxLowResModel(model)
        self._session = None  # FastDecoderSession once ready
        self._images: LRUCache[Hashable, Dict[str, np.ndarray]] = LRUCache(
            IMAGE_INPUTS_BYTES, lambda inputs: sum(a.nbytes for a in inputs.values()))
        self._ready = threading.Event()
        if fast:
            start_background_export(lambda: self._prepare(onnx_dir), "mobilesam-decoder-export")
        else:
            self._ready.set()

    def _prepare(self, onnx_dir: Optional[Path]) -> None:
        try:
            from mobilesam.accel.fast_decoder import FastDecoderSession
            from mobilesam.onnx_cache import cached_fast_decoder

            path = cached_fast_decoder(self.model, self.model_type, onnx_dir)
            # one thread per prompt: prompts run side by side (PREDICT_SLOTS), and each stays cheap
            self._session = FastDecoderSession(path, threads=1)
            log.info("server prompts: fast decoder in onnxruntime (%s)", path.name)
        except Exception as exc:  # any failure: keep decoding with PyTorch
            log.warning("server prompts: fast decoder unavailable (%s: %s); using PyTorch", type(exc).__name__, exc)
        finally:
            self._ready.set()

    @property
    def backend(self) -> str:
        return "torch" if self._session is None else "onnxruntime"

    def wait_ready(self, timeout: Optional[float] = None) -> bool:
        """Wait for the fast decoder's preparation; True when it is in use."""
        self._ready.wait(timeout)
        return self._session is not None

    def low_res_masks(self, image_key: Hashable, embedding: np.ndarray, original_size: Tuple[int, int],
                      point_coords: Optional[np.ndarray] = None, point_labels: Optional[np.ndarray] = None,
                      box: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """iou predictions [4] and low-res mask logits [4,256,256] of all four mask tokens for one prompt
        (points [K,2] with labels [K], box [4], in original-image pixels) on `embedding`, fed as the
        web demo feeds the decoder (SamOnnxLowResModel, the official computation). `image_key` names
        the embedding: its per-image part is kept under it."""
        coords, labels = web_prompt_inputs(point_coords, point_labels, box, original_size,
                                           self.model.image_encoder.img_size)
        session = self._session
        if session is not None:
            inputs = self._images.get(image_key)
            if inputs is None:
                inputs = session.image_inputs(embedding)
                self._images.put(image_key, inputs)
            return session.decode(coords[0], labels[0], image=inputs)
        device = next(self.model.parameters()).device
        feeds = [torch.from_numpy(a).to(device) for a in (embedding, coords, labels)]
        no_mask = torch.zeros(1, 1, 256, 256, device=device), torch.zeros(1, device=device)
        with torch.inference_mode():
            scores, masks = self._eager(*feeds, *no_mask)
        return scores[0].cpu().numpy(), masks[0].cpu().numpy()

    def _chosen(self, image_key, embedding, original_size, point_coords=None, point_labels=None, box=None,
                multimask_output: bool = True) -> Tuple[np.ndarray, np.ndarray]:
        """The scores [C] and low-res logits [C,256,256] SamPredictor.predict gives: the three
        multimask outputs (mask tokens 1-3), or the single one (token 0)."""
        scores, logits = self.low_res_masks(image_key, embedding, original_size, point_coords, point_labels, box)
        which = slice(1, 4) if multimask_output else slice(0, 1)
        return scores[which], logits[which]

    def _upsampled(self, logits: np.ndarray, input_size: Tuple[int, int], original_size: Tuple[int, int]) -> np.ndarray:
        """Masks [C,H,W] bool of low-res logits [C,256,256], postprocessed as SamPredictor does."""
        with torch.inference_mode():
            masks = self.model.postprocess_masks(torch.from_numpy(np.ascontiguousarray(logits))[None],
                                                 input_size, original_size)
        return (masks[0] > self.model.mask_threshold).numpy()

    def predict(self, image_key: Hashable, embedding: np.ndarray, input_size: Tuple[int, int],
                original_size: Tuple[int, int], **prompt) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """SamPredictor.predict's (masks [C,H,W] bool, scores [C], low-res logits [C,256,256]) for
        `prompt` (its point_coords, point_labels, box, multimask_output)."""
        scores, logits = self._chosen(image_key, embedding, original_size, **prompt)
        return self._upsampled(logits, input_size, original_size), scores, logits

    def best_mask(self, image_key: Hashable, embedding: np.ndarray, input_size: Tuple[int, int],
                  original_size: Tuple[int, int], **prompt) -> Tuple[np.ndarray, np.ndarray, int]:
        """(the highest-scoring mask [H,W] bool, scores [C], its index) of `predict`, upsampling only it."""
        scores, logits = self._chosen(image_key, embedding, original_size, **prompt)
        index = int(np.argmax(scores))
        return self._upsampled(logits[index:index + 1], input_size, original_size)[0], scores, index
