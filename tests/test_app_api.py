"""The app's API through gradio_client equals the PyTorch predictor; bad requests get clear errors."""
import json

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLES, load_sample, mask_iou
from support import api_client


@pytest.fixture(scope="module")
def client(app_url):
    return api_client(app_url)


def expected_best_mask(predictor, image_name, **prompt):
    predictor.set_image(load_sample(image_name))
    masks, scores, _ = predictor.predict(**prompt)
    i = int(np.argmax(scores))
    return masks[i], scores


@pytest.mark.parametrize("prompts, kwargs", [
    ({"points": [[810, 624, 1]], "box": None, "multimask": True},
     dict(point_coords=np.array([[810.0, 624.0]]), point_labels=np.array([1]), multimask_output=True)),
    ({"points": [[540, 480, 1], [1260, 780, 0]], "box": None, "multimask": False},
     dict(point_coords=np.array([[540.0, 480.0], [1260.0, 780.0]]), point_labels=np.array([1, 0]),
          multimask_output=False)),
    ({"points": [], "box": [180, 240, 1170, 1020], "multimask": False},
     dict(box=np.array([180.0, 240.0, 1170.0, 1020.0]), multimask_output=False)),
])
def test_segment_equals_the_pytorch_predictor(client, predictor_vit_t, prompts, kwargs):
    from gradio_client import handle_file

    mask_path, info = client.predict(handle_file(str(SAMPLES / "truck.jpg")), json.dumps(prompts), api_name="/segment")
    png = Image.open(mask_path)
    assert png.mode == "L" and png.size == (1800, 1200)
    mask = np.array(png)
    assert set(np.unique(mask)) <= {0, 255}
    expected, scores = expected_best_mask(predictor_vit_t, "truck.jpg", **kwargs)
    assert mask_iou(mask == 255, expected) >= 0.99
    info = json.loads(info)
    np.testing.assert_allclose(info["scores"], scores, atol=1e-4)
    assert info["score"] == pytest.approx(float(np.max(scores)), abs=1e-4)


@pytest.mark.parametrize("prompts, message", [
    ('{"points": [[5000, 5, 1]]}', "outside"),
    ('{"points": []}', "empty prompt"),
    ("not json", "not valid JSON"),
])
def test_segment_bad_prompts_give_a_clear_error_and_the_app_keeps_serving(client, prompts, message):
    from gradio_client import handle_file

    with pytest.raises(Exception, match=message):
        client.predict(handle_file(str(SAMPLES / "groceries.jpg")), prompts, api_name="/segment")
    mask_path, _ = client.predict(handle_file(str(SAMPLES / "groceries.jpg")),
                                  '{"points": [[400, 260, 1]]}', api_name="/segment")
    assert Image.open(mask_path).size == (800, 534)


def test_segment_refuses_a_non_image(client, tmp_path):
    from gradio_client import handle_file

    fake = tmp_path / "photo.jpg"
    fake.write_text("this is not an image")
    with pytest.raises(Exception, match="Cannot use this file"):
        client.predict(handle_file(str(fake)), '{"points": [[1, 1, 1]]}', api_name="/segment")


def test_segment_everything_returns_sa1b_annotations(client, vit_t_model):
    from gradio_client import handle_file
    from pycocotools import mask as mask_utils

    from mobilesam import SamAutomaticMaskGenerator

    expected = SamAutomaticMaskGenerator(vit_t_model, points_per_side=4).generate(load_sample("groceries.jpg"))

    path = client.predict(handle_file(str(SAMPLES / "groceries.jpg")), 4, api_name="/segment_everything")
    with open(path) as f:
        doc = json.load(f)
    assert doc["image"]["width"] == 800 and doc["image"]["height"] == 534
    for ann in doc["annotations"]:
        m = mask_utils.decode({"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()})
        assert m.shape == (534, 800) and int(m.sum()) == ann["area"]
    assert sorted(a["area"] for a in doc["annotations"]) == sorted(int(r["area"]) for r in expected)


SEVERAL_OBJECTS = [
    {"points": [[810, 624, 1]], "box": None},
    {"points": [], "box": [180, 240, 1170, 1020]},
    {"points": [[540, 480, 1], [1260, 780, 0]], "box": [300, 300, 1500, 1100]},
    {"box": [900, 100, 1700, 700]},
    {"points": [[1400, 900, 1]]},
]


def _predict_kwargs(obj, multimask):
    kwargs = {"multimask_output": multimask}
    if obj.get("points"):
        arr = np.array(obj["points"], dtype=np.float64)
        kwargs["point_coords"], kwargs["point_labels"] = arr[:, :2], arr[:, 2].astype(np.int64)
    if obj.get("box") is not None:
        kwargs["box"] = np.array(obj["box"], dtype=np.float64)
    return kwargs


@pytest.mark.parametrize("multimask", [True, False])
def test_segment_objects_equals_the_predictor_per_object(client, predictor_vit_t, multimask):
    from gradio_client import handle_file
    from pycocotools import mask as mask_utils

    request = {"objects": SEVERAL_OBJECTS, "multimask": multimask}
    path, summary = client.predict(handle_file(str(SAMPLES / "truck.jpg")), json.dumps(request),
                                   api_name="/segment_objects")
    with open(path) as f:
        doc = json.load(f)
    assert doc["image"]["width"] == 1800 and doc["image"]["height"] == 1200
    assert doc["image"]["file_name"] == "truck.jpg"
    assert [a["id"] for a in doc["annotations"]] == list(range(len(SEVERAL_OBJECTS)))
    predictor_vit_t.set_image(load_sample("truck.jpg"))
    for obj, ann in zip(SEVERAL_OBJECTS, doc["annotations"]):
        seg = ann["segmentation"]
        assert seg["size"] == [1200, 1800] and isinstance(seg["counts"], str)
        mask = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)
        masks, scores, _ = predictor_vit_t.predict(**_predict_kwargs(obj, multimask))
        assert len(scores) == (3 if multimask else 1)
        best = int(np.argmax(scores))
        assert mask_iou(mask, masks[best]) >= 0.99
        assert ann["predicted_iou"] == pytest.approx(float(scores[best]), abs=1e-4)
        assert ann["area"] == int(mask.sum())
        expected_bbox = mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))
        if mask.any():  # pycocotools' box is exclusive of the last pixel, SA-1B's (the generator's) inclusive
            np.testing.assert_allclose(ann["bbox"][:2], expected_bbox[:2])
            np.testing.assert_allclose(np.array(ann["bbox"][2:]) + 1, expected_bbox[2:])
    summary = json.loads(summary)
    assert summary["objects"] == len(SEVERAL_OBJECTS) and summary["multimask"] is multimask
    assert summary["areas"] == [a["area"] for a in doc["annotations"]]


@pytest.mark.parametrize("objects, message", [
    ('{"objects": {"points": [[1, 1, 1]]}}', "objects must be a list"),
    ('{"objects": [{"points": [[10, 10, 1]]}, {"box": [1, 2, 3]}]}', r"object 1: box must be \[x0, y0, x1, y1\]"),
    ('{"objects": [{"points": [[5000, 5, 1]]}]}', "object 0: point .* outside"),
    ("not json", "not valid JSON"),
    ('{"objects": []}', "at least one object"),
])
def test_segment_objects_bad_requests_give_a_clear_error_and_the_app_keeps_serving(client, objects, message):
    from gradio_client import handle_file

    with pytest.raises(Exception, match=message):
        client.predict(handle_file(str(SAMPLES / "groceries.jpg")), objects, api_name="/segment_objects")
    path, summary = client.predict(handle_file(str(SAMPLES / "groceries.jpg")),
                                   '{"objects": [{"points": [[400, 260, 1]]}, {"box": [10, 10, 300, 300]}]}',
                                   api_name="/segment_objects")
    assert json.loads(summary)["objects"] == 2
