"""Everything the app does once at start: weights, model, decoder export, caches."""
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from mobilesam.hub import load_model_from, pick_device, resolve_checkpoint
from .compare import SamModels, startup_choices
from .engine import MAX_QUEUED_ENCODES, Engine
from .service import Service
from .memory import tune_malloc
from .store import ImageStore

log = logging.getLogger(__name__)
DEFAULT_CACHE_DIR = Path(os.environ.get("MOBILESAM_CACHE", Path.home() / ".cache" / "mobilesam"))


@dataclass
class AppConfig:
    model_type: str = "vit_t"
    checkpoint: Optional[str] = None
    device: str = "auto"
    cache_dir: Path = DEFAULT_CACHE_DIR
    embedding_cache_mb: int = 256
    image_store_mb: int = 512
    sam_model_type: str = "vit_b"  # compare mode: the original SAM offered first
    sam_checkpoint: Optional[str] = None  # its local checkpoint (default: mobilesam.hub resolves it)
    store_dir: Optional[Path] = None  # uploads kept for share links (default: `default_store_dir`)
    encode_queue: int = MAX_QUEUED_ENCODES  # encodes waiting or running; more are refused as "busy"
    # how the browser decoders store their weights (mobilesam.export.store_weights; compute is float32):
    # float16 halves the download with masks within 0.98 IoU of float32's (docs/onnx.md)
    decoder_weights: str = "float16"


SPACE_DATA = Path("/data")  # a Hugging Face Space's persistent storage, when the Space has it


def default_store_dir(cache_dir: Path, environ=os.environ, data: Path = SPACE_DATA) -> Path:
    """Where uploads are kept for share links: on a Space with persistent storage (SPACE_ID set and
    /data writable) `/data/mobilesam/images`, which outlives restarts and is shared by replicas;
    else `<cache_dir>/images`."""
    if environ.get("SPACE_ID") and data.is_dir() and os.access(data, os.W_OK | os.X_OK):
        return data / "mobilesam" / "images"
    return Path(cache_dir) / "images"


def browser_decoder(checkpoint: Path, model_type: str, cache_dir: Path, model, weights: str = "float16") -> Path:
    """The decoder file the browser runs for a model: MobileSAM's, and each SAM's in compare mode,
    its weights stored as `weights` (float32, float16 or int8)."""
    from mobilesam.onnx_cache import cached_decoder  # torch.onnx is only needed when a model is loaded

    return cached_decoder(checkpoint, model_type, Path(cache_dir) / "onnx", variant="fast", sam=model,
                          weights=weights)


def spare_gradio_analytics(every: int = 200) -> None:
    """Gradio summarises its event analytics (pandas over up to 10,000 recorded events: 2-11 ms with
    the GIL held) after every event by default; every `every`-th event is enough for its monitoring
    page, and keeps that work away from the moment a photo's embedding is being fetched. Set before
    the queue is made (an explicit GRADIO_ANALYTICS_CACHE_FREQUENCY wins)."""
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(every))


def prepare(config: AppConfig) -> Service:
    """Resolve and load the weights, export (or reuse) the browser decoder, set up caches.

    The comparison models (compare mode) are only set up here; each loads on first use.
    """
    tune_malloc()
    spare_gradio_analytics()
    checkpoint = resolve_checkpoint(config.model_type, config.checkpoint)
    device = pick_device(None if config.device == "auto" else config.device)
    log.info("loading %s from %s on %s", config.model_type, checkpoint, device)
    model = load_model_from(checkpoint, config.model_type, device)
    cache_dir = Path(config.cache_dir)
    decoder = browser_decoder(checkpoint, config.model_type, cache_dir, model, config.decoder_weights)
    store_dir = Path(config.store_dir) if config.store_dir else default_store_dir(cache_dir)
    log.info("storing uploads for share links in %s", store_dir)
    store = ImageStore(store_dir, max_bytes=config.image_store_mb * 2**20)
    engine = Engine(model, config.model_type, store, cache_bytes=config.embedding_cache_mb * 2**20,
                    onnx_dir=cache_dir / "onnx", max_queued=config.encode_queue)
    sam_models = SamModels(
        store, device,
        lambda ckpt, model_type, sam: browser_decoder(ckpt, model_type, cache_dir, sam, config.decoder_weights),
        default_type=config.sam_model_type,
        checkpoints={config.sam_model_type: Path(config.sam_checkpoint)} if config.sam_checkpoint else None,
        cache_bytes=config.embedding_cache_mb * 2**20,
        choices=startup_choices(config.sam_model_type, device), onnx_dir=cache_dir / "onnx")
    return Service(engine, {decoder.name: decoder}, output_dir=cache_dir / "outputs", sam_models=sam_models)
