"""Real Chromium: the share-link box follows the prompts, and downloads are named after the photo."""
from support import Page, page_with_photo


def link_box(page):
    return page.page.locator("#msam-root .msam-link").input_value()


def test_an_old_share_link_goes_when_the_prompts_change_and_downloads_carry_the_photos_name(browser, app_url):
    page, _, size = page_with_photo(browser, app_url, "truck.jpg")
    page.click(810, 624, size)
    page.page.get_by_role("button", name="Copy link").click()
    page.page.wait_for_function("() => document.querySelector('#msam-root .msam-link').value !== ''")
    first = link_box(page)
    assert first == page.page.evaluate("() => window.msam.getShareLink()")
    assert page.page.get_by_text("Link copied").count() + page.page.get_by_text("Link ready to copy").count() == 1

    page.click(1260, 780, size, modifier="Shift")  # a later prompt: the old link no longer reopens this
    assert link_box(page) == ""
    assert page.page.get_by_text("Link copied").count() + page.page.get_by_text("Link ready to copy").count() == 0
    page.page.get_by_role("button", name="Copy link").click()
    page.page.wait_for_function("() => document.querySelector('#msam-root .msam-link').value !== ''")
    assert link_box(page) not in ("", first)

    with page.page.expect_download() as download:
        page.page.get_by_role("button", name="Download mask PNG").click()
    assert download.value.suggested_filename == "truck_mask.png"

    shared = Page(browser, link_box(page))  # a share link's page knows no file name: a short, readable one
    shared.page.wait_for_function("() => { const s = window.msam.getState(); return s.ready && s.points.length === 2; }",
                                  timeout=120_000)
    shared.idle()
    with shared.page.expect_download() as download:
        shared.page.get_by_role("button", name="Download mask PNG").click()
    image_id = shared.state()["imageId"]
    assert download.value.suggested_filename == f"image-{image_id[:8]}_mask.png"
    assert page.errors == [] and shared.errors == []
