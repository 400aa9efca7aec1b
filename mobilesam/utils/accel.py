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
import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from .transforms import ResizeLongestSide

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


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 over the module's parameters and buffers (names, shapes, bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.float().numpy().tobytes() if t.is_floating_point() else t.numpy().tobytes())
    return digest.hexdigest()


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
    background thread, is ready; until then PyTorch float32 encodes).
    """

    def __init__(self, model, model_type: str = "vit_t", backend: Optional[str] = None,
                 cache_dir: Optional[os.PathLike] = None, background: bool = True) -> None:
        backend = backend or os.environ.get(ENV_VAR) or "auto"
        if backend not in BACKENDS:
            raise ValueError(f"unknown encoder backend {backend!r}; expected one of {BACKENDS}")
        self.model = model
        self.model_type = model_type
        self.transform = ResizeLongestSide(model.image_encoder.img_size)
        self.backend = default_backend(model_type, model.device) if backend == "auto" else backend
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._session = None
        self._bf16_encoder = None
        self._ready = threading.Event()
        self.error: Optional[str] = None
        if self.backend == "onnxruntime":
            if background:
                thread = threading.Thread(target=self._prepare_onnx, name="mobilesam-encoder-export", daemon=True)
                _exports_in_flight.add(thread)
                thread.start()
            else:
                self._prepare_onnx()
        else:
            self._ready.set()

    @property
    def active(self) -> str:
        if self.backend == "onnxruntime" and self._session is None:
            return "torch"
        return self.backend

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
            self._session = onnxruntime.InferenceSession(os.fspath(path), options,
                                                         providers=["CPUExecutionProvider"])
            logger.info("image encoder: onnxruntime float32 (%s)", path.name)
        except Exception as exc:  # any failure: keep encoding with PyTorch
            self.error = f"{type(exc).__name__}: {exc}"
            logger.warning("image encoder: onnxruntime unavailable (%s); using PyTorch", self.error)
        finally:
            self._ready.set()
            _exports_in_flight.discard(threading.current_thread())

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


def encoder_cache_dir(cache_dir: Optional[os.PathLike] = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    root = os.environ.get("MOBILESAM_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "mobilesam") / "onnx"


def cached_encoder(model, model_type: str, cache_dir: Optional[os.PathLike] = None) -> Path:
    """The ONNX export of `model.image_encoder`, made once per weights (digest-keyed file name, a
    `.sha256` sidecar checked on every use, atomic writes; see mobilesam.export.cached_decoder)."""
    import tempfile

    from ..export import EXPORT_FORMAT_VERSION, _is_valid_cached, _writable_dir, _write_with_sidecar, export_encoder

    directory = encoder_cache_dir(cache_dir)
    if not _writable_dir(directory):
        directory = Path(tempfile.mkdtemp(prefix="mobilesam-onnx-"))
    digest = weights_digest(model.image_encoder)
    path = directory / f"mobilesam-{model_type}-{digest[:16]}-encoder-v{EXPORT_FORMAT_VERSION}.onnx"
    if _is_valid_cached(path):
        return path
    start = time.perf_counter()
    import copy

    class _EncoderOnly:  # export a CPU float32 copy: never touch the model that serves requests
        image_encoder = copy.deepcopy(model.image_encoder).cpu().float().eval()

    _write_with_sidecar(lambda tmp: export_encoder(_EncoderOnly, tmp, verify=True), path)
    logger.info("exported the image encoder to %s in %.1f s", path, time.perf_counter() - start)
    return path


# --------------------------------------------------------------------------- the fast decoder, server side

def cached_fast_decoder(model, model_type: str, cache_dir: Optional[os.PathLike] = None) -> Path:
    """The "fast" decoder export (mobilesam.export.export_fast_decoder) of `model`, made once per
    prompt-encoder + mask-decoder weights (digest-keyed name, `.sha256` sidecar, atomic writes)."""
    import copy
    import tempfile

    from ..export import (EXPORT_FORMAT_VERSION, _is_valid_cached, _writable_dir, _write_with_sidecar,
                          export_fast_decoder)

    directory = encoder_cache_dir(cache_dir)
    if not _writable_dir(directory):
        directory = Path(tempfile.mkdtemp(prefix="mobilesam-onnx-"))
    parts = torch.nn.ModuleDict({"p": model.prompt_encoder, "m": model.mask_decoder})
    digest = weights_digest(parts)
    path = directory / f"mobilesam-{model_type}-{digest[:16]}-fast-decoder-weights-v{EXPORT_FORMAT_VERSION}.onnx"
    if _is_valid_cached(path):
        return path

    class _DecoderOnly:  # a CPU float32 copy of what the decoder export reads
        image_encoder = type("Stub", (), {"img_size": int(model.image_encoder.img_size)})()
        prompt_encoder = copy.deepcopy(model.prompt_encoder).cpu().float().eval()
        mask_decoder = copy.deepcopy(model.mask_decoder).cpu().float().eval()
        mask_threshold = float(getattr(model, "mask_threshold", 0.0))

    _write_with_sidecar(lambda tmp: export_fast_decoder(_DecoderOnly, tmp), path)
    return path


class FastDecoderSession:
    """The fast decoder in onnxruntime (CPU, float32) for the server's own decoding (segment
    everything): `set_embedding` once per image (computes the image cache), then `decode` per prompt.
    Outputs equal the PyTorch decoder's to float rounding (~1e-5 in the logits)."""

    def __init__(self, path: os.PathLike, threads: Optional[int] = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or max(1, torch.get_num_threads())
        self.session = onnxruntime.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        self._feeds = None
        self._no_mask = (np.zeros((1, 1, 256, 256), np.float32), np.zeros(1, np.float32))

    def set_embedding(self, embedding: np.ndarray) -> None:
        from ..export import run_fast_decoder

        emb = np.ascontiguousarray(embedding, dtype=np.float32).reshape(1, 256, 64, 64)
        feeds = {"image_embeddings": emb, "point_coords": np.zeros((1, 1, 2), np.float32),
                 "point_labels": -np.ones((1, 1), np.float32), "mask_input": self._no_mask[0],
                 "has_mask_input": self._no_mask[1]}
        _, _, cache = run_fast_decoder(self.session, feeds)
        self._feeds = {"image_embeddings": emb, **cache}

    def decode(self, point_coords: np.ndarray, point_labels: np.ndarray,
               mask_input: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Points [N,2] in the 1024 frame (the padding point included, as the web demo feeds them),
        labels [N] -> iou_predictions [4], low_res_masks [4,256,256]."""
        if self._feeds is None:
            raise RuntimeError("set_embedding first")
        feeds = dict(self._feeds)
        feeds["point_coords"] = np.asarray(point_coords, np.float32).reshape(1, -1, 2)
        feeds["point_labels"] = np.asarray(point_labels, np.float32).reshape(1, -1)
        if mask_input is None:
            feeds["mask_input"], feeds["has_mask_input"] = self._no_mask
        else:
            feeds["mask_input"] = np.asarray(mask_input, np.float32).reshape(1, 1, 256, 256)
            feeds["has_mask_input"] = np.ones(1, np.float32)
        iou, low_res = self.session.run(["iou_predictions", "low_res_masks"], feeds)
        return iou[0], low_res[0]
