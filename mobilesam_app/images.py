"""Turning whatever a user uploads into an RGB uint8 H×W×3 array, or a clear error.

Handles EXIF orientation, grayscale, RGBA/LA (composited on white), palette, 16-bit and
32-bit integer and float images, CMYK, and animated images (first frame). Refuses corrupt
files, non-images (SVG, HTML, text) and images over a pixel limit before decoding them.
"""
import io
import os
import re
import warnings
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 50_000_000  # ~ 8660×5773; a 50 MP photo still encodes, decompression bombs don't
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
MIN_SIDE = 2  # the model needs at least 2 pixels per side to resize meaningfully
# The encoder resizes the long side to 1024 pixels; beyond 2048:1 the short side would round to 0.
MAX_ASPECT_RATIO = 2048


class ImageLoadError(ValueError):
    """An upload that cannot be used as an image; the message is safe to show to the user."""


def load_rgb_image(source: Union[str, os.PathLike, bytes], max_pixels: int = DEFAULT_MAX_PIXELS,
                   max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Read an image file (path or bytes) as uint8 H×W×3 RGB, upright per its EXIF orientation."""
    data = _read_bytes(source, max_bytes)
    if not data:
        raise ImageLoadError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_declared_size(image, max_pixels)
            image.seek(0)  # first frame of animated GIF/PNG/WebP
            image.load()
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own check (at 89 MP) runs inside Image.open, before ours could see the size
        raise ImageLoadError(f"the image {_bomb_size(exc)}; the limit is {max_pixels / 1e6:.0f} MP") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"not an image file that can be read ({_describe(data)})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(f"the image file is truncated or corrupt ({exc})") from exc
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not lose the picture
        pass
    return to_rgb_array(image)


# Files a browser shows as load_rgb_image reads them: 8-bit RGB or gray, one frame, no alpha, no
# colour profile but sRGB (browsers convert others, load_rgb_image does not), in a format every
# browser decodes (EXIF orientation is applied by both).
BROWSER_FORMATS = {"JPEG", "PNG", "WEBP"}
BROWSER_MODES = {"RGB", "L"}
EXIF_ORIENTATION = 0x0112


def browser_shows_as_loaded(path: Union[str, os.PathLike]) -> bool:
    """Whether a browser would show the file at `path` as the same picture (size, orientation) as
    `load_rgb_image` reads it, so the page may display the uploaded file itself (which it has just
    sent) instead of the server's PNG copy. Reads only the header; False for anything unusual (CMYK,
    16-bit, alpha, palette, animation, a colour profile other than sRGB, other formats), which the
    page then gets as PNG. EXIF orientation: browsers apply it to JPEG (CSS `image-orientation:
    from-image`, the default) as `load_rgb_image` does, but not to WebP or PNG (Chromium shows those
    unrotated), so those must have none."""
    try:
        with Image.open(path) as image:
            return (image.format in BROWSER_FORMATS and image.mode in BROWSER_MODES
                    and not getattr(image, "is_animated", False) and "transparency" not in image.info
                    and _is_srgb_or_none(image.info.get("icc_profile"))
                    and (image.format == "JPEG" or _exif_orientation(image) == 1))
    except Exception:
        return False


def _exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1: upright, also when there is none)."""
    return image.getexif().get(EXIF_ORIENTATION, 1)


def _is_srgb_or_none(icc: Optional[bytes]) -> bool:
    if not icc:
        return True
    from PIL import ImageCms

    description = ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile.profile_description or ""
    return "srgb" in description.lower()


def _read_bytes(source, max_bytes: int) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        try:
            size = os.path.getsize(source)
        except OSError as exc:
            raise ImageLoadError("the uploaded file could not be read") from exc
        if size > max_bytes:
            raise ImageLoadError(f"the file is {size / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB")
        with open(source, "rb") as f:
            data = f.read()
    if len(data) > max_bytes:
        raise ImageLoadError(f"the file is {len(data) / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB")
    return data


def _bomb_size(exc: Exception) -> str:
    """"is N MP" from Pillow's decompression-bomb message ("Image size (N pixels) exceeds ..."), or
    "is too large" if it has another wording."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return f"is {int(found.group(1)) / 1e6:.0f} MP" if found else "is too large"


def _check_declared_size(image: Image.Image, max_pixels: int) -> None:
    check_photo_size(*image.size, max_pixels)


def check_photo_size(w: int, h: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """ImageLoadError unless a w×h photo is within the limits (pixels, smallest side, aspect ratio)."""
    if w * h > max_pixels:
        raise ImageLoadError(f"the image is {w}×{h} = {w * h / 1e6:.0f} MP; the limit is {max_pixels / 1e6:.0f} MP")
    if w < MIN_SIDE or h < MIN_SIDE:
        raise ImageLoadError(f"the image is {w}×{h} pixels; each side must be at least {MIN_SIDE}")
    if max(w, h) > MAX_ASPECT_RATIO * min(w, h):
        raise ImageLoadError(f"the image is {w}×{h} pixels, too long and thin; the long side may be at most "
                             f"{MAX_ASPECT_RATIO} times the short side")


def _describe(data: bytes) -> str:
    head = data[:256].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
        return "SVG vector images are not supported; export it as PNG or JPEG"
    if head.startswith(b"<!doctype html") or head.startswith(b"<html"):
        return "this is an HTML page, not an image"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in data[:512]):
        return "this looks like a text file"
    return "unknown or unsupported format; use JPEG, PNG, WebP, GIF, BMP or TIFF"


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> uint8 H×W×3 RGB. Transparency is composited on white."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_depth_to_rgb(np.asarray(image))
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("1", "L", "CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def _high_depth_to_rgb(values: np.ndarray) -> np.ndarray:
    """16/32-bit integer or float grayscale -> uint8 RGB, keeping full range (0..65535 -> 0..255)."""
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        raise ImageLoadError("the image has no finite pixel values")
    values = np.where(finite, values, 0.0)
    top = values.max()
    if top <= 1.0 and values.min() >= 0.0:  # float image in [0, 1]
        scaled = values * 255.0
    elif top <= 255:
        scaled = values
    else:
        scaled = values * (255.0 / 65535.0) if top <= 65535 else values * (255.0 / top)
    gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
