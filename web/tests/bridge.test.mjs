// Unit tests of web/bridge.js: the server's masks (mobilesam_app/mask_codec.py's format) read back.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseMasks } from "../bridge.js";

const LOW = 256 * 256;

/** Bytes as mask_codec.encode_low_res writes them: header, float32 scores, float16 byte planes. */
function masksBytes(scores, halves, { magic = "MSLR", version = 1, size = 256 } = {}) {
  const m = scores.length, n = m * size * size;
  const buf = new ArrayBuffer(16 + 4 * m + 2 * n);
  const view = new DataView(buf);
  for (let i = 0; i < 4; i++) view.setUint8(i, magic.charCodeAt(i));
  view.setUint8(4, version);
  view.setUint8(5, 1);
  view.setUint16(6, m, true);
  view.setUint16(8, size, true);
  view.setUint16(10, size, true);
  scores.forEach((s, i) => view.setFloat32(16 + 4 * i, s, true));
  const high = new Uint8Array(buf, 16 + 4 * m, n), low = new Uint8Array(buf, 16 + 4 * m + n, n);
  halves.forEach((v, i) => { high[i] = v >> 8; low[i] = v & 0xff; });
  return buf;
}

test("the server's masks: scores exact, logits from float16 byte planes, mask by mask", () => {
  const halves = new Array(4 * LOW).fill(0);
  halves[0] = 0xc400; // -4
  halves[1] = 0x3c00; // 1
  halves[LOW] = 0x3555; // 0.333251953125
  halves[3 * LOW + 5] = 0xb800; // -0.5
  const { scores, lowRes } = parseMasks(masksBytes([0.25, 0.5, 0.875, 0.125], halves));
  assert.deepEqual(Array.from(scores), [0.25, 0.5, 0.875, 0.125]);
  assert.equal(lowRes.length, 4 * LOW);
  assert.equal(lowRes[0], -4);
  assert.equal(lowRes[1], 1);
  assert.equal(lowRes[LOW], 0.333251953125);
  assert.equal(lowRes[3 * LOW + 5], -0.5);
  assert.equal(lowRes[2], 0);
});

test("bytes that are not masks of version 1 are refused with a reason", () => {
  const q = new Array(4 * LOW).fill(0);
  assert.throws(() => parseMasks(new ArrayBuffer(8)), /too short/);
  assert.throws(() => parseMasks(masksBytes([1, 2, 3, 4], q, { magic: "MSAM" })), /format version 1/);
  assert.throws(() => parseMasks(masksBytes([1, 2, 3, 4], q, { version: 2 })), /format version 1/);
  assert.throws(() => parseMasks(masksBytes([1, 2, 3, 4], [], { size: 64 })), /shape 4x64x64/);
  assert.throws(() => parseMasks(masksBytes([1, 2, 3, 4], q).slice(0, 1000)), /bytes for shape/);
});
