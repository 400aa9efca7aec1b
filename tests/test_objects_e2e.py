"""Several objects per photo in real Chromium: the object list, selecting by Alt-click, the exports of
all objects (decoded back with pycocotools, PIL and zipfile) and a share link of several objects."""
import io
import json
import zipfile

import numpy as np
from PIL import Image
from scipy.ndimage import binary_fill_holes

from conftest import mask_iou
from support import Page, object_masks, page_with_photo, torch_mask


def download(page, selector, tmp_path):
    with page.page.expect_download() as info:
        page.page.locator(selector).click()
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    return path


def two_objects(browser, app_url):
    """A page with truck.jpg: object 1 a point on the truck, object 2 a box around its left part."""
    page, truck, size = page_with_photo(browser, app_url, "truck.jpg")
    page.click(810, 624, size)
    page.page.get_by_role("button", name="New object").click()
    page.drag(100, 500, 700, 1000, size)
    return page, truck, size


def test_objects_each_hold_their_prompts_and_masks_and_alt_click_selects(browser, app_url, predictor_vit_t):
    page, truck, size = two_objects(browser, app_url)
    state = page.state()
    objects = state["objects"]
    assert len(objects) == 2 and state["selectedObject"] == objects[1]["id"]
    assert [o["selected"] for o in objects] == [False, True]
    assert [(round(p["x"]), round(p["y"]), p["label"]) for p in objects[0]["points"]] == [(810, 624, 1)]
    assert objects[0]["box"] is None
    assert objects[1]["points"] == [] and objects[1]["box"] is not None
    assert state["points"] == [] and state["box"] == objects[1]["box"]  # the old keys: the selected object
    assert page.page.locator(".msam-object").count() == 2
    predictor_vit_t.set_image(truck)
    masks = object_masks(page)
    for o in objects:
        assert mask_iou(masks[o["id"]], torch_mask(predictor_vit_t, o)) >= 0.99
    page.shot("objects-01-two-objects")

    # Alt-click on object 1's mask (outside object 2's) selects it; a click then adds to it
    ys, xs = np.nonzero(masks[objects[0]["id"]] & ~masks[objects[1]["id"]])
    i = len(xs) // 2
    page.click(int(xs[i]), int(ys[i]), size, modifier="Alt")
    state = page.state()
    assert state["selectedObject"] == objects[0]["id"] and state["points"] == objects[0]["points"]
    page.click(1500, 300, size, modifier="Shift")
    state = page.state()
    assert len(state["objects"][0]["points"]) == 2 and state["objects"][1]["points"] == []
    page.page.evaluate("() => window.msam.undo()")
    page.idle()
    assert page.state()["objects"][0]["points"] == objects[0]["points"]
    assert page.state()["objects"][1]["box"] == objects[1]["box"]  # undo stays in the selected object

    page.page.locator(f".msam-object[data-object-id='{objects[1]['id']}'] .msam-object-delete").click()
    page.idle()
    state = page.state()
    assert [o["id"] for o in state["objects"]] == [objects[0]["id"]]
    assert page.errors == []


def test_exports_of_all_objects_decode_back_to_their_masks(browser, app_url, tmp_path):
    from pycocotools import mask as mask_utils

    page, truck, size = two_objects(browser, app_url)
    page.page.evaluate("() => window.msam.renameObject(window.msam.getState().objects[0].id, 'truck cab')")
    masks = list(object_masks(page).values())
    h, w = size

    path = download(page, ".msam-dl-objects", tmp_path)
    doc = json.loads(path.read_text())
    assert doc["image"]["width"] == w and doc["image"]["height"] == h
    assert [a["name"] for a in doc["annotations"]] == ["truck cab", "Object 2"]
    for ann, mask in zip(doc["annotations"], masks):
        rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
        assert np.array_equal(mask_utils.decode(rle).astype(bool), mask)
        assert ann["area"] == int(mask.sum())

    page.page.locator(".msam-exports-all input[type=checkbox]").check()
    doc = json.loads(download(page, ".msam-dl-objects", tmp_path).read_text())
    for ann, mask in zip(doc["annotations"], masks):
        assert isinstance(ann["segmentation"], list) and ann["segmentation"]
        rles = mask_utils.frPyObjects(ann["segmentation"], h, w)
        # polygons outline the regions without their holes (the stand-in weights' masks have many)
        assert mask_iou(mask_utils.decode(mask_utils.merge(rles)).astype(bool), binary_fill_holes(mask)) >= 0.97

    labels = Image.open(download(page, ".msam-dl-labels", tmp_path))
    assert labels.mode == "P" and labels.size == (w, h)
    expected = np.zeros((h, w), np.uint8)
    for k, mask in enumerate(masks, start=1):
        expected[mask] = k
    assert np.array_equal(np.array(labels), expected)
    palette = labels.getpalette()[:9]
    assert palette[:3] == [0, 0, 0] and palette[3:6] != palette[6:9]

    with zipfile.ZipFile(download(page, ".msam-dl-zip", tmp_path)) as z:
        assert z.testzip() is None
        names = z.namelist()
        assert names == ["01_truck_cab.png", "02_Object_2.png"]
        for name, mask in zip(names, masks):
            cut = Image.open(io.BytesIO(z.read(name)))
            assert cut.mode == "RGBA"
            ys, xs = np.nonzero(mask)
            assert cut.size == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            alpha = np.array(cut)[:, :, 3] > 0
            assert np.array_equal(alpha, mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
    assert page.errors == []


def test_share_link_of_several_objects_reproduces_every_mask(browser, app_url):
    page, truck, size = two_objects(browser, app_url)
    page.page.get_by_role("button", name="New object").click()
    page.page.evaluate("() => window.msam.setRefine(true)")
    page.click(1400, 800, size)
    page.click(1300, 700, size)
    page.page.evaluate("() => window.msam.selectObject(window.msam.getState().objects[1].id)")
    original = page.state()
    masks = list(object_masks(page).values())
    link = page.page.evaluate("() => window.msam.getShareLink()")
    assert link.count("obj=") == 3

    shared = Page(browser, link)
    shared.wait_image(truck)
    shared.page.wait_for_function("() => window.msam.getState().objects.length === 3", timeout=60_000)
    shared.idle()
    state = shared.state()
    for a, b in zip(state["objects"], original["objects"]):
        assert (a["points"], a["box"], a["maskMode"]) == (b["points"], b["box"], b["maskMode"])
    assert state["selectedObject"] == state["objects"][1]["id"]
    for got, want in zip(object_masks(shared).values(), masks):
        assert mask_iou(got, want) >= 0.99  # the link may be served the photo's own embedding (see test_app_e2e)
    shared.shot("objects-02-opened-share-link")
    assert shared.errors == []
