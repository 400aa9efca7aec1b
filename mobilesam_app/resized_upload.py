"""Photos the browser sends first as the encoder's input, ahead of the original.

The encoder sees only the photo resized to 1024 pixels on its long side (the official
ResizeLongestSide). The page makes that copy itself (web/resize.js: Pillow's bilinear resample,
byte-identical on the same decoded pixels) and sends it with the original's size (a few hundred KB
instead of a 2-3 MB phone photo); the server encodes it as the original's embedding (coordinates
map with the original size). The original follows in the background through the upload box; when
it arrives, `adopt` recognises it (same size, and its own resized copy matches the one sent) and
gives it that embedding under its own content id, without encoding again, and keeps it for share
links, downloads and compare mode.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Optional, Tuple

import logging

import numpy as np

from .engine import EncodedImage, Engine
from .images import ImageLoadError, check_photo_size, load_rgb_image
from .store import image_id_of

log = logging.getLogger(__name__)
MAX_RESIZED_BYTES = 8 * 2**20  # a 1024×1024 PNG of noise is ~3 MB; a JPEG a few hundred KB
# Mean absolute difference (0..255) under which the original's own resized copy is taken to be the
# photo the browser sent (a JPEG of the same pixels differs by ~1-2; another photo by tens).
MATCH_MEAN_ABS = 4.0
ENCODE_WAIT_S = 120.0  # an original that arrives while its copy is being encoded waits for that
ORIGINAL_WAIT_S = 120.0  # compare mode switched on before the original arrived waits this long for it


@dataclass
class _Sent:
    resized: np.ndarray  # uint8 h×w×3, as received
    original_size: Tuple[int, int]  # (H, W)
    at: float
    encoded: threading.Event = field(default_factory=threading.Event)  # set once its encode is over
    adopted: threading.Event = field(default_factory=threading.Event)  # set once its original arrived
    original_id: Optional[str] = None


def resized_id(resized: np.ndarray, original_size: Tuple[int, int]) -> str:
    """Content id (32 hex digits) of a resized copy and the original size it stands for; never equal
    to a stored image's id (`image_id_of` hashes other bytes)."""
    digest = hashlib.sha256(f"resized:{original_size[0]}x{original_size[1]}:{resized.shape[0]}x{resized.shape[1]}:"
                            .encode())
    digest.update(np.ascontiguousarray(resized).tobytes())
    return digest.hexdigest()[:32]


def parse_size(width, height) -> Tuple[int, int]:
    """(H, W) of the original from the request's width / height, or ImageLoadError."""
    try:
        w, h = int(width), int(height)
    except (TypeError, ValueError):
        raise ImageLoadError(f"width and height must be whole numbers, got {width!r} and {height!r}") from None
    check_photo_size(w, h)
    return h, w


class ResizedUploads:
    """The resized copies encoded lately (at most `max_entries`, for `ttl_s`), waiting for their originals."""

    def __init__(self, engine: Engine, max_entries: int = 16, ttl_s: float = 3600.0) -> None:
        self.engine = engine
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._sent: "OrderedDict[str, _Sent]" = OrderedDict()
        self._replaced: "OrderedDict[str, str]" = OrderedDict()  # original's id -> the copy's id it took over from
        self._lock = threading.Lock()

    def encode(self, data: bytes, width, height) -> EncodedImage:
        """Encode the browser's resized copy of a `width`×`height` photo; ImageLoadError for bad input."""
        original_size = parse_size(width, height)
        if len(data) > MAX_RESIZED_BYTES:
            raise ImageLoadError(f"the resized photo is {len(data) / 2**20:.1f} MiB; the limit is "
                                 f"{MAX_RESIZED_BYTES / 2**20:.0f} MiB")
        resized = load_rgb_image(data, max_bytes=MAX_RESIZED_BYTES)
        image_id = resized_id(resized, original_size)
        sent = _Sent(resized, original_size, time.monotonic())
        with self._lock:  # known before its encode ends: the original may arrive meanwhile
            self._sent[image_id] = sent
            self._sent.move_to_end(image_id)
            self._prune()
        try:
            return self.engine.encode_input(resized, original_size, image_id)
        except ValueError as exc:
            with self._lock:
                self._sent.pop(image_id, None)
            raise ImageLoadError(str(exc)) from exc
        finally:
            sent.encoded.set()

    def _prune(self) -> None:
        now = time.monotonic()
        for key in [k for k, v in self._sent.items() if now - v.at > self.ttl_s]:
            del self._sent[key]
        while len(self._sent) > self.max_entries:
            self._sent.popitem(last=False)

    def adopt(self, original: np.ndarray) -> Optional[EncodedImage]:
        """The embedding of `original` (uint8 H×W×3) under its own id, taken from the resized copy the
        browser sent of it, if there is one (then the original is stored); else None."""
        size = tuple(original.shape[:2])
        with self._lock:
            candidates = [(k, v) for k, v in reversed(self._sent.items()) if v.original_size == size]
        if not candidates:
            return None
        own = self.engine.transform.apply_image(original)  # what the server's encoder would have seen
        for key, sent in candidates:
            if sent.resized.shape != own.shape:
                continue
            difference = float(np.abs(sent.resized.astype(np.int16) - own).mean())
            if difference > MATCH_MEAN_ABS:
                log.info("an original of %dx%d differs from resized copy %s by %.1f on average: encoding it",
                         size[1], size[0], key, difference)
                continue
            sent.encoded.wait(ENCODE_WAIT_S)
            encoded = self.engine.cache.get(key)
            if encoded is None:
                return None
            image_id = image_id_of(original)
            adopted = self.engine.cache.get(image_id) or replace(encoded, image_id=image_id)
            self.engine.cache.put(image_id, adopted)
            self.engine.store.put_later(image_id, original)
            sent.original_id = image_id
            sent.adopted.set()
            with self._lock:
                self._replaced[image_id] = key
                while len(self._replaced) > 64 * self.max_entries:
                    self._replaced.popitem(last=False)
                self._sent.pop(key, None)
            return adopted
        return None

    def wait_original(self, key: str, timeout_s: float = ORIGINAL_WAIT_S) -> Optional[str]:
        """The id of the original of resized copy `key`, waiting up to `timeout_s` while the original
        is on its way; None for a copy unknown here (or an original that did not come)."""
        with self._lock:
            sent = self._sent.get(key)
            if sent is None:
                return next((orig for orig, copy in reversed(self._replaced.items()) if copy == key), None)
        sent.adopted.wait(timeout_s)
        return sent.original_id

    def replaced(self, image_id: str) -> Optional[str]:
        """The id of the resized copy whose embedding `image_id` (an original) took over, if any."""
        return self._replaced.get(image_id)


