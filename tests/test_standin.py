"""tests/standin.py rebuilds the stand-in checkpoints the goldens were computed from, bit for bit.

The SHA-256 digests below are of tensors (their raw little-endian bytes, in the manifest's dtype) of the
seed-0 checkpoints made by the stand-in builder published with the goldens (see
tests/data/golden/README.md); this module's builder must reproduce them, or the goldens no longer
describe the weights the tests load."""
import hashlib

import numpy as np
import torch

from standin import build_standin_checkpoint, manifest, standin_state_dict, standin_tensor


def digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(np.ascontiguousarray(tensor.numpy()).tobytes()).hexdigest()


def state_digest(state: dict) -> str:
    """Over every key in order, then its tensor's bytes."""
    h = hashlib.sha256()
    for key, tensor in state.items():
        h.update(key.encode())
        h.update(np.ascontiguousarray(tensor.numpy()).tobytes())
    return h.hexdigest()


# One tensor of each rule (fan-in scaled weight, attention bias table, 1-D bias, Fourier matrix,
# running variance, relative position table, absolute position table, 1-D weight).
OFFICIAL_TENSOR_DIGESTS = {
    ("vit_t", "image_encoder.patch_embed.seq.0.c.weight"):
        "a5b7932f8bac845518375a07470c60ceec7a17e84e3daf20ca367cf14113c336",
    ("vit_t", "image_encoder.layers.1.blocks.0.attn.attention_biases"):
        "cf000ca9578a2e75c68a12024bf8b738b907d7818a25628fad0c6eecee198b57",
    ("vit_t", "mask_decoder.iou_prediction_head.layers.2.bias"):
        "846c03a6e4c2e08d604115bfc0601b627346d4105030d7666f7e1d37bc7a1e41",
    ("vit_t", "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"):
        "a0666f38aed3b698d68022cfcc39ff74c4c0983564e585a22cf11e38532b5508",
    ("vit_t", "image_encoder.patch_embed.seq.0.bn.running_var"):
        "5576a4eca01b9d626f4abc382fe7927281677a342f6ef823bd4d3125d55764ac",
    ("vit_b", "image_encoder.blocks.11.attn.rel_pos_h"):
        "34e0200f579b57f0702fe3e5359bfa6c87f5ca355fb405bb4857efebfd23a02d",
    ("vit_b", "image_encoder.pos_embed"):
        "2155854fa8bb7e6b6bd1377de662198391df9afb08ef030d5c0a4d6afe87cb3c",
    ("vit_b", "mask_decoder.transformer.layers.0.self_attn.q_proj.weight"):
        "763e581d67c5edc0f5fbf9cbdac04dd2caa3737bee1fb43ef5d484564208014a",
    ("vit_b", "image_encoder.neck.1.weight"):
        "76e52a98b150ef4c3a588383e9d065f3975863be21c7be8631bc11f1e2208340",
}
# The whole seed-0 vit_t state dict (439 entries, 27 of them int64 batch-norm counters).
OFFICIAL_VIT_T_STATE_DIGEST = "8fb3bc24effd0f1d435f81a92fead3e9e08ddfefdac54f56206db9ca8d7cecb2"


def test_manifests_list_the_official_keys():
    assert len(manifest("vit_t")) == 439 and len(manifest("vit_b")) == 314


def test_tensors_match_the_official_builder():
    for (model_type, key), want in OFFICIAL_TENSOR_DIGESTS.items():
        spec = manifest(model_type)[key]
        tensor = standin_tensor(key, spec["shape"], spec["dtype"], seed=0)
        assert list(tensor.shape) == spec["shape"] and str(tensor.dtype) == f"torch.{spec['dtype']}", key
        assert digest(tensor) == want, f"{model_type} {key}"


def test_vit_t_checkpoint_matches_the_official_builder(vit_t_checkpoint):
    state = torch.load(vit_t_checkpoint, map_location="cpu")
    assert list(state) == list(manifest("vit_t"))
    assert state_digest(state) == OFFICIAL_VIT_T_STATE_DIGEST


def test_seed_changes_the_float_tensors_only(tmp_path):
    a, b = standin_state_dict("vit_t", seed=0), standin_state_dict("vit_t", seed=1)
    for key in a:
        same = torch.equal(a[key], b[key])
        assert same == (not a[key].is_floating_point()), key
    out = build_standin_checkpoint("vit_t", tmp_path, seed=1)
    assert out.name == "vit_t_seed1.pt" and build_standin_checkpoint("vit_t", tmp_path, seed=1) == out
