"""The app's server-side work, shared by the page's events (`ui.py`) and the API (`api.py`): the
MobileSAM engine and its decoder files, compare mode's SAM models, uploads read once, output files,
and the look-ups the routes serve (`embedding_bytes`).

Every user error becomes a `gr.Error` with a specific message (`user_error`); nothing else a session
did is lost, and the server keeps serving.
"""
import json
import logging
import os
import re
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import Future
from pathlib import Path
from typing import Dict, Optional, Tuple

import gradio as gr
import numpy as np

from mobilesam.utils.sa1b import sa1b_json
from . import compare as cmp
from .engine import EncodedImage, EncoderBusy, Engine
from .images import ImageLoadError, load_rgb_image
from .mask_codec import encode_low_res
from .prompts import RequestError, parse_prompts
from .resized_upload import ResizedUploads
from .server import decoder_url
from .store import LRUCache, is_image_id

log = logging.getLogger(__name__)
OUTPUT_MAX_AGE_S = 3600
OUTPUT_PRUNE_INTERVAL_S = 60
MAX_POINTS_PER_SIDE = 64
PREDICT_SLOTS = 2


class Service:
    """The work behind the app's events, bound to one Engine (the MobileSAM model) and its decoder
    files; with `sam_models`, also the compare mode (the original SAM beside it, loaded on first use)."""

    def __init__(self, engine: Engine, decoder_files: Dict[str, Path], output_dir: Optional[Path] = None,
                 sam_models: Optional[cmp.SamModels] = None) -> None:
        self.engine = engine
        self.decoder_files = decoder_files
        self.sam_models = sam_models
        if sam_models is not None:
            sam_models.on_decoder = self._add_decoder
        self.output_dir = Path(output_dir or Path(tempfile.gettempdir()) / "mobilesam-outputs")
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # e.g. a read-only cache folder: keep serving from a temporary folder
            fallback = Path(tempfile.mkdtemp(prefix="mobilesam-outputs-"))
            log.warning("output folder %s is not usable (%s); writing outputs to %s", self.output_dir, exc, fallback)
            self.output_dir = fallback
        self._pruned_at = 0.0
        self._uploads = SingleFlight()
        self.resized = ResizedUploads(engine)
        # an API file seen before -> its image id: a prompt on an encoded image skips decoding the file
        # (Gradio keeps an uploaded file's bytes under one path: the same file sent again has it)
        self._file_ids: LRUCache[tuple, str] = LRUCache(4096, lambda _: 1)
        # decodes at full size at once: each holds ~50 MB of upsampled masks for a phone photo, and two
        # keep both cores busy; more would only add memory
        self._predict_slots = threading.BoundedSemaphore(PREDICT_SLOTS)

    def encode(self, image: np.ndarray, image_id: Optional[str] = None, engine: Optional[Engine] = None,
               exact: bool = False) -> EncodedImage:
        """`engine.encode` (MobileSAM's by default; `exact`: never from a resized copy, as the API
        answers); a full encoder queue is a clear "busy" error."""
        try:
            engine = engine or self.engine
            return engine.encode(image, image_id=image_id, exact=exact)
        except EncoderBusy as exc:
            raise busy_error(exc) from None

    def embedding_bytes(self, model_type: str, image_id: str, fmt: str = "f16") -> Optional[bytes]:
        """The embedding the browser fetches (wire format `fmt`), from MobileSAM's engine or a loaded
        comparison model's."""
        engine = self._engine_for(model_type)
        if engine is None or not is_image_id(image_id):
            return None
        encoded = engine.cache.get(image_id)
        return None if encoded is None else encoded.wire_bytes(fmt)

    def _engine_for(self, model_type: str) -> Optional[Engine]:
        if model_type == self.engine.model_type:
            return self.engine
        return None if self.sam_models is None else self.sam_models.engine(model_type)

    def _add_decoder(self, path: Path) -> None:
        self.decoder_files[path.name] = path  # served under /msam/models/<name> from now on

    def encode_upload_once(self, path: str, progress) -> Tuple[EncodedImage, Optional[np.ndarray]]:
        """Read and encode an uploaded file once, however many events ask for it (Gradio fires
        `change` twice for one upload: the second call used to decode the photo again while the
        first one encoded, on the same cores). Returns (encoded, image); image is None for a caller
        that got the result of another call (the store has it, from memory until written)."""
        try:
            st = os.stat(path)
            key = (str(path), st.st_size, st.st_mtime_ns)
        except OSError:
            key = None
        holder = {}

        def work() -> EncodedImage:
            start = time.perf_counter()
            holder["image"] = image = self.load_image(path)
            encoded = self.resized.adopt(image)  # the page sent it resized first: encoded already
            how = "its resized copy's embedding"
            if encoded is None:
                progress(0.2, desc=f"Encoding with {cmp.label(self.engine.model_type)}")
                encoded, how = self.encode(image), "encoded"
            log.info("upload %s (%dx%d): %s, %.0f ms", os.path.basename(path), image.shape[1], image.shape[0], how,
                     1000 * (time.perf_counter() - start))
            return encoded

        encoded = work() if key is None else self._uploads.run(key, work)
        return encoded, holder.get("image")

    def encode_resized(self, data: bytes, width, height) -> dict:
        """The page's resized copy of a photo (resized_upload.py) encoded: its client info, marked as
        waiting for the original (no share link until then). ImageLoadError for bad input."""
        encoded = self.resized.encode(data, width, height)
        return {**self.client_info(encoded), "pending_original": True}

    def client_info(self, encoded: EncodedImage, sam=None) -> dict:
        """What the browser needs; with `sam` ((LoadedSam, EncodedImage)), the comparison model's part too."""
        model_type = self.engine.model_type
        info = encoded.client_info(model_type)
        info["stored"] = self.engine.store.is_durable(encoded.image_id)  # else the page asks before sharing
        info["label"] = cmp.label(model_type)
        info["mobilesam_params"] = encoder_params(self.engine)
        if sam is not None:
            loaded, sam_encoded = sam
            sam_type = loaded.engine.model_type
            info["compare"] = {
                "model": sam_type, "label": cmp.label(sam_type),
                "embedding_url": sam_encoded.client_info(sam_type)["embedding_url"],
                "decoder_url": decoder_url(loaded.decoder),
                "encode_ms": round(sam_encoded.encode_ms, 1),
                "params": encoder_params(loaded.engine),
            }
        return info

    def default_compare_model(self) -> Optional[str]:
        return None if self.sam_models is None else self.sam_models.default_type

    def _check_compare_model(self, model_type: Optional[str]) -> str:
        if self.sam_models is None:
            raise user_error("Compare mode is not available on this server.")
        model_type = model_type or self.sam_models.default_type
        if model_type == self.engine.model_type:
            raise user_error(f"This app already runs {cmp.label(model_type)}; choose another model to compare with.")
        if not self.sam_models.valid(model_type):
            raise user_error(f"Cannot compare with {model_type!r}: choose one of {', '.join(self.sam_models.choices)}.")
        return model_type

    def sam_get(self, model_type: Optional[str], progress):
        model_type = self._check_compare_model(model_type)
        try:
            return self.sam_models.get(model_type, _progress_fn(progress))
        except cmp.CompareError as exc:
            raise user_error(str(exc), duration=None) from exc

    def sam_encode(self, model_type: Optional[str], image: np.ndarray, image_id: str, progress):
        """(LoadedSam, EncodedImage) of `image` by the SAM model; gr.Error with a clear message on failure."""
        model_type = self._check_compare_model(model_type)
        try:
            return self.sam_models.encode(model_type, image, image_id, _progress_fn(progress))
        except EncoderBusy as exc:
            raise busy_error(exc) from None
        except cmp.CompareError as exc:
            raise user_error(str(exc), duration=None) from exc

    def session_encoded(self, image_id: str) -> Optional[EncodedImage]:
        """MobileSAM's encoding of the session's image (from the cache, or encoded again from the store)."""
        if not is_image_id(image_id):
            return None
        encoded = self.engine.cache.get(image_id)
        if encoded is not None:
            return encoded
        image = self.engine.store.get(image_id)
        if image is None:
            raise user_error("This image is no longer on the server; please upload it again.")
        return self.encode(image, image_id=image_id)

    def compare_status(self, encoded: EncodedImage, sam) -> str:
        loaded, sam_encoded = sam
        a, b = cmp.label(self.engine.model_type), cmp.label(loaded.engine.model_type)
        return (f"**Comparing {a} with {b}.** Each prompt runs both decoders in your browser. "
                f"Encoders on this server: {a} {encoded.encode_ms / 1000:.2f} s, "
                f"{b} {sam_encoded.encode_ms / 1000:.2f} s.")

    def best_mask(self, encoded: EncodedImage, prompts_json: str):
        """(best mask [H,W] bool, scores [C], its index) for a prompts JSON (`Engine.best_mask`)."""
        try:
            prompt = parse_prompts(prompts_json, encoded.original_size)
            with self._predict_slots:
                return self.engine.best_mask(encoded, **prompt)
        except ValueError as exc:
            raise user_error(f"Invalid prompts: {exc}") from exc

    def decode_for_page(self, image_id: str, body: bytes) -> Optional[bytes]:
        """POST /msam/decode/<image id>: one prompt (`{"points": [[x, y, label], ...], "box": [x0, y0,
        x1, y1] | null}`, original-image pixels, as `parse_prompts` reads it) decoded here while the
        page's own decoder is still loading: the page decoder's outputs in mask_codec's format. None
        when the image's embedding is not in the cache (the page then waits for its own decoder);
        RequestError for a malformed prompt. It never encodes, so it never waits behind an encode."""
        encoded = self.engine.cache.get(image_id) if is_image_id(image_id) else None
        if encoded is None:
            return None
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError("the prompt must be UTF-8 JSON") from None
        prompt = parse_prompts(text, encoded.original_size)
        with self._predict_slots:
            scores, logits = self.engine.low_res_masks(encoded, prompt.get("point_coords"), prompt.get("point_labels"),
                                                       prompt.get("box"))
        return encode_low_res(scores, logits)

    def encode_file(self, image_file) -> EncodedImage:
        """The encoding of an API call's image file: from the cache without reading the file when this
        file was seen before (a prompt on an encoded image costs only its decode)."""
        path = file_path(image_file)
        key = file_key(path)
        image_id = None if key is None else self._file_ids.get(key)
        encoded = None if image_id is None else self.engine.cache.get(image_id)
        # the API answers with the official computation; a stored image that went (pruned, corrupted)
        # is stored again from the file
        if encoded is None or encoded.from_copy or not self.engine.store.has(encoded.image_id):
            encoded = self.encode(self.load_image(path), exact=True)
            if key is not None:
                self._file_ids.put(key, encoded.image_id)
        return encoded

    def segment_everything(self, image: np.ndarray, points_per_side, progress):
        n = check_points_per_side(points_per_side)
        start = time.perf_counter()
        progress(0, desc="Segmenting everything")
        records = self.engine.segment_everything(
            image, points_per_side=n, progress=lambda done, total: progress((done, max(total, 1)), unit="batches"))
        seconds = time.perf_counter() - start
        path = self.output_path("sa1b-annotations-", ".json")
        with open(path, "w") as f:
            json.dump(sa1b_json(records, image.shape[:2]), f)
        return records, path, seconds

    @staticmethod
    def load_image(path: str) -> np.ndarray:
        try:
            return load_rgb_image(path)
        except ImageLoadError as exc:
            raise user_error(f"Cannot use this file: {exc}") from exc

    def output_path(self, prefix: str, suffix: str) -> Path:
        """A new file for a download; its name (`prefix` + random + `suffix`) is what the user saves."""
        self._prune_outputs()
        fd, name = tempfile.mkstemp(dir=self.output_dir, prefix=prefix, suffix=suffix)
        os.close(fd)
        return Path(name)

    def _prune_outputs(self) -> None:
        now = time.time()
        if now - self._pruned_at < OUTPUT_PRUNE_INTERVAL_S:  # not a directory scan on every request
            return
        self._pruned_at = now
        for path in self.output_dir.glob("*"):
            try:
                if now - path.stat().st_mtime > OUTPUT_MAX_AGE_S:
                    path.unlink()
            except OSError:
                pass



def _progress_fn(progress):
    """compare.Progress (fraction, text) -> a gr.Progress call."""
    return lambda fraction, text: progress(fraction, desc=text)


def encoder_params(engine: Engine) -> int:
    count = getattr(engine, "parameter_count", None)
    if count is None:
        count = sum(p.numel() for p in engine.model.image_encoder.parameters())
    return int(count)


def user_error(message: str, duration: Optional[float] = 10) -> gr.Error:
    """The error for a request the user can put right: shown to them, and logged here in one line
    (Gradio would print its whole traceback for every bad file or prompt)."""
    log.info("refused a request: %s", message)
    return gr.Error(message, duration=duration, print_exception=False)


def busy_error(exc: EncoderBusy) -> gr.Error:
    return user_error(f"The server is busy: {exc.ahead} images are ahead of yours in the encoder's queue. "
                      "Please try again in a few seconds.")


class SharedCallFailed(Exception):
    """Raised by SingleFlight.run to the callers that joined a call which failed; the call's own
    caller got the exception itself (it is this one's __cause__)."""


class SingleFlight:
    """`run(key, fn)`: concurrent calls with the same key share one call of `fn`, and its outcome
    is returned again for `ttl_s` seconds after it is made (Gradio's second event for an upload may
    come just after the first one's encode). The first caller gets `fn`'s result or exception; the
    others get the result, or SharedCallFailed for an exception (so that one error is shown once)."""

    def __init__(self, ttl_s: float = 10.0) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._calls: Dict[object, Tuple[Future, float]] = {}

    def run(self, key, fn):
        now = time.monotonic()
        with self._lock:
            for k in [k for k, (f, t) in self._calls.items() if f.done() and now - t > self.ttl_s]:
                del self._calls[k]
            entry = self._calls.get(key)
            owner = entry is None
            if owner:
                entry = self._calls[key] = (Future(), now)
        future = entry[0]
        if not owner:
            try:
                return future.result()
            except Exception as exc:
                raise SharedCallFailed(str(exc)) from exc
        try:
            result = fn()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(result)
            return result
        finally:
            with self._lock:
                self._calls[key] = (future, time.monotonic())  # kept ttl_s from now


def gradio_file_url(path: str) -> str:
    """Where Gradio serves an uploaded file (the page fetched it already for the upload's preview)."""
    return "/gradio_api/file=" + urllib.parse.quote(str(path))


def file_key(path: str) -> Optional[tuple]:
    """What identifies a file's bytes without reading them: its path and size under a folder named
    by the SHA-256 of its content (Gradio's uploads: `<upload dir>/<sha256>/<name>`, written again,
    with a new mtime, each time the same bytes are uploaded), else path, size and mtime. None if the
    file cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if CONTENT_FOLDER.fullmatch(os.path.basename(os.path.dirname(path))):
        return path, st.st_size
    return path, st.st_size, st.st_mtime_ns


CONTENT_FOLDER = re.compile(r"[0-9a-f]{64}")


def file_path(image_file) -> str:
    """gradio_client sends a file; Gradio hands us a path (str) or a FileData-like object."""
    if image_file is None:
        raise user_error("No image file was sent.")
    path = getattr(image_file, "path", None) or (image_file.get("path") if isinstance(image_file, dict) else image_file)
    if not isinstance(path, str):
        raise user_error("No image file was sent.")
    return path


def check_points_per_side(value) -> int:
    if isinstance(value, bool):  # True == 1 in Python, but it is not a count
        raise user_error(f"points_per_side must be a whole number, got {value!r}")
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: infinity
        raise user_error(f"points_per_side must be a whole number, got {value!r}") from None
    if not 1 <= n <= MAX_POINTS_PER_SIDE or n != value:
        raise user_error(f"points_per_side must be a whole number from 1 to {MAX_POINTS_PER_SIDE}, got {value!r}")
    return n
