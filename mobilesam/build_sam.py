"""`sam_model_registry`: build MobileSAM (vit_t) or SAM (vit_b/l/h) and load a checkpoint strictly."""
import os
from functools import partial
from typing import Callable, Dict, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn

from .modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TinyViT, TwoWayTransformer

PROMPT_EMBED_DIM = 256
IMAGE_SIZE = 1024
VIT_PATCH_SIZE = 16
IMAGE_EMBEDDING_SIZE = IMAGE_SIZE // VIT_PATCH_SIZE

PathLike = Union[str, "os.PathLike[str]"]


class CheckpointError(ValueError):
    """A checkpoint file cannot be used for the requested model."""


def _prompt_encoder() -> PromptEncoder:
    return PromptEncoder(embed_dim=PROMPT_EMBED_DIM,
                         image_embedding_size=(IMAGE_EMBEDDING_SIZE, IMAGE_EMBEDDING_SIZE),
                         input_image_size=(IMAGE_SIZE, IMAGE_SIZE), mask_in_chans=16)


def _mask_decoder() -> MaskDecoder:
    transformer = TwoWayTransformer(depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048, num_heads=8)
    return MaskDecoder(num_multimask_outputs=3, transformer=transformer, transformer_dim=PROMPT_EMBED_DIM,
                       iou_head_depth=3, iou_head_hidden_dim=256)


def _vit_encoder(embed_dim: int, depth: int, num_heads: int, global_attn_indexes: Sequence[int]) -> ImageEncoderViT:
    return ImageEncoderViT(depth=depth, embed_dim=embed_dim, img_size=IMAGE_SIZE, mlp_ratio=4,
                           norm_layer=partial(nn.LayerNorm, eps=1e-6), num_heads=num_heads,
                           patch_size=VIT_PATCH_SIZE, qkv_bias=True, use_rel_pos=True,
                           global_attn_indexes=global_attn_indexes, window_size=14, out_chans=PROMPT_EMBED_DIM)


def _tiny_vit_encoder() -> TinyViT:
    return TinyViT(img_size=IMAGE_SIZE, in_chans=3, num_classes=1000, embed_dims=(64, 128, 160, 320),
                   depths=(2, 2, 6, 2), num_heads=(2, 4, 5, 10), window_sizes=(7, 7, 14, 7), mlp_ratio=4.0,
                   mbconv_expand_ratio=4.0, local_conv_size=3)


ENCODER_BUILDERS: Dict[str, Callable[[], nn.Module]] = {
    "vit_t": _tiny_vit_encoder,
    "vit_b": partial(_vit_encoder, 768, 12, 12, (2, 5, 8, 11)),
    "vit_l": partial(_vit_encoder, 1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": partial(_vit_encoder, 1280, 32, 16, (7, 15, 23, 31)),
}
VIT_WIDTHS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
MODEL_TYPE_ALIASES = {"default": "vit_h"}  # segment_anything's sam_model_registry["default"] is vit_h


def canonical_model_type(model_type: str) -> str:
    """`model_type` with the registry's alias resolved: "default" -> "vit_h"; other names unchanged."""
    return MODEL_TYPE_ALIASES.get(model_type, model_type)


def guess_model_type(state_dict: Mapping[str, torch.Tensor]) -> Optional[str]:
    """Which model a state dict in the official layout belongs to, or None if it is unrecognisable."""
    if "image_encoder.patch_embed.seq.0.c.weight" in state_dict:
        return "vit_t"
    pos = state_dict.get("image_encoder.pos_embed")
    if isinstance(pos, torch.Tensor) and pos.ndim == 4:
        return VIT_WIDTHS.get(int(pos.shape[-1]))
    return None


def read_state_dict(checkpoint: PathLike) -> Dict[str, torch.Tensor]:
    """Load a state dict with `torch.load(weights_only=True)`; unreadable files raise CheckpointError."""
    path = os.fspath(checkpoint)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        with open(path, "rb") as f:
            state_dict = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, refused non-tensor object, ...
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated, corrupted or not a PyTorch "
            f"state dict ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"checkpoint {path} does not hold a state dict (a mapping of names to tensors)")
    return state_dict


def check_checkpoint_type(state_dict: Mapping[str, torch.Tensor], model_type: str,
                          source: str = "checkpoint") -> None:
    """Raise CheckpointError if `state_dict` is recognisably a checkpoint of another model type."""
    guessed = guess_model_type(state_dict)
    if guessed is not None and guessed != model_type:
        raise CheckpointError(f"{source} is a {guessed} checkpoint, but model type {model_type} was requested; "
                              f"use sam_model_registry['{guessed}'] (or --model-type {guessed})")


def load_state_dict_strictly(model: nn.Module, state_dict: Mapping[str, torch.Tensor], model_type: str,
                             source: str = "checkpoint") -> None:
    """Load exactly the official keys: a missing, extra or misshapen tensor raises CheckpointError."""
    check_checkpoint_type(state_dict, model_type, source)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}")
        raise CheckpointError(f"{source} does not match the {model_type} layout: " + "; ".join(parts))
    wrong = [(k, tuple(v.shape), tuple(expected[k].shape)) for k, v in state_dict.items()
             if tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        k, got, want = wrong[0]
        raise CheckpointError(f"{source} does not match the {model_type} layout: {len(wrong)} tensor(s) of the "
                              f"wrong shape, e.g. {k} is {got}, expected {want}")
    model.load_state_dict(state_dict, strict=True)


def build_sam_model(model_type: str, checkpoint: Optional[PathLike] = None) -> Sam:
    """Build a model of `model_type` ("vit_t", "vit_b", "vit_l", "vit_h", or "default" = vit_h); load
    `checkpoint` strictly if given. Returned in eval mode.

    The checkpoint is read and its type checked before the model is built, so a checkpoint of another
    model type fails fast (CheckpointError) instead of after building, say, a 636M-parameter vit_h.
    """
    model_type = canonical_model_type(model_type)
    if model_type not in ENCODER_BUILDERS:
        raise ValueError(f"unknown model type {model_type!r}; expected one of {sorted(sam_model_registry)}")
    state_dict = source = None
    if checkpoint is not None:
        source = f"checkpoint {checkpoint}"
        state_dict = read_state_dict(checkpoint)
        check_checkpoint_type(state_dict, model_type, source)
    sam = Sam(image_encoder=ENCODER_BUILDERS[model_type](), prompt_encoder=_prompt_encoder(),
              mask_decoder=_mask_decoder())
    if state_dict is not None:
        load_state_dict_strictly(sam, state_dict, model_type, source=source)
    return sam.eval()


def build_sam_vit_h(checkpoint: Optional[PathLike] = None) -> Sam:
    """SAM with the ViT-H encoder (segment_anything's default)."""
    return build_sam_model("vit_h", checkpoint)


build_sam = build_sam_vit_h  # as in segment_anything: `build_sam(checkpoint=None)` builds vit_h


def build_sam_vit_l(checkpoint: Optional[PathLike] = None) -> Sam:
    """SAM with the ViT-L encoder."""
    return build_sam_model("vit_l", checkpoint)


def build_sam_vit_b(checkpoint: Optional[PathLike] = None) -> Sam:
    """SAM with the ViT-B encoder."""
    return build_sam_model("vit_b", checkpoint)


def build_sam_vit_t(checkpoint: Optional[PathLike] = None) -> Sam:
    """MobileSAM: SAM's prompt encoder and mask decoder with the 5M-parameter TinyViT encoder."""
    return build_sam_model("vit_t", checkpoint)


# The official registries: segment_anything's {"default", "vit_h", "vit_l", "vit_b"} ("default" is vit_h)
# plus MobileSAM's "vit_t", exactly as in MobileSAM's own repository.
sam_model_registry: Dict[str, Callable[..., Sam]] = {
    "default": build_sam,
    "vit_h": build_sam,
    "vit_l": build_sam_vit_l,
    "vit_b": build_sam_vit_b,
    "vit_t": build_sam_vit_t,
}
