"""Small copies of the example photos for the page's example list (the full photo is what gets
segmented): 5 examples are ~2.4 MB full size, and the page fetched them while the decoder was
downloading."""
import logging
from pathlib import Path
from typing import List, Sequence

from PIL import Image, ImageOps

log = logging.getLogger(__name__)
THUMB_SIDE = 192


def example_thumbnails(paths: Sequence[str], folder: Path, side: int = THUMB_SIDE) -> List[str]:
    """A JPEG thumbnail (long side `side`, upright) of each photo, made in `folder` once (again when
    the photo is newer); the photo itself where one cannot be made."""
    out = []
    for path in map(Path, paths):
        thumb = Path(folder) / f"{path.stem}-{side}.jpg"
        try:
            if not thumb.is_file() or thumb.stat().st_mtime < path.stat().st_mtime:
                thumb.parent.mkdir(parents=True, exist_ok=True)
                with Image.open(path) as im:
                    small = ImageOps.exif_transpose(im).convert("RGB")
                    small.thumbnail((side, side), Image.BILINEAR)
                    tmp = thumb.with_suffix(".tmp")
                    small.save(tmp, format="JPEG", quality=80)
                    tmp.replace(thumb)
            out.append(str(thumb))
        except OSError as exc:
            log.warning("no thumbnail of %s (%s): the page shows the photo itself", path.name, exc)
            out.append(str(path))
    return out
