"""The exported-file cache: ONNX exports made once per weights and kept on disk.

Every cached file is named after the digest of what it was made from (a checkpoint's SHA-256, or
the weights' own digest) and `mobilesam.export.EXPORT_FORMAT_VERSION`, so a stale export is never
picked up. Beside it, ``<name>.sha256`` holds the export's own digest, checked on every use: a
truncated or corrupted file is rebuilt, never used. Writes are atomic (a temporary file in the same
folder, then `os.replace`, the file first and its sidecar last). A cache folder that cannot be
written, or a write that fails (a full disk), degrades to a fresh temporary folder with one logged
warning: the export then happens again on the next start.

    cached_decoder(checkpoint, model_type, cache_dir, variant)  -> the decoder export of a checkpoint
    cached_encoder(model, model_type, cache_dir)                -> the image encoder export of a model
    cached_fast_decoder(model, model_type, cache_dir)           -> the "fast" decoder export of a model
"""
from __future__ import annotations

import copy
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional, Union

import torch.nn as nn

from .utils.digest import sha256_of_file, weights_digest

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def default_cache_dir() -> Path:
    """Where the exports go when no folder is named: `$MOBILESAM_CACHE/onnx`, else
    `~/.cache/mobilesam/onnx`."""
    root = os.environ.get("MOBILESAM_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "mobilesam") / "onnx"


def sidecar_of(path: Path) -> Path:
    """The file holding `path`'s SHA-256: `<name>.sha256` beside it."""
    return path.with_name(path.name + ".sha256")


def is_valid_cached(path: Path) -> bool:
    """Whether `path` and its sidecar exist and the file's SHA-256 is the recorded one."""
    sidecar = sidecar_of(path)
    if not path.is_file() or not sidecar.is_file():
        return False
    try:
        recorded = sidecar.read_text().split()[0].strip().lower()
        return recorded == sha256_of_file(path)
    except (OSError, IndexError):
        return False


def write_with_sidecar(build: Callable[[Path], object], path: Path) -> None:
    """`build(tmp_path)` writes the export; check it is one self-contained file, then move it into
    place atomically, followed by its digest sidecar."""
    from .export import check_self_contained

    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        tmp_file = Path(tmp) / path.name
        build(tmp_file)
        check_self_contained(tmp_file)
        digest = sha256_of_file(tmp_file)
        tmp_sidecar = Path(tmp) / (path.name + ".sha256")
        tmp_sidecar.write_text(f"{digest}  {path.name}\n")
        os.replace(tmp_file, path)
        os.replace(tmp_sidecar, sidecar_of(path))


def is_writable_dir(directory: Path) -> bool:
    """Whether `directory` exists (it is created if need be) and a file can be made in it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test."):
            pass
        return True
    except OSError:
        return False


def _temporary_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="mobilesam-onnx-"))


def _cached_in(directory: Path, name: str, build: Callable[[Path], object], what: str) -> Path:
    path = directory / name
    if is_valid_cached(path):
        logger.info("using the cached %s %s", what, path)
        return path
    if path.exists() or sidecar_of(path).exists():
        logger.warning("cached %s %s is missing its digest or does not match it (truncated or corrupted); "
                       "exporting it again", what, path)
    write_with_sidecar(build, path)
    logger.info("exported the %s to %s", what, path)
    return path


def cached_file(directory: Optional[PathLike], name: str, build: Callable[[Path], object],
                what: str = "ONNX export") -> Path:
    """The file `name` in the cache folder `directory` (default: `default_cache_dir()`), made by
    `build(path)` only when no valid copy is there. `what` names it in log lines."""
    directory = Path(directory).expanduser() if directory is not None else default_cache_dir()
    if not is_writable_dir(directory):
        fallback = _temporary_folder()
        logger.warning("ONNX cache folder %s is not writable; exporting to the temporary folder %s instead "
                       "(the export will be redone on the next start)", directory, fallback)
        directory = fallback
    try:
        return _cached_in(directory, name, build, what)
    except OSError as exc:  # e.g. the disk filled up while writing: degrade to no caching
        fallback = _temporary_folder()
        logger.warning("cannot write the %s to the cache folder %s (%s); exporting to the temporary folder "
                       "%s instead (the export will be redone on the next start)", what, directory, exc, fallback)
        return _cached_in(fallback, name, build, what)


# --------------------------------------------------------------------------- the three exports


def cached_decoder_name(checkpoint_sha256: str, model_type: str, variant: str = "browser",
                        quantized: bool = False, weights: str = "float32") -> str:
    """File name of a cached decoder export: checkpoint digest prefix, model type, variant, weight
    storage (fast variant: none for float32), format version."""
    from .export import EXPORT_FORMAT_VERSION

    quant = "-quant" if quantized else ""
    stored = "" if weights == "float32" else f"-{weights}"
    return (f"mobilesam-{model_type}-{checkpoint_sha256[:16]}-{variant}-decoder{stored}{quant}"
            f"-v{EXPORT_FORMAT_VERSION}.onnx")


def cached_decoder(checkpoint_path: PathLike, model_type: str, cache_dir: Optional[PathLike] = None,
                   variant: str = "browser", quantized: bool = False, *, sam: Optional[nn.Module] = None,
                   checkpoint_sha256: Optional[str] = None, weights: str = "float32") -> Path:
    """Path of the decoder export (`variant`: official, browser or fast) of this checkpoint, exported
    only when no valid cached copy exists. The official variant is exported with all four masks
    (no single-mask pick). `weights` (fast variant only): float32, float16 or int8 storage of the
    weights (`mobilesam.export.store_weights`). `sam` (the loaded model of this checkpoint) and `checkpoint_sha256` (its
    digest, if known) only save work; without `sam` the model is built from the checkpoint when an
    export is needed."""
    from .export import VARIANTS, WEIGHT_STORAGE, export_decoder, quantize_decoder

    if variant not in VARIANTS:
        raise ValueError(f"unknown decoder variant {variant!r}; expected one of {VARIANTS}")
    if weights not in WEIGHT_STORAGE:
        raise ValueError(f"unknown weight storage {weights!r}; expected one of {WEIGHT_STORAGE}")
    if weights != "float32" and (variant != "fast" or quantized):
        raise ValueError(f"weights={weights!r} applies to the fast variant only (not quantized)")
    checkpoint_path = Path(checkpoint_path)
    digest = (checkpoint_sha256 or sha256_of_file(checkpoint_path)).lower()
    name = cached_decoder_name(digest, model_type, variant, quantized, weights)
    if quantized:
        fp32 = cached_decoder(checkpoint_path, model_type, cache_dir, variant, False, sam=sam, checkpoint_sha256=digest)
        return cached_file(cache_dir, name, lambda tmp: quantize_decoder(fp32, tmp), "quantized ONNX decoder")

    def build(tmp: Path) -> None:
        from .hub import load_model_from

        model = sam if sam is not None else load_model_from(checkpoint_path, model_type, "cpu")
        export_decoder(model, tmp, variant=variant, weights=weights)

    return cached_file(cache_dir, name, build, "ONNX decoder")


def cached_encoder(model: nn.Module, model_type: str, cache_dir: Optional[PathLike] = None) -> Path:
    """The ONNX export of `model.image_encoder` (verified against PyTorch), made once per weights."""
    from .export import EXPORT_FORMAT_VERSION, export_encoder

    name = f"mobilesam-{model_type}-{weights_digest(model.image_encoder)[:16]}-encoder-v{EXPORT_FORMAT_VERSION}.onnx"

    def build(tmp: Path) -> None:
        class _EncoderOnly:  # export a CPU float32 copy: never touch the model that serves requests
            image_encoder = copy.deepcopy(model.image_encoder).cpu().float().eval()

        export_encoder(_EncoderOnly, tmp, verify=True)

    return cached_file(cache_dir, name, build, "ONNX image encoder")


def cached_fast_decoder(model: nn.Module, model_type: str, cache_dir: Optional[PathLike] = None) -> Path:
    """The "fast" decoder export (`mobilesam.export.export_fast_decoder`) of `model`, made once per
    prompt-encoder + mask-decoder weights."""
    from .export import EXPORT_FORMAT_VERSION, export_fast_decoder

    parts = nn.ModuleDict({"p": model.prompt_encoder, "m": model.mask_decoder})
    name = f"mobilesam-{model_type}-{weights_digest(parts)[:16]}-fast-decoder-weights-v{EXPORT_FORMAT_VERSION}.onnx"

    def build(tmp: Path) -> None:
        class _DecoderOnly:  # a CPU float32 copy of what the decoder export reads
            image_encoder = type("Stub", (), {"img_size": int(model.image_encoder.img_size)})()
            prompt_encoder = copy.deepcopy(model.prompt_encoder).cpu().float().eval()
            mask_decoder = copy.deepcopy(model.mask_decoder).cpu().float().eval()
            mask_threshold = float(getattr(model, "mask_threshold", 0.0))

        export_fast_decoder(_DecoderOnly, tmp)

    return cached_file(cache_dir, name, build, "fast ONNX decoder")
