"""Long-lived caching of the decoder files and onnxruntime-web's runtime (mobilesam_app/server.py):
content-addressed URLs with `immutable`, ETag revalidation of the plain ones, compressed copies, and
in Chromium: a returning page takes the decoder from its HTTP cache without a request on the wire."""
import contextlib
import hashlib
import random
import threading
import time

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from conftest import free_port
from mobilesam_app import server

YEAR = "public, max-age=31536000, immutable"


def _decoder(tmp_path, data: bytes, name: str = "decoder.onnx"):
    path = tmp_path / name
    path.write_bytes(data)
    path.with_name(name + ".sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    return path


def _client(path) -> TestClient:
    routes = server.make_routes(lambda: {path.name: path}, lambda m, i, f: None, lambda i: None)
    return TestClient(Starlette(routes=routes))


def test_decoder_url_names_the_bytes(tmp_path):
    path = _decoder(tmp_path, b"one decoder" * 1000)
    first = server.decoder_url(path)
    assert first == f"/msam/models/{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}/decoder.onnx"
    _decoder(tmp_path, b"another decoder" * 1000)  # same name, other bytes (a re-export)
    assert server.decoder_url(path) != first


def test_decoder_under_its_digest_is_immutable_and_compressed(tmp_path):
    data = bytes(range(256)) * 4000 + b"\0" * 200_000  # compressible
    path = _decoder(tmp_path, data)
    with _client(path) as client:
        url = server.decoder_url(path)
        first = client.get(url)
        assert first.status_code == 200 and first.content == data
        assert first.headers["cache-control"] == YEAR
        etag = first.headers["etag"]
        assert etag == f'"{hashlib.sha256(data).hexdigest()}"'
        server.MODEL_FILES.wait_compressed()
        packed = client.get(url, headers={"Accept-Encoding": "gzip"})
        assert packed.headers["content-encoding"] == "gzip" and packed.content == data
        assert int(packed.headers["content-length"]) < len(data) // 2
        plain = client.get(url, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.content == data
        again = client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""


class _PreemptedOnRelease:
    """A lock whose release, in the compression pool's thread, is followed by a pause: the thread
    preempted right after it (a busy host, and that thread runs at the lowest priority)."""

    def __init__(self):
        self.lock = threading.Lock()

    def __enter__(self):
        self.lock.acquire()

    def __exit__(self, *exc):
        self.lock.release()
        if threading.current_thread().name.startswith("mobilesam-compress"):
            time.sleep(0.3)


def test_wait_compressed_waits_for_a_file_another_thread_just_verified(tmp_path):
    """The pool verifies a decoder (prepare, at start-up) while a request reads it: once the request
    has the entry, wait_compressed returns only after its compression (a full-suite run on a busy host
    once found the copy still missing)."""
    path = _decoder(tmp_path, bytes(range(256)) * 4000)
    files = server.VerifiedFiles()
    files._lock = _PreemptedOnRelease()
    files.prepare([path])
    deadline = time.time() + 10
    while path not in files._data:  # verified by the pool, which is now paused
        assert time.time() < deadline
        time.sleep(0.01)
    entry = files.entry(path)  # the request: served from memory
    files.wait_compressed()
    assert set(entry.compressed) >= {"gzip"}
    files._pool.shutdown()


def test_decoder_under_another_digest_or_none_is_revalidated(tmp_path):
    data = b"a decoder" * 5000
    path = _decoder(tmp_path, data)
    with _client(path) as client:
        stale = client.get("/msam/models/0123456789abcdef/decoder.onnx")
        assert stale.status_code == 200 and stale.content == data
        assert stale.headers["cache-control"] == "no-cache"  # never today's bytes under another digest for a year
        plain = client.get("/msam/models/decoder.onnx")
        assert plain.headers["cache-control"] == "no-cache" and plain.headers["etag"]
        assert client.get("/msam/models/decoder.onnx",
                          headers={"If-None-Match": plain.headers["etag"]}).status_code == 304
        assert client.get("/msam/models/0123456789abcdef/other.onnx").status_code == 404


def test_corrupted_decoder_is_refused_under_its_digest_too(tmp_path):
    good = b"an exported decoder" * 1000
    path = _decoder(tmp_path, good)
    url = server.decoder_url(path)
    path.write_bytes(good[:-5])
    with _client(path) as client:
        assert client.get(url).status_code == 503


@pytest.mark.skipif(not server.ORT_DIST.is_dir(), reason="onnxruntime-web is not installed (npm ci in web/)")
def test_runtime_under_its_tag_is_immutable():
    base = server.ort_base_url()
    tag = server.ort_tag()
    assert base == f"/web/ort/{tag}/" and len(tag) == 16
    digest = hashlib.sha256()
    for name in server.ORT_RUNTIME_FILES:
        digest.update(name.encode() + b"\0" + (server.ORT_DIST / name).read_bytes())
    assert tag == digest.hexdigest()[:16]
    routes = server.make_routes(lambda: {}, lambda m, i, f: None, lambda i: None)
    with TestClient(Starlette(routes=routes)) as client:
        r = client.get(base + "ort.wasm.min.mjs")
        assert r.status_code == 200 and r.headers["cache-control"] == YEAR
        assert r.content == (server.ORT_DIST / "ort.wasm.min.mjs").read_bytes()
        assert client.get("/web/ort/0000000000000000/ort.wasm.min.mjs").status_code == 404
        assert client.get("/web/ort/ort.wasm.min.mjs").headers["cache-control"] == "public, max-age=3600"


@contextlib.contextmanager
def _serve(app):
    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started:
        assert time.time() < deadline, "the test server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)


def test_returning_page_takes_the_decoder_from_the_browser_cache(tmp_path):
    """Chromium, one profile, two visits of a page that fetches the decoder as web/decoder.js does:
    the first downloads it, the second gets it from the HTTP cache with no request on the wire."""
    sync_api = pytest.importorskip("playwright.sync_api")
    data = random.Random(0).randbytes(2_000_000)  # incompressible: its bytes show on the wire
    path = _decoder(tmp_path, data)
    url = server.decoder_url(path)
    page_html = ("<script>window.got = fetch(%r).then((r) => r.arrayBuffer()).then((b) => b.byteLength);</script>"
                 % url)
    routes = server.make_routes(lambda: {path.name: path}, lambda m, i, f: None, lambda i: None)
    routes.append(Route("/", lambda request: HTMLResponse(page_html, headers={"Cache-Control": "no-store"})))
    with _serve(Starlette(routes=routes)) as base, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context()
            visits = []
            for _ in range(2):
                page = context.new_page()
                cdp = context.new_cdp_session(page)
                cdp.send("Network.enable")
                seen = {"cached": 0, "bytes": 0}

                def on_response(event, seen=seen):
                    response = event["response"]
                    if response["url"].endswith(url) and response.get("fromDiskCache"):
                        seen["cached"] += 1

                def on_finished(event, seen=seen):
                    seen["bytes"] += event["encodedDataLength"]  # bytes on the wire, every request

                cdp.on("Network.responseReceived", on_response)
                cdp.on("Network.loadingFinished", on_finished)
                page.goto(base + "/")
                assert page.evaluate("window.got") == len(data)
                page.wait_for_timeout(200)
                visits.append(dict(seen))
                page.close()
        finally:
            browser.close()
    first, second = visits
    assert first["cached"] == 0 and first["bytes"] >= len(data) // 2  # downloaded (maybe compressed)
    assert second["cached"] >= 1 and second["bytes"] < 10_000  # from the cache: no decoder bytes on the wire
