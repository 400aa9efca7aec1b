"""MobileSAM: Segment Anything with a 5M-parameter TinyViT encoder, API-compatible with segment_anything."""
from .build_sam import (build_sam, build_sam_vit_b, build_sam_vit_h, build_sam_vit_l, build_sam_vit_t,
                        sam_model_registry)
from .automatic_mask_generator import SamAutomaticMaskGenerator
from .predictor import SamPredictor

__all__ = ["sam_model_registry", "build_sam", "build_sam_vit_t", "build_sam_vit_b", "build_sam_vit_l",
           "build_sam_vit_h", "SamPredictor", "SamAutomaticMaskGenerator"]
