"""The server's decode for a page whose own decoder is still loading (POST /msam/decode/<image id>,
Service.decode_for_page): the official computation on the cached embedding, sent in a compact format
(mobilesam_app/mask_codec.py) whose masks keep IoU >= 0.999, and clear errors for bad requests."""
import json

import numpy as np
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.testclient import TestClient

from conftest import ROOT
from mobilesam_app import server
from mobilesam_app.engine import Engine
from mobilesam_app.mask_codec import decode_low_res, encode_low_res
from mobilesam_app.prompt_decoder import PromptDecoder
from mobilesam_app.service import Service
from mobilesam_app.store import ImageStore
from support import mask_iou, onnx_seed, upsample_like_sam

PHOTOS = ("truck.jpg", "groceries.jpg")


def prompts(h: int, w: int) -> list:
    """(points [[x, y, label]], box or None): a click, clicks in and out, a box, a box and a click."""
    box = [0.25 * w, 0.3 * h, 0.75 * w, 0.8 * h]
    return [
        ([[0.5 * w, 0.55 * h, 1]], None),
        ([[0.5 * w, 0.5 * h, 1], [0.2 * w, 0.2 * h, 0]], None),
        ([], box),
        ([[0.45 * w, 0.55 * h, 0]], box),
    ]


@pytest.fixture(scope="module", params=["torch", "onnxruntime"])
def service(request, vit_t_model, vit_t_checkpoint, tmp_path_factory):
    """A service whose prompts are decoded by PyTorch, or by the fast decoder in onnxruntime (as on
    the app's CPU path; its export from the session's ONNX seed)."""
    tmp = tmp_path_factory.mktemp("page_decode")
    engine = Engine(vit_t_model, "vit_t", ImageStore(tmp / "images"), encoder_backend="torch")
    if request.param == "onnxruntime":
        engine.prompts = PromptDecoder(vit_t_model, "vit_t", onnx_seed(vit_t_checkpoint), fast=True)
        assert engine.prompts.wait_ready(300)
    assert engine.prompts.backend == request.param
    return Service(engine, {}, output_dir=tmp / "out")


@pytest.fixture(scope="module")
def encoded(service) -> list:
    return [service.engine.encode(np.asarray(Image.open(ROOT / "examples" / name).convert("RGB")))
            for name in PHOTOS]


def _body(points, box) -> bytes:
    return json.dumps({"points": points, "box": box}).encode()


def _arrays(points, box) -> tuple:
    """(point_coords [K,2] or None, point_labels [K] or None, box [4] or None) as the predictor takes them."""
    if not points:
        return None, None, None if box is None else np.array(box)
    return np.array([p[:2] for p in points]), np.array([p[2] for p in points]), None if box is None else np.array(box)


def test_the_servers_masks_are_the_predictors(service, encoded):
    """All four mask tokens' low-res logits and scores: the predictor's three multimask outputs for a
    click alone, its single output otherwise (the same split the page's decoder makes)."""
    for enc in encoded:
        predictor = service.engine.predictor_for(enc)
        for points, box in prompts(enc.height, enc.width):
            scores, logits = service.engine.low_res_masks(enc, *_arrays(points, box))
            assert scores.shape == (4,) and logits.shape == (4, 256, 256)
            multimask = len(points) == 1 and box is None
            _, iou, low_res = predictor.predict(*_arrays(points, box), multimask_output=multimask)
            which = slice(1, 4) if multimask else slice(0, 1)
            np.testing.assert_allclose(logits[which], low_res, atol=2e-3, rtol=0)
            np.testing.assert_allclose(scores[which], iou, atol=1e-4)


def test_the_apis_masks_are_the_predictors(service, encoded):
    """Engine.predict (compare API) and Engine.best_mask (segment API, only the best mask upsampled)
    give SamPredictor.predict's masks and scores, on every prompt, twice (the second time from the
    image inputs kept for the image)."""
    for enc in encoded:
        predictor = service.engine.predictor_for(enc)
        for _ in range(2):
            for points, box in prompts(enc.height, enc.width):
                for multimask in (True, False):
                    kwargs = dict(zip(("point_coords", "point_labels", "box"), _arrays(points, box)),
                                  multimask_output=multimask)
                    masks, scores, low_res = predictor.predict(**kwargs)
                    got_masks, got_scores, got_low = service.engine.predict(enc, **kwargs)
                    assert got_masks.shape == masks.shape and got_masks.dtype == bool
                    np.testing.assert_allclose(got_scores, scores, atol=1e-4)
                    np.testing.assert_allclose(got_low, low_res, atol=2e-3, rtol=0)
                    assert min(mask_iou(a, b) for a, b in zip(got_masks, masks)) >= 0.999
                    best, best_scores, index = service.engine.best_mask(enc, **kwargs)
                    assert index == int(np.argmax(scores)) and best.shape == (enc.height, enc.width)
                    np.testing.assert_allclose(best_scores, scores, atol=1e-4)
                    assert mask_iou(best, masks[index]) >= 0.999


def test_each_embedding_of_an_image_gets_its_own_decode(service, encoded):
    """The page's resized copy and the photo's own encode share an image id, not an embedding: a prompt
    on either is decoded from that embedding, never from the per-image part kept for the other."""
    import dataclasses

    enc = encoded[0]
    copy = dataclasses.replace(enc, embedding=np.ascontiguousarray(enc.embedding[:, :, ::-1]), from_copy=True)
    assert copy.image_id == enc.image_id and copy.key != enc.key
    points, box = prompts(enc.height, enc.width)[0]
    exact = service.engine.low_res_masks(enc, *_arrays(points, box))
    from_copy = service.engine.low_res_masks(copy, *_arrays(points, box))
    again = service.engine.low_res_masks(enc, *_arrays(points, box))
    assert np.abs(from_copy[1] - exact[1]).max() > 1.0
    np.testing.assert_array_equal(again[1], exact[1])
    predictor = service.engine.predictor_for(copy)
    _, iou, low_res = predictor.predict(*_arrays(points, box), multimask_output=True)
    np.testing.assert_allclose(from_copy[1][1:], low_res, atol=2e-3, rtol=0)


def test_the_wire_format_keeps_the_masks(service, encoded):
    """float16 logits: every mask, upsampled as the page upsamples it, keeps IoU >= 0.999 against the
    float32 logits' mask; scores are exact."""
    ious = []
    for enc in encoded:
        for points, box in prompts(enc.height, enc.width):
            data = service.decode_for_page(enc.image_id, _body(points, box))
            scores, logits = decode_low_res(data)
            exact_scores, exact = service.engine.low_res_masks(enc, *_arrays(points, box))
            np.testing.assert_array_equal(scores, exact_scores.astype(np.float32))
            np.testing.assert_array_equal(logits, exact.astype(np.float16).astype(np.float32))
            ours = upsample_like_sam(logits[None], enc.height, enc.width)[0] > 0
            ref = upsample_like_sam(exact[None], enc.height, enc.width)[0] > 0
            ious += [mask_iou(a, b) for a, b in zip(ours, ref)]
    print(f"server masks vs float32: {len(ious)} masks, mean IoU {np.mean(ious):.5f}, min {min(ious):.5f}")
    assert min(ious) >= 0.999


def test_codec_refuses_what_is_not_masks():
    data = encode_low_res(np.arange(4), np.zeros((4, 256, 256)))
    assert len(data) == 16 + 16 + 2 * 4 * 256 * 256
    for bad, why in [(data[:10], "too short"), (b"XXXX" + data[4:], "format version 1"),
                     (data[:-1], "bytes for masks")]:
        with pytest.raises(ValueError, match=why):
            decode_low_res(bad)


def test_the_route_answers_masks_and_clear_errors(service, encoded):
    routes = server.make_routes(lambda: {}, lambda m, i, f: None, lambda i: None,
                                decode_prompt=service.decode_for_page)
    client = TestClient(Starlette(routes=routes))
    enc = encoded[0]
    url = f"/msam/decode/{enc.image_id}"
    points, box = prompts(enc.height, enc.width)[0]
    ok = client.post(url, content=_body(points, box), headers={"Accept-Encoding": "gzip"})
    assert ok.status_code == 200 and ok.headers["content-encoding"] == "gzip"
    assert ok.headers["cache-control"] == "no-store"
    assert int(ok.headers["content-length"]) < len(ok.content)  # compressed on the wire
    scores, _ = decode_low_res(ok.content)
    assert np.array_equal(scores, decode_low_res(service.decode_for_page(enc.image_id, _body(points, box)))[0])

    w, h = enc.width, enc.height
    bad = [
        (f"/msam/decode/{'0' * 32}", _body(points, box), 404, "encode the image first"),
        ("/msam/decode/not-an-id", _body(points, box), 404, "encode the image first"),
        (url, b"{not json", 400, "Invalid prompt"),
        (url, b"\xff\xfe", 400, "UTF-8"),
        (url, _body([[w + 5, 10, 1]], None), 400, "Invalid prompt"),
        (url, _body([], [1, 2, 3]), 400, "box must be"),
        (url, _body([], None), 400, "empty prompt"),
        (url, b"x" * (server.MAX_PROMPT_BYTES + 1), 413, "over"),
    ]
    for path, body, status, why in bad:
        r = client.post(path, content=body)
        assert r.status_code == status, (path, body[:40], r.text)
        assert why in r.json()["error"], r.text
    assert client.post(url, content=_body(points, box)).status_code == 200  # still serving
