"""What the app's events do. app.py only lays out the page and wires these to components.

Every user error becomes a `gr.Error` with a specific message; nothing else a session did
is lost, and the server keeps serving.
"""
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional, Tuple

import gradio as gr
import numpy as np

from ..utils.sa1b import sa1b_json
from . import api
from .engine import EncodedImage, Engine
from .images import ImageLoadError, load_rgb_image
from .render import overlay_masks
from .store import is_image_id

log = logging.getLogger(__name__)
OUTPUT_MAX_AGE_S = 3600
MAX_POINTS_PER_SIDE = 64


class Handlers:
    """Event handlers bound to one Engine (the MobileSAM model) and its decoder files."""

    def __init__(self, engine: Engine, decoder_files: Dict[str, Path], output_dir: Optional[Path] = None) -> None:
        self.engine = engine
        self.decoder_files = decoder_files
        self.output_dir = Path(output_dir or Path(tempfile.gettempdir()) / "mobilesam-outputs")
        self.output_dir.mkdir(parents=True, exist_ok=True)

    # ---- routes' lookups -------------------------------------------------------------
    def embedding_bytes(self, model_type: str, image_id: str) -> Optional[bytes]:
        if model_type != self.engine.model_type or not is_image_id(image_id):
            return None
        encoded = self.engine.cache.get(image_id)
        return None if encoded is None else encoded.embedding_f16_bytes()

    # ---- UI events ------------------------------------------------------------------
    def encode_upload(self, path: Optional[str], progress=gr.Progress()) -> Tuple[str, Optional[str]]:
        """New image chosen: encode it. Returns (client info JSON, session image id)."""
        if not path:
            return json.dumps(None), None
        progress(0.05, desc="Reading image")
        image = self._load(path)
        progress(0.2, desc="Encoding with MobileSAM")
        encoded = self.engine.encode(image)
        progress(1.0, desc="Done")
        return json.dumps(encoded.client_info(self.engine.model_type)), encoded.image_id

    def restore_from_link(self, request: gr.Request) -> Tuple[str, Optional[str]]:
        """Page opened from a shared link (?image=<id>&...): re-encode that stored image."""
        image_id = request.query_params.get("image") if request is not None else None
        if not image_id:
            return json.dumps(None), None
        image = self.engine.store.get(image_id) if is_image_id(image_id) else None
        if image is None:
            gr.Warning("The shared image is no longer available on this server; please upload it again.")
            return json.dumps(None), None
        encoded = self.engine.encode(image, image_id=image_id)
        return json.dumps(encoded.client_info(self.engine.model_type)), encoded.image_id

    def segment_everything_ui(self, image_id: Optional[str], points_per_side: int,
                              progress=gr.Progress()) -> Tuple[np.ndarray, str, str]:
        """All masks of the session's image: (overlay picture, SA-1B JSON file, summary)."""
        if not image_id:
            raise gr.Error("Choose or upload an image first.")
        image = self.engine.store.get(image_id)
        if image is None:
            raise gr.Error("This image is no longer on the server; please upload it again.")
        records, path, seconds = self._segment_everything(image, points_per_side, progress)
        overlay = overlay_masks(image, [r["segmentation"] for r in records])
        return overlay, str(path), f"{len(records)} masks in {seconds:.1f} s ({points_per_side}×{points_per_side} grid)"

    # ---- API (gradio_client) ----------------------------------------------------------
    def segment_api(self, image_file, prompts_json: str) -> Tuple[str, str]:
        """api_name="segment": (image file, prompts JSON) -> (best mask PNG path, scores JSON)."""
        encoded = self._encode_file(image_file)
        masks, scores, _ = self._predict(encoded, prompts_json)
        mask, index = api.best_mask(masks, scores)
        path = self._output_path(".png")
        api.save_mask_png(mask, path)
        return str(path), api.scores_json(scores, index)

    def segment_everything_api(self, image_file, points_per_side: float = 16,
                               progress=gr.Progress()) -> str:
        """api_name="segment_everything": image file -> SA-1B annotations JSON file."""
        image = self._load(_file_path(image_file))
        _, path, _ = self._segment_everything(image, points_per_side, progress)
        return str(path)

    # ---- helpers ----------------------------------------------------------------------
    def _predict(self, encoded: EncodedImage, prompts_json: str):
        try:
            prompt = api.parse_prompts(prompts_json, encoded.original_size)
            return self.engine.predict(encoded, **prompt)
        except ValueError as exc:
            raise gr.Error(f"Invalid prompts: {exc}") from exc

    def _encode_file(self, image_file) -> EncodedImage:
        return self.engine.encode(self._load(_file_path(image_file)))

    def _segment_everything(self, image: np.ndarray, points_per_side, progress):
        n = _points_per_side(points_per_side)
        start = time.perf_counter()
        progress(0, desc="Segmenting everything")
        records = self.engine.segment_everything(
            image, points_per_side=n, progress=lambda done, total: progress((done, max(total, 1)), unit="batches"))
        seconds = time.perf_counter() - start
        path = self._output_path(".json")
        with open(path, "w") as f:
            json.dump(sa1b_json(records, image.shape[:2]), f)
        return records, path, seconds

    @staticmethod
    def _load(path: str) -> np.ndarray:
        try:
            return load_rgb_image(path)
        except ImageLoadError as exc:
            raise gr.Error(f"Cannot use this file: {exc}") from exc

    def _output_path(self, suffix: str) -> Path:
        self._prune_outputs()
        fd, name = tempfile.mkstemp(dir=self.output_dir, suffix=suffix)
        os.close(fd)
        return Path(name)

    def _prune_outputs(self) -> None:
        now = time.time()
        for path in self.output_dir.glob("*"):
            try:
                if now - path.stat().st_mtime > OUTPUT_MAX_AGE_S:
                    path.unlink()
            except OSError:
                pass


def _file_path(image_file) -> str:
    """gradio_client sends a file; Gradio hands us a path (str) or a FileData-like object."""
    if image_file is None:
        raise gr.Error("No image file was sent.")
    path = getattr(image_file, "path", None) or (image_file.get("path") if isinstance(image_file, dict) else image_file)
    if not isinstance(path, str):
        raise gr.Error("No image file was sent.")
    return path


def _points_per_side(value) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise gr.Error(f"points_per_side must be a whole number, got {value!r}") from None
    if not 1 <= n <= MAX_POINTS_PER_SIDE or n != value:
        raise gr.Error(f"points_per_side must be a whole number from 1 to {MAX_POINTS_PER_SIDE}, got {value!r}")
    return n


def raw_image_input(**kwargs) -> gr.Image:
    """A gr.Image input that hands the uploaded file's path to our own loader, which gives clear
    errors for bad files (Gradio's own decoding would fail first with a generic one).

    The override is per instance: subclassing a Gradio component makes Gradio write a .pyi stub
    next to this module at import time.
    """
    component = gr.Image(type="filepath", **kwargs)
    default_preprocess = component.preprocess

    def preprocess(payload):
        if payload is None:
            return None
        if payload.path is None:  # pasted data: URL
            return default_preprocess(payload)
        return payload.path

    component.preprocess = preprocess
    return component
