"""Uploads of every kind become RGB uint8 arrays or a clear ImageLoadError."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLES
from mobilesam_app.images import ImageLoadError, load_rgb_image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def test_jpeg_sample_loads_like_pillow_rgb():
    data = (SAMPLES / "truck.jpg").read_bytes()
    expected = np.array(Image.open(SAMPLES / "truck.jpg").convert("RGB"))
    np.testing.assert_array_equal(load_rgb_image(data), expected)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    out = load_rgb_image(encode(image, "JPEG", exif=exif, quality=95))
    assert out.shape == (40, 20, 3)
    assert out[2, 10, 0] > 200 and out[-3, 10, 0] < 60  # red strip now at the top


@pytest.mark.parametrize("mode", ["L", "1", "P", "RGBA", "LA", "CMYK", "I;16", "I", "F"])
def test_every_mode_becomes_rgb(mode):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
    out = load_rgb_image(encode(image, fmt))
    assert out.shape == (12, 16, 3) and out.dtype == np.uint8


def test_16_bit_uses_the_full_range():
    values = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    out = load_rgb_image(encode(Image.fromarray(values), "PNG"))
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 255 and out[1, 0, 0] == 128


def test_rgba_is_composited_on_white():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    out = load_rgb_image(encode(image, "PNG"))
    assert (out == 255).all()


def test_animated_gif_gives_the_first_frame():
    frames = [Image.new("P", (8, 8), c) for c in (1, 2)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    assert load_rgb_image(buf.getvalue()).shape == (8, 8, 3)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width×height pixels."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"hello, this is a text file named photo.jpg\n", "text file"),
    (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>', "SVG"),
    (b"<!DOCTYPE html><html><body>hi</body></html>", "HTML"),
    (b"\x00\x01\x02\x03" * 50, "unsupported format"),
    (png_declaring(100000, 100000), "limit is"),
    (png_declaring(1, 1), "at least 2"),
    (png_declaring(1, 5000), "at least 2"),
])
def test_unusable_files_get_specific_messages(data, message):
    with pytest.raises(ImageLoadError, match=message):
        load_rgb_image(data)


@pytest.mark.parametrize("name", ["truck.jpg"])
def test_truncated_files_are_refused(name):
    data = (SAMPLES / name).read_bytes()
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_rgb_image(data[: len(data) // 3])
    png = encode(Image.open(SAMPLES / name).convert("RGB").resize((64, 48)), "PNG")
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_rgb_image(png[: len(png) // 2])


def test_file_size_limit(tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(b"\xff" * 2048)
    with pytest.raises(ImageLoadError, match="limit is"):
        load_rgb_image(path, max_bytes=1024)


def test_extreme_aspect_ratio_loads():
    out = load_rgb_image(encode(Image.new("RGB", (4000, 2)), "PNG"))
    assert out.shape == (2, 4000, 3)
