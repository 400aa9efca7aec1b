"""End to end in real Chromium: upload, click, box, undo, download, bad upload; masks equal PyTorch's.

Screenshots of each step are saved under test-output/e2e/ for a reviewer. With MOBILESAM_SCREENSHOT=PATH,
the click test also writes the README's screenshot (a photo with its mask, 1000 px wide) to PATH.
"""
import base64

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLES, load_sample, mask_iou
from support import Page, page_with_photo, torch_mask


pytestmark = pytest.mark.browser  # real Chromium: skipped by scripts/test.sh --quick


def test_click_box_undo_download_and_bad_upload(browser, app_url, predictor_vit_t, tmp_path):
    page = Page(browser, app_url)
    assert page.page.evaluate("() => window.crossOriginIsolated") is True
    page.shot("01-opened")

    image = load_sample("truck.jpg")
    size = image.shape[:2]
    predictor_vit_t.set_image(image)
    page.upload(SAMPLES / "truck.jpg")
    page.wait_image(image)
    page.shot("02-uploaded")

    start = len(page.requests)
    page.click(810, 624, size)
    state = page.state()
    assert len(state["points"]) == 1 and state["points"][0]["label"] == 1
    assert mask_iou(page.mask(), torch_mask(predictor_vit_t, state)) >= 0.99
    page.shot("03-click")
    page.readme_shot()

    page.click(1260, 780, size, modifier="Shift")
    state = page.state()
    assert [p["label"] for p in state["points"]] == [1, 0]
    assert mask_iou(page.mask(), torch_mask(predictor_vit_t, state)) >= 0.99
    page.shot("04-negative-point")

    page.click(400, 300, size, button="right")
    assert [p["label"] for p in page.state()["points"]] == [1, 0, 0]

    page.page.keyboard.press("Control+z")
    page.idle()
    assert [p["label"] for p in page.state()["points"]] == [1, 0]

    page.page.keyboard.press("Escape")
    page.idle()
    assert page.state()["points"] == []
    page.drag(180, 240, 1170, 1020, size)
    state = page.state()
    assert state["box"] is not None and abs(state["box"]["x0"] - 180) < 4 and abs(state["box"]["y1"] - 1020) < 4
    assert mask_iou(page.mask(), torch_mask(predictor_vit_t, state)) >= 0.99
    page.shot("05-box")

    for x in range(300, 1500, 150):  # hover previews
        page.page.mouse.move(*page.canvas_point(x, 500, size))
    page.idle()
    assert page.state()["decodeCount"] > 3

    # a click where the pointer rests takes the preview's masks (no decode of its own), and they are
    # the predictor's for the committed prompts
    before = page.state()
    page.page.mouse.click(*page.canvas_point(1350, 500, size))
    page.idle()
    state = page.state()
    assert state["previewReuses"] == before["previewReuses"] + 1 and state["decodeCount"] == before["decodeCount"]
    assert mask_iou(page.mask(), torch_mask(predictor_vit_t, state)) >= 0.99
    assert page.server_requests_since(start) == [], "prompts must be decoded in the browser"

    with page.page.expect_download() as download:
        page.page.get_by_role("button", name="Download mask PNG").click()
    path = tmp_path / "mask.png"
    download.value.save_as(path)
    with Image.open(path) as downloaded:
        assert downloaded.mode == "L"  # as the segment API writes it
        png = np.array(downloaded)
    assert png.shape == size and set(np.unique(png)) <= {0, 255}
    url = page.page.evaluate("() => window.msam.getMaskDataURL()")
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == path.read_bytes()  # the same file as the download
    assert mask_iou(png > 127, torch_mask(predictor_vit_t, page.state())) >= 0.99
    page.shot("06-downloaded")

    kept = page.state()
    bad = tmp_path / "holiday.jpg"
    bad.write_text("not really a photo")
    page.upload(bad)
    page.page.get_by_text("Cannot use this file").first.wait_for(timeout=30_000)
    page.page.wait_for_timeout(1500)  # Gradio's second event for the upload has ended too
    assert page.page.get_by_text("Cannot use this file").count() == 1  # one error, shown once
    assert page.page.locator("#msam-upload img").count() == 0  # the refused file left the upload box
    page.shot("07-bad-upload")
    state = page.state()
    assert (state["imageId"], state["points"], state["box"]) == (kept["imageId"], kept["points"], kept["box"])

    huge = tmp_path / "huge.png"  # over the upload limit: Gradio refuses it and empties the upload box
    huge.write_bytes(b"\x89PNG" + b"\0" * (50 * 2**20 + 16))
    page.upload(huge)
    page.page.get_by_text("exceed the maximum allowed size").first.wait_for(timeout=30_000)
    page.page.wait_for_timeout(1500)
    page.idle()
    state = page.state()
    assert state["ready"] and (state["imageId"], state["points"], state["box"]) == (
        kept["imageId"], kept["points"], kept["box"]), "the photo and its prompts must stay"
    page.shot("07b-too-big-upload")

    groceries = load_sample("groceries.jpg")
    page.upload(SAMPLES / "groceries.jpg")
    page.wait_image(groceries)
    page.click(360, 277, groceries.shape[:2])
    predictor_vit_t.set_image(groceries)
    assert mask_iou(page.mask(), torch_mask(predictor_vit_t, page.state())) >= 0.99
    page.shot("08-next-upload-works")
    assert page.errors == []


def test_share_link_reproduces_the_masks_and_segment_everything_draws_them(browser, app_url, predictor_vit_t):
    page, groceries, size = page_with_photo(browser, app_url, "groceries.jpg")
    page.click(360, 277, size)
    page.click(560, 347, size, modifier="Shift")
    original = page.mask()
    link = page.page.evaluate("() => window.msam.getShareLink()")
    assert "image=" in link and "points=" in link
    page.shot("09-before-share")

    shared = Page(browser, link)
    shared.wait_image(groceries)
    shared.page.wait_for_function("() => window.msam.getState().points.length === 2", timeout=60_000)
    shared.idle()
    state = shared.state()
    assert [p["label"] for p in state["points"]] == [1, 0]
    # (the sender decoded the embedding of the resized copy its page sent first; the link may be served the
    # photo's own embedding, e.g. once the API encoded it exactly: the same mask within the copy's bound)
    assert mask_iou(shared.mask(), original) >= 0.99
    predictor_vit_t.set_image(groceries)
    assert mask_iou(shared.mask(), torch_mask(predictor_vit_t, state)) >= 0.99
    shared.shot("10-opened-share-link")

    unknown = Page(browser, app_url + "/?image=" + "0" * 32)
    unknown.page.get_by_text("no longer available").first.wait_for(timeout=30_000)
    assert unknown.state()["imageId"] in (None, "")

    page.segment_everything(points_per_side=4)
    page.shot("11-segment-everything")


def test_segment_everything_and_links_follow_the_photo_the_page_shows(browser, app_url):
    """A share link's restore that finishes after the user's own upload is dropped by the page; segment
    everything segments the photo the page shows (not the session's last encoded one), and its results
    leave when another photo is chosen."""
    truck, groceries = load_sample("truck.jpg"), load_sample("groceries.jpg")
    other = Page(browser, app_url)
    other.upload(SAMPLES / "truck.jpg")
    other.wait_image(truck)
    truck_info = other.page.evaluate("() => window.msam._app.info")
    other.page.close()

    page = Page(browser, app_url)
    page.upload(SAMPLES / "groceries.jpg")
    page.wait_image(groceries)
    page.click(360, 277, groceries.shape[:2])
    # what app.py's LINK_IMAGE_JS does when a link's restore comes back late
    applied = page.page.evaluate("(info) => window.msam.setImage(info, null, {fromLink: true})", truck_info)
    assert applied is False
    state = page.state()
    assert state["imageId"] == image_id(groceries) and len(state["points"]) == 1

    # the page shows truck; the server's session still has groceries as its last encoded image
    page.page.evaluate("(info) => window.msam.setImage(info)", truck_info)
    page.wait_image(truck)
    picture = page.segment_everything(points_per_side=4)
    page.page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=picture.element_handle())
    size = picture.evaluate("(img) => [img.naturalHeight, img.naturalWidth]")
    assert tuple(size) == truck.shape[:2]

    page.upload(SAMPLES / "groceries.jpg")
    page.wait_image(groceries)
    page.page.get_by_text("masks in").first.wait_for(state="detached", timeout=30_000)
    assert page.page.locator("[data-testid=accordion-content] img").count() == 0
    assert page.errors == []


def test_share_link_of_refined_prompts_reproduces_their_mask(browser, app_url):
    """With "refine with previous mask" each decode takes the previous mask as input: the link carries
    that history and the opened page replays it, so the mask is the same (it used to be the
    unrefined one), and the page goes on refining."""
    page, truck, size = page_with_photo(browser, app_url, "truck.jpg")
    page.page.evaluate("() => window.msam.setRefine(true)")
    for x, y in ((900, 600), (400, 300), (1300, 900)):
        page.click(x, y, size)
    original = page.mask()
    link = page.page.evaluate("() => window.msam.getShareLink()")
    assert "refine=1,2" in link

    shared = Page(browser, link)
    shared.wait_image(truck)
    shared.page.wait_for_function("() => window.msam.getState().points.length === 3", timeout=60_000)
    shared.idle()
    # (the sender decoded the embedding of the resized copy its page sent first; the link may be served the
    # photo's own embedding, e.g. once the API encoded it exactly: the same mask within the copy's bound)
    assert mask_iou(shared.mask(), original) >= 0.99
    assert shared.state()["refine"] is True
    plain = Page(browser, link.replace("&refine=1,2", ""))  # the same prompts decoded without the history
    plain.wait_image(truck)
    plain.page.wait_for_function("() => window.msam.getState().points.length === 3", timeout=60_000)
    plain.idle()
    assert not np.array_equal(plain.mask(), original)
    assert page.errors == shared.errors == plain.errors == []


def test_an_extreme_panorama_gets_a_canvas_that_can_be_clicked(browser, app_url, tmp_path):
    """A 4000×20 photo (within the aspect limit) used to get a 4 px tall canvas: it now keeps 48 px
    and scrolls sideways, with its aspect ratio, and a click lands where it should."""
    strip = np.random.default_rng(0).integers(0, 255, (20, 4000, 3), dtype=np.uint8)
    path = tmp_path / "strip.png"
    Image.fromarray(strip).save(path)
    page = Page(browser, app_url)
    page.upload(path)
    page.wait_image(strip)
    page.page.wait_for_function("() => window.msam._app.image != null")  # the photo is drawn, not the placeholder
    box = page.page.locator("#msam-root canvas").first.bounding_box()
    assert box["height"] >= 48 and abs(box["width"] / box["height"] - 200) < 2
    page.click(100, 10, strip.shape[:2])
    point = page.state()["points"][0]
    assert abs(point["x"] - 100.5) <= 1.5 and abs(point["y"] - 10.5) <= 1.5
    assert page.errors == []


def test_esc_and_ctrl_z_in_other_widgets_leave_the_prompts(browser, app_url):
    """Esc closing the model dropdown, or Ctrl+Z typed in it, is not an edit of the prompts; on the
    page (after a click on the photo) they still undo and clear."""
    page, groceries, size = page_with_photo(browser, app_url, "groceries.jpg")
    page.click(360, 277, size)
    page.click(560, 347, size)
    dropdown = page.page.locator("#msam-compare-model input")
    for key in ("Escape", "Control+z"):  # (a clear is undoable: each key is checked on its own)
        dropdown.click()
        page.page.keyboard.press(key)
        page.idle()
        assert len(page.state()["points"]) == 2, key
    page.click(200, 200, size)
    page.page.keyboard.press("Control+z")
    page.idle()
    assert len(page.state()["points"]) == 2
    page.page.keyboard.press("Escape")
    page.idle()
    assert page.state()["points"] == []
    assert page.errors == []


def image_id(image):
    from mobilesam_app.store import image_id_of

    return image_id_of(image)


ENGINES_JS = """
async () => {
  const app = window.msam._app;
  const { MaskModel } = await import('/web/decoder.js');
  const { fetchEmbedding } = await import('/web/embedding.js');
  const info = app.info;
  const base64 = (bytes) => {
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  };
  const prompts = { points: [{ x: info.width * 0.4, y: info.height * 0.55, label: 1 }], box: null };
  const out = {};
  for (const worker of [true, false]) {
    const m = new MaskModel({ ...app.config, worker, warmUp: worker });
    await m.load(app.config.decoderUrl);
    if (worker) {  // no embedding yet: the warm-up runs all its decodes
      const t0 = performance.now();
      while (!m.warmUpResult && performance.now() - t0 < 60000) await new Promise((r) => setTimeout(r, 50));
    }
    const emb = await fetchEmbedding(info.embedding_url);
    await m.setEmbedding(emb, info);
    const first = await m.decode(prompts);
    const again = await m.decode(prompts, first.lowRes.subarray(0, 65536));
    out[worker ? 'worker' : 'page'] = {
      provider: m.provider, warmUp: m.warmUpResult, embeddingKept: emb.length,
      optimizationLevel: m.loadTimings.optimizationLevel,
      scores: Array.from(first.scores), refinedScores: Array.from(again.scores),
      lowRes: base64(new Uint8Array(first.lowRes.buffer, 0, 4 * 65536)),
    };
  }
  return out;
}
"""


def test_decoder_worker_and_in_page_engine_agree(browser, app_url):
    """The decoder worker (the app's default, with its warm-up runs) and the same engine in the page
    (the fallback) give the same masks; the caller keeps its embedding array; the fast decoder, saved
    optimised, is loaded without onnxruntime-web's own optimisation."""
    page = Page(browser, app_url)
    image = load_sample("groceries.jpg")
    page.upload(SAMPLES / "groceries.jpg")
    page.wait_image(image)
    page.idle()
    # a JPEG upload is shown from the page's own decode of the chosen file, not the server's PNG copy
    shown = page.page.evaluate("() => { const i = window.msam._app.image; return i && i.constructor.name; }")
    assert shown == "ImageBitmap", shown
    assert not [u for u in page.server_requests_since(0) if "/msam/image/" in u]
    out = page.page.evaluate(ENGINES_JS)
    worker, in_page = out["worker"], out["page"]
    assert worker["provider"] == "wasm (worker)" and in_page["provider"] == "wasm"
    assert worker["warmUp"]["runs"] == 6 and all(ms > 0 for ms in worker["warmUp"]["ms"])
    assert in_page["warmUp"] is None
    # the fast decoder is saved optimised; its float16 weights ask for the "basic" level, which folds
    # their casts to float32 constants once at load (the float32 export asks for "disabled")
    assert worker["optimizationLevel"] == in_page["optimizationLevel"] == "basic"
    assert worker["embeddingKept"] == in_page["embeddingKept"] == 256 * 64 * 64
    a = np.frombuffer(base64.b64decode(worker["lowRes"]), np.float32)
    b = np.frombuffer(base64.b64decode(in_page["lowRes"]), np.float32)
    assert a.shape == (65536,) and np.isfinite(a).all() and a.std() > 0
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    np.testing.assert_allclose(worker["scores"], in_page["scores"], atol=1e-5)
    np.testing.assert_allclose(worker["refinedScores"], in_page["refinedScores"], atol=1e-5)
    assert not page.errors, page.errors
    page.page.close()
