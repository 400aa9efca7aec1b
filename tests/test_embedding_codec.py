"""The uint8 embedding wire format (mobilesam_app/embedding_codec.py, web/embedding.js): half the
bytes of float16, and the goldens' masks kept (IoU >= 0.99) when the decoder runs on it."""
import shutil
import subprocess

import numpy as np
import pytest

from conftest import ROOT, golden_mask_ious, load_golden_embedding  # noqa: E402
from mobilesam_app import embedding_codec as codec  # noqa: E402
from mobilesam_app.engine import EncodedImage  # noqa: E402

MIN_MASK_IOU = 0.99


def _golden_embedding(model_type: str, key: str) -> np.ndarray:
    """The golden embedding as the repository keeps it (rounded to 2**-5, under the uint8 step)."""
    return load_golden_embedding(model_type, key).approx


def test_sizes():
    assert codec.U8_BYTES == 1_050_640 <= 1_100_000
    assert codec.F16_BYTES == 2_097_152
    data = codec.encode_u8(_golden_embedding("vit_t", "truck"))
    assert len(data) == codec.U8_BYTES and data[:4] == b"MSAM" and data[4] == 1


def test_roundtrip_error_is_half_a_step():
    emb = _golden_embedding("vit_t", "truck")
    got = codec.decode_u8(codec.encode_u8(emb))
    _, scale, _ = codec.quantize_u8(emb)
    err = np.abs(got - emb).reshape(256, -1).max(axis=1)
    assert np.all(err <= scale * 0.5 + 1e-6)
    const = np.zeros((1, 256, 64, 64), np.float32) + np.arange(256, dtype=np.float32)[None, :, None, None]
    np.testing.assert_array_equal(codec.decode_u8(codec.encode_u8(const)), const)  # constant channels exact


def test_bad_bytes_are_refused():
    data = bytearray(codec.encode_u8(_golden_embedding("vit_t", "truck")))
    with pytest.raises(ValueError):
        codec.decode_u8(bytes(data[:-1]))
    data[4] = 2
    with pytest.raises(ValueError, match="version"):
        codec.decode_u8(bytes(data))
    with pytest.raises(ValueError):
        codec.transcode(b"x" * 10, "u9")


@pytest.mark.parametrize("model_type,key", [("vit_t", "truck"), ("vit_t", "groceries"), ("vit_b", "groceries")])
def test_masks_from_uint8_embeddings_match_goldens(request, model_type, key):
    """The decoder on the dequantized golden embedding (quantized from its float16 copy, as the server
    does) with the golden prompts: every mask keeps IoU >= 0.99 against the golden (float32) masks."""
    model = request.getfixturevalue(f"{model_type}_model")
    emb = _golden_embedding(model_type, key)
    wire = codec.transcode(codec.encode_f16(emb), "u8")
    ious = golden_mask_ious(model, codec.decode_u8(wire), model_type, key)
    assert min(ious) >= MIN_MASK_IOU, ious


def test_client_info_and_routes(tmp_path):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from mobilesam_app import server

    emb = _golden_embedding("vit_t", "truck")
    encoded = EncodedImage("a" * 64, 1200, 1800, 683, 1024, emb, 1.0)
    assert encoded.client_info("vit_t")["embedding_url"] == f"/msam/embedding/vit_t/{'a' * 64}.u8"
    assert encoded.client_info("vit_b")["embedding_url"].endswith(".f16")  # not checked with uint8
    assert encoded.embedding_u8_bytes() == codec.encode_u8(emb)
    wire = encoded.wire_bytes("u8")  # what the route sends: the float16 bytes transcoded, made once
    assert wire == codec.transcode(encoded.embedding_f16_bytes(), "u8") and encoded.wire_bytes("u8") is wire
    assert encoded.nbytes == emb.nbytes + codec.U8_BYTES
    with pytest.raises(ValueError, match="unknown embedding format"):
        encoded.wire_bytes("u9")

    store = {("vit_t", "a" * 64): encoded}
    asked = []

    def embedding_bytes(model, image_id, fmt):
        asked.append(fmt)
        found = store.get((model, image_id))
        return None if found is None else found.wire_bytes(fmt)

    app = Starlette(routes=server.make_routes(lambda: {}, embedding_bytes, lambda i: None))
    client = TestClient(app)
    r = client.get(f"/msam/embedding/vit_t/{'a' * 64}.u8")
    assert r.status_code == 200 and len(r.content) == codec.U8_BYTES
    assert r.headers["x-embedding-dtype"].startswith("uint8")
    np.testing.assert_allclose(codec.decode_u8(r.content), emb, atol=0.02)
    r = client.get(f"/msam/embedding/vit_t/{'a' * 64}.f16")
    assert r.status_code == 200 and r.content == encoded.embedding_f16_bytes()
    assert encoded.nbytes == emb.nbytes + codec.U8_BYTES  # not kept: the cache's count of it stays true
    assert client.get(f"/msam/embedding/vit_t/{'b' * 64}.u8").status_code == 404
    assert client.get(f"/msam/embedding/vit_t/{'a' * 64}.u9").status_code == 404
    assert asked == ["u8", "f16", "u8"]  # the route asks for the format in the URL (.u9 is no route)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_browser_decoder_of_the_format_gives_the_same_floats(tmp_path):
    """web/embedding.js decodes the bytes to exactly numpy's float32 values."""
    emb = _golden_embedding("vit_t", "groceries")
    data = codec.encode_u8(emb)
    (tmp_path / "emb.u8").write_bytes(data)
    script = (
        f"import {{ decodeEmbedding }} from {str((ROOT / 'web' / 'embedding.js').as_uri())!r};\n"
        "import { readFileSync, writeFileSync } from 'node:fs';\n"
        f"const out = decodeEmbedding(readFileSync({str(tmp_path / 'emb.u8')!r}));\n"
        f"writeFileSync({str(tmp_path / 'out.f32')!r}, new Uint8Array(out.buffer));\n"
    )
    (tmp_path / "decode.mjs").write_text(script)
    subprocess.run(["node", str(tmp_path / "decode.mjs")], check=True, cwd=ROOT, timeout=60)
    got = np.fromfile(tmp_path / "out.f32", dtype="<f4").reshape(1, 256, 64, 64)
    np.testing.assert_array_equal(got, codec.decode_u8(data))
