"""Real Chromium: many boxes at once (web/boxes.js) -> one object per box, decoded in one batched run,
each mask equal to the PyTorch predictor's for its box; a bad list adds nothing and names its bad lines."""
import numpy as np

from conftest import mask_iou
from support import object_masks, page_with_photo, torch_mask

BOXES = [(100, 500, 700, 1000), (700, 300, 1600, 1100), (1250, 650, 1480, 1000), (0, 0, 900, 400)]


def test_pasted_boxes_become_objects_with_the_predictors_masks(browser, app_url, predictor_vit_t):
    page, truck, size = page_with_photo(browser, app_url, "truck.jpg")
    page.page.get_by_text("Many boxes at once").click()
    text = page.page.locator("#msam-root .msam-boxes-text")
    text.fill("10,20,300,400\n1,2,3\nhello")
    page.page.get_by_role("button", name="Add boxes").click()
    status = page.page.locator("#msam-root .msam-status")
    assert 'line 2 ("1,2,3")' in status.inner_text() and 'line 3 ("hello")' in status.inner_text()
    assert len(page.state()["objects"]) == 1  # nothing added

    text.fill("# x0,y0,x1,y1\n" + "\n".join(",".join(map(str, b)) for b in BOXES))
    page.page.get_by_role("button", name="Add boxes").click()
    page.idle()
    assert page.state()["batchedDecodes"] == len(BOXES)  # decoded together (the fast decoder's batch axis)
    objects = page.state()["objects"]
    assert [tuple(round(o["box"][k]) for k in ("x0", "y0", "x1", "y1")) for o in objects] == BOXES
    assert all(o["points"] == [] for o in objects)
    predictor_vit_t.set_image(truck)
    masks = object_masks(page)
    assert len(masks) == len(BOXES)
    for o in objects:
        expected = torch_mask(predictor_vit_t, o)
        assert expected.any()
        assert mask_iou(masks[o["id"]], expected) >= 0.99
    assert "4 boxes added" in status.inner_text()
    assert np.count_nonzero(page.page.evaluate("() => window.msam.getObjectsJSON().annotations.map((a) => a.area)")) == 4
    page.shot("boxes-01-four-boxes")
    assert page.errors == []
