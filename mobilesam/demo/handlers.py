"""What the app's events do. app.py only lays out the page and wires these to components.

Every user error becomes a `gr.Error` with a specific message; nothing else a session did
is lost, and the server keeps serving.
"""
import base64
import json
import logging
import mimetypes
import os
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import Future
from pathlib import Path
from typing import Dict, Optional, Tuple

import gradio as gr
import numpy as np
from gradio import processing_utils

from ..utils.sa1b import sa1b_json
from . import api
from . import compare as cmp
from .engine import EncodedImage, Engine
from .images import DEFAULT_MAX_BYTES, ImageLoadError, browser_shows_as_loaded, load_rgb_image
from .render import overlay_masks
from .store import is_image_id

log = logging.getLogger(__name__)
OUTPUT_MAX_AGE_S = 3600
OUTPUT_PRUNE_INTERVAL_S = 60
MAX_POINTS_PER_SIDE = 64


class Handlers:
    """Event handlers bound to one Engine (the MobileSAM model) and its decoder files; with
    `sam_models`, also the compare mode (the original SAM beside it, loaded on first use)."""

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

    # ---- routes' lookups -------------------------------------------------------------
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

    # ---- UI events ------------------------------------------------------------------
    def encode_upload(self, path: Optional[str], compare_on: bool = False, compare_model: Optional[str] = None,
                      progress=gr.Progress()) -> tuple:
        """New image chosen: encode it (and with SAM too in compare mode).

        Returns (client info JSON, session image id, compare mode on, compare status Markdown), then
        the segment-everything outputs (picture, annotations file, summary), emptied: they were the
        previous photo's.
        """
        if not path:
            # The upload box was emptied: by its clear button, or by Gradio after refusing a file (over
            # its size limit). The photo being worked on stays, with its prompts.
            return _unchanged(4 + len(NO_EVERYTHING))
        progress(0.05, desc="Reading image")
        try:
            encoded, image = self._encode_upload_once(path, progress)
        except SharedCallFailed:  # Gradio's second event for this upload: the first one shows the error
            return _unchanged(4 + len(NO_EVERYTHING))
        display = {"display_url": gradio_file_url(path)} if browser_shows_as_loaded(path) else {}
        if not compare_on:
            progress(1.0, desc="Done")
            return json.dumps({**self._client_info(encoded), **display}), encoded.image_id, False, cmp.HELP, *NO_EVERYTHING
        if image is None:
            image = self.engine.store.get(encoded.image_id)
            if image is None:
                image = self._load(path)
        try:
            sam = self._sam_encode(compare_model, image, encoded.image_id, progress)
        except gr.Error as exc:  # MobileSAM still works: leave compare mode, say why
            gr.Warning(str(exc.message))
            return (json.dumps({**self._client_info(encoded), **display}), encoded.image_id, False,
                    _failed_status(exc), *NO_EVERYTHING)
        return (json.dumps({**self._client_info(encoded, sam), **display}), encoded.image_id, True,
                self._compare_status(encoded, sam), *NO_EVERYTHING)

    def _encode_upload_once(self, path: str, progress) -> Tuple[EncodedImage, Optional[np.ndarray]]:
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
            holder["image"] = image = self._load(path)
            progress(0.2, desc=f"Encoding with {cmp.label(self.engine.model_type)}")
            return self.engine.encode(image)

        encoded = work() if key is None else self._uploads.run(key, work)
        return encoded, holder.get("image")

    def restore_from_link(self, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        """Page opened from a shared link (?image=<id>&...[&compare=vit_b]): re-encode that stored image,
        with SAM too when the link was made in compare mode.

        Returns (client info JSON, session image id, compare mode on, comparison model, status Markdown).
        """
        params = request.query_params if request is not None else None
        image_id, compare_model = _first_value(params, "image"), _first_value(params, "compare")
        want_compare = self.sam_models is not None and self.sam_models.valid(compare_model)
        default_model = compare_model if want_compare else self._default_compare_model()
        if not image_id:
            return json.dumps(None), None, False, default_model, cmp.HELP
        image = self.engine.store.get(image_id) if is_image_id(image_id) else None
        if image is None:
            gr.Warning("The shared image is no longer available on this server; please upload it again.")
            return json.dumps(None), None, False, default_model, cmp.HELP
        encoded = self.engine.encode(image, image_id=image_id)
        if not want_compare:
            return json.dumps(self._client_info(encoded)), encoded.image_id, False, default_model, cmp.HELP
        try:
            sam = self._sam_encode(compare_model, image, encoded.image_id, progress)
        except gr.Error as exc:
            gr.Warning(str(exc.message))
            return (json.dumps(self._client_info(encoded)), encoded.image_id, False, default_model,
                    _failed_status(exc))
        return (json.dumps(self._client_info(encoded, sam)), encoded.image_id, True, compare_model,
                self._compare_status(encoded, sam))

    def set_compare(self, compare_on: bool, compare_model: Optional[str], image_id: Optional[str],
                    page_image_id: Optional[str] = None,
                    progress=gr.Progress(track_tqdm=True)) -> Tuple[str, bool, str]:
        """Compare mode switched on or off, or another SAM model chosen, for the image the page shows
        (`page_image_id`; else the session's last image, `image_id`).

        Loads the SAM model on first use (with progress) and encodes the session's image with it.
        Returns (client info JSON, compare mode on, status Markdown); raises gr.Error when the model
        cannot be used (no memory, no weights), leaving MobileSAM as it was.
        """
        image_id = _shown_image(image_id, page_image_id)
        encoded = self._session_encoded(image_id) if image_id else None
        if not compare_on:
            info = None if encoded is None else self._client_info(encoded)
            return json.dumps(info), False, cmp.HELP
        if encoded is None:  # no image yet: load the model now, so that the first image is quick
            loaded = self._sam_get(compare_model, progress)
            return (json.dumps(None), True, f"**{cmp.label(loaded.engine.model_type)} is ready.** "
                    "Choose an image: it will be segmented by both models.")
        image = self.engine.store.get(encoded.image_id)
        if image is None:
            raise user_error("This image is no longer on the server; please upload it again.")
        sam = self._sam_encode(compare_model, image, encoded.image_id, progress)
        return json.dumps(self._client_info(encoded, sam)), True, self._compare_status(encoded, sam)

    def segment_everything_ui(self, image_id: Optional[str], points_per_side: int, page_image_id: Optional[str] = None,
                              progress=gr.Progress()) -> Tuple[np.ndarray, str, str]:
        """All masks of the image the page shows (`page_image_id`; else the session's last image,
        `image_id`): (overlay picture, SA-1B JSON file, summary)."""
        image_id = _shown_image(image_id, page_image_id)
        if not image_id:
            raise user_error("Choose or upload an image first.")
        image = self.engine.store.get(image_id)
        if image is None:
            raise user_error("This image is no longer on the server; please upload it again.")
        records, path, seconds = self._segment_everything(image, points_per_side, progress)
        overlay = overlay_masks(image, [r["segmentation"] for r in records])
        return overlay, str(path), f"{len(records)} masks in {seconds:.1f} s ({points_per_side}×{points_per_side} grid)"

    # ---- API (gradio_client) ----------------------------------------------------------
    def compare_api(self, image_file, prompts_json: str, progress=gr.Progress()) -> Tuple[str, str, str]:
        """api_name="compare": (image file, prompts JSON) -> (MobileSAM's best mask PNG, SAM's best mask PNG,
        summary JSON), both computed here with the PyTorch predictors; SAM is the server's default
        comparison model (--sam-model-type)."""
        if self.sam_models is None:
            raise user_error("Compare mode is not available on this server.")
        image = self._load(_file_path(image_file))
        encoded = self.engine.encode(image)
        try:
            prompt = api.parse_prompts(prompts_json, encoded.original_size)
        except ValueError as exc:
            raise user_error(f"Invalid prompts: {exc}") from exc
        loaded, sam_encoded = self._sam_encode(self.sam_models.default_type, image, encoded.image_id, progress)
        results = []
        for engine, enc in ((self.engine, encoded), (loaded.engine, sam_encoded)):
            masks, scores, _ = engine.predict(enc, **prompt)
            mask, index = api.best_mask(masks, scores)
            path = self._output_path(f"mask-{engine.model_type}-", ".png")
            api.save_mask_png(mask, path)
            results.append((path, mask, scores, index, engine, enc))
        (path_a, mask_a, *a), (path_b, mask_b, *b) = results
        summary = cmp.compare_summary(encoded.width, encoded.height, prompt, self._model_numbers(mask_a, *a),
                                      self._model_numbers(mask_b, *b), cmp.mask_iou(mask_a, mask_b))
        return str(path_a), str(path_b), json.dumps(summary)

    @staticmethod
    def _model_numbers(mask, scores, index, engine: Engine, encoded: EncodedImage) -> dict:
        return {"model": engine.model_type, "label": cmp.label(engine.model_type), "score": float(scores[index]),
                "scores": [float(s) for s in scores], "index": int(index), "area": int(mask.sum()),
                "encode_ms": round(encoded.encode_ms, 1), "encoder_params": _encoder_params(engine)}

    def segment_api(self, image_file, prompts_json: str) -> Tuple[str, str]:
        """api_name="segment": (image file, prompts JSON) -> (best mask PNG path, scores JSON)."""
        encoded = self._encode_file(image_file)
        masks, scores, _ = self._predict(encoded, prompts_json)
        mask, index = api.best_mask(masks, scores)
        path = self._output_path(f"mask-{self.engine.model_type}-", ".png")
        api.save_mask_png(mask, path)
        return str(path), api.scores_json(scores, index)

    def segment_everything_api(self, image_file, points_per_side: float = 16,
                               progress=gr.Progress()) -> str:
        """api_name="segment_everything": image file -> SA-1B annotations JSON file."""
        image = self._load(_file_path(image_file))
        _, path, _ = self._segment_everything(image, points_per_side, progress)
        return str(path)

    # ---- compare helpers --------------------------------------------------------------
    def _client_info(self, encoded: EncodedImage, sam=None) -> dict:
        """What the browser needs; with `sam` ((LoadedSam, EncodedImage)), the comparison model's part too."""
        model_type = self.engine.model_type
        info = encoded.client_info(model_type)
        info["label"] = cmp.label(model_type)
        info["mobilesam_params"] = _encoder_params(self.engine)
        if sam is not None:
            loaded, sam_encoded = sam
            sam_type = loaded.engine.model_type
            info["compare"] = {
                "model": sam_type, "label": cmp.label(sam_type),
                "embedding_url": sam_encoded.client_info(sam_type)["embedding_url"],
                "decoder_url": f"/msam/models/{loaded.decoder.name}",
                "encode_ms": round(sam_encoded.encode_ms, 1),
                "params": _encoder_params(loaded.engine),
            }
        return info

    def _default_compare_model(self) -> Optional[str]:
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

    def _sam_get(self, model_type: Optional[str], progress):
        model_type = self._check_compare_model(model_type)
        try:
            return self.sam_models.get(model_type, _progress_fn(progress))
        except cmp.CompareError as exc:
            raise user_error(str(exc), duration=None) from exc

    def _sam_encode(self, model_type: Optional[str], image: np.ndarray, image_id: str, progress):
        """(LoadedSam, EncodedImage) of `image` by the SAM model; gr.Error with a clear message on failure."""
        model_type = self._check_compare_model(model_type)
        try:
            return self.sam_models.encode(model_type, image, image_id, _progress_fn(progress))
        except cmp.CompareError as exc:
            raise user_error(str(exc), duration=None) from exc

    def _session_encoded(self, image_id: str) -> Optional[EncodedImage]:
        """MobileSAM's encoding of the session's image (from the cache, or encoded again from the store)."""
        if not is_image_id(image_id):
            return None
        encoded = self.engine.cache.get(image_id)
        if encoded is not None:
            return encoded
        image = self.engine.store.get(image_id)
        if image is None:
            raise user_error("This image is no longer on the server; please upload it again.")
        return self.engine.encode(image, image_id=image_id)

    def _compare_status(self, encoded: EncodedImage, sam) -> str:
        loaded, sam_encoded = sam
        a, b = cmp.label(self.engine.model_type), cmp.label(loaded.engine.model_type)
        return (f"**Comparing {a} with {b}.** Each prompt runs both decoders in your browser. "
                f"Encoders on this server: {a} {encoded.encode_ms / 1000:.2f} s, "
                f"{b} {sam_encoded.encode_ms / 1000:.2f} s.")

    def _compare_idle_status(self, compare_on: bool, compare_model: Optional[str]) -> str:
        if not compare_on or self.sam_models is None:
            return cmp.HELP
        return f"Compare mode: choose an image to segment it with {cmp.label(compare_model or '')} too."

    # ---- helpers ----------------------------------------------------------------------
    def _predict(self, encoded: EncodedImage, prompts_json: str):
        try:
            prompt = api.parse_prompts(prompts_json, encoded.original_size)
            return self.engine.predict(encoded, **prompt)
        except ValueError as exc:
            raise user_error(f"Invalid prompts: {exc}") from exc

    def _encode_file(self, image_file) -> EncodedImage:
        return self.engine.encode(self._load(_file_path(image_file)))

    def _segment_everything(self, image: np.ndarray, points_per_side, progress):
        n = _points_per_side(points_per_side)
        start = time.perf_counter()
        progress(0, desc="Segmenting everything")
        records = self.engine.segment_everything(
            image, points_per_side=n, progress=lambda done, total: progress((done, max(total, 1)), unit="batches"))
        seconds = time.perf_counter() - start
        path = self._output_path("sa1b-annotations-", ".json")
        with open(path, "w") as f:
            json.dump(sa1b_json(records, image.shape[:2]), f)
        return records, path, seconds

    @staticmethod
    def _load(path: str) -> np.ndarray:
        try:
            return load_rgb_image(path)
        except ImageLoadError as exc:
            raise user_error(f"Cannot use this file: {exc}") from exc

    def _output_path(self, prefix: str, suffix: str) -> Path:
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


def _failed_status(exc: gr.Error) -> str:
    return f"Compare mode is off: {exc.message}"


def _encoder_params(engine: Engine) -> int:
    count = getattr(engine, "parameter_count", None)
    if count is None:
        count = sum(p.numel() for p in engine.model.image_encoder.parameters())
    return int(count)


def user_error(message: str, duration: Optional[float] = 10) -> gr.Error:
    """The error for a request the user can put right: shown to them, and logged here in one line
    (Gradio would print its whole traceback for every bad file or prompt)."""
    log.info("refused a request: %s", message)
    return gr.Error(message, duration=duration, print_exception=False)


def _first_value(params, name: str) -> Optional[str]:
    """A link parameter's first value, as the page reads it (URLSearchParams.get); Starlette's
    QueryParams.get gives the last one, so `?image=A&image=B` would name two images."""
    values = params.getlist(name) if params is not None else []
    return values[0] if values else None


def _shown_image(session_image_id: Optional[str], page_image_id: Optional[str]) -> Optional[str]:
    """The image an event from the page is about: the one the page shows, if it says (a share link's
    restore that finished after the user's own upload sets the session's image but not the page's)."""
    return page_image_id if isinstance(page_image_id, str) and is_image_id(page_image_id) else session_image_id


NO_EVERYTHING = (None, None, "")  # segment everything's picture, annotations file and summary, emptied


def _unchanged(count: int) -> tuple:
    """Outputs of an event that leaves all its `count` output components as they are."""
    return tuple(gr.skip() for _ in range(count))


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


def _file_path(image_file) -> str:
    """gradio_client sends a file; Gradio hands us a path (str) or a FileData-like object."""
    if image_file is None:
        raise user_error("No image file was sent.")
    path = getattr(image_file, "path", None) or (image_file.get("path") if isinstance(image_file, dict) else image_file)
    if not isinstance(path, str):
        raise user_error("No image file was sent.")
    return path


def _points_per_side(value) -> int:
    if isinstance(value, bool):  # True == 1 in Python, but it is not a count
        raise user_error(f"points_per_side must be a whole number, got {value!r}")
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: infinity
        raise user_error(f"points_per_side must be a whole number, got {value!r}") from None
    if not 1 <= n <= MAX_POINTS_PER_SIDE or n != value:
        raise user_error(f"points_per_side must be a whole number from 1 to {MAX_POINTS_PER_SIDE}, got {value!r}")
    return n


def raw_image_input(**kwargs) -> gr.Image:
    """A gr.Image input that hands the uploaded file's path to our own loader, which gives clear
    errors for bad files (Gradio's own decoding would fail first with a generic one).

    The override is per instance: subclassing a Gradio component makes Gradio write a .pyi stub
    next to this module at import time.
    """
    component = gr.Image(type="filepath", **kwargs)

    def preprocess(payload):
        if payload is None:
            return None
        if payload.path is None:  # an image sent as a data: URL, not uploaded
            return data_url_to_file(payload.url or "", component.GRADIO_CACHE)
        return payload.path

    component.preprocess = preprocess
    return component


def data_url_to_file(url: str, cache_dir: str, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The bytes of a base64 `data:` URL saved as a file in Gradio's cache folder, where an upload
    would be, so that the same loader checks them (size limit before decoding, clear errors).
    Other URLs are refused: the server fetches nothing for a request."""
    header, comma, body = url.partition(",")
    if not (header.startswith("data:") and header.endswith(";base64") and comma):
        raise user_error("Cannot use this image: send a file, or a pasted image as a base64 data: URL.")
    if len(body) > 4 * (max_bytes // 3 + 1):
        raise user_error(f"Cannot use this file: it is larger than {max_bytes / 2 ** 20:.0f} MB")
    try:
        data = base64.b64decode(body, validate=True)
    except ValueError:  # binascii.Error
        raise user_error("Cannot use this image: its data: URL is not valid base64.") from None
    mime = header[len("data:"):-len(";base64")].split(";")[0].strip().lower()
    extension = mimetypes.guess_extension(mime) or ".bin"
    return processing_utils.save_bytes_to_cache(data, "pasted" + extension, cache_dir)
