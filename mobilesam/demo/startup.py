"""Everything the app does once at start: weights, model, decoder export, caches."""
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..build_sam import sam_model_registry
from ..hub import pick_device, resolve_checkpoint
from .engine import Engine
from .handlers import Handlers
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


def prepare(config: AppConfig) -> Handlers:
    """Resolve and load the weights, export (or reuse) the browser decoder, set up caches."""
    from ..export import cached_decoder  # torch.onnx is only needed at start-up

    checkpoint = resolve_checkpoint(config.model_type, config.checkpoint)
    device = pick_device(None if config.device == "auto" else config.device)
    log.info("loading %s from %s on %s", config.model_type, checkpoint, device)
    model = sam_model_registry[config.model_type](checkpoint=str(checkpoint)).to(device)
    cache_dir = Path(config.cache_dir)
    decoder = cached_decoder(checkpoint, config.model_type, cache_dir / "onnx", variant="browser", sam=model)
    store = ImageStore(cache_dir / "images", max_bytes=config.image_store_mb * 2**20)
    engine = Engine(model, config.model_type, store, cache_bytes=config.embedding_cache_mb * 2**20)
    return Handlers(engine, {decoder.name: decoder}, output_dir=cache_dir / "outputs")
