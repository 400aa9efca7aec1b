"""Hostile input and curious visitors: prompt JSON and image bytes of every kind, upload limits,
path traversal on every file route, server files through the API, unpickling, shared-link ids.

Every bad request must get a clear error (a 4xx, or the API's message), never a traceback, and
the next normal request must work.
"""
import ast
import http.client
import io
import json
import math
import secrets
import struct
import zlib
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from conftest import ROOT, SAMPLES, load_sample, mask_iou

import gradio as gr  # noqa: E402  (imported before hypothesis runs: it raises the recursion limit)

from mobilesam_app.prompts import RequestError, parse_prompts
from mobilesam_app.service import MAX_POINTS_PER_SIDE, check_points_per_side
from mobilesam_app.store import image_id_of
from support import api_client

GROCERIES = SAMPLES / "groceries.jpg"  # 800×534
GROCERIES_SIZE = (534, 800)
NORMAL_PROMPT = '{"points": [[400, 260, 1]]}'


@pytest.fixture(scope="module")
def client(app_url, tmp_path_factory):
    return api_client(app_url, tmp_path_factory.mktemp("downloads"))


def segment(client, path, prompts=NORMAL_PROMPT):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), prompts, api_name="/segment")


def assert_next_request_works(client):
    mask_path, _ = segment(client, GROCERIES)
    assert Image.open(mask_path).size == (800, 534)


def raw_get(url: str, path: str, method: str = "GET", body: bytes = None):
    """GET `path` exactly as written (no client-side normalisation of `..` or %-escapes); or `method`."""
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    try:
        conn.request(method, path, body=body)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width×height pixels."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def encoded(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


# --------------------------------------------------------------------------- image bytes through the API

def _truncated_jpeg():
    data = GROCERIES.read_bytes()
    return data[: len(data) // 3]


def _truncated_png():
    data = encoded(Image.open(GROCERIES).convert("RGB").resize((200, 134)), "PNG")
    return data[: len(data) // 2]


def _decompression_bomb():
    return encoded(Image.new("L", (10_000, 6_000)), "PNG")  # 60 MP in about 60 kB


BAD_FILES = {
    "truncated.jpg": (_truncated_jpeg, "truncated or corrupt"),
    "truncated.png": (_truncated_png, "truncated or corrupt"),
    # over Pillow's own limits (89 MP: warning, 179 MP: error), which are checked first
    "declares-100000x100000.png": (lambda: png_declaring(100_000, 100_000), "image is 10000 MP; the limit is 50 MP"),
    "declares-12000x9000.png": (lambda: png_declaring(12_000, 9_000), "image is 108 MP; the limit is 50 MP"),
    "bomb-10000x6000.png": (_decompression_bomb, "limit is 50 MP"),
    "drawing.svg": (lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="99" height="99"><rect/></svg>',
                    "SVG"),
    "page.html": (lambda: b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>", "HTML"),
    "notes.jpg": (lambda: b"this is a text file with a .jpg name\n" * 5, "text file"),
    "empty.jpg": (lambda: b"", "empty"),
    "zero-by-zero.png": (lambda: png_declaring(0, 0), "Cannot use this file"),
    "one-pixel.png": (lambda: encoded(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), "at least 2"),
    "too-thin-5000x2.png": (lambda: encoded(Image.new("RGB", (5000, 2)), "PNG"), "too long and thin"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_unusable_images_get_a_clear_error_and_the_app_keeps_serving(client, tmp_path, name):
    make, message = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(make())
    with pytest.raises(Exception) as info:
        segment(client, path, '{"points": [[1, 1, 1]]}')
    text = str(info.value)
    assert "Cannot use this file" in text and message in text, text
    assert "Traceback" not in text and "File \"" not in text
    assert_next_request_works(client)


def test_user_errors_are_logged_in_one_line(client, app_cache, tmp_path):
    """A refused file is the user's to put right: one line in the server's log, not a traceback."""
    log = app_cache / "app.log"
    start = log.stat().st_size
    path = tmp_path / "half.jpg"
    path.write_bytes(_truncated_jpeg())
    with pytest.raises(Exception, match="truncated or corrupt"):
        segment(client, path)
    with open(log, encoding="utf-8", errors="replace") as f:
        f.seek(start)
        written = f.read()
    assert "refused a request: Cannot use this file: the image file is truncated or corrupt" in written, written
    assert "Traceback" not in written, written


@pytest.mark.parametrize("width, height", [(4000, 2), (2, 4000)])
def test_extreme_aspect_ratios_get_the_right_mask(client, predictor_vit_t, tmp_path, width, height):
    image = np.random.default_rng(width * 7 + height).integers(0, 255, (height, width, 3), dtype=np.uint8)
    path = tmp_path / f"{width}x{height}.png"
    Image.fromarray(image).save(path)
    point = [width // 2, height // 2]
    mask_path, info = segment(client, path, json.dumps({"points": [[*point, 1]], "multimask": True}))
    mask = np.asarray(Image.open(mask_path)) > 127
    assert mask.shape == (height, width)
    predictor_vit_t.set_image(image)
    masks, scores, _ = predictor_vit_t.predict(point_coords=np.array([point], float), point_labels=np.array([1]))
    assert mask_iou(mask, masks[int(np.argmax(scores))]) >= 0.99
    np.testing.assert_allclose(json.loads(info)["scores"], scores, atol=2e-3)


def test_the_smallest_image_gets_a_mask(client, tmp_path):
    path = tmp_path / "2x2.png"
    Image.fromarray(np.array([[[0, 0, 0], [255, 255, 255]], [[255, 0, 0], [0, 0, 255]]], np.uint8)).save(path)
    mask_path, info = segment(client, path, '{"points": [[1, 1, 1]], "box": [0, 0, 2, 2]}')
    assert np.asarray(Image.open(mask_path)).shape == (2, 2) and len(json.loads(info)["scores"]) == 3


# --------------------------------------------------------------------------- upload limits

def test_uploads_over_the_size_limit_are_refused_by_the_server(app_url, client, tmp_path):
    import httpx

    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + b"\0" * (50 * 2**20 - 3))  # 50 MiB + 1 byte: launch(max_file_size="50mb")
    with open(big, "rb") as f:
        r = httpx.post(app_url + "/gradio_api/upload", files={"files": ("big.png", f, "image/png")}, timeout=120)
    assert r.status_code == 413 and "maximum allowed size" in r.text
    with pytest.raises(Exception, match="exceeds the maximum file size"):
        segment(client, big)  # gradio_client refuses it before sending
    assert_next_request_works(client)


def test_pixel_limit_applies_before_decoding(app_url, tmp_path):
    """The bomb is refused from its header: the server's memory does not grow by its 60 MP."""
    from support import find_listening_pid, proc_memory_mb

    pid = find_listening_pid(urlparse(app_url).port)
    client = api_client(app_url, tmp_path)
    path = tmp_path / "bomb.png"
    path.write_bytes(encoded(Image.new("RGB", (10_000, 6_000)), "PNG"))  # 180 MB of RGB if decoded
    before = proc_memory_mb(pid)["VmRSS"] if pid else None
    for _ in range(3):
        with pytest.raises(Exception, match="limit is 50 MP"):
            segment(client, path)
    if pid:
        assert proc_memory_mb(pid)["VmRSS"] - before < 150


# --------------------------------------------------------------------------- prompt JSON

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
coordinate = st.one_of(st.integers(-50, 850), st.floats(-50, 850), st.integers(-10**400, 10**400),
                       st.sampled_from([1e308, -0.0, 5e-324]))
point = st.lists(st.one_of(coordinate, st.sampled_from([0, 1, 2, -1, True, "1", None])), min_size=2, max_size=4)
prompt_objects = st.fixed_dictionaries(
    {"points": st.lists(point, max_size=3)},
    optional={"box": st.one_of(st.none(), st.lists(coordinate, min_size=3, max_size=5)),
              "multimask": st.one_of(st.booleans(), json_values), "extra": json_values})
valid_points = st.lists(st.tuples(st.integers(0, 800), st.floats(0, 534), st.sampled_from([0, 1])).map(list),
                        min_size=1, max_size=3)
valid_boxes = st.tuples(st.integers(0, 400), st.integers(0, 267), st.integers(400, 800), st.integers(267, 534)
                        ).map(list)
valid_prompts = st.one_of(
    st.fixed_dictionaries({"points": valid_points}, optional={"box": st.none() | valid_boxes,
                                                              "multimask": st.booleans()}),
    st.fixed_dictionaries({"box": valid_boxes}, optional={"points": st.just([]), "multimask": st.booleans()}))
prompt_texts = st.one_of(
    valid_prompts.map(json.dumps),
    prompt_objects.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=60),
    st.sampled_from(['{"points": [[1' + "0" * 400 + ", 2, 1]]}", '{"box": [0, 0, 1e999, 5]}',
                     '{"points": [[NaN, 1, 1]]}', '{"points": ' + "[" * 5000 + "]" * 5000 + "}",
                     '{"points": [[1, 2, 1]], "points": 5}', "\x00", "null", '"{}"', "[]"]),
)


@settings(max_examples=400, deadline=None)
@given(prompt_texts)
def test_prompt_parser_answers_every_input_with_a_prompt_or_a_request_error(text):
    try:
        kwargs = parse_prompts(text, GROCERIES_SIZE)
    except RequestError as exc:
        assert str(exc)
        return
    coords = kwargs.get("point_coords", np.zeros((0, 2)))
    assert np.isfinite(coords).all() and (coords >= 0).all()
    assert (coords[:, 0] <= GROCERIES_SIZE[1]).all() and (coords[:, 1] <= GROCERIES_SIZE[0]).all()
    if "box" in kwargs:
        assert np.isfinite(kwargs["box"]).all()


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(prompt_texts)
def test_segment_api_answers_generated_prompts_like_the_parser(client, text):
    """Through the real app: a mask where the parser accepts the prompt, its message where it refuses it."""
    try:
        parse_prompts(text, GROCERIES_SIZE)
        expected_error = None
    except RequestError as exc:
        expected_error = str(exc)
    if expected_error is None:
        mask_path, info = segment(client, GROCERIES, text)
        assert Image.open(mask_path).size == (800, 534) and "score" in json.loads(info)
        return
    with pytest.raises(Exception) as info:
        segment(client, GROCERIES, text)
    assert f"Invalid prompts: {expected_error}"[:200] in str(info.value)
    assert "Traceback" not in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
                 st.none(), st.booleans(), st.lists(st.integers(), max_size=2)))
def test_points_per_side_is_a_whole_number_from_1_to_64_or_a_clear_error(value):
    try:
        n = check_points_per_side(value)
    except gr.Error as exc:
        assert "points_per_side" in str(exc.message)
        return
    assert 1 <= n <= MAX_POINTS_PER_SIDE and n == value and not isinstance(value, bool)


def _call_raw(app_url: str, api: str, data: list) -> str:
    """POST /gradio_api/call/<api> with raw JSON (NaN, Infinity allowed) and return its event stream."""
    import httpx

    body = json.dumps({"data": data}, allow_nan=True)
    r = httpx.post(f"{app_url}/gradio_api/call/{api}", content=body, headers={"content-type": "application/json"},
                   timeout=60)
    if r.status_code != 200:
        return f"HTTP {r.status_code}: {r.text}"
    event_id = r.json()["event_id"]
    return httpx.get(f"{app_url}/gradio_api/call/{api}/{event_id}", timeout=120).text


def _uploaded(app_url: str, path: Path) -> dict:
    import httpx

    with open(path, "rb") as f:
        r = httpx.post(app_url + "/gradio_api/upload", files={"files": (path.name, f, "image/jpeg")}, timeout=60)
    return {"path": r.json()[0], "meta": {"_type": "gradio.FileData"}, "orig_name": path.name}


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 0, 65, 2.5, -1, 10**400, "many", None])
def test_segment_everything_refuses_bad_points_per_side_clearly(app_url, client, value):
    events = _call_raw(app_url, "segment_everything", [_uploaded(app_url, GROCERIES), value])
    assert "event: error" in events and "points_per_side" in events, events
    assert "Traceback" not in events
    assert_next_request_works(client)


@pytest.mark.parametrize("prompts", [None, 5, {"points": [[1, 1, 1]]}, [1, 2], math.inf, "[" * 100_000])
def test_segment_refuses_prompts_that_are_not_json_text(app_url, client, prompts):
    events = _call_raw(app_url, "segment", [_uploaded(app_url, GROCERIES), prompts])
    assert "event: error" in events and "prompts" in events.lower(), events
    assert "Traceback" not in events
    assert_next_request_works(client)


# --------------------------------------------------------------------------- files on the server

def test_the_api_cannot_be_made_to_read_server_files(app_url, client, vit_t_checkpoint):
    for path in ("/etc/passwd", str(ROOT / "app.py"), str(vit_t_checkpoint), "../../etc/passwd",
                 str(ROOT / "examples" / "groceries.jpg")):
        events = _call_raw(app_url, "segment", [{"path": path, "meta": {"_type": "gradio.FileData"}},
                                                '{"points": [[1, 1, 1]]}'])
        assert "event: error" in events and "not uploaded by a user" in events, events
        assert "root:" not in events and "Traceback" not in events
    assert_next_request_works(client)


def _traversal_paths(checkpoint: Path):
    gradio = ["/gradio_api/file=/etc/passwd", "/gradio_api/file=../../app.py", "/gradio_api/file=app.py",
              f"/gradio_api/file={ROOT}/app.py", "/gradio_api/file=%2e%2e%2f%2e%2e%2fapp.py",
              "/gradio_api/file=..%2F..%2Fetc%2Fpasswd", "/gradio_api/file=%2Fetc%2Fpasswd",
              "/gradio_api/file=//etc/passwd", "/gradio_api/file=/tmp/gradio/../../etc/passwd",
              "/gradio_api/file=%252e%252e%252fapp.py", "/gradio_api/file=....//....//etc/passwd",
              "/gradio_api/file=/proc/self/environ", f"/gradio_api/file={checkpoint}",
              "/gradio_api/file=web/main.js", "/gradio_api/file=examples/../app.py", "/file=/etc/passwd",
              "/gradio_api/file=%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd"]
    ours = ["/web/../app.py", "/web/..%2Fapp.py", "/web/%2e%2e/app.py", "/web/%2e%2e%2fapp.py", "/web/.%2e/app.py",
            "/web/package.json", "/web/..%5capp.py", "/web/main.js%00.py", "/web/ort/..%2Fpackage.json",
            "/web/ort/../package.json", "/web/ort/%2e%2e%2f%2e%2e%2fapp.py", "/web/%2Fetc%2Fpasswd",
            "/msam/image/../../app.py.png", "/msam/image/..%2F..%2Fapp.png", "/msam/image/zz.png",
            "/msam/image/%2e%2e%2f%2e%2e%2fapp.png", "/msam/image/%2Fetc%2Fpasswd.png",
            "/msam/models/..%2F..", "/msam/models/..%2F..%2Fapp.py", "/msam/models/../app.py",
            "/msam/models/%2e%2e%2f%2e%2e%2fapp.py", "/msam/models/%2Fetc%2Fpasswd",
            "/msam/embedding/vit_t/..%2F..%2Fapp.f16", "/msam/embedding/..%2F..%2F/x.f16",
            "/msam/embedding/vit_t/%2e%2e%2f%2e%2e%2fapp.f16"]
    return gradio + ours


SECRETS = (b"root:x:0:0", b"def build_demo", b"PYTHON", b"HOME=")


def test_path_traversal_is_refused_on_every_file_route(app_url, vit_t_checkpoint):
    assert raw_get(app_url, "/web/main.js")[0] == 200  # the routes are there
    for path in _traversal_paths(vit_t_checkpoint):
        status, body = raw_get(app_url, path)
        assert 400 <= status < 500, (path, status, body[:200])
        assert not any(s in body for s in SECRETS), path


def test_uploads_are_reachable_only_at_their_own_unguessable_url(app_url, client):
    import httpx

    with open(GROCERIES, "rb") as f:
        uploaded = httpx.post(app_url + "/gradio_api/upload", files={"files": ("g.jpg", f, "image/jpeg")},
                              timeout=60).json()[0]
    assert raw_get(app_url, "/gradio_api/file=" + uploaded)[0] == 200
    folder = Path(uploaded).parent
    assert len(folder.name) >= 32  # a content hash, not a counter
    for other in (folder.parent / ("0" * len(folder.name)) / "g.jpg", folder.parent / "g.jpg",
                  folder / ".." / ".." / "etc" / "passwd"):
        assert 400 <= raw_get(app_url, f"/gradio_api/file={other}")[0] < 500


# --------------------------------------------------------------------------- unpickling

SOURCE_DIRS = ("mobilesam", "bench", "onnx", "scripts")
PICKLE_LOADERS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("cPickle", "load"),
                  ("dill", "load"), ("dill", "loads"), ("joblib", "load"), ("marshal", "load"),
                  ("marshal", "loads"), ("shelve", "open"), ("pd", "read_pickle"), ("pandas", "read_pickle"),
                  ("cloudpickle", "load"), ("cloudpickle", "loads")}


def _python_sources():
    files = [ROOT / "app.py"]
    for folder in SOURCE_DIRS:
        files += [p for p in (ROOT / folder).rglob("*.py") if "node_modules" not in p.parts]
    return files


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def test_nothing_is_ever_unpickled_except_as_weights():
    """torch.load only with weights_only=True; no pickle/dill/joblib/marshal loads; np.load never with pickles."""
    problems, torch_loads = [], 0
    for path in _python_sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "dill", "joblib", "marshal"):
                problems.append(f"{path}:{node.lineno}: from {node.module} import ...")
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            where = f"{path.relative_to(ROOT)}:{node.lineno}: {name}"
            keywords = {k.arg: k.value for k in node.keywords}
            if name in ("torch.load", "torch.jit.load", "torch.serialization.load"):
                torch_loads += 1
                flag = keywords.get("weights_only")
                if name != "torch.load" or not (isinstance(flag, ast.Constant) and flag.value is True):
                    problems.append(where + " without weights_only=True")
            elif tuple(name.rsplit(".", 1)[-2:]) in PICKLE_LOADERS:
                problems.append(where)
            elif name in ("np.load", "numpy.load"):
                flag = keywords.get("allow_pickle")
                if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                    problems.append(where + " with allow_pickle")
    assert problems == []
    assert torch_loads >= 1  # the checkpoint loader was found


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_carrying_code_is_refused_without_running_it(tmp_path):
    import torch

    from mobilesam.build_sam import CheckpointError, sam_model_registry

    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"image_encoder.patch_embed.seq.0.c.weight": _Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        sam_model_registry["vit_t"](checkpoint=str(evil))
    assert not marker.exists()


# --------------------------------------------------------------------------- shared-link ids

def test_shared_image_ids_cannot_be_enumerated(app_url, client):
    image = load_sample("groceries.jpg")
    image_id = image_id_of(image)
    assert_next_request_works(client)  # stores groceries.jpg
    status, body = raw_get(app_url, f"/msam/image/{image_id}.png")
    assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(body)).convert("RGB")), image)
    assert raw_get(app_url, f"/msam/embedding/vit_t/{image_id}.f16")[0] == 200
    prompt = b'{"points": [[10, 10, 1]], "box": null}'
    assert raw_get(app_url, f"/msam/decode/{image_id}", "POST", prompt)[0] == 200  # web/bridge.js's route

    # 128-bit content hashes: a one-pixel change gives an unrelated id.
    other = image.copy()
    other[0, 0, 0] ^= 1
    a, b = int(image_id, 16), int(image_id_of(other), 16)
    assert len(image_id) == 32 and bin(a ^ b).count("1") > 32

    guesses = [secrets.token_hex(16) for _ in range(20)]
    guesses += ["0" * 32, "0" * 31 + "1", "f" * 32, format(a + 1, "032x"), format(a - 1, "032x"),
                image_id[:8], image_id[:31], image_id + "0", image_id.upper(), image_id[:16] + "0" * 16,
                "1", "12345678", "%2e%2e", image_id + "%00"]
    for guess in guesses:
        assert raw_get(app_url, f"/msam/image/{guess}.png")[0] == 404, guess
        assert raw_get(app_url, f"/msam/embedding/vit_t/{guess}.f16")[0] == 404, guess
        assert raw_get(app_url, f"/msam/decode/{guess}", "POST", prompt)[0] == 404, guess
    assert raw_get(app_url, f"/msam/embedding/vit_h/{image_id}.f16")[0] == 404


def test_uploads_are_never_served_under_another_id(tmp_path):
    from mobilesam_app.store import ImageStore

    store = ImageStore(tmp_path)
    image = load_sample("truck.jpg")[:64, :64].copy()
    real = image_id_of(image)
    store.put(real, image)
    victim = secrets.token_hex(16)
    (tmp_path / f"{real}.png").rename(tmp_path / f"{victim}.png")  # a file under someone else's id
    assert store.get(victim) is None and store.path_of(victim) is None
    assert not (tmp_path / f"{victim}.png").exists()
