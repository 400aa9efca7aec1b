"""The page's events: a photo chosen, a share link opened, compare mode switched, segment
everything. app.py wires these to components; the work itself is `Service`'s."""
import base64
import json
import mimetypes
import os
from typing import Optional, Tuple

import gradio as gr
import numpy as np
from gradio import processing_utils

from . import compare as cmp
from .images import DEFAULT_MAX_BYTES, browser_shows_as_loaded
from .render import overlay_masks
from .service import Service, SharedCallFailed, gradio_file_url, user_error
from .store import is_image_id


class PageEvents:
    """Handlers of the page's events, on one `Service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

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
            encoded, image = self.service.encode_upload_once(path, progress)
        except SharedCallFailed:  # Gradio's second event for this upload: the first one shows the error
            return _unchanged(4 + len(NO_EVERYTHING))
        display = {"display_url": gradio_file_url(path)} if browser_shows_as_loaded(path) else {}
        display["file_name"] = upload_file_name(path)
        replaces = self.service.resized.replaced(encoded.image_id)
        if replaces:  # the original of the resized copy the page shows: it keeps its prompts
            display["replaces"] = replaces
        if not compare_on:
            progress(1.0, desc="Done")
            return json.dumps({**self.service.client_info(encoded), **display}), encoded.image_id, False, cmp.HELP, *NO_EVERYTHING
        if image is None:
            image = self.service.engine.store.get(encoded.image_id)
            if image is None:
                image = self.service.load_image(path)
        try:
            sam = self.service.sam_encode(compare_model, image, encoded.image_id, progress)
        except gr.Error as exc:  # MobileSAM still works: leave compare mode, say why
            gr.Warning(str(exc.message))
            return (json.dumps({**self.service.client_info(encoded), **display}), encoded.image_id, False,
                    _failed_status(exc), *NO_EVERYTHING)
        return (json.dumps({**self.service.client_info(encoded, sam), **display}), encoded.image_id, True,
                self.service.compare_status(encoded, sam), *NO_EVERYTHING)

    def restore_from_link(self, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        """Page opened from a shared link (?image=<id>&...[&compare=vit_b]): re-encode that stored image,
        with SAM too when the link was made in compare mode.

        Returns (client info JSON, session image id, compare mode on, comparison model, status Markdown);
        without a link, nothing changes (`gr.skip()` each): a photo chosen while the page loaded, whose
        upload event may end first, keeps its session state.
        """
        params = request.query_params if request is not None else None
        image_id, compare_model = _first_value(params, "image"), _first_value(params, "compare")
        if not image_id:
            return (gr.skip(),) * 5
        want_compare = self.service.sam_models is not None and self.service.sam_models.valid(compare_model)
        default_model = compare_model if want_compare else self.service.default_compare_model()
        image = self.service.engine.store.get(image_id) if is_image_id(image_id) else None
        if image is None:
            gr.Warning("The shared image is no longer available on this server; please upload it again.")
            return json.dumps(None), None, False, default_model, cmp.HELP
        encoded = self.service.encode(image, image_id=image_id)
        if not want_compare:
            return json.dumps(self.service.client_info(encoded)), encoded.image_id, False, default_model, cmp.HELP
        try:
            sam = self.service.sam_encode(compare_model, image, encoded.image_id, progress)
        except gr.Error as exc:
            gr.Warning(str(exc.message))
            return (json.dumps(self.service.client_info(encoded)), encoded.image_id, False, default_model,
                    _failed_status(exc))
        return (json.dumps(self.service.client_info(encoded, sam)), encoded.image_id, True, compare_model,
                self.service.compare_status(encoded, sam))

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
        encoded = self.service.session_encoded(image_id) if image_id else None
        if not compare_on:
            info = None if encoded is None else self.service.client_info(encoded)
            return json.dumps(info), False, cmp.HELP
        if encoded is None:  # no image yet: load the model now, so that the first image is quick
            loaded = self.service.sam_get(compare_model, progress)
            return (json.dumps(None), True, f"**{cmp.label(loaded.engine.model_type)} is ready.** "
                    "Choose an image: it will be segmented by both models.")
        replaces = {}
        image = self.service.engine.store.get(encoded.image_id)
        if image is None:  # a resized copy (resized_upload.py) whose original is still on its way
            progress(0.05, desc="Waiting for the original photo")
            original_id = self.service.resized.wait_original(encoded.image_id)
            image = self.service.engine.store.get(original_id) if original_id else None
            if image is None:
                raise user_error("This image is no longer on the server; please upload it again.")
            replaces = {"replaces": encoded.image_id}  # the page takes the original's id, prompts kept
            encoded = self.service.session_encoded(original_id)
        sam = self.service.sam_encode(compare_model, image, encoded.image_id, progress)
        info = {**self.service.client_info(encoded, sam), **replaces}
        return json.dumps(info), True, self.service.compare_status(encoded, sam)

    def segment_everything_ui(self, image_id: Optional[str], points_per_side: int, page_image_id: Optional[str] = None,
                              progress=gr.Progress()) -> Tuple[np.ndarray, str, str]:
        """All masks of the image the page shows (`page_image_id`; else the session's last image,
        `image_id`): (overlay picture, SA-1B JSON file, summary)."""
        image_id = _shown_image(image_id, page_image_id)
        if not image_id:
            raise user_error("Choose or upload an image first.")
        image = self.service.engine.store.get(image_id)
        if image is None:
            raise user_error("This image is no longer on the server; please upload it again.")
        records, path, seconds = self.service.segment_everything(image, points_per_side, progress)
        overlay = overlay_masks(image, [r["segmentation"] for r in records])
        return overlay, str(path), everything_summary(len(records), seconds, points_per_side)


def everything_summary(count: int, seconds: float, points_per_side: int) -> str:
    """Segment everything's summary line; with no mask it says why the picture is the plain photo."""
    line = f"{count} masks in {seconds:.1f} s ({points_per_side}×{points_per_side} grid)"
    if count == 0:
        line += (": no mask passed the quality thresholds (predicted IoU, stability), so the picture is "
                 "the plain photo; try a denser grid")
    return line


def upload_file_name(path: str) -> str:
    """The uploaded photo's own file name (Gradio keeps it as the cached file's name): downloads are
    named after it."""
    return os.path.basename(path)



def _failed_status(exc: gr.Error) -> str:
    return f"Compare mode is off: {exc.message}"


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
