"""Many visitors: work on an image already encoded never waits behind other visitors' encodes, the
encoder's queue is bounded, and a full queue answers at once with a clear "busy, N ahead" message."""
import json
import os
import threading
import time

import numpy as np
import pytest
from PIL import Image


from mobilesam_app.engine import EncoderBusy, Engine
from mobilesam_app.store import ImageStore

from support import AppProcess, api_client


def noise(seed: int, size=(640, 480)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)


def test_encoder_queue_is_bounded_and_cached_images_skip_it(vit_t_model, tmp_path):
    engine = Engine(vit_t_model, "vit_t", ImageStore(tmp_path / "images"), encoder_backend="torch", max_queued=2)
    done = engine.encode(noise(0, (64, 48)))  # encoded before the encoder gets stuck
    gate, started = threading.Event(), threading.Event()
    real_embed = engine.encoder.embed

    def slow_embed(image):
        started.set()
        gate.wait(60)
        return real_embed(image)

    engine.encoder.embed = slow_embed
    results = []
    waiting = [threading.Thread(target=lambda s=s: results.append(engine.encode(noise(s, (64, 48)))))
               for s in (1, 2)]
    for t in waiting:
        t.start()
    assert started.wait(30)
    deadline = time.time() + 30
    while engine.queued < 2 and time.time() < deadline:
        time.sleep(0.01)
    try:
        with pytest.raises(EncoderBusy) as busy:
            engine.encode(noise(3, (64, 48)))
        assert busy.value.ahead == 2
        health = engine.health()["encoder"]
        assert (health["queued"], health["max_queued"], health["encodes"]) == (2, 2, 1)
        start = time.perf_counter()
        assert engine.encode(noise(0, (64, 48))) is done  # cached: no wait behind the stuck encodes
        assert time.perf_counter() - start < 1.0
    finally:
        gate.set()
        for t in waiting:
            t.join(60)
    assert len(results) == 2 and engine.queued == 0
    assert not engine.queued  # room again
    health = engine.health()
    assert health["encoder"]["encodes"] == 3 and health["encoder"]["queued"] == 0  # the refused one never ran
    assert health["encoder"]["encode_ms_total"] >= sum(r.encode_ms for r in results)
    assert health["embedding_cache"]["entries"] == 3
    assert health["embedding_cache"]["bytes"] == sum(e.nbytes for e in [done, *results])


@pytest.fixture(scope="module")
def small_queue_app(vit_t_checkpoint, tmp_path_factory):
    app = AppProcess(vit_t_checkpoint, tmp_path_factory.mktemp("queues-cache"), ["--encode-queue", "3"])
    try:
        yield app
    finally:
        app.stop()


def http_json(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.headers["Cache-Control"] == "no-store"
        return json.loads(response.read())


def test_prompts_on_encoded_images_pass_encodes_and_a_full_queue_says_busy(small_queue_app, tmp_path):
    from gradio_client import handle_file

    url = small_queue_app.url
    prompts = json.dumps({"points": [[100, 80, 1]]})
    encoded_path = tmp_path / "encoded.png"
    Image.fromarray(noise(100)).save(encoded_path)
    first = api_client(url, tmp_path)
    first.predict(handle_file(str(encoded_path)), prompts, api_name="/segment")  # now encoded (and warm)

    finished, errors, lock = {}, [], threading.Lock()

    def encode_new(seed):
        path = tmp_path / f"new-{seed}.png"
        Image.fromarray(noise(seed, (800, 600))).save(path)
        client = api_client(url, tmp_path)
        try:
            client.predict(handle_file(str(path)), prompts, api_name="/segment")
            with lock:
                finished[seed] = time.perf_counter()
        except Exception as exc:  # noqa: BLE001
            with lock:
                errors.append(str(exc))
        finally:
            client.close()

    flood = [threading.Thread(target=encode_new, args=(s,)) for s in range(1, 7)]  # 6 encodes, queue of 3
    start = time.perf_counter()
    for t in flood:
        t.start()
        time.sleep(0.05)
    time.sleep(0.5)  # the encoder is busy now
    prompt_start = time.perf_counter()
    mask_path, _ = first.predict(handle_file(str(encoded_path)), prompts, api_name="/segment")
    prompt_done = time.perf_counter()
    for t in flood:
        t.join(300)
    first.close()
    health = http_json(url + "/msam/health")
    assert health["status"] == "ok" and health["model"] == "vit_t"
    assert health["encoder"]["ready"] and health["encoder"]["backend"] == "onnxruntime"
    assert health["encoder"]["max_queued"] == 3 and health["encoder"]["queued"] == 0
    assert health["encoder"]["encodes"] == 1 + len(finished)  # the refused uploads were never encoded
    assert np.asarray(Image.open(mask_path)).shape == (480, 640)
    assert errors, "6 encodes at once on a queue of 3: some must be refused"
    assert all("busy" in e and "ahead of yours in the encoder's queue" in e for e in errors), errors
    assert finished, "the queue took some of them"
    last_encode = max(finished.values())
    # the prompt on the encoded image did not wait for the queued encodes to finish
    assert prompt_done < last_encode or len(finished) == 1, (prompt_done - start, sorted(v - start for v in finished.values()))
    assert prompt_done - prompt_start < (last_encode - start) / 2 + 1.0


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread nice values are a Linux feature")
def test_encodes_run_below_the_requests_priority(vit_t_model, tmp_path):
    """The encoder's thread, and the threads the encoder starts there, run at ENCODE_NICE: a prompt on
    an encoded image (a request thread, nice 0) gets the CPU first when both want it."""
    from mobilesam_app.engine import ENCODE_NICE

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    base = nice()
    if base >= ENCODE_NICE:
        pytest.skip(f"the tests already run at nice {base}")
    engine = Engine(vit_t_model, "vit_t", ImageStore(tmp_path / "images"), encoder_backend="torch")
    assert engine._encoder_thread.submit(nice).result() == ENCODE_NICE
    assert nice() == base  # the request's own thread keeps its priority
    engine.encode(noise(3, (64, 48)))  # and encodes still run there
    assert engine.queued == 0
    # the onnxruntime session (and so its worker threads) is made on a thread of its own, set up as the
    # encoder's thread; the caller's priority is left as it was
    seen = []
    session = engine.encoder._new_session(lambda: seen.append((threading.get_native_id(), nice())) or "session")
    assert session == "session"
    assert seen[0][0] != threading.get_native_id() and seen[0][1] == ENCODE_NICE
    assert nice() == base


def test_an_upload_of_the_same_bytes_again_is_known_without_reading_it(tmp_path):
    """Gradio writes each upload again (new mtime) under a folder named by its SHA-256: there the path
    and size identify the bytes, so a prompt's re-sent photo maps to its image id unread; elsewhere a
    file rewritten in place (new mtime) is read again."""
    import os

    from mobilesam_app.service import file_key

    folder = tmp_path / ("0123456789abcdef" * 4)
    folder.mkdir()
    upload = folder / "photo.jpg"
    upload.write_bytes(b"jpeg bytes")
    key = file_key(str(upload))
    os.utime(upload, ns=(10**9, 10**9))
    assert file_key(str(upload)) == key
    local = tmp_path / "photo.jpg"
    local.write_bytes(b"jpeg bytes")
    key = file_key(str(local))
    os.utime(local, ns=(10**9, 10**9))
    assert file_key(str(local)) != key
    assert file_key(str(tmp_path / "missing.jpg")) is None
