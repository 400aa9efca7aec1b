"""The server's model work: encode images (cached by content), predict masks, segment everything."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
import torch

from mobilesam.modeling import Sam
from mobilesam.predictor import SamPredictor
from .embedding_codec import encode_u8, transcode, wire_format
from mobilesam.utils.transforms import ResizeLongestSide
from . import memory
from .gpu import gpu_task
from .prompt_decoder import PromptDecoder
from .store import ImageStore, LRUCache, image_id_of, lower_thread_priority

EMBEDDING_SHAPE = (1, 256, 64, 64)
MAX_QUEUED_ENCODES = 12  # encodes waiting or running at once; more are refused (EncoderBusy)
ENCODE_NICE = 10  # the encoder thread's nice value: below requests (0), above background writes (19)


class EncoderBusy(Exception):
    """The encoder's queue is full: `ahead` images are waiting or being encoded."""

    def __init__(self, ahead: int) -> None:
        super().__init__(f"{ahead} images are ahead in the encoder's queue")
        self.ahead = ahead


@dataclass(frozen=True)
class EncodedImage:
    """An image's embedding (float32 1×256×64×64) with the sizes a client needs to map coordinates."""

    image_id: str
    height: int
    width: int
    input_height: int
    input_width: int
    embedding: np.ndarray
    encode_ms: float
    # computed from the page's resized (JPEG) copy of the photo, not the photo itself: masks within
    # IoU 0.99 of the official ones (tests/test_first_visit.py); the API encodes again exactly
    from_copy: bool = False
    _wire: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def original_size(self) -> Tuple[int, int]:
        return self.height, self.width

    @property
    def key(self) -> Tuple[str, bool]:
        """Which embedding this is: the image id, and whether it was computed from the page's copy
        (the photo's own encode replaces it later under the same id)."""
        return self.image_id, self.from_copy

    @property
    def input_size(self) -> Tuple[int, int]:
        """The image's size resized for the encoder (long side 1024), before padding."""
        return self.input_height, self.input_width

    def embedding_f16_bytes(self) -> bytes:
        """Little-endian float16 bytes of the embedding: 2,097,152 bytes."""
        return self.embedding.astype("<f2").tobytes()

    def embedding_u8_bytes(self) -> bytes:
        """The embedding as versioned per-channel uint8 (mobilesam_app/embedding_codec.py): 1,050,640 bytes."""
        return encode_u8(self.embedding)

    def wire_bytes(self, fmt: str) -> bytes:
        """The embedding in wire format `fmt` ("f16" or "u8", embedding_codec.transcode of the float16
        bytes). The first format asked for (the page's, made before the image is cached) is kept: the
        page's request after an encode then only sends bytes. Others are made per request and not
        kept, so `nbytes`, which the embedding cache counted when it took the image, stays true."""
        data = self._wire.get(fmt)
        if data is None:
            data = transcode(self.embedding_f16_bytes(), fmt)
            if not self._wire:  # only the format made before caching is kept: the cache counts its bytes
                self._wire[fmt] = data
        return data

    @property
    def nbytes(self) -> int:
        """Memory held: the float32 embedding and the wire bytes made so far."""
        return self.embedding.nbytes + sum(len(b) for b in list(self._wire.values()))

    def client_info(self, model_type: str) -> dict:
        """What the browser needs: ids, sizes and where to fetch the embedding and the image. The
        embedding comes as uint8 for models checked with it against the goldens (MobileSAM), else
        as float16 (embedding_codec.wire_format)."""
        return {
            "image_id": self.image_id, "width": self.width, "height": self.height,
            "input_width": self.input_width, "input_height": self.input_height,
            "image_url": f"/msam/image/{self.image_id}.png",
            "embedding_url": f"/msam/embedding/{model_type}/{self.image_id}.{wire_format(model_type)}",
            "model": model_type, "encode_ms": round(self.encode_ms, 1),
        }


class Engine:
    """One model on one device. Encoding is serialised (CPU-bound); decoding is per call.

    Embeddings are cached by image content in a bounded LRU, so choosing the same image
    again is instant; images are kept in `store` for shared links.
    """

    def __init__(self, model: Sam, model_type: str, store: ImageStore, cache_bytes: int = 256 * 2**20,
                 encoder_backend: Optional[str] = None, onnx_dir: Optional[Path] = None,
                 max_queued: int = MAX_QUEUED_ENCODES) -> None:
        from mobilesam.accel.encoder import ImageEncoder

        self.model = model.eval()
        self.model_type = model_type
        self.store = store
        self.transform = ResizeLongestSide(model.image_encoder.img_size)
        # The fast encoder (onnxruntime float32 for vit_t on CPU, see mobilesam/accel/encoder.py); its
        # export is cached next to the decoder exports (<cache dir>/onnx) and made in the background.
        # Encodes run below the requests' priority (ENCODE_NICE): a prompt on an encoded image, a link's
        # replay or an embedding's fetch takes the CPU first when both want it. That is the encoder's
        # thread and the onnxruntime session's worker threads; the encoder's export at start-up keeps
        # the normal priority (the app is not fast until it is done).
        self._encoder_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mobilesam-encoder",
                                                  initializer=lower_thread_priority, initargs=(ENCODE_NICE,))
        self.encoder = ImageEncoder(model, model_type, backend=encoder_backend,
                                    cache_dir=Path(onnx_dir or Path(store.root).parent / "onnx"),
                                    session_thread_setup=partial(lower_thread_priority, ENCODE_NICE))
        self.cache: LRUCache[str, EncodedImage] = LRUCache(cache_bytes, lambda e: e.nbytes)
        self._encode_lock = threading.Lock()
        self.max_queued = max_queued
        self._queued = 0  # encodes submitted and not finished
        self.encodes = 0  # encoder runs since start-up, and their total time (health())
        self.encode_ms_total = 0.0
        self._queue_lock = threading.Lock()
        self.parameter_count = sum(p.numel() for p in model.image_encoder.parameters())
        # prompts on encoded images: the fast decoder in onnxruntime on the onnxruntime encoder's CPU
        # path (its export beside the encoder's), else PyTorch (mobilesam_app/prompt_decoder.py)
        self.prompts = PromptDecoder(self.model, model_type, self.encoder.cache_dir,
                                     fast=self.encoder.backend == "onnxruntime")

    def encode(self, image: np.ndarray, image_id: Optional[str] = None, exact: bool = False) -> EncodedImage:
        """Embedding of a uint8 H×W×3 RGB image, from the cache when the same picture was seen. With
        `exact`, one computed from a resized copy (`from_copy`) is replaced by the photo's own."""
        image_id = image_id or image_id_of(image)
        cached = self.cache.get(image_id)
        if cached is not None and not (exact and cached.from_copy):
            if not self.store.has(image_id):  # pruned, or removed as corrupted: store it again
                self.store.put_later(image_id, image)
            return cached
        return self._queued_encode(image, image_id)

    def _queued_encode(self, image: np.ndarray, image_id: str, *args) -> EncodedImage:
        """`_encode_new(image, image_id, *args)` on the encoder's thread. Always on the same thread: the
        encoder's large temporary buffers then come from one malloc arena, instead of each request thread
        keeping its own few hundred MB once it has encoded. A bounded queue: past `max_queued` a request
        is refused at once (EncoderBusy, "N ahead") rather than waiting silently; cached images never
        wait here."""
        with self._queue_lock:
            if self._queued >= self.max_queued:
                raise EncoderBusy(self._queued)
            self._queued += 1
        try:
            return self._encoder_thread.submit(self._encode_new, image, image_id, *args).result()
        finally:
            with self._queue_lock:
                self._queued -= 1

    @property
    def queued(self) -> int:
        """Encodes waiting or running now."""
        return self._queued

    def encode_input(self, resized: np.ndarray, original_size: Tuple[int, int], image_id: str) -> EncodedImage:
        """Embedding of a photo of `original_size` (H, W) from its copy already resized to the encoder's
        input (`resized`: uint8 h×w×3, ResizeLongestSide of the original, which leaves it as it is):
        the embedding of the original, with the original's size for mapping coordinates. The copy is
        not stored (a share link needs the original)."""
        expected = self.transform.get_preprocess_shape(*original_size, self.transform.target_length)
        if tuple(resized.shape[:2]) != tuple(expected):
            raise ValueError(f"a {original_size[1]}x{original_size[0]} photo resizes to {expected[1]}x{expected[0]}, "
                             f"not {resized.shape[1]}x{resized.shape[0]}")
        cached = self.cache.get(image_id)
        if cached is not None:
            return cached
        return self._queued_encode(resized, image_id, tuple(original_size), False)

    def _encode_new(self, image: np.ndarray, image_id: str, original_size: Optional[Tuple[int, int]] = None,
                    keep_image: bool = True) -> EncodedImage:
        with self._encode_lock:
            cached = self.cache.get(image_id)  # encoded by a concurrent request meanwhile
            if cached is not None and not (original_size is None and cached.from_copy):
                return cached
            self.store.defer_writes()  # no PNG write of an earlier upload during this encode
            start = time.perf_counter()
            embedding, input_size = _embed(self.encoder, image)
            elapsed_ms = (time.perf_counter() - start) * 1000
            memory.trim()  # give the encoder run's freed temporaries back to the system
            self.encodes += 1
            self.encode_ms_total += elapsed_ms
        height, width = original_size or image.shape[:2]
        encoded = EncodedImage(image_id, height, width, input_size[0], input_size[1], embedding, elapsed_ms,
                               from_copy=original_size is not None)
        encoded.wire_bytes(wire_format(self.model_type))  # ready before the page asks for it
        self.cache.put(image_id, encoded)
        if keep_image:
            self.store.put_later(image_id, image)  # PNG compression (~0.1 s) after the reply, not before
        return encoded

    def health(self) -> dict:
        """What a load balancer or a benchmark asks (GET /msam/health): whether the encoder is ready
        (its start-up export done) and in use, its queue, its runs so far and their total time, and the
        embedding cache's fill."""
        return {
            "model": self.model_type,
            "encoder": {"backend": self.encoder.active, "ready": self.encoder.prepared, "queued": self._queued, "max_queued": self.max_queued,
                        "encodes": self.encodes, "encode_ms_total": round(self.encode_ms_total, 1)},
            "embedding_cache": {"entries": len(self.cache), "bytes": self.cache.nbytes,
                                "max_bytes": self.cache.max_bytes},
        }

    def predictor_for(self, encoded: EncodedImage) -> SamPredictor:
        """A predictor primed with a cached embedding (no encoder run); one per call, so thread-safe."""
        predictor = SamPredictor(self.model)
        predictor.set_image_embedding(torch.from_numpy(encoded.embedding), encoded.original_size)
        return predictor

    def predict(self, encoded: EncodedImage, **prompt) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """SamPredictor.predict's (masks, scores, low-res logits) on the cached embedding; `prompt`: its
        point_coords, point_labels, box, multimask_output. No encoder work."""
        return self.prompts.predict(encoded.key, encoded.embedding, encoded.input_size,
                                    encoded.original_size, **prompt)

    def best_mask(self, encoded: EncodedImage, **prompt) -> Tuple[np.ndarray, np.ndarray, int]:
        """(the best mask [H,W] bool, scores [C], its index) of `predict`, only that mask upsampled."""
        return self.prompts.best_mask(encoded.key, encoded.embedding, encoded.input_size,
                                      encoded.original_size, **prompt)

    def low_res_masks(self, encoded: EncodedImage, point_coords: Optional[np.ndarray] = None,
                      point_labels: Optional[np.ndarray] = None,
                      box: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """What the page's decoder gives for one prompt, computed here (fed as the web demo feeds its
        decoder, mobilesam_app/prompt_decoder.py): iou predictions [4] and low-res mask
        logits [4,256,256] of all four mask tokens. Points ([K,2] with labels [K]) and box ([4])
        are in original-image pixels. No encoder work: it never waits behind an encode."""
        return self.prompts.low_res_masks(encoded.key, encoded.embedding, encoded.original_size,
                                          point_coords, point_labels, box)

    def segment_everything(self, image: np.ndarray, points_per_side: int = 16, points_per_batch: int = 64,
                           progress: Optional[Callable[[int, int], None]] = None, **options) -> list:
        """SamAutomaticMaskGenerator records (binary masks) for the whole image."""
        from mobilesam.accel.mask_generator import FastSamAutomaticMaskGenerator
        from mobilesam.automatic_mask_generator import SamAutomaticMaskGenerator

        with self._encode_lock:
            # With the onnxruntime encoder, the fast generator (same encoder, the fast decoder in
            # onnxruntime; float32: the same records up to float rounding).
            settings = dict(points_per_side=points_per_side, points_per_batch=points_per_batch, **options)
            if self.encoder.backend == "onnxruntime" and self.encoder.wait_ready(timeout=600):
                generator = FastSamAutomaticMaskGenerator(self.model, image_encoder=self.encoder,
                                                          cache_dir=self.encoder.cache_dir, **settings)
            else:
                generator = SamAutomaticMaskGenerator(self.model, **settings)
            return _generate(generator, image, progress)


@gpu_task
def _embed(encoder, image: np.ndarray):
    """encoder.embed(image) (a GPU call on ZeroGPU hardware: see gpu.py)."""
    return encoder.embed(image)


def _generate_now(generator, image: np.ndarray, progress):
    return generator.generate(image, progress=progress)


_generate = gpu_task(_generate_now, duration=120)  # segment everything: many decoder batches
