// Unit tests of web/embedding.js: both wire formats, and refusals of bad data.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeEmbedding, EMBED_VALUES, F16_BYTES, U8_BYTES } from "../embedding.js";

function u8Embedding(scales, offsets, fill) {
  const buf = new ArrayBuffer(U8_BYTES);
  const bytes = new Uint8Array(buf);
  const view = new DataView(buf);
  bytes.set([0x4d, 0x53, 0x41, 0x4d], 0);
  view.setUint8(4, 1);
  view.setUint8(5, 1);
  view.setUint16(6, 256, true);
  view.setUint16(8, 64, true);
  view.setUint16(10, 64, true);
  for (let c = 0; c < 256; c++) {
    view.setFloat32(16 + 4 * c, scales(c), true);
    view.setFloat32(16 + 4 * (256 + c), offsets(c), true);
  }
  const q = bytes.subarray(16 + 8 * 256);
  for (let i = 0; i < EMBED_VALUES; i++) q[i] = fill(i);
  return bytes;
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
