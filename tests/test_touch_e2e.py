"""A phone (390x844, touch): the canvas comes into view once a photo is chosen, a tap adds a
foreground point, the +/- control makes taps add background points, a one-finger drag draws a box,
and the help speaks of taps, not of right-click or hover."""
from conftest import SAMPLES, load_sample


def touch_drag(page, cdp, a, b, steps=6):
    """One finger from a to b (CSS pixels of the viewport), as the touch screen sends it."""
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": a[0], "y": a[1]}]})
    for i in range(1, steps + 1):
        x, y = a[0] + (b[0] - a[0]) * i / steps, a[1] + (b[1] - a[1]) * i / steps
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        page.wait_for_timeout(20)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def test_phone_touch_taps_points_drags_a_box_and_shows_touch_help(browser, app_url):
    from mobilesam_app.store import image_id_of

    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True,
                                  device_scale_factor=2)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(app_url)
    page.wait_for_function("() => window.msam && typeof window.msam.getState === 'function'", timeout=60_000)
    assert page.evaluate("() => matchMedia('(hover: none) and (pointer: coarse)').matches")
    image = load_sample("groceries.jpg")
    page.locator("#msam-upload input[type=file]").first.set_input_files(str(SAMPLES / "groceries.jpg"))
    page.wait_for_function("(id) => { const s = window.msam.getState(); return s.ready && s.imageId === id; }",
                           arg=image_id_of(image), timeout=120_000)
    canvas = page.locator("#msam-root canvas").first
    page.wait_for_function("""() => { const r = document.querySelector('#msam-root canvas').getBoundingClientRect();
                              return r.top >= 0 && r.bottom <= innerHeight && r.height > 100; }""", timeout=10_000)

    # the help on screen speaks of taps
    visible_text = page.evaluate("() => document.body.innerText")
    assert "Tap" in visible_text
    assert "right-click" not in visible_text.lower() and "hover" not in visible_text.lower()

    h, w = image.shape[:2]
    box = canvas.bounding_box()
    at = lambda x, y: (box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h)
    page.touchscreen.tap(*at(360, 277))
    page.evaluate("() => window.msam.whenIdle()")
    state = page.evaluate("() => window.msam.getState()")
    assert [p["label"] for p in state["points"]] == [1] and state["scores"] is not None

    page.locator(".msam-point-label").tap()
    page.touchscreen.tap(*at(560, 347))
    page.evaluate("() => window.msam.whenIdle()")
    assert [p["label"] for p in page.evaluate("() => window.msam.getState()")["points"]] == [1, 0]

    cdp = context.new_cdp_session(page)
    touch_drag(page, cdp, at(100, 100), at(500, 400))
    page.evaluate("() => window.msam.whenIdle()")
    b = page.evaluate("() => window.msam.getState()")["box"]
    assert b is not None
    assert abs(b["x0"] - 100) < 8 and abs(b["y0"] - 100) < 8 and abs(b["x1"] - 500) < 8 and abs(b["y1"] - 400) < 8
    assert len(page.evaluate("() => window.msam.getState()")["points"]) == 2  # the drag added no point
    assert errors == []
    context.close()
