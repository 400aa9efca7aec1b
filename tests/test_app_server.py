"""How the app serves the page's files and photos: static files from memory with Brotli/gzip copies
(mobilesam_app/server.py MemoryFiles), and which uploads the page may show from the file it sent
(mobilesam_app/images.py browser_shows_as_loaded)."""
import gzip
import os
from types import SimpleNamespace

import numpy as np
import gradio as gr
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from conftest import ROOT, SAMPLES
from mobilesam_app import server
from mobilesam_app.images import browser_shows_as_loaded, load_rgb_image


def _client(folder):
    files = server.MemoryFiles(folder, {".wasm": "application/wasm", ".js": "text/javascript"})

    def route(request):
        return files.response(request, request.path_params["name"]) or server._not_found()

    return files, TestClient(Starlette(routes=[Route("/f/{name}", route)]))


def test_memory_files_are_served_compressed_once_ready(tmp_path):
    data = bytes(range(256)) * 2000  # 512 KB, compressible
    (tmp_path / "rt.wasm").write_bytes(data)
    files, client = _client(tmp_path)
    r = client.get("/f/rt.wasm", headers={"Accept-Encoding": "br"})  # first request: compression starts
    assert r.status_code == 200 and r.content == data and r.headers["content-type"] == "application/wasm"
    files.wait_compressed()
    for coding in ("br", "gzip"):
        r = client.get("/f/rt.wasm", headers={"Accept-Encoding": f"{coding}, identity"})
        assert r.headers["content-encoding"] == coding and "Accept-Encoding" in r.headers["vary"]
        assert int(r.headers["content-length"]) < len(data) // 10
        assert r.content == data  # the client decoded it: the same bytes
    r = client.get("/f/rt.wasm", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in r.headers and r.content == data
    r = client.get("/f/rt.wasm", headers={"Accept-Encoding": "gzip;q=0, deflate"})
    assert "content-encoding" not in r.headers and r.content == data


def test_memory_files_follow_changes_and_refuse_other_names(tmp_path):
    (tmp_path / "a.js").write_text("export const v = 1;\n" * 100)
    files, client = _client(tmp_path)
    assert client.get("/f/a.js").text.startswith("export const v = 1;")
    files.wait_compressed()
    (tmp_path / "a.js").write_text("export const v = 2;\n" * 100)
    os.utime(tmp_path / "a.js", ns=(1, 1))  # a different mtime, whatever the clock's resolution
    r = client.get("/f/a.js", headers={"Accept-Encoding": "gzip"})
    assert r.text.startswith("export const v = 2;")  # not the old file's compressed copy
    (tmp_path / "x.py").write_text("secret")
    for name in ("x.py", "missing.js", "..%2Fa.js", ".hidden.js"):
        assert client.get(f"/f/{name}").status_code == 404


def test_compressed_copies_decode_to_the_file():
    data = os.urandom(1000) * 50
    copies = server._compressed_copies(data)
    assert gzip.decompress(copies["gzip"]) == data
    brotli = pytest.importorskip("brotli")
    assert brotli.decompress(copies["br"]) == data


@pytest.mark.parametrize("header,coding,expected", [
    ("gzip, deflate, br, zstd", "br", True), ("GZIP", "gzip", True), ("gzip;q=0.5", "gzip", True),
    ("gzip;q=0", "gzip", False), ("br;q=0.0", "br", False), ("identity", "gzip", False), ("", "br", False),
    ("gzip;q=bad", "gzip", False)])
def test_accept_encoding(header, coding, expected):
    assert server.accepts_encoding(header, coding) is expected


def _save(tmp_path, name, image, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def test_which_uploads_the_page_shows_from_its_own_file(tmp_path):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    shown = [_save(tmp_path, "a.jpg", rgb, quality=90), _save(tmp_path, "a.png", rgb),
             _save(tmp_path, "a.webp", rgb, lossless=True), _save(tmp_path, "g.png", rgb.convert("L"))]
    exif = rgb.getexif()
    exif[0x0112] = 6  # rotated: browsers apply EXIF orientation as load_rgb_image does
    shown.append(_save(tmp_path, "rot.jpg", rgb, exif=exif))
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # any profile but sRGB
    shown.append(_save(tmp_path, "srgb.jpg", rgb, icc_profile=srgb))
    for path in shown:
        assert browser_shows_as_loaded(path), path.name
    hidden = [_save(tmp_path, "rgba.png", rgb.convert("RGBA")), _save(tmp_path, "cmyk.jpg", rgb.convert("CMYK")),
              _save(tmp_path, "p.png", rgb.convert("P")), _save(tmp_path, "a.gif", rgb),
              _save(tmp_path, "a.bmp", rgb), _save(tmp_path, "a.tiff", rgb),
              _save(tmp_path, "anim.webp", rgb, save_all=True, append_images=[rgb.rotate(90)]),
              _save(tmp_path, "i16.png", Image.fromarray(np.full((8, 8), 40000, np.uint16))),
              _save(tmp_path, "other-profile.jpg", rgb, icc_profile=lab)]
    for orientation in (2, 3, 6):  # Chromium ignores the EXIF orientation of WebP and PNG files
        turned = rgb.getexif()
        turned[0x0112] = orientation
        hidden += [_save(tmp_path, f"o{orientation}.webp", rgb, exif=turned, lossless=True),
                   _save(tmp_path, f"o{orientation}.png", rgb, exif=turned)]
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really")
    hidden.append(tmp_path / "bad.jpg")
    hidden.append(tmp_path / "missing.jpg")
    for path in hidden:
        assert not browser_shows_as_loaded(path), path.name
    # what the page shows from the file it sent is the picture the server segments (size, orientation)
    for path in shown:
        with Image.open(path) as im:
            w, h = im.size
        expected = (w, h) if path.name != "rot.jpg" else (h, w)
        assert load_rgb_image(str(path)).shape[:2] == expected[::-1]


# --------------------------------------------------------------------------- one encode per upload

def test_single_flight_shares_concurrent_calls_and_recent_results():
    import threading
    import time

    from mobilesam_app.service import SharedCallFailed, SingleFlight

    flight = SingleFlight(ttl_s=0.5)
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return len(calls)

    results = []
    threads = [threading.Thread(target=lambda: results.append(flight.run("a", slow))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [1, 1, 1] and len(calls) == 1
    assert flight.run("a", slow) == 1 and flight.run("b", slow) == 2  # kept for a; b is its own call
    time.sleep(0.6)
    assert flight.run("a", slow) == 3  # expired: computed again

    def broken():
        calls.append(1)
        raise ValueError("bad file")

    # a failure: its own caller gets the exception, later callers within ttl_s a SharedCallFailed
    with pytest.raises(ValueError, match="bad file"):
        flight.run("c", broken)
    with pytest.raises(SharedCallFailed, match="bad file") as raised:
        flight.run("c", broken)
    assert isinstance(raised.value.__cause__, ValueError) and len(calls) == 4
    time.sleep(0.6)
    with pytest.raises(ValueError, match="bad file"):  # expired: tried again
        flight.run("c", broken)
    assert len(calls) == 5


def test_single_flight_tells_waiting_callers_the_call_failed():
    import threading
    import time

    from mobilesam_app.service import SharedCallFailed, SingleFlight

    flight = SingleFlight()
    started = threading.Event()

    def slow_failure():
        started.set()
        time.sleep(0.2)
        raise ValueError("corrupt")

    errors = []

    def call():
        try:
            flight.run("k", slow_failure)
        except Exception as exc:
            errors.append(type(exc))

    first = threading.Thread(target=call)
    first.start()
    started.wait(5)
    second = threading.Thread(target=call)
    second.start()
    first.join()
    second.join()
    assert errors == [ValueError, SharedCallFailed]


def test_two_events_for_one_upload_read_and_encode_it_once(tmp_path, monkeypatch):
    import threading
    import time

    from mobilesam_app import service as service_mod

    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(photo)
    loads, encodes = [], []

    class Engine:
        model_type = "vit_t"

        def encode(self, image, **kwargs):
            encodes.append(image.shape)
            time.sleep(0.3)  # the second event arrives while the first one encodes
            return object()

    h = service_mod.Service.__new__(service_mod.Service)
    h.engine, h._uploads = Engine(), service_mod.SingleFlight()
    h.resized = SimpleNamespace(adopt=lambda image: None)  # no resized copy was sent first
    real_load = service_mod.Service.load_image
    monkeypatch.setattr(service_mod.Service, "load_image", staticmethod(lambda p: loads.append(p) or real_load(p)))
    out = []
    threads = [threading.Thread(target=lambda: out.append(h.encode_upload_once(str(photo), lambda *a, **k: None)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and encodes == [(24, 32, 3)]
    assert out[0][0] is out[1][0]  # the same encoding
    assert sorted(image is None for _, image in out) == [False, True]  # the image only for the caller that read it


def _bare_page_events():
    from mobilesam_app import service as service_mod
    from mobilesam_app.ui import PageEvents

    class Engine:
        model_type = "vit_t"

        def encode(self, image, **kwargs):
            raise AssertionError("not reached: the file cannot be read")

    service = service_mod.Service.__new__(service_mod.Service)
    service.engine, service._uploads = Engine(), service_mod.SingleFlight()
    service.resized = SimpleNamespace(adopt=lambda image: None)  # no resized copy was sent first
    return PageEvents(service)


def test_an_emptied_upload_box_leaves_the_photo_and_its_prompts():
    """Gradio empties the upload box after refusing a file over its size limit (and its clear button
    does too): the event then changes none of its outputs, so the page keeps the photo and prompts."""
    import gradio as gr

    out = _bare_page_events().encode_upload(None, False, None, progress=lambda *a, **k: None)
    assert len(out) == 7 and all(value == gr.skip() for value in out)


def test_one_bad_upload_shows_its_error_once(tmp_path):
    """Gradio fires two events for one upload: one of them shows the file's error, the other one
    leaves the page as it is (it used to show the same error a second time)."""
    import threading

    import gradio as gr

    bad = tmp_path / "truncated.jpg"
    data = (SAMPLES / "groceries.jpg").read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    h = _bare_page_events()
    errors, unchanged = [], []

    def event():
        try:
            out = h.encode_upload(str(bad), False, None, progress=lambda *a, **k: None)
            unchanged.append(all(value == gr.skip() for value in out))
        except gr.Error as exc:
            errors.append(exc.message)

    threads = [threading.Thread(target=event) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 1 and "Cannot use this file" in errors[0] and "truncated or corrupt" in errors[0]
    assert unchanged == [True]


def test_an_image_sent_as_a_data_url_goes_through_the_apps_own_checks(tmp_path):
    import base64

    import gradio as gr
    from gradio.data_classes import ImageData as FileData

    from mobilesam_app.ui import raw_image_input
    from mobilesam_app.images import ImageLoadError

    component = raw_image_input()
    component.GRADIO_CACHE = str(tmp_path)
    photo = (SAMPLES / "groceries.jpg").read_bytes()

    def data_url(data: bytes, mime="image/jpeg") -> FileData:
        return FileData(path=None, url=f"data:{mime};base64," + base64.b64encode(data).decode())

    path = component.preprocess(data_url(photo))
    assert path.startswith(str(tmp_path)) and path.endswith(".jpg") and open(path, "rb").read() == photo
    np.testing.assert_array_equal(load_rgb_image(path), load_rgb_image(str(SAMPLES / "groceries.jpg")))
    # a corrupt image reaches the app's loader (Gradio's own decoding failed with a generic error)
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_rgb_image(component.preprocess(data_url(photo[: len(photo) // 3])))
    for url in ("http://example.com/photo.jpg", "data:image/png,notbase64", "data:image/png;base64,%%%"):
        with pytest.raises(gr.Error, match="Cannot use this image"):
            component.preprocess(FileData(path=None, url=url))


# --------------------------------------------------------------------------- head written into the page

def test_head_and_early_control_are_written_into_the_index_html_only():
    from starlette.responses import HTMLResponse, PlainTextResponse, Response

    head = server.page_head({"decoderUrl": "/msam/models/d.onnx", "ortBase": "/web/ort/"})
    body = server.page_body()
    # a "<body" in the head's scripts is not the page's body
    page = ("<!doctype html><html><head lang='en'><title>x</title><script>'<body>'</script></head>"
            "<body style='margin: 0'>app</body></html>")
    app = Starlette(routes=[
        Route("/", lambda r: HTMLResponse(page)),
        Route("/other", lambda r: HTMLResponse(page)),
        Route("/gz", lambda r: Response(b"<head>", media_type="text/html", headers={"Content-Encoding": "gzip"})),
        Route("/text", lambda r: PlainTextResponse("<head>"))],
        middleware=server.middleware(head, body))
    client = TestClient(app)
    r = client.get("/")
    assert r.status_code == 200 and int(r.headers["content-length"]) == len(r.content)
    assert r.text.startswith("<!doctype html><html><head lang='en'>\n" + head)
    assert r.text.endswith("<title>x</title><script>'<body>'</script></head><body style='margin: 0'>\n"
                           + body + "app</body></html>")
    assert r.text.count("/web/main.js") == 1 and r.text.count('id="msam-early"') == 1
    # the early control's script is web/early.js, inline, and it is valid inside <script>
    assert (ROOT / "web" / "early.js").read_text() in body and body.count("</script>") == 1
    assert r.headers["cross-origin-embedder-policy"] == "require-corp"  # isolation headers still there
    assert client.get("/other").text == page
    assert client.get("/text").text == "<head>"
    assert client.post("/").status_code == 405
    # without a head, only the isolation headers
    plain = TestClient(Starlette(routes=[Route("/", lambda r: HTMLResponse(page))], middleware=server.middleware()))
    assert plain.get("/").text == page


def test_gradio_summarises_its_analytics_rarely(monkeypatch):
    """Gradio's per-event analytics summary (pandas, GIL held) runs every 200th event in the app,
    unless the environment asks otherwise."""
    import gradio as gr

    from mobilesam_app.startup import spare_gradio_analytics

    def queue_frequency(env):
        monkeypatch.setattr(os, "environ", env)
        spare_gradio_analytics()
        with gr.Blocks() as demo:
            gr.Textbox()
        demo.queue()
        return demo._queue.ANAYLTICS_CACHE_FREQUENCY

    assert queue_frequency({}) == 200
    assert queue_frequency({"GRADIO_ANALYTICS_CACHE_FREQUENCY": "5"}) == 5


def test_a_link_naming_an_image_twice_restores_the_first_as_the_page_reads_it():
    """`?image=A&image=B`: the page's URLSearchParams.get takes A (and A's prompts), so the server must
    restore A too (Starlette's QueryParams.get gives B)."""
    from types import SimpleNamespace

    from starlette.datastructures import QueryParams

    first, second = "a" * 32, "b" * 32
    asked = []

    class Store:
        def get(self, image_id):
            asked.append(image_id)
            return None  # no longer stored: the handler says so and restores nothing

    h = _bare_page_events()
    h.service.engine.store, h.service.sam_models = Store(), None
    h.service.default_compare_model = lambda: None
    request = SimpleNamespace(query_params=QueryParams(f"image={first}&image={second}&points=1,2,1"))
    with pytest.warns(UserWarning, match="no longer available"):  # gr.Warning outside an event
        info, session_image, *_ = h.restore_from_link(request, progress=lambda *a, **k: None)
    assert asked == [first] and info == "null" and session_image is None


def test_segment_everything_with_no_mask_says_why_the_picture_is_the_plain_photo(tmp_path):
    events = _bare_page_events()
    image = np.zeros((24, 32, 3), np.uint8)
    image_id = "0" * 32

    class Store:
        def get(self, key):
            return image if key == image_id else None

    events.service.engine.store = Store()
    events.service.segment_everything = lambda img, n, progress: ([], tmp_path / "a.json", 0.25)
    picture, _, summary = events.segment_everything_ui(image_id, 8, progress=lambda *a, **k: None)
    assert summary.startswith("0 masks in 0.2 s (8×8 grid)")
    assert "no mask passed the quality thresholds" in summary and "denser grid" in summary
    np.testing.assert_array_equal(picture, image)
    events.service.segment_everything = lambda img, n, progress: ([{"segmentation": np.ones((24, 32), bool)}],
                                                                  tmp_path / "a.json", 0.25)
    assert events.segment_everything_ui(image_id, 8, progress=lambda *a, **k: None)[2] == "1 masks in 0.2 s (8×8 grid)"



def test_a_page_opened_without_a_link_keeps_what_the_user_chose_meanwhile():
    """The page-load event of a page opened without `?image=` changes none of its outputs: a photo chosen
    on the early control may have its upload event end before the load event (its `.then` then read
    the load's empty info and the page lost the photo)."""
    from starlette.datastructures import QueryParams

    h = _bare_page_events()
    request = SimpleNamespace(query_params=QueryParams("points=1,2,1"))
    outputs = h.restore_from_link(request, progress=lambda *a, **k: None)
    assert len(outputs) == 5 and all(o == gr.skip() for o in outputs)


def test_the_page_load_event_never_writes_the_uploads_image_info(app_url):
    """In the running app's wiring, the load event (a share link's image) writes its own hidden info
    box, which its `.then` reads; the info box an upload's `.then` reads is written by uploads and
    compare mode only."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"{app_url}/config", timeout=30) as r:
        config = json.load(r)
    ids = {c["props"].get("elem_id"): c["id"] for c in config["components"] if c.get("props")}
    upload_info, link_info = ids["msam-info"], ids["msam-link-info"]
    deps = config["dependencies"]
    loads = [d for d in deps if any(t[1] == "load" for t in d["targets"])]
    assert loads and all(upload_info not in d["outputs"] for d in loads)
    assert any(link_info in d["outputs"] for d in loads)
    after_load = [d for d in deps if d.get("trigger_after") in {x["id"] for x in loads}]
    assert after_load and all(d["inputs"] == [link_info] for d in after_load)
