"""Real Chromium, compare mode: a share link of refined prompts (made before compare mode was entered)
reopens with both models' masks, SAM's included: each model refines with its own previous mask. Then
the compare panel's per-object IoU list, with a second object."""
import pytest

from conftest import SAMPLES, load_sample, mask_iou
from support import SLOW_MS, ComparePage

IMAGE = "truck.jpg"


def test_a_compare_link_of_refined_clicks_replays_sams_refined_mask(browser, compare_app_url):
    image = load_sample(IMAGE)
    size = image.shape[:2]
    page = ComparePage(browser, compare_app_url)
    page.upload(SAMPLES / IMAGE)
    page.wait_image(image)
    page.page.evaluate("() => window.msam.setRefine(true)")
    page.click(810, 624, size)
    page.click(1100, 800, size)
    page.page.locator("#msam-compare-toggle input").check()
    page.wait_compare()
    page.click(600, 500, size)
    state = page.state()
    assert state["refine"] and len(state["points"]) == 3 and state["compare"]["ready"]
    masks = page.mask(), page.compare_mask()
    link = page.page.evaluate("() => window.msam.getShareLink()")
    assert "compare=vit_b" in link

    shared = ComparePage(browser, link)
    shared.page.wait_for_function("() => { const s = window.msam.getState(); return s.ready && s.points.length === 3; }",
                                  timeout=SLOW_MS)
    shared.wait_compare()
    replayed = shared.mask(), shared.compare_mask()
    assert mask_iou(replayed[0], masks[0]) >= 0.99
    assert mask_iou(replayed[1], masks[1]) >= 0.99  # SAM's refined mask too

    # a second object: the panel lists each object's IoU, the selected one's as the headline number
    shared.page.get_by_role("button", name="New object").click()
    shared.click(1300, 250, size)
    state = shared.state()
    per_object = state["compareObjects"]
    assert [o["id"] for o in per_object] == [o["id"] for o in state["objects"]]
    assert per_object[0]["iou"] == pytest.approx(mask_iou(*replayed), abs=1e-6)
    assert per_object[1]["iou"] == pytest.approx(state["compare"]["iou"], abs=1e-9)
    assert per_object[1]["iou"] == pytest.approx(mask_iou(shared.mask(), shared.compare_mask()), abs=1e-6)
    items = shared.page.locator("#msam-root .msam-cmp-object")
    assert items.count() == 2 and f"IoU {per_object[0]['iou']:.3f}" in items.nth(0).inner_text()
    assert page.errors == [] and shared.errors == []
