"""Compare mode: the original SAM beside MobileSAM, on the same image and the same prompts.

The SAM models (vit_b, vit_l, vit_h) are loaded on first use, once, however many sessions ask at
the same time; each gets its own `Engine` (embeddings cached by image content, like MobileSAM's)
and its own browser decoder export. Before loading, the memory available (MemAvailable of
/proc/meminfo, or free CUDA memory) is checked against the model's size, and running out of
memory while loading or encoding becomes an `InsufficientMemoryError` with a clear message
instead of a crash.
"""
import gc
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Tuple

import numpy as np
import torch

from .engine import EncodedImage, Engine
from .store import ImageStore

log = logging.getLogger(__name__)

SAM_TYPES = ("vit_b", "vit_l", "vit_h")
LABELS = {"vit_t": "MobileSAM", "vit_b": "SAM ViT-B", "vit_l": "SAM ViT-L", "vit_h": "SAM ViT-H"}
GIB = 2**30
DOWNLOAD_RETRY_S = 300.0  # after a failed weights download, how long requests get its error without a new try
# Peak memory of one encoder run at 1024×1024 beyond the weights (CPU, float32). The global
# attention blocks hold several heads × 4096 × 4096 float maps at once: vit_b (12 heads) was
# measured at 2.45 GiB over the loaded model; vit_l and vit_h (16 heads, wider) scaled from it.
ACTIVATION_BYTES = {"vit_b": 2.5 * GIB, "vit_l": 3.5 * GIB, "vit_h": 4.0 * GIB}
MEMINFO = Path("/proc/meminfo")
HELP = ("Put the original SAM beside MobileSAM: each prompt runs both decoders in your browser, showing both "
        "masks with their IoU, scores, encoder times and sizes. SAM loads on first use (its weights download "
        "once, then its encoder runs: seconds on a GPU, longer on a CPU).")

# progress(fraction in [0, 1], description)
Progress = Callable[[float, str], None]
HEARTBEAT_S = 2.0  # while the weights download, how often the progress says how long it has been
HUB_HTTP_LOGGER = "huggingface_hub.utils._http"  # logs "Retrying in 8s [Retry 2/5]." between its tries


class _HubRetries(logging.Handler):
    """The Hub client's latest retry, as "attempt 3 of 6", from its log ("[Retry 2/5]")."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.attempt: Optional[str] = None

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"\[Retry (\d+)/(\d+)\]", record.getMessage())
        if found:
            self.attempt = f"attempt {int(found[1]) + 1} of {int(found[2]) + 1}"


def run_reporting_progress(work: Callable[[], object], progress: Progress, desc: str,
                           start: float = 0.05, end: float = 0.3):
    """`work()` (a weights download), with `progress` told every HEARTBEAT_S seconds how long it has
    run and which attempt the Hub client is on: its retries of an unreachable Hub take ~25 s, which
    a progress bar standing still would not explain. The fraction creeps from `start` towards `end`.
    Returns work's result or raises its exception."""
    retries = _HubRetries()
    hub_log = logging.getLogger(HUB_HTTP_LOGGER)
    hub_log.addHandler(retries)
    outcome: Dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="weights-download", daemon=True)
    began = time.monotonic()
    thread.start()
    try:
        while True:
            thread.join(HEARTBEAT_S)
            if not thread.is_alive():
                break
            elapsed = time.monotonic() - began
            note = f"{desc} · {elapsed:.0f} s"
            if retries.attempt:
                note += f" · the Hugging Face Hub did not answer; retrying ({retries.attempt})"
            progress(start + (end - start) * (1 - math.exp(-elapsed / 60)), note)
    finally:
        hub_log.removeHandler(retries)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]


class CompareError(RuntimeError):
    """The comparison model cannot be used; the message says why and what to do."""


class InsufficientMemoryError(CompareError):
    """Not enough memory to load or run a SAM model."""


def label(model_type: str) -> str:
    return LABELS.get(model_type, model_type)


def available_memory(device: torch.device = torch.device("cpu"), meminfo: Path = MEMINFO) -> Optional[int]:
    """Bytes that can be allocated now: free CUDA memory for a CUDA device, else MemAvailable of
    /proc/meminfo. None when it cannot be told (then no check is made)."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def required_memory(model_type: str, checkpoint_bytes: int) -> int:
    """Bytes needed to load a checkpoint (state dict + model: twice its size) and run its encoder once."""
    return int(2 * checkpoint_bytes + ACTIVATION_BYTES.get(model_type, 2.5 * GIB))


def check_memory(model_type: str, checkpoint_bytes: int, device: torch.device = torch.device("cpu"),
                 available: Optional[int] = None) -> None:
    """Raise InsufficientMemoryError when the model would not fit in the memory available now."""
    if available is None:
        available = available_memory(device)
    if available is None:
        return
    need = required_memory(model_type, checkpoint_bytes)
    if available < need:
        where = "GPU memory" if device.type == "cuda" else "memory"
        smaller = (" Choose a smaller model (vit_b needs about "
                   f"{required_memory('vit_b', 375_042_383) / GIB:.1f} GiB)" if model_type != "vit_b" else "")
        raise InsufficientMemoryError(
            f"Not enough {where} to compare with {label(model_type)}: it needs about {need / GIB:.1f} GiB "
            f"and this server has {available / GIB:.1f} GiB available.{smaller}. MobileSAM keeps working.")


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                              or "cannot allocate memory" in text)


def _release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class LoadedSam:
    engine: Engine
    decoder: Path
    checkpoint: Path
    load_s: float


def _default_build(model_type: str, checkpoint: Path, device: torch.device):
    from mobilesam.hub import load_model_from

    return load_model_from(checkpoint, model_type, device)


class SamModels:
    """The SAM models offered for comparison, each loaded on first use.

    `checkpoints` maps a model type to a local checkpoint (from --sam-checkpoint); other types
    resolve through mobilesam.hub (environment variable, then the verified official download).
    `export_decoder(checkpoint, model_type, model) -> Path` makes the browser decoder file;
    `on_decoder(path)` is told of each new decoder so the server can serve it.
    """

    def __init__(self, store: ImageStore, device: torch.device, export_decoder: Callable[[Path, str, object], Path],
                 default_type: str = "vit_b", checkpoints: Optional[Dict[str, Path]] = None,
                 cache_bytes: int = 256 * 2**20, choices: Iterable[str] = SAM_TYPES,
                 on_decoder: Optional[Callable[[Path], None]] = None,
                 build: Callable[[str, Path, torch.device], object] = _default_build,
                 resolve: Optional[Callable[[str, Optional[str]], Path]] = None,
                 onnx_dir: Optional[Path] = None) -> None:
        if default_type not in SAM_TYPES:
            raise ValueError(f"unknown SAM model type {default_type!r}; expected one of {SAM_TYPES}")
        self.store = store
        self.onnx_dir = onnx_dir  # the engines' exported encoders (default: beside the store)
        self.device = torch.device(device)
        self.export_decoder = export_decoder
        self.default_type = default_type
        self.checkpoints = {k: Path(v) for k, v in (checkpoints or {}).items()}
        self.cache_bytes = cache_bytes
        self.choices = tuple(t for t in SAM_TYPES if t in set(choices) or t == default_type)
        self.on_decoder = on_decoder
        self._build = build
        self._resolve = resolve
        self._loaded: Dict[str, LoadedSam] = {}
        self._unavailable: Dict[str, Tuple[float, str]] = {}  # model type -> (when, message) of a failed download
        self._locks: Dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.load_count = 0  # models actually loaded (tests check that concurrent requests load once)

    # ---- lookups -----------------------------------------------------------------------
    def valid(self, model_type: object) -> bool:
        return isinstance(model_type, str) and model_type in self.choices

    def loaded(self, model_type: str) -> Optional[LoadedSam]:
        return self._loaded.get(model_type)

    def engine(self, model_type: str) -> Optional[Engine]:
        loaded = self._loaded.get(model_type)
        return None if loaded is None else loaded.engine

    # ---- loading -----------------------------------------------------------------------
    def get(self, model_type: str, progress: Optional[Progress] = None) -> LoadedSam:
        """The loaded model, loading it first if needed (once, even with concurrent callers).

        Raises CompareError (and its InsufficientMemoryError) with a message for the user.
        """
        if not self.valid(model_type):
            raise CompareError(f"Unknown comparison model {model_type!r}; choose one of {', '.join(self.choices)}.")
        loaded = self._loaded.get(model_type)
        if loaded is not None:
            return loaded
        with self._lock:
            lock = self._locks.setdefault(model_type, threading.Lock())
        with lock:
            loaded = self._loaded.get(model_type)  # loaded by a concurrent request meanwhile
            if loaded is not None:
                return loaded
            loaded = self._load(model_type, progress or (lambda f, d: None))
            self._loaded[model_type] = loaded
            return loaded

    def _checkpoint(self, model_type: str, progress: Progress) -> Path:
        from mobilesam.hub import CheckpointUnavailableError, env_vars, get_pin, resolve_checkpoint

        local = self.checkpoints.get(model_type)
        pin = get_pin(model_type)
        failed = self._unavailable.get(model_type)
        if failed is not None and time.monotonic() - failed[0] < DOWNLOAD_RETRY_S:
            # each try of an unreachable Hub takes ~25 s of retries and holds one of compare's slots
            raise CompareError(f"{failed[1]}\n(The download is tried again {DOWNLOAD_RETRY_S / 60:.0f} minutes after "
                               f"it failed.)")
        resolve = self._resolve or resolve_checkpoint
        if local is None and not any(os.environ.get(name) for name in env_vars(model_type)):
            # a download: refuse before fetching a file that could not be loaded anyway
            check_memory(model_type, pin.size, self.device)
            desc = f"Downloading the {label(model_type)} weights ({pin.size / 2**20:.0f} MB, once)"
            progress(0.05, desc)
            work = lambda: resolve(model_type, None)  # noqa: E731
            resolving = lambda: run_reporting_progress(work, progress, desc)  # noqa: E731
        else:
            progress(0.05, f"Reading the {label(model_type)} weights")
            resolving = lambda: resolve(model_type, None if local is None else str(local))  # noqa: E731
        try:
            return Path(resolving())
        except CheckpointUnavailableError as exc:
            variables = " or ".join(f"{name}=PATH" for name in env_vars(model_type))
            message = (
                f"The {label(model_type)} weights are not available on this server: could not download "
                f"{pin.filename!r} from the Hugging Face Hub repo {pin.repo_id!r} "
                f"({type(exc.cause).__name__}: {exc.cause}).\n"
                f"To use a local copy ({pin.size} bytes, sha256 {pin.sha256}), start the app with "
                f"--sam-checkpoint PATH --sam-model-type {model_type}, or set {variables}.")
            self._unavailable[model_type] = (time.monotonic(), message)
            raise CompareError(message) from exc
        except (FileNotFoundError, ValueError) as exc:
            raise CompareError(f"The {label(model_type)} weights cannot be used: {exc}") from exc

    def _load(self, model_type: str, progress: Progress) -> LoadedSam:
        start = time.perf_counter()
        checkpoint = self._checkpoint(model_type, progress)
        check_memory(model_type, checkpoint.stat().st_size, self.device)
        progress(0.35, f"Loading {label(model_type)} into memory")
        log.info("loading %s for comparison from %s on %s", model_type, checkpoint, self.device)
        model = None
        try:
            model = self._build(model_type, checkpoint, self.device)
            progress(0.55, f"Preparing the {label(model_type)} decoder for the browser")
            decoder = Path(self.export_decoder(checkpoint, model_type, model))
            engine = Engine(model, model_type, self.store, cache_bytes=self.cache_bytes, onnx_dir=self.onnx_dir)
        except Exception as exc:
            model = None
            _release_memory()
            if is_out_of_memory(exc):
                raise InsufficientMemoryError(
                    f"The server ran out of memory loading {label(model_type)} ({exc}). "
                    "Try a smaller model; MobileSAM keeps working.") from exc
            if isinstance(exc, CompareError):
                raise
            raise CompareError(f"{label(model_type)} could not be loaded: {type(exc).__name__}: {exc}") from exc
        if self.on_decoder is not None:
            self.on_decoder(decoder)
        self.load_count += 1
        seconds = time.perf_counter() - start
        log.info("%s ready for comparison in %.1f s (decoder %s)", model_type, seconds, decoder.name)
        return LoadedSam(engine, decoder, checkpoint, seconds)

    # ---- encoding ----------------------------------------------------------------------
    def encode(self, model_type: str, image: np.ndarray, image_id: Optional[str] = None,
               progress: Optional[Progress] = None) -> Tuple[LoadedSam, EncodedImage]:
        """Load the model if needed and encode `image` with it (cached by content)."""
        loaded = self.get(model_type, progress)
        if progress is not None and loaded.engine.cache.get(image_id or "") is None:
            progress(0.7, f"Encoding the image with {label(model_type)}")
        try:
            encoded = loaded.engine.encode(image, image_id=image_id)
        except Exception as exc:
            if is_out_of_memory(exc):
                _release_memory()
                raise InsufficientMemoryError(
                    f"The server ran out of memory encoding this image with {label(model_type)}. "
                    "Try again later or choose a smaller model; MobileSAM keeps working.") from exc
            raise
        return loaded, encoded


def startup_choices(default_type: str, device: torch.device = torch.device("cpu")) -> Tuple[str, ...]:
    """The SAM types to offer: the default one, and the others whose official weights fit in memory now."""
    from mobilesam.hub import get_pin

    available = available_memory(device)
    out = []
    for t in SAM_TYPES:
        if t == default_type or available is None or available >= required_memory(t, get_pin(t).size):
            out.append(t)
        else:
            log.info("not offering %s for comparison: about %.1f GiB needed, %.1f GiB available", t,
                     required_memory(t, get_pin(t).size) / GIB, available / GIB)
    return tuple(out)


# ---- numbers ---------------------------------------------------------------------------

def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks; two empty masks agree fully (1.0)."""
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum()) / union


def describe_prompts(prompt: dict) -> str:
    """"2 points (1 foreground, 1 background) + box" from SamPredictor.predict keyword arguments."""
    parts = []
    labels = prompt.get("point_labels")
    if labels is not None and len(labels):
        fg = int(np.sum(np.asarray(labels) == 1))
        n = len(labels)
        parts.append(f"{n} point{'s' if n != 1 else ''} ({fg} foreground, {n - fg} background)")
    if prompt.get("box") is not None:
        parts.append("box")
    return " + ".join(parts) or "no prompts"


def summary_line(width: int, height: int, prompts: str, a: dict, b: dict, iou: float) -> str:
    """The one-line summary the app shows under a comparison (the browser builds the same)."""
    total = max(1, width * height)

    def model(m: dict) -> str:
        return f"{m['label']} {m['area']:,} px ({100 * m['area'] / total:.1f}%), score {m['score']:.3f}"

    return (f"{width}×{height} image · {prompts} · {model(a)} · {model(b)} · IoU {iou:.3f} · "
            f"encoder {a['label']} {a['encode_ms']:,.0f} ms, {b['label']} {b['encode_ms']:,.0f} ms (this server)")


def compare_summary(width: int, height: int, prompt: dict, a: dict, b: dict, iou: float) -> dict:
    """The `compare` API's JSON: image size, prompts, both models' numbers and the masks' IoU.

    `prompt` holds SamPredictor.predict keyword arguments; `a` (MobileSAM) and `b` (SAM) hold
    model, label, score, scores, index, area, encode_ms and encoder_params.
    """
    points = []
    if prompt.get("point_coords") is not None:
        points = [[float(x), float(y), int(lab)] for (x, y), lab in zip(prompt["point_coords"], prompt["point_labels"])]
    box = prompt.get("box")
    prompts = {"points": points, "box": None if box is None else [float(v) for v in np.asarray(box).ravel()],
               "multimask": bool(prompt.get("multimask_output", True))}
    return {
        "image": {"width": int(width), "height": int(height)},
        "prompts": prompts,
        "iou": round(float(iou), 6),
        "mobilesam": a,
        "sam": b,
        "summary": summary_line(width, height, describe_prompts(prompt), a, b, iou),
    }
