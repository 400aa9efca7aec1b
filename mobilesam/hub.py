"""Official checkpoints: pins, verified download from the Hugging Face Hub, and model loading.

Where a checkpoint comes from, first match wins (:func:`resolve_checkpoint`):

1. an explicit path: ``checkpoint=PATH`` in Python, ``--checkpoint PATH`` on a command line;
2. the environment variable ``MOBILESAM_CHECKPOINT_<TYPE>`` (``MOBILESAM_CHECKPOINT_VIT_T``,
   ``..._VIT_B``, ``..._VIT_L``, ``..._VIT_H``); for ``vit_t`` (and its alias ``default``)
   ``MOBILESAM_CHECKPOINT`` is accepted too, after the per-type variable;
3. a download of the pinned official file through the Hugging Face cache.

A local file chosen by the user (1 or 2) is loaded as given: it may be a fine-tune. Only a
download is held to the pin; it is checked by size, then SHA-256, and never returned unverified.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import errors as hf_errors
from huggingface_hub import hf_hub_download

from .utils.digest import sha256_of_file

__all__ = [
    "ALIASES",
    "PINS",
    "CheckpointPin",
    "CheckpointUnavailableError",
    "ChecksumError",
    "download_checkpoint",
    "env_vars",
    "load_model_from",
    "get_pin",
    "load_model",
    "pick_device",
    "resolve_checkpoint",
    "verify_checkpoint",
]

ENV_PREFIX = "MOBILESAM_CHECKPOINT"


@dataclass(frozen=True)
class CheckpointPin:
    """One official checkpoint file on the Hugging Face Hub, with its exact size and digest."""

    model_type: str  # "vit_t", "vit_b", "vit_l" or "vit_h"
    repo_id: str
    filename: str  # path inside the repo
    size: int  # bytes
    sha256: str  # 64 lowercase hex digits
    repo_type: str = "model"

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}/resolve/main/{self.filename}"

    @property
    def basename(self) -> str:
        return self.filename.rsplit("/", 1)[-1]


_SAM_REPO = "ybelkada/segment-anything"

PINS: dict[str, CheckpointPin] = {
    "vit_t": CheckpointPin(
        "vit_t", "dhkim2810/MobileSAM", "mobile_sam.pt", 40728226,
        "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
    ),
    "vit_b": CheckpointPin(
        "vit_b", _SAM_REPO, "checkpoints/sam_vit_b_01ec64.pth", 375042383,
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    ),
    "vit_l": CheckpointPin(
        "vit_l", _SAM_REPO, "checkpoints/sam_vit_l_0b3195.pth", 1249524607,
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    "vit_h": CheckpointPin(
        "vit_h", _SAM_REPO, "checkpoints/sam_vit_h_4b8939.pth", 2564550879,
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
}

ALIASES: dict[str, str] = {"default": "vit_t"}


class ChecksumError(ValueError):
    """A checkpoint file differs from its pin in size or SHA-256 digest."""

    def __init__(self, path: Path, pin: CheckpointPin, what: str, expected, actual, note: str = ""):
        self.path, self.pin, self.what = Path(path), pin, what
        self.expected, self.actual = expected, actual
        msg = (
            f"{self.path}: {what} mismatch for the official {pin.model_type} checkpoint "
            f"{pin.filename} ({pin.repo_id}): expected {expected}, got {actual}"
        )
        super().__init__(msg + (f"; {note}" if note else ""))


class CheckpointUnavailableError(RuntimeError):
    """The official checkpoint could not be downloaded (offline, blocked, or the Hub failed)."""

    def __init__(self, pin: CheckpointPin, cause: BaseException):
        self.pin, self.cause = pin, cause
        first, *alias = env_vars(pin.model_type)
        names = f"{first}=PATH" + "".join(f" (or {name}=PATH)" for name in alias)
        super().__init__(
            f"Could not download the {pin.model_type} checkpoint {pin.filename!r} from the Hugging "
            f"Face Hub repo {pin.repo_id!r} ({pin.url}): {type(cause).__name__}: {cause}\n"
            f"To use a local copy ({pin.size} bytes, sha256 {pin.sha256}), pass checkpoint=PATH "
            f"in Python or --checkpoint PATH on the command line, or set the environment "
            f"variable {names}."
        )


# What hf_hub_download raises when the file cannot be fetched: LocalEntryNotFoundError
# (offline, not cached), OfflineModeIsEnabled, HfHubHTTPError and ConnectionError are
# OSErrors; the HTTP client's transport errors may escape as its own HTTPError.
_UNAVAILABLE: tuple[type[BaseException], ...] = tuple(
    e for e in (OSError, hf_errors.EntryNotFoundError, getattr(hf_errors, "HTTPError", None)) if e
)


def get_pin(model_type: str) -> CheckpointPin:
    """The pin of `model_type` ("default" means "vit_t"); ValueError for an unknown type."""
    key = ALIASES.get(model_type, model_type)
    if key not in PINS:
        known = ", ".join(sorted([*PINS, *ALIASES]))
        raise ValueError(f"unknown model type {model_type!r}; expected one of: {known}")
    return PINS[key]


def env_vars(model_type: str) -> list[str]:
    """Environment variables that may name a local checkpoint of `model_type`, by precedence."""
    key = get_pin(model_type).model_type
    names = [f"{ENV_PREFIX}_{key.upper()}"]
    if key == ALIASES["default"]:
        names.append(ENV_PREFIX)
    return names


def verify_checkpoint(path: str | os.PathLike, pin: CheckpointPin) -> Path:
    """Return `path` if it matches `pin` in size, then SHA-256; raise ChecksumError otherwise."""
    path = Path(path)
    size = path.stat().st_size
    if size != pin.size:
        raise ChecksumError(path, pin, "size", f"{pin.size} bytes", f"{size} bytes")
    digest = sha256_of_file(path)
    if digest != pin.sha256:
        raise ChecksumError(path, pin, "sha256", pin.sha256, digest)
    return path


def _fetch(pin: CheckpointPin, cache_dir, force: bool) -> Path:
    try:
        path = hf_hub_download(
            repo_id=pin.repo_id, filename=pin.filename, repo_type=pin.repo_type,
            cache_dir=cache_dir, force_download=force,
        )
    except _UNAVAILABLE as exc:
        raise CheckpointUnavailableError(pin, exc) from exc
    return Path(path)


def download_checkpoint(model_type: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Download (or take from the Hugging Face cache) the official checkpoint, verified.

    A cached file that fails verification is downloaded again once with force_download=True;
    if that copy fails too, ChecksumError is raised. CheckpointUnavailableError when offline.
    """
    pin = get_pin(model_type)
    try:
        return verify_checkpoint(_fetch(pin, cache_dir, force=False), pin)
    except ChecksumError as err:
        warnings.warn(f"{err}; downloading it again", RuntimeWarning, stacklevel=2)
    try:
        return verify_checkpoint(_fetch(pin, cache_dir, force=True), pin)
    except ChecksumError as err:
        raise ChecksumError(
            err.path, pin, err.what, err.expected, err.actual,
            note=f"still wrong after a forced re-download from {pin.url}",
        ) from err


def _local_checkpoint(path: str | os.PathLike, pin: CheckpointPin, source: str) -> Path:
    """A user-chosen file, loaded as given; warn if it looks like a corrupted official file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{source} names {str(path)!r}, which is not a file")
    if path.stat().st_size == pin.size and (digest := sha256_of_file(path)) != pin.sha256:
        warnings.warn(
            f"{path} has the size of the official {pin.filename} ({pin.size} bytes) but sha256 "
            f"{digest}, not {pin.sha256}: it may be corrupted; loading it as given",
            RuntimeWarning, stacklevel=3,
        )
    return path


def resolve_checkpoint(model_type: str, checkpoint: str | os.PathLike | None = None) -> Path:
    """Path of the checkpoint to load: `checkpoint` > environment variable > verified download."""
    pin = get_pin(model_type)
    if checkpoint is not None:
        return _local_checkpoint(checkpoint, pin, "checkpoint")
    for name in env_vars(model_type):
        if value := os.environ.get(name):
            return _local_checkpoint(value, pin, f"environment variable {name}")
    return download_checkpoint(model_type)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """None or "auto": cuda if available, else cpu. Otherwise a validated, available device."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"invalid device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r} requested but only {count} CUDA device(s) exist")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {device!r} requested but MPS is not available")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return dev


def load_model_from(checkpoint: str | os.PathLike, model_type: str, device: str | torch.device | None = None):
    """Build a `Sam` of `model_type` from the checkpoint file `checkpoint` (loaded with
    `torch.load(weights_only=True)`, keys checked strictly), on `device`, in eval mode."""
    from mobilesam.build_sam import sam_model_registry  # lazy: heavy, and optional for pins

    return sam_model_registry[model_type](checkpoint=str(checkpoint)).to(pick_device(device)).eval()


def load_model(model_type: str = "vit_t", device: str | torch.device | None = None,
               checkpoint: str | os.PathLike | None = None):
    """Build a `Sam` of `model_type` from the resolved checkpoint (an explicit path, the environment
    variable, else the verified official download), on `device`, in eval mode."""
    model_type = get_pin(model_type).model_type  # unknown types fail first; the hub's "default" is vit_t
    dev = pick_device(device)
    return load_model_from(resolve_checkpoint(model_type, checkpoint), model_type, dev)
