"""Bad input to the model and predictor raises specific errors; batched prompts work."""
import numpy as np
import pytest
import torch

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
    ({"point_coords": np.array([[10.0, 10.0, 1.0]]), "point_labels": np.array([1])}, "N×2"),
    ({"point_coords": np.array([[np.nan, 10.0]]), "point_labels": np.array([1])}, "NaN"),
    ({"point_coords": np.array([[np.inf, 10.0]]), "point_labels": np.array([1])}, "infinite"),
    ({"point_coords": np.array([[900.0, 10.0]]), "point_labels": np.array([1])}, "outside"),
    ({"point_coords": np.array([[10.0, -1.0]]), "point_labels": np.array([1])}, "outside"),
    ({"point_coords": np.array([[10.0, 10.0]]), "point_labels": np.array([7])}, "unknown point label"),
    ({"point_labels": np.array([1])}, "without point_coords"),
    ({"box": np.array([300.0, 10.0, 100.0, 200.0])}, "x0 <= x1"),
    ({"box": np.array([10.0, 10.0, 100.0])}, "shape"),
    ({"box": np.array([10.0, 10.0, 100.0, 9000.0])}, "outside"),
    ({"box": np.array([10.0, np.nan, 100.0, 90.0])}, "NaN"),
    ({"mask_input": np.zeros((256, 256))}, "1×256×256"),
    ({}, "empty prompt"),
    ({"point_coords": np.zeros((0, 2)), "point_labels": np.zeros((0,))}, "empty prompt"),
])
def test_predict_rejects_bad_prompts(predictor, kwargs, message):
    with pytest.raises(ValueError, match=message):
        predictor.predict(**kwargs)


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


def test_unknown_model_type():
    from mobilesam.build_sam import build_sam
    with pytest.raises(ValueError, match="unknown model type 'vit_x'"):
        build_sam("vit_x")


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
