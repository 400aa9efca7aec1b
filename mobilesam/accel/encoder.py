"""A faster image encoder for the server: the same embedding as `SamPredictor.set_image`, computed by
the fastest backend this machine offers that keeps it equal.

Backends (`MOBILESAM_ENCODER` or `backend=`):

- ``onnxruntime`` (the default for MobileSAM's vit_t on CPU): the encoder exported to ONNX once
  (digest-keyed cache next to the decoder exports) and run by onnxruntime's CPU provider with every
  graph optimisation (Conv+BatchNorm folding, fused GELU/LayerNorm/MatMul+Add, NCHWc convolutions).
  float32 throughout: the embedding equals PyTorch's to ~1e-5. On a 2-core CPU it takes about a
  third of PyTorch eager's time. The export runs in a background thread; until it is ready,
  encodes use PyTorch (the same numbers).
- ``torch-bf16`` (opt-in): PyTorch with ``torch.autocast("cpu", dtype=torch.bfloat16)`` and
  channels-last convolutions, for CPUs with AVX512-BF16/AMX. Not the default: the embedding moves by
  ~1e-2, and on the stand-in checkpoint of the goldens some masks then fall below IoU 0.99.
- ``torch-fp16``: PyTorch autocast float16, the default on CUDA (not measured here: no GPU).
- ``torch``: PyTorch eager float32, the official computation.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
import torch

from ..onnx_cache import cached_encoder
from ..utils.transforms import ResizeLongestSide

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime", "torch-bf16", "torch-fp16")
ENV_VAR = "MOBILESAM_ENCODER"

_exports_in_flight: "set[threading.Thread]" = set()


@atexit.register
def _finish_exports(timeout: float = 120.0) -> None:
    """Let a background export finish before the interpreter goes away (killing it inside
    onnxruntime or torch.onnx can abort the process)."""
    for thread in list(_exports_in_flight):
        thread.join(timeout)


def start_background_export(target: Callable[[], None], name: str) -> threading.Thread:
    """Run `target` (an export and its session) on a daemon thread that the interpreter waits for at
    exit (`_finish_exports`)."""
    def run() -> None:
        try:
            target()
        finally:
            _exports_in_flight.discard(threading.current_thread())

    thread = threading.Thread(target=run, name=name, daemon=True)
    _exports_in_flight.add(thread)
    thread.start()
    return thread


def cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has_bf16_cpu() -> bool:
    """Whether this CPU computes bfloat16 products natively (AVX512-BF16 or AMX)."""
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def preprocess(model, transform: ResizeLongestSide, image: np.ndarray) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """What `SamPredictor.set_image` feeds the encoder: resized (Pillow bilinear), normalised, padded
    [1,3,1024,1024] float32, and the resized size (h, w)."""
    if model.image_format != "RGB":
        image = image[..., ::-1]
    resized = transform.apply_image(np.ascontiguousarray(image))
    x = torch.as_tensor(resized, device=model.device).permute(2, 0, 1).contiguous()[None]
    return model.preprocess(x.float()), (int(resized.shape[0]), int(resized.shape[1]))


def default_backend(model_type: str, device: torch.device) -> str:
    if device.type == "cuda":
        return "torch-fp16"
    if model_type == "vit_t":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "torch"
        return "onnxruntime"
    return "torch"


class ImageEncoder:
    """`embed(image)` -> (embedding float32 [1,256,64,64] numpy, resized input size (h, w)).

    One call at a time (the caller serialises encodes). `backend` is the one asked for; `active`
    the one used now (onnxruntime becomes active once its export, started at construction in a
    background thread, is ready; until then PyTorch float32 encodes). `session_thread_setup`, when
    given, runs first on the thread that creates the onnxruntime session, whose worker threads
    inherit what it sets (the app lowers their CPU priority below its requests').
    """

    def __init__(self, model, model_type: str = "vit_t", backend: Optional[str] = None,
                 cache_dir: Optional[os.PathLike] = None, background: bool = True,
                 session_thread_setup: Optional[Callable[[], None]] = None) -> None:
        backend = backend or os.environ.get(ENV_VAR) or "auto"
        if backend not in BACKENDS:
            raise ValueError(f"unknown encoder backend {backend!r}; expected one of {BACKENDS}")
        self.model = model
        self.model_type = model_type
        self.transform = ResizeLongestSide(model.image_encoder.img_size)
        self.backend = default_backend(model_type, model.device) if backend == "auto" else backend
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.session_thread_setup = session_thread_setup
        self._session = None
        self._bf16_encoder = None
        self._ready = threading.Event()
        self.error: Optional[str] = None
        if self.backend == "onnxruntime":
            if background:
                start_background_export(self._prepare_onnx, "mobilesam-encoder-export")
            else:
                self._prepare_onnx()
        else:
            self._ready.set()

    @property
    def active(self) -> str:
        if self.backend == "onnxruntime" and self._session is None:
            return "torch"
        return self.backend

    @property
    def prepared(self) -> bool:
        """Whether the backend's preparation (the ONNX export) is over, whatever its outcome (`active`)."""
        return self._ready.is_set()

    def wait_ready(self, timeout: Optional[float] = None) -> bool:
        """Wait for the backend's preparation (the ONNX export); True when it is in use."""
        self._ready.wait(timeout)
        return self.active == self.backend

    # ------------------------------------------------------------------ onnxruntime
    def _prepare_onnx(self) -> None:
        try:
            path = cached_encoder(self.model, self.model_type, self.cache_dir)
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = max(1, torch.get_num_threads())
            # no CPU memory arena: an encode's ~0.5 GB of temporaries go back after each run instead of
            # staying reserved (the server's memory bound under load, tests/test_load.py)
            options.enable_cpu_mem_arena = False
            # worker threads that sleep rather than spin between an encode's parallel steps: when the
            # cores are shared (requests, other processes), a spinning thread holds a core the other
            # needs, and each step waits for its slowest thread (2.7 -> 2.0 s per encode beside one
            # busy process on 2 cores, the same alone; docs/benchmarks.md)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._session = self._new_session(
                lambda: onnxruntime.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"]))
            logger.info("image encoder: onnxruntime float32 (%s)", path.name)
        except Exception as exc:  # any failure: keep encoding with PyTorch
            self.error = f"{type(exc).__name__}: {exc}"
            logger.warning("image encoder: onnxruntime unavailable (%s); using PyTorch", self.error)
        finally:
            self._ready.set()

    def _new_session(self, create: Callable[[], object]) -> object:
        """`create()`, on a thread of its own that first runs `session_thread_setup` when one was given:
        onnxruntime's worker threads start there and inherit what it set (e.g. a lower CPU priority),
        while the export before it and the caller's thread keep theirs."""
        if self.session_thread_setup is None:
            return create()
        out: dict = {}

        def run() -> None:
            try:
                self.session_thread_setup()
                out["session"] = create()
            except BaseException as exc:  # re-raised on the calling thread
                out["error"] = exc

        thread = threading.Thread(target=run, name="mobilesam-encoder-session", daemon=True)
        thread.start()
        thread.join()
        if "error" in out:
            raise out["error"]
        return out["session"]

    # ------------------------------------------------------------------ encode
    @torch.no_grad()
    def embed(self, image: np.ndarray) -> Tuple[np.ndarray, Tuple[int, int]]:
        x, input_size = preprocess(self.model, self.transform, image)
        return self.embed_preprocessed(x), input_size

    @torch.no_grad()
    def embed_preprocessed(self, x: torch.Tensor) -> np.ndarray:
        """Embedding of a preprocessed [1,3,1024,1024] image."""
        active = self.active
        encoder = self.model.image_encoder
        if active == "onnxruntime":
            return self._session.run(None, {"image": x.detach().float().cpu().numpy()})[0]
        if active == "torch-bf16":
            if self._bf16_encoder is None:
                import copy

                self._bf16_encoder = copy.deepcopy(encoder).to(memory_format=torch.channels_last).eval()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = self._bf16_encoder(x.to(memory_format=torch.channels_last))
            return out.float().contiguous().cpu().numpy()
        if active == "torch-fp16":
            with torch.autocast("cuda", dtype=torch.float16):
                out = encoder(x)
            return out.float().cpu().numpy()
        return encoder(x).float().cpu().numpy()
