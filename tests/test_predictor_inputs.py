"""Bad input to the model and predictor raises specific errors; batched prompts work."""
import importlib

import numpy as np
import pytest
import torch

import mobilesam
from conftest import load_sample
from mobilesam import SamPredictor, sam_model_registry
from mobilesam.build_sam import CheckpointError


@pytest.fixture(scope="module")
def predictor(vit_t_model):
    p = SamPredictor(vit_t_model)
    p.set_image(load_sample("groceries.jpg"))
    return p


def test_predict_before_set_image_raises(vit_t_model):
    with pytest.raises(RuntimeError, match="set_image"):
        SamPredictor(vit_t_model).predict(point_coords=np.array([[1.0, 1.0]]), point_labels=np.array([1]))


def test_get_image_embedding_before_set_image_raises_the_official_message(vit_t_model):
    with pytest.raises(RuntimeError) as info:
        SamPredictor(vit_t_model).get_image_embedding()
    assert str(info.value) == "An image must be set with .set_image(...) to generate an embedding."


@pytest.mark.parametrize("image, message", [
    (np.zeros((10, 10, 3), dtype=np.float32), "uint8"),
    (np.zeros((10, 10), dtype=np.uint8), "H×W×3"),
    (np.zeros((10, 10, 4), dtype=np.uint8), "H×W×3"),
    (np.zeros((0, 10, 3), dtype=np.uint8), "empty"),
    ([[1, 2, 3]], "numpy array"),
])
def test_set_image_rejects_bad_images(vit_t_model, image, message):
    with pytest.raises(ValueError, match=message):
        SamPredictor(vit_t_model).set_image(image)


def test_set_image_rejects_unknown_format(vit_t_model):
    with pytest.raises(ValueError, match="image_format"):
        SamPredictor(vit_t_model).set_image(np.zeros((8, 8, 3), np.uint8), image_format="HSV")


@pytest.mark.parametrize("kwargs, message", [
    ({"point_coords": np.array([[10.0, 10.0]])}, "point_labels"),
    ({"point_coords": np.array([[10.0, 10.0]]), "point_labels": np.array([1, 0])}, "shape"),
    ({"point_coords": np.array([[10.0, 10.0]]), "point_labels": np.array([[1]])}, "shape"),
    ({"point_coords": np.array([[10.0, 10.0, 1.0]]), "point_labels": np.array([1])}, "N×2"),
    ({"point_coords": np.array([10.0, 10.0]), "point_labels": np.array([1])}, "N×2"),
    ({"point_coords": np.array([[np.nan, 10.0]]), "point_labels": np.array([1])}, "NaN"),
    ({"point_coords": np.array([[np.inf, 10.0]]), "point_labels": np.array([1])}, "infinite"),
    ({"point_coords": np.array([[10.0, 10.0]]), "point_labels": np.array([7])}, "unknown point label"),
    ({"point_coords": np.array([[10.0, 10.0]]), "point_labels": np.array([0.5])}, "unknown point label"),
    ({"point_coords": np.array([[10.0, 10.0]]), "point_labels": np.array([np.nan])}, "unknown point label"),
    ({"point_coords": np.array([[10.0, 10.0]]), "point_labels": np.array(["1"])}, "integers"),
    ({"point_labels": np.array([1])}, "without point_coords"),
    ({"box": np.array([10.0, 10.0, 100.0])}, "shape"),
    ({"box": np.array([[10.0, 10.0, 50.0, 50.0], [60.0, 60.0, 100.0, 100.0]])}, "shape"),
    ({"box": np.array([10.0, np.nan, 100.0, 90.0])}, "NaN"),
    ({"mask_input": np.zeros((256, 256))}, "1×256×256"),
    ({"mask_input": np.zeros((2, 256, 256))}, "1×256×256"),
])
def test_predict_rejects_bad_prompts(predictor, kwargs, message):
    with pytest.raises(ValueError, match=message):
        predictor.predict(**kwargs)


def official_predict(predictor, point_coords=None, point_labels=None, box=None, multimask_output=True):
    """segment_anything 1.0's SamPredictor.predict, step by step (transform, then predict_torch), with
    no validation: what the official predictor computes for prompts it accepts."""
    coords_torch = labels_torch = box_torch = None
    if point_coords is not None:
        coords = predictor.transform.apply_coords(point_coords, predictor.original_size)
        coords_torch = torch.as_tensor(coords, dtype=torch.float)[None, :, :]
        labels_torch = torch.as_tensor(point_labels, dtype=torch.int)[None, :]
    if box is not None:
        box_torch = torch.as_tensor(predictor.transform.apply_boxes(box, predictor.original_size),
                                    dtype=torch.float)[None, :]
    masks, scores, logits = predictor.predict_torch(coords_torch, labels_torch, box_torch, None, multimask_output)
    return masks[0].numpy(), scores[0].numpy(), logits[0].numpy()


# Prompts that segment_anything's predictor takes although they are odd (the image is 800×534).
ODD_BUT_OFFICIAL_PROMPTS = {
    "points outside the image": dict(point_coords=np.array([[900.0, 10.0], [10.0, -1.0]]),
                                     point_labels=np.array([1, 0])),
    "box with a negative corner": dict(box=np.array([-3.0, 0.0, 100.0, 100.0])),
    "detector box past the border by a fraction of a pixel": dict(box=np.array([10.0, 5.0, 800.4, 534.3])),
    "box with x1 < x0 and y1 < y0": dict(box=np.array([300.0, 200.0, 100.0, 10.0])),
    "box as 1×4": dict(box=np.array([[10.0, 10.0, 100.0, 90.0]])),
    "box corners as points, labels 2 and 3": dict(point_coords=np.array([[10.0, 10.0], [100.0, 90.0]]),
                                                  point_labels=np.array([2, 3])),
    "padding label -1": dict(point_coords=np.array([[400.0, 260.0], [0.0, 0.0]]), point_labels=np.array([1, -1])),
    "bool labels": dict(point_coords=np.array([[400.0, 260.0], [50.0, 50.0]]), point_labels=np.array([True, False])),
    "integer-valued float labels": dict(point_coords=np.array([[400.0, 260.0]]), point_labels=np.array([1.0])),
    "no points": dict(point_coords=np.zeros((0, 2)), point_labels=np.zeros((0,))),
    "no points and a box": dict(point_coords=np.zeros((0, 2)), point_labels=np.zeros((0,)),
                                box=np.array([50.0, 60.0, 300.0, 400.0])),
    "no prompt at all": dict(),
}


@pytest.mark.parametrize("name", list(ODD_BUT_OFFICIAL_PROMPTS))
@pytest.mark.parametrize("multimask_output", [True, False])
def test_prompts_the_official_predictor_accepts_give_its_result(predictor, name, multimask_output):
    kwargs = ODD_BUT_OFFICIAL_PROMPTS[name]
    masks, scores, logits = predictor.predict(multimask_output=multimask_output, **kwargs)
    want_masks, want_scores, want_logits = official_predict(predictor, multimask_output=multimask_output, **kwargs)
    c = 3 if multimask_output else 1
    assert masks.shape == (c, 534, 800) and masks.dtype == bool and scores.shape == (c,)
    np.testing.assert_array_equal(logits, want_logits)
    np.testing.assert_array_equal(scores, want_scores)
    np.testing.assert_array_equal(masks, want_masks)


def test_bool_labels_are_ones_and_zeros(predictor):
    coords = np.array([[400.0, 260.0], [50.0, 50.0]])
    with_bools = predictor.predict(point_coords=coords, point_labels=np.array([True, False]))
    with_ints = predictor.predict(point_coords=coords, point_labels=np.array([1, 0]))
    for got, want in zip(with_bools, with_ints):
        np.testing.assert_array_equal(got, want)


def test_an_empty_point_list_is_not_the_same_as_no_prompt(predictor):
    """As officially: N = 0 points still adds the padding ("not a point") token, so the result differs
    from predict() with no prompt at all."""
    no_points = predictor.predict(point_coords=np.zeros((0, 2)), point_labels=np.zeros((0,)))[2]
    nothing = predictor.predict()[2]
    assert no_points.shape == nothing.shape == (3, 256, 256)
    assert not np.array_equal(no_points, nothing)


def test_points_on_the_image_edge_are_accepted(predictor):
    h, w = predictor.original_size
    masks, scores, logits = predictor.predict(point_coords=np.array([[0.0, 0.0], [w, h]]),
                                              point_labels=np.array([1, 0]), multimask_output=False)
    assert masks.shape == (1, h, w) and scores.shape == (1,) and logits.shape == (1, 256, 256)


def test_predict_torch_batched_boxes_equal_one_by_one(predictor):
    boxes = np.array([[50, 60, 300, 400], [400, 100, 780, 500], [0, 0, 800, 534]], dtype=np.float64)
    boxes_t = predictor.transform.apply_boxes_torch(torch.as_tensor(boxes, dtype=torch.float), predictor.original_size)
    masks, scores, logits = predictor.predict_torch(None, None, boxes=boxes_t, multimask_output=False)
    assert masks.shape == (3, 1, 534, 800) and scores.shape == (3, 1) and logits.shape == (3, 1, 256, 256)
    for i, box in enumerate(boxes):
        m, s, lo = predictor.predict(box=box, multimask_output=False)
        np.testing.assert_allclose(lo, logits[i].numpy(), atol=1e-4)
        np.testing.assert_allclose(s, scores[i].numpy(), atol=1e-5)


def test_return_logits_thresholds_to_masks(predictor):
    kwargs = dict(point_coords=np.array([[400.0, 260.0]]), point_labels=np.array([1]))
    masks, _, _ = predictor.predict(**kwargs)
    logits, _, _ = predictor.predict(return_logits=True, **kwargs)
    assert logits.dtype == np.float32 and np.array_equal(logits > 0, masks)


def test_bgr_input_equals_rgb_input(vit_t_model, predictor):
    other = SamPredictor(vit_t_model)
    other.set_image(np.ascontiguousarray(load_sample("groceries.jpg")[..., ::-1]), image_format="BGR")
    torch.testing.assert_close(other.get_image_embedding(), predictor.get_image_embedding())
    assert other.original_size == (534, 800) and other.input_size == (684, 1024)


def test_set_image_embedding_reuses_an_embedding(vit_t_model, predictor):
    other = SamPredictor(vit_t_model)
    other.set_image_embedding(predictor.get_image_embedding(), predictor.original_size)
    assert other.input_size == predictor.input_size
    kwargs = dict(point_coords=np.array([[400.0, 260.0]]), point_labels=np.array([1]))
    np.testing.assert_array_equal(other.predict(**kwargs)[2], predictor.predict(**kwargs)[2])


# ---- checkpoints ----------------------------------------------------------------------------

def _drop_iou_token(state):
    del state["mask_decoder.iou_token.weight"]


def _add_extra_key(state):
    state["image_encoder.extra.weight"] = torch.zeros(3)


@pytest.mark.parametrize("edit, message", [
    (_drop_iou_token, r"1 missing key.*mask_decoder\.iou_token\.weight"),
    (_add_extra_key, r"1 unexpected key.*image_encoder\.extra\.weight"),
])
def test_strict_loading_refuses_missing_and_extra_keys(vit_t_checkpoint, tmp_path, edit, message):
    state = torch.load(vit_t_checkpoint, weights_only=True)
    edit(state)
    path = tmp_path / "edited.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=message):
        sam_model_registry["vit_t"](checkpoint=path)


def test_strict_loading_refuses_a_wrong_shape(vit_t_checkpoint, tmp_path):
    state = torch.load(vit_t_checkpoint, weights_only=True)
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 128)
    path = tmp_path / "shape.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"wrong shape.*iou_token"):
        sam_model_registry["vit_t"](checkpoint=path)


def test_wrong_model_type_is_named(vit_t_checkpoint, vit_b_checkpoint):
    with pytest.raises(CheckpointError, match="is a vit_t checkpoint, but model type vit_b"):
        sam_model_registry["vit_b"](checkpoint=vit_t_checkpoint)
    with pytest.raises(CheckpointError, match="is a vit_b checkpoint, but model type vit_t"):
        sam_model_registry["vit_t"](checkpoint=vit_b_checkpoint)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "pickle"])
def test_damaged_checkpoint_files_are_refused(vit_t_checkpoint, tmp_path, damage):
    path = tmp_path / f"{damage}.pt"
    data = vit_t_checkpoint.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint" * 100)
    else:  # an arbitrary pickled object is never unpickled (weights_only=True)
        import pickle
        path.write_bytes(pickle.dumps({"model": object()}))
    with pytest.raises(CheckpointError, match="truncated, corrupted or not a PyTorch"):
        sam_model_registry["vit_t"](checkpoint=path)


def test_missing_checkpoint_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        sam_model_registry["vit_t"](checkpoint=tmp_path / "nope.pt")


def test_build_sam_and_the_default_are_vit_h_as_in_segment_anything():
    import inspect

    from mobilesam import build_sam, build_sam_vit_h

    assert build_sam is build_sam_vit_h
    assert sam_model_registry["default"] is build_sam and sam_model_registry["vit_h"] is build_sam
    assert sorted(sam_model_registry) == ["default", "vit_b", "vit_h", "vit_l", "vit_t"]
    for builder in sam_model_registry.values():
        params = list(inspect.signature(builder).parameters.values())
        assert [(p.name, p.default) for p in params] == [("checkpoint", None)]


@pytest.mark.parametrize("build", [
    lambda path: mobilesam.build_sam(path),
    lambda path: mobilesam.build_sam(checkpoint=path),
    lambda path: sam_model_registry["default"](checkpoint=path),
])
def test_a_mobilesam_checkpoint_for_the_default_model_is_named_before_building(vit_t_checkpoint, monkeypatch,
                                                                               build):
    """build_sam and "default" are vit_h: a vit_t checkpoint gets the CheckpointError naming both types,
    before the 636M-parameter vit_h encoder is built."""
    build_sam_module = importlib.import_module("mobilesam.build_sam")  # the package's `build_sam` is the function

    def refuse_to_build():
        raise AssertionError("the vit_h encoder was built before the checkpoint's type was checked")

    monkeypatch.setitem(build_sam_module.ENCODER_BUILDERS, "vit_h", refuse_to_build)
    with pytest.raises(CheckpointError, match=r"is a vit_t checkpoint, but model type vit_h was requested; "
                                              r"use sam_model_registry\['vit_t'\]"):
        build(vit_t_checkpoint)


def test_build_sam_model_builds_by_type(vit_t_checkpoint):
    from mobilesam.build_sam import build_sam_model
    from mobilesam.modeling import TinyViT

    model = build_sam_model("vit_t", vit_t_checkpoint)
    assert isinstance(model.image_encoder, TinyViT) and not model.training


def test_unknown_model_type():
    from mobilesam.build_sam import build_sam_model
    with pytest.raises(ValueError, match="unknown model type 'vit_x'"):
        build_sam_model("vit_x")


def test_loaded_model_is_in_eval_mode_and_bias_tables_follow_weights(vit_t_checkpoint):
    model = sam_model_registry["vit_t"](checkpoint=vit_t_checkpoint)
    assert not model.training
    attn = model.image_encoder.layers[1].blocks[0].attn
    # The bias table is gathered from the loaded parameters on every call, never a stale copy.
    x = torch.randn(1, 49, 128)
    before = attn(x)
    with torch.no_grad():
        attn.attention_biases.add_(1.0 * torch.arange(49.0))
    assert not torch.allclose(before, attn(x))
    assert attn.attention_bias_idxs.device == attn.attention_biases.device


# ---- segment_anything's constructor arguments ------------------------------------------------

def test_vit_modules_take_rel_pos_zero_init_in_the_official_position():
    """ImageEncoderViT, Block and Attention take `rel_pos_zero_init` where segment_anything does; as
    there it changes nothing: the relative-position tables start at zero either way."""
    import torch.nn as nn

    from mobilesam.modeling.image_encoder import Attention, Block, ImageEncoderViT

    def encoder(zero_init):
        torch.manual_seed(0)
        return ImageEncoderViT(img_size=64, patch_size=16, embed_dim=32, depth=2, num_heads=2, use_rel_pos=True,
                               rel_pos_zero_init=zero_init, window_size=2, global_attn_indexes=(1,))

    a, b = encoder(True).state_dict(), encoder(False).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert a["blocks.0.attn.rel_pos_h"].shape == (3, 16) and a["blocks.1.attn.rel_pos_h"].shape == (7, 16)
    assert not a["blocks.1.attn.rel_pos_w"].any()
    # Official positional order: ..., use_rel_pos, rel_pos_zero_init, window_size, input_size.
    block = Block(32, 2, 4.0, True, nn.LayerNorm, nn.GELU, True, False, 0, (4, 4))
    assert block.window_size == 0 and block.attn.rel_pos_h.shape == (7, 16)
    attn = Attention(32, 2, True, True, False, (4, 4))
    assert attn.rel_pos_w.shape == (7, 16) and not attn.rel_pos_w.any()
    assert attn(torch.randn(1, 4, 4, 32)).shape == (1, 4, 4, 32)
