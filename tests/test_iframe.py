"""The Hub's iframe, in real Chromium: a page of another origin without COOP/COEP embeds the app (as the
Hub shows a Space). The framed app is not cross-origin isolated; it says so and links to the full page
(target=_blank), which is isolated and shows no notice; both segment the photo, with the same mask."""

import numpy as np
from PIL import Image

from conftest import ROOT

from mobilesam_app.store import image_id_of

from support import HubLikeParent, app_frame, load_photo, mask_from_bits, mask_iou

PHOTO = ROOT / "examples" / "dogs.jpg"
# The isolated page decodes with several threads, whose kernels sum in another order than the one
# thread of the framed page: a pixel whose logit is within rounding of 0 can flip (1 of 267,329 once).
# The same mask, up to that.
SAME_MASK_IOU = 0.9999


def mask_after_click(frame, x, y):
    frame.evaluate("() => window.msam.clear()")
    frame.evaluate("([x, y]) => window.msam.addPoint(x, y, 1)", [x, y])
    frame.evaluate("() => window.msam.whenIdle()")
    return frame.evaluate("() => window.msam.getMaskBitsBase64()")


def test_framed_page_says_it_is_slow_and_opens_the_full_page(app_url, browser):
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    h, w = photo.shape[:2]
    parent = HubLikeParent(app_url)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(parent.url)
        assert page.evaluate("crossOriginIsolated") is False
        frame = app_frame(page, app_url)
        assert frame.evaluate("crossOriginIsolated") is False
        notice = frame.locator(".msam-isolation")
        notice.wait_for(timeout=30_000)
        assert "one thread" in notice.inner_text()
        link = frame.locator("a.msam-full-page")
        assert link.get_attribute("target") == "_blank"
        assert link.get_attribute("href").startswith(app_url)
        load_photo(frame, PHOTO, image_id_of(photo))
        framed = mask_after_click(frame, w // 2, h // 2)
        assert framed is not None and framed["width"] == w and framed["height"] == h
        assert frame.evaluate("() => window.msam.getState().ort.isolated") is False

        with page.context.expect_page() as popup:
            link.click()
        full = popup.value
        full.wait_for_function("() => window.msam && typeof window.msam.getState === 'function'", timeout=60_000)
        assert full.evaluate("crossOriginIsolated") is True
        assert full.locator(".msam-isolation").count() == 0
        load_photo(full, PHOTO, image_id_of(photo))
        threaded = mask_after_click(full, w // 2, h // 2)  # the same mask, decoded with threads
        assert (threaded["width"], threaded["height"]) == (w, h)
        assert mask_iou(mask_from_bits(threaded), mask_from_bits(framed)) >= SAME_MASK_IOU
        assert full.evaluate("() => window.msam.getState().ort.isolated") is True
    finally:
        page.context.close()
        parent.close()
