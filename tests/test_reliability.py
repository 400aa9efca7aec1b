"""Faults: abandoned requests, corrupted and truncated cache files, failed writes, interrupted downloads.

The app-level tests run their own app (bench/load.py's AppProcess) on a cache folder they can
corrupt and restart; the rest call the library directly with the failure simulated.
"""
import errno
import hashlib
import io
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLES, load_sample

from mobilesam_app import store as store_mod
from mobilesam_app.store import ImageStore, LRUCache, image_id_of

from support import AppProcess, api_client

REQUEST_TIMEOUT_S = 120  # "bounded time" on a shared 2-core machine


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def http_get(url, timeout=60):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def noise_image(path: Path, seed: int, size=(640, 480)) -> np.ndarray:
    """A picture nobody else uses (so the server must encode it), saved as PNG."""
    image = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(image).save(path)
    return image


# --------------------------------------------------------------------------- the app under test

class App:
    """bench/load.py's AppProcess on a cache folder of this module, restartable."""

    def __init__(self, checkpoint: Path, cache: Path) -> None:
        self.checkpoint, self.cache = checkpoint, cache
        self.process = None
        self.start()

    def start(self):
        # no decoder in the cache folder: the corrupted-export test needs the app to export its decoder
        # itself (the encoder's export, made in the background and not under test here, is seeded)
        self.process = AppProcess(self.checkpoint, self.cache, seed_onnx=("encoder",))
        self.url = self.process.url

    def restart(self):
        self.process.stop()
        self.start()

    def client(self, tmp_path):
        return api_client(self.url, tmp_path)

    def segment(self, tmp_path, image_path, prompts='{"points": [[10, 10, 1]]}'):
        """A normal `segment` request that must complete within REQUEST_TIMEOUT_S."""
        from gradio_client import handle_file

        client = self.client(tmp_path)
        try:
            job = client.submit(handle_file(str(image_path)), prompts, api_name="/segment")
            return job.result(timeout=REQUEST_TIMEOUT_S)
        finally:
            client.close()

    def decoder_path(self) -> Path:
        # the browser's decoder (not the encoder, nor the server's own float32 one, "-decoder-weights-")
        (path,) = [p for p in (self.cache / "onnx").glob("*-decoder*-v*.onnx") if "-decoder-weights-" not in p.name]
        return path


@pytest.fixture(scope="module")
def app(vit_t_checkpoint, tmp_path_factory):
    app = App(vit_t_checkpoint, tmp_path_factory.mktemp("reliability-cache"))
    try:
        yield app
    except Exception:
        print(app.process.log_tail())
        raise
    finally:
        app.process.stop()


# --------------------------------------------------------------------------- abandoned requests

def test_uploads_abandoned_mid_way_do_not_wedge_the_server(app, tmp_path):
    host, port = "127.0.0.1", int(app.url.rsplit(":", 1)[1])
    boundary = "----msam" + uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode()
    hanging = []
    for i in range(8):  # more than every concurrency limit; half are closed, half left hanging
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(f"POST /gradio_api/upload HTTP/1.1\r\nHost: {host}:{port}\r\n"
                  f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                  f"Content-Length: {20 * 2**20}\r\n\r\n".encode() + head + b"\x89PNG" + b"\0" * 65536)
        if i % 2:
            s.close()
        else:
            hanging.append(s)
    try:
        start = time.time()
        mask_path, _ = app.segment(tmp_path, SAMPLES / "groceries.jpg", '{"points": [[400, 260, 1]]}')
        assert Image.open(mask_path).size == (800, 534)
        assert time.time() - start < REQUEST_TIMEOUT_S
    finally:
        for s in hanging:
            s.close()
    mask_path, _ = app.segment(tmp_path, SAMPLES / "groceries.jpg", '{"points": [[100, 100, 1]]}')
    assert Image.open(mask_path).size == (800, 534)


def _fn_index(url: str, api_name: str) -> int:
    _, body = http_get(url + "/config")
    config = json.loads(body)
    for i, dep in enumerate(config["dependencies"]):
        if dep.get("api_name") == api_name:
            return dep.get("id", i)
    raise LookupError(api_name)


def _upload(url: str, path: Path) -> str:
    import httpx

    with open(path, "rb") as f:
        r = httpx.post(url + "/gradio_api/upload", files={"files": (path.name, f, "image/png")}, timeout=60)
    r.raise_for_status()
    return r.json()[0]


def _start_and_abandon(url: str, fn_index: int, uploaded: str, wait_for: str = "process_starts") -> bool:
    """Join the queue as a browser would, read the event stream until `wait_for`, then hang up."""
    import httpx

    session = uuid.uuid4().hex
    payload = {"data": [{"path": uploaded, "meta": {"_type": "gradio.FileData"}, "orig_name": "x.png"},
                        '{"points": [[5, 5, 1]]}'],
               "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    httpx.post(url + "/gradio_api/queue/join", json=payload, timeout=30).raise_for_status()
    deadline = time.time() + 60
    with httpx.stream("GET", url + "/gradio_api/queue/data", params={"session_hash": session},
                      timeout=30) as stream:
        for line in stream.iter_lines():
            if f'"msg": "{wait_for}"' in line or f'"msg":"{wait_for}"' in line:
                return True  # leaving the with-block closes the connection mid-request
            if time.time() > deadline:
                break
    return False


def test_requests_abandoned_mid_encode_do_not_wedge_the_queue(app, tmp_path):
    fn_index = _fn_index(app.url, "segment")
    started = 0
    for seed in range(5):  # more than the segment API's concurrency limit (4)
        path = tmp_path / f"noise{seed}.png"
        noise_image(path, seed)
        started += _start_and_abandon(app.url, fn_index, _upload(app.url, path))
    assert started >= 1  # at least one was abandoned while the server worked on it
    start = time.time()
    mask_path, _ = app.segment(tmp_path, SAMPLES / "groceries.jpg", '{"points": [[200, 130, 1]]}')
    assert Image.open(mask_path).size == (800, 534)
    assert time.time() - start < REQUEST_TIMEOUT_S
    for _ in range(5):  # slots were released: more requests than the concurrency limit in a row
        app.segment(tmp_path, SAMPLES / "groceries.jpg", '{"points": [[20, 30, 1]]}')


# --------------------------------------------------------------------------- corrupted cache files

def test_corrupted_decoder_is_rebuilt_on_restart_and_never_served(app):
    from mobilesam.utils.digest import sha256_of_file

    # The module's app started on an empty cache folder: what it serves is a fresh export.
    assert "exported the ONNX decoder" in app.process.log_tail(50000)
    path = app.decoder_path()
    status, body = http_get(f"{app.url}/msam/models/{path.name}")
    fresh = hashlib.sha256(body).hexdigest()
    assert status == 200 and fresh == sha256_of_file(path)
    assert (path.parent / (path.name + ".sha256")).read_text().split()[0] == fresh

    app.process.stop()
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64  # bit rot: same size, other bytes
    path.write_bytes(bytes(data))
    assert sha256_of_file(path) != fresh
    app.start()
    assert "exporting it again" in app.process.log_tail(20000)
    assert sha256_of_file(path) == fresh  # rebuilt on disk
    status, body = http_get(f"{app.url}/msam/models/{path.name}")
    assert status == 200 and hashlib.sha256(body).hexdigest() == fresh


def test_decoder_route_refuses_a_file_that_no_longer_matches_its_digest(tmp_path):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from mobilesam_app import server

    good = b"an exported decoder" * 1000
    path = tmp_path / "decoder.onnx"
    sidecar = tmp_path / "decoder.onnx.sha256"
    path.write_bytes(good[:-7])  # truncated after its digest was written
    sidecar.write_text(f"{hashlib.sha256(good).hexdigest()}  decoder.onnx\n")
    routes = server.make_routes(lambda: {"decoder.onnx": path}, lambda m, i: None, lambda i: None)
    with TestClient(Starlette(routes=routes)) as client:
        r = client.get("/msam/models/decoder.onnx")
        assert r.status_code == 503 and good[:100] not in r.content
        path.write_bytes(good)
        r = client.get("/msam/models/decoder.onnx")
        assert r.status_code == 200 and r.content == good
        path.write_bytes(b"X" + good[1:])  # corrupted after it was verified: the verified bytes are served
        r = client.get("/msam/models/decoder.onnx")
        assert r.status_code == 200 and r.content == good


def test_corrupted_stored_image_is_never_served_and_is_stored_again(app, tmp_path):
    image = load_sample("dogs.jpg")
    image_id = image_id_of(image)
    app.segment(tmp_path, SAMPLES / "dogs.jpg")
    stored = app.cache / "images" / f"{image_id}.png"
    url = f"{app.url}/msam/image/{image_id}.png"
    status, body = http_get(url)
    assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(body)).convert("RGB")), image)

    # A valid PNG with other pixels (worst case: it decodes fine), then a truncated one.
    other = image.copy()
    other[0, 0] ^= 0xFF
    for corrupt in (lambda: Image.fromarray(other).save(stored, format="PNG"),
                    lambda: stored.write_bytes(stored.read_bytes()[:1000])):
        corrupt()
        status, _ = http_get(url)
        assert status == 404 and not stored.exists()
        # The same picture uploaded again (its embedding is still cached) is stored again.
        app.segment(tmp_path, SAMPLES / "dogs.jpg")
        status, body = http_get(url)
        assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(body)).convert("RGB")), image)


def test_image_store_verifies_ids_and_rewrites_corrupted_files(tmp_path, caplog):
    store = ImageStore(tmp_path)
    image = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    image_id = image_id_of(image)
    path = store.put(image_id, image)
    assert np.array_equal(store.get(image_id), image) and store.path_of(image_id) == path
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with caplog.at_level(logging.WARNING):
        assert store.get(image_id) is None
    assert "unreadable" in caplog.text and not path.exists()
    Image.fromarray(255 - image).save(path, format="PNG")
    assert store.has(image_id) and store.path_of(image_id) is None and not path.exists()
    Image.fromarray(255 - image).save(path, format="PNG")
    assert store.put(image_id, image) == path  # a corrupted file is not kept by put
    assert np.array_equal(store.get(image_id), image)
    for bad in ("../" + image_id, image_id.upper(), image_id[:16], "0" * 31, "0" * 33, image_id + ".png"):
        assert store.path_of(bad) is None and store.get(bad) is None and not store.has(bad)


def test_image_store_writes_later_and_knows_the_image_meanwhile(tmp_path, monkeypatch):
    store = ImageStore(tmp_path)
    image = np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    image_id = image_id_of(image)
    gate = threading.Event()
    real_put = store.put
    writes = []

    def slow_put(*args):  # the PNG write, held until the test lets it go
        writes.append(args[0])
        gate.wait(10)
        return real_put(*args)

    monkeypatch.setattr(store, "put", slow_put)
    store.put_later(image_id, image)
    store.put_later(image_id, image)  # already queued: not written twice
    assert store.has(image_id) and np.array_equal(store.get(image_id), image)
    assert not (tmp_path / f"{image_id}.png").exists()
    found = []
    waiter = threading.Thread(target=lambda: found.append(store.path_of(image_id)))
    waiter.start()
    time.sleep(0.2)
    assert waiter.is_alive() and not found  # path_of waits for the file...
    gate.set()
    waiter.join(10)
    assert found == [tmp_path / f"{image_id}.png"]  # ...and returns it once written
    store.wait_writes()
    assert writes == [image_id]
    with Image.open(found[0]) as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), image)
    # a later change of the file is still caught (the check is by the file's bytes)
    other = image.copy()
    other[0, 0] ^= 0xFF
    Image.fromarray(other).save(found[0], format="PNG")
    assert store.path_of(image_id) is None and not found[0].exists()


def test_image_store_write_waits_its_delay_unless_the_file_is_asked_for(tmp_path):
    image = np.random.default_rng(2).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    image_id = image_id_of(image)
    store = ImageStore(tmp_path, write_delay_s=0.5)
    start = time.monotonic()
    store.put_later(image_id, image)
    time.sleep(0.25)
    assert not (tmp_path / f"{image_id}.png").exists()  # not yet: the delay runs
    deadline = time.monotonic() + 10
    while store.has(image_id) and not (tmp_path / f"{image_id}.png").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (tmp_path / f"{image_id}.png").exists() and time.monotonic() - start >= 0.5  # written after it
    other = image[::-1].copy()
    slow = ImageStore(tmp_path, write_delay_s=60)
    slow.put_later(image_id_of(other), other)
    start = time.monotonic()
    assert slow.path_of(image_id_of(other)) == tmp_path / f"{image_id_of(other)}.png"  # asked for: written now
    assert time.monotonic() - start < 10


def test_image_store_writes_wait_while_encodes_run(tmp_path):
    """Each encode (defer_writes) pushes a delayed write back: it happens once the store is quiet
    for write_delay_s, at most max_defer_s after put_later, and at once when many bytes wait."""
    image = np.random.default_rng(3).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    image_id = image_id_of(image)
    path = tmp_path / f"{image_id}.png"
    store = ImageStore(tmp_path, write_delay_s=0.3)
    store.put_later(image_id, image)
    busy_until = time.monotonic() + 1.0
    while time.monotonic() < busy_until:  # an encode every 0.1 s
        store.defer_writes()
        assert not path.exists()
        time.sleep(0.1)
    quiet = time.monotonic()
    while not path.exists() and time.monotonic() - quiet < 10:
        time.sleep(0.02)
    assert path.exists() and time.monotonic() - quiet >= 0.2

    capped = ImageStore(tmp_path / "capped", write_delay_s=0.3, max_defer_s=0.5)
    start = time.monotonic()
    capped.put_later(image_id, image)
    while capped.has(image_id) and not (tmp_path / "capped" / path.name).exists():
        capped.defer_writes()  # busy all the time: written anyway once max_defer_s is over
        assert time.monotonic() - start < 10
        time.sleep(0.05)
    assert 0.4 <= time.monotonic() - start < 5

    crowded = ImageStore(tmp_path / "crowded", write_delay_s=60, max_pending_bytes=image.nbytes - 1)
    crowded.put_later(image_id, image)
    start = time.monotonic()
    while not (tmp_path / "crowded" / path.name).exists():  # more than max_pending_bytes wait: no delay
        assert time.monotonic() - start < 10
        time.sleep(0.02)


def test_image_store_background_write_failure_keeps_serving(tmp_path, monkeypatch, caplog):
    store = ImageStore(tmp_path)
    image = np.zeros((8, 8, 3), np.uint8)

    def broken_put(*args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "put", broken_put)
    with caplog.at_level(logging.WARNING, logger="mobilesam"):
        store.put_later(image_id_of(image), image)
        store.wait_writes()
    assert "disk on fire" in caplog.text
    assert store.path_of(image_id_of(image)) is None and not store.has(image_id_of(image))


# --------------------------------------------------------------------------- failed writes

def test_image_store_degrades_when_writes_fail(tmp_path, monkeypatch, caplog):
    store = ImageStore(tmp_path / "images")
    image = np.zeros((8, 8, 3), np.uint8)
    monkeypatch.setattr(store_mod.os, "replace", enospc)
    with caplog.at_level(logging.WARNING, logger="mobilesam"):
        assert store.put(image_id_of(image), image) is None
        assert store.put(image_id_of(image + 1), image + 1) is None  # no retry within WRITE_RETRY_S
    assert caplog.text.count("cannot write to image store") == 1 and "No space left" in caplog.text
    assert list((tmp_path / "images").iterdir()) == []  # no temporary file left behind
    monkeypatch.undo()
    store._failed_at -= store_mod.WRITE_RETRY_S  # later, the disk has room again
    assert store.put(image_id_of(image), image) is not None


def test_image_store_under_a_file_works_without_storing(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="mobilesam"):
        store = ImageStore(blocker / "images")
        image = np.zeros((8, 8, 3), np.uint8)
        assert store.put(image_id_of(image), image) is None
    assert "unavailable" in caplog.text
    assert store.get(image_id_of(image)) is None
    store.prune()


def test_cached_decoder_degrades_when_a_write_fails(vit_t_checkpoint, vit_t_model, tmp_path, monkeypatch, caplog,
                                                    private_tempdir):
    from mobilesam import onnx_cache
    from mobilesam.utils.digest import sha256_of_file

    cache = tmp_path / "onnx"
    real_replace = onnx_cache.os.replace

    def full_disk(src, dst):
        if Path(dst).parent == cache:
            enospc()
        return real_replace(src, dst)

    monkeypatch.setattr(onnx_cache.os, "replace", full_disk)
    with caplog.at_level(logging.WARNING, logger="mobilesam"):
        path = onnx_cache.cached_decoder(vit_t_checkpoint, "vit_t", cache, sam=vit_t_model)
    assert "cannot write the ONNX decoder" in caplog.text and "No space left" in caplog.text
    assert path.parent != cache and path.parent.parent == private_tempdir and path.is_file()
    assert (path.parent / (path.name + ".sha256")).read_text().split()[0] == sha256_of_file(path)
    assert not [p for p in cache.iterdir() if not p.name.startswith(".write-test")]


def test_lru_cache_stays_within_its_bound():
    cache = LRUCache(max_bytes=10, size_of=len)
    for i in range(100):
        cache.put(i, b"x" * 3)
        assert cache.nbytes <= 10
    assert len(cache) == 3 and 99 in cache and 96 not in cache


def test_app_starts_and_serves_with_an_unusable_cache_folder(vit_t_checkpoint, tmp_path, caplog, private_tempdir):
    from mobilesam_app.api import ApiEndpoints
    from mobilesam_app.startup import AppConfig, prepare

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="mobilesam"):
        service = prepare(AppConfig(checkpoint=str(vit_t_checkpoint), device="cpu", cache_dir=blocker / "cache"))
    assert "not writable" in caplog.text and "unavailable" in caplog.text
    decoder = next(iter(service.decoder_files.values()))
    assert decoder.is_file() and not str(decoder).startswith(str(blocker))
    assert decoder.parent.parent == private_tempdir
    # the encoder's background export copes too (and does not outlive this test: a torch.onnx export
    # running on while later tests capture warnings mixes their warning filters)
    encoder = service.engine.encoder
    assert encoder.wait_ready(timeout=600) and encoder.active == "onnxruntime", encoder.error
    image = load_sample("groceries.jpg")[::4, ::4].copy()
    path = tmp_path / "small.png"
    Image.fromarray(image).save(path)
    mask_path, scores = ApiEndpoints(service).segment_api(str(path), '{"points": [[100, 60, 1]]}')
    assert np.asarray(Image.open(mask_path)).shape == image.shape[:2]
    assert "score" in json.loads(scores)


# --------------------------------------------------------------------------- interrupted downloads

class InterruptedHub:
    """Stands in for hf_hub_download: the first call writes part of the file, then the connection drops;
    the second returns that partial file as if it were cached; the third downloads it whole."""

    def __init__(self, folder: Path, content: bytes):
        self.path = folder / "mobile_sam.pt"
        self.content = content
        self.calls = []

    def __call__(self, *, repo_id, filename, repo_type, cache_dir=None, force_download=False):
        self.calls.append(force_download)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if len(self.calls) == 1:
            self.path.write_bytes(self.content[: len(self.content) // 3])
            raise ConnectionError("Connection reset by peer")
        if len(self.calls) == 2:
            return str(self.path)
        self.path.write_bytes(self.content)
        return str(self.path)


def test_an_interrupted_download_is_never_loaded(vit_t_checkpoint, tmp_path, monkeypatch):
    import importlib

    import torch

    from mobilesam import hub

    build_sam = importlib.import_module("mobilesam.build_sam")  # the module (the package exports a function)

    content = vit_t_checkpoint.read_bytes()
    pin = replace(hub.PINS["vit_t"], size=len(content), sha256=hashlib.sha256(content).hexdigest())
    monkeypatch.setitem(hub.PINS, "vit_t", pin)
    for name in hub.env_vars("vit_t"):
        monkeypatch.delenv(name, raising=False)
    fake = InterruptedHub(tmp_path / "hf", content)
    monkeypatch.setattr(hub, "hf_hub_download", fake)
    loaded = []
    real_load = torch.load

    def spy_load(f, *args, **kwargs):
        name = getattr(f, "name", f)
        loaded.append((str(name), hashlib.sha256(Path(name).read_bytes()).hexdigest(), kwargs.get("weights_only")))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(build_sam.torch, "load", spy_load)

    with pytest.raises(hub.CheckpointUnavailableError, match="Connection reset"):
        hub.load_model("vit_t", device="cpu")
    assert loaded == []  # the partial file was not loaded

    with pytest.warns(RuntimeWarning, match="downloading it again"):
        model = hub.load_model("vit_t", device="cpu")  # partial file returned: detected, downloaded again
    assert fake.calls == [False, False, True]
    assert loaded == [(str(fake.path), pin.sha256, True)]  # only the verified file, only as weights
    assert sum(p.numel() for p in model.parameters()) > 0
