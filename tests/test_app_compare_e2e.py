"""Compare mode end to end: an app started with --sam-checkpoint (stand-in vit_t and vit_b weights).

In real Chromium: entering compare mode, every click / box / hover decodes both models in the
browser (no server request), each mask equals its own PyTorch predictor's, the IoU shown equals
the IoU of the PyTorch masks, and a shared link re-enters compare mode. Through gradio_client:
the `compare` API equals both PyTorch predictors.

Screenshots are saved under test-output/compare/. One image (the SAM ViT-B encoder takes tens
of seconds on a small CPU; the server caches its embedding for the later steps).
"""
import json

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, SAMPLES, load_sample, mask_iou
from support import ComparePage, api_client, torch_mask

SHOTS = ROOT / "test-output" / "compare"
IMAGE = "truck.jpg"

pytestmark = pytest.mark.browser  # real Chromium: skipped by scripts/test.sh --quick


@pytest.fixture(scope="module")
def predictors(vit_t_model, vit_b_model):
    """PyTorch predictors of both models, primed with the test image."""
    from mobilesam import SamPredictor

    image = load_sample(IMAGE)
    out = {}
    for name, model in (("mobilesam", vit_t_model), ("sam", vit_b_model)):
        out[name] = SamPredictor(model)
        out[name].set_image(image)
    return out


def check_against_pytorch(page, predictors):
    """Both masks equal their PyTorch predictors'; the IoU shown equals the PyTorch masks' IoU."""
    state = page.state()
    cmp = state["compare"]
    assert cmp["ready"] and cmp["error"] is None and state["error"] is None
    expected_a = torch_mask(predictors["mobilesam"], state)
    expected_b = torch_mask(predictors["sam"], state)
    got_a, got_b = page.mask(), page.compare_mask()
    assert mask_iou(got_a, expected_a) >= 0.99
    assert mask_iou(got_b, expected_b) >= 0.99
    torch_iou = mask_iou(expected_a, expected_b)
    assert cmp["iou"] == pytest.approx(torch_iou, abs=0.01)
    shown = page.page.locator("#msam-root .msam-cmp-iou").inner_text()
    assert float(shown) == pytest.approx(cmp["iou"], abs=0.0005)
    assert cmp["area"] == int(got_b.sum()) and cmp["mobilesam"]["area"] == int(got_a.sum())
    assert cmp["scores"] is not None and len(cmp["scores"]) == 4
    return state


def test_compare_mode_in_the_browser(browser, compare_app_url, predictors):
    from mobilesam_app.store import image_id_of

    image = load_sample(IMAGE)
    size = image.shape[:2]
    image_id = image_id_of(image)
    page = ComparePage(browser, compare_app_url)
    page.upload(SAMPLES / IMAGE)
    page.wait_image(image)
    assert page.state()["compare"] is None

    page.page.locator("#msam-compare-toggle input").check()
    page.page.wait_for_timeout(1500)
    page.shot("00-loading-sam")  # the progress bar while SAM loads and encodes
    page.wait_compare()
    page.page.get_by_text("Comparing MobileSAM with SAM ViT-B").first.wait_for(timeout=30_000)
    assert any(u.endswith(f"/msam/embedding/vit_b/{image_id}.f16") for u in page.requests)
    assert any("/msam/models/" in u and "vit_b" in u for u in page.requests)  # SAM's own decoder
    cmp = page.state()["compare"]
    assert cmp["model"] == "vit_b" and cmp["iou"] is None
    assert cmp["params"]["sam"] > 10 * cmp["params"]["mobilesam"] > 0
    assert cmp["encodeMs"]["sam"] > 0 and cmp["encodeMs"]["mobilesam"] > 0
    page.shot("01-compare-mode")

    start = len(page.requests)
    page.click(810, 624, size)
    state = check_against_pytorch(page, predictors)
    assert len(state["points"]) == 1 and state["compare"]["selectedIndex"] in (1, 2, 3)
    page.page.mouse.move(5, 5)
    page.idle()
    page.shot("02-click")

    page.click(1260, 780, size, modifier="Shift")
    state = check_against_pytorch(page, predictors)
    assert [p["label"] for p in state["points"]] == [1, 0] and state["compare"]["selectedIndex"] == 0

    page.page.keyboard.press("Escape")
    page.idle()
    assert page.state()["compare"]["iou"] is None
    page.drag(180, 240, 1170, 1020, size)
    state = check_against_pytorch(page, predictors)
    assert state["box"] is not None
    summary = state["compare"]["summary"]
    assert summary.startswith("1800×1200 image · box · MobileSAM ")
    assert f"IoU {state['compare']['iou']:.3f}" in summary and "(this server)" in summary
    assert page.page.locator("#msam-root .msam-cmp-summary").input_value() == summary
    page.page.mouse.move(5, 5)
    page.idle()
    page.shot("03-box-side-by-side")

    before = page.state()["compare"]["decodeCount"]
    for x in range(300, 1500, 200):  # hovering over SAM's image previews both models
        page.page.mouse.move(*page.sam_canvas_point(x, 500, size))
    page.idle()
    assert page.state()["compare"]["decodeCount"] > before
    page.shot("04-hover-preview")
    page.page.mouse.move(5, 5)
    page.idle()

    page.page.get_by_role("button", name="Overlay").click()
    page.idle()
    assert page.state()["compare"]["view"] == "overlay"
    assert not page.page.locator("#msam-root .msam-pane-b").is_visible()
    page.shot("05-overlay")
    page.page.get_by_role("button", name="Side by side").click()
    assert page.server_requests_since(start) == [], "prompts must be decoded in the browser, by both models"

    link = page.page.evaluate("() => window.msam.getShareLink()")
    assert "&compare=vit_b" in link and f"image={image_id}" in link
    mask_a, mask_b = page.mask(), page.compare_mask()

    # the shared link re-enters compare mode with the same prompts (the server re-encodes: cached here)
    shared = ComparePage(browser, link)
    shared.wait_compare()
    shared.page.wait_for_function("() => window.msam.getState().compare.iou !== null", timeout=60_000)
    shared.idle()
    assert shared.state()["box"] == state["box"]
    assert mask_iou(shared.mask(), mask_a) >= 0.999 and mask_iou(shared.compare_mask(), mask_b) >= 0.999
    assert shared.page.locator("#msam-compare-toggle input").is_checked()
    shared.page.mouse.move(5, 5)
    shared.idle()
    shared.shot("06-shared-link")

    # leaving compare mode keeps the prompts and MobileSAM's mask
    shared.page.locator("#msam-compare-toggle input").uncheck()
    shared.page.wait_for_function("() => window.msam.getState().compare === null", timeout=60_000)
    shared.idle()
    assert mask_iou(shared.mask(), mask_a) >= 0.999
    assert "compare=" not in shared.page.evaluate("() => window.msam.getShareLink()")
    assert not shared.page.locator("#msam-root .msam-compare").is_visible()
    shared.shot("07-compare-off")
    assert page.errors == [] and shared.errors == []


@pytest.fixture(scope="module")
def client(compare_app_url):
    return api_client(compare_app_url)


@pytest.mark.parametrize("prompts, kwargs", [
    ({"points": [[810, 624, 1]], "box": None, "multimask": True},
     dict(point_coords=np.array([[810.0, 624.0]]), point_labels=np.array([1]), multimask_output=True)),
    ({"points": [[540, 480, 1]], "box": [180, 240, 1170, 1020], "multimask": False},
     dict(point_coords=np.array([[540.0, 480.0]]), point_labels=np.array([1]),
          box=np.array([180.0, 240.0, 1170.0, 1020.0]), multimask_output=False)),
])
def test_compare_api_equals_both_pytorch_predictors(client, predictors, prompts, kwargs):
    from gradio_client import handle_file

    path_a, path_b, summary = client.predict(handle_file(str(SAMPLES / IMAGE)), json.dumps(prompts),
                                             api_name="/compare")
    summary = json.loads(summary)
    expected = {}
    for name, path in (("mobilesam", path_a), ("sam", path_b)):
        png = Image.open(path)
        assert png.mode == "L" and png.size == (1800, 1200)
        mask = np.array(png)
        assert set(np.unique(mask)) <= {0, 255}
        masks, scores, _ = predictors[name].predict(**kwargs)
        best = int(np.argmax(scores))
        expected[name] = masks[best]
        assert mask_iou(mask == 255, masks[best]) >= 0.99
        numbers = summary[name]
        np.testing.assert_allclose(numbers["scores"], scores, atol=1e-4)
        assert numbers["index"] == best and numbers["score"] == pytest.approx(float(scores[best]), abs=1e-4)
        assert abs(numbers["area"] - int(masks[best].sum())) <= 0.01 * max(1, int(masks[best].sum()))
        assert numbers["encode_ms"] > 0 and numbers["encoder_params"] > 0
    assert summary["mobilesam"]["model"] == "vit_t" and summary["sam"]["model"] == "vit_b"
    assert summary["iou"] == pytest.approx(mask_iou(expected["mobilesam"], expected["sam"]), abs=0.01)
    assert summary["image"] == {"width": 1800, "height": 1200}
    assert summary["prompts"]["multimask"] == prompts["multimask"]
    assert f"IoU {summary['iou']:.3f}" in summary["summary"]


def test_compare_api_bad_prompts_give_a_clear_error(client):
    from gradio_client import handle_file

    with pytest.raises(Exception, match="empty prompt"):
        client.predict(handle_file(str(SAMPLES / IMAGE)), '{"points": []}', api_name="/compare")
