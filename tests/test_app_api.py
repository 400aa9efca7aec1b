"""The app's API through gradio_client equals the PyTorch predictor; bad requests get clear errors."""
import json

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLES, load_sample, mask_iou


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


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
