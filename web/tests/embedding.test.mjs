// Unit tests of web/embedding.js: both wire formats, and refusals of bad data.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeEmbedding, encodeU8Bytes, EMBED_VALUES, F16_BYTES, U8_BYTES } from "../embedding.js";

function u8Embedding(scales, offsets, fill) {
  const idx = Array.from({ length: 256 }, (_, c) => c);
  return encodeU8Bytes(idx.map(scales), idx.map(offsets), Uint8Array.from({ length: EMBED_VALUES }, (_, i) => fill(i)));
}

test("uint8 embedding: value = offset[c] + scale[c] * q in float32, channel-major", () => {
  const bytes = u8Embedding((c) => 0.01 * (c + 1), (c) => -1 - c / 100, (i) => i % 256);
  const out = decodeEmbedding(bytes.buffer);
  assert.equal(out.length, EMBED_VALUES);
  for (const i of [0, 1, 255, 4095, 4096, 4097, 123456, EMBED_VALUES - 1]) {
    const c = Math.floor(i / 4096);
    const s = Math.fround(0.01 * (c + 1));
    const o = Math.fround(-1 - c / 100);
    assert.equal(out[i], Math.fround(Math.fround((i % 256) * s) + o), `value ${i}`);
  }
});

test("uint8 embedding: a constant channel (scale 0) decodes to its offset", () => {
  const out = decodeEmbedding(u8Embedding(() => 0, (c) => c, () => 0));
  assert.equal(out[5 * 4096 + 17], 5);
});

test("uint8 embedding: other versions, shapes and lengths are refused", () => {
  const bad = u8Embedding(() => 1, () => 0, () => 0);
  bad[4] = 2;
  assert.throws(() => decodeEmbedding(bad), /version 2/);
  const shape = u8Embedding(() => 1, () => 0, () => 0);
  shape[6] = 128;
  assert.throws(() => decodeEmbedding(shape), /shape/);
  assert.throws(() => decodeEmbedding(u8Embedding(() => 1, () => 0, () => 0).subarray(0, U8_BYTES - 1)), /bytes/);
});

test("float16 embedding still decodes; other sizes are refused", () => {
  const f16 = new Uint16Array(F16_BYTES / 2);
  f16[0] = 0x3c00; // 1
  f16[1] = 0xc000; // -2
  const out = decodeEmbedding(new Uint8Array(f16.buffer));
  assert.equal(out[0], 1);
  assert.equal(out[1], -2);
  assert.throws(() => decodeEmbedding(new Uint8Array(1000)), /1000 bytes/);
});

test("the decoder engine decodes fetched bytes itself, and keeps no embedding from bad ones", async () => {
  const { DecoderEngine } = await import("../decoder-core.js");
  const engine = new DecoderEngine();
  const model = { session: null, fast: false, embedding: null, cache: null, generation: 0 };
  engine.models.set(1, model);
  const bytes = u8Embedding((c) => 0.5 / (c + 1), (c) => c - 128, (i) => (i * 7) % 256);
  const res = await engine.setEmbedding(1, bytes); // not the fast decoder: nothing to prepare
  assert.deepEqual(res, { prepareMs: null });
  assert.deepEqual(model.embedding, decodeEmbedding(bytes));
  const floats = new Float32Array(EMBED_VALUES).fill(0.25);
  await engine.setEmbedding(1, floats);
  assert.equal(model.embedding, floats); // a Float32Array is kept as it is
  const wrong = bytes.slice();
  wrong[4] = 9; // a format version this page does not know
  assert.throws(() => engine.setEmbedding(1, wrong), /version 9\/1 is not supported/);
  assert.equal(model.embedding, null);
  assert.throws(() => engine.setEmbedding(1, new Uint8Array(10)), /expected 1050640 \(uint8\)/);
  assert.equal(model.embedding, null);
});
