"""Resized uploads (mobilesam_app/resized_upload.py) waiting for their originals: compare mode
switched on while the original is on its way gets the original once it arrives."""
import io
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from mobilesam.utils.transforms import ResizeLongestSide
from mobilesam_app.resized_upload import ResizedUploads
from mobilesam_app.store import image_id_of


@dataclass
class _Encoded:
    image_id: str


class _Dict(dict):
    def put(self, key, value):
        self[key] = value


class _Engine:
    """The parts of Engine that ResizedUploads uses; encoding is only a record."""

    def __init__(self):
        self.transform = ResizeLongestSide(1024)
        self.cache, self.store = _Dict(), _Dict()
        self.store.put_later = self.store.put

    def encode_input(self, resized, original_size, image_id):
        self.cache.put(image_id, _Encoded(image_id))
        return self.cache[image_id]


def _photo(h=900, w=1200):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) % 256], axis=2).astype(np.uint8)


def test_wait_original_waits_for_the_original_then_answers_at_once():
    engine = _Engine()
    uploads = ResizedUploads(engine)
    original = _photo()
    buf = io.BytesIO()
    Image.fromarray(engine.transform.apply_image(original)).save(buf, format="PNG")
    copy_id = uploads.encode(buf.getvalue(), original.shape[1], original.shape[0]).image_id

    got = {}
    waiter = threading.Thread(target=lambda: got.setdefault("id", uploads.wait_original(copy_id, 30)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive()  # the original is not there yet
    adopted = uploads.adopt(original)
    waiter.join(30)
    assert got["id"] == adopted.image_id == image_id_of(original)
    assert engine.store[got["id"]] is original
    assert uploads.wait_original(copy_id, 0) == image_id_of(original)  # afterwards: at once
    assert uploads.wait_original("0" * 32, 30) is None  # a copy unknown here: no wait
