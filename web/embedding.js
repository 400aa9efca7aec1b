// Fetching an image embedding from the server and decoding it to float32 for the decoder.
// Two wire formats (mobilesam_app/embedding_codec.py); the bytes say which:
//   - per-channel uint8, versioned: "MSAM", version 1, encoding 1, uint16 C/H/W (256/64/64),
//     4 padding bytes, float32 scale[C], float32 offset[C], uint8 q[C*H*W];
//     value = offset[c] + scale[c] * q (computed as float32, like numpy): 1,050,640 bytes;
//   - raw little-endian float16 (no header): 2,097,152 bytes.

import { float16ToFloat32 } from "./masks.js";

export const EMBED_VALUES = 256 * 64 * 64;
export const F16_BYTES = EMBED_VALUES * 2;
const HEADER_BYTES = 16;
export const U8_BYTES = HEADER_BYTES + 8 * 256 + EMBED_VALUES;
const MAGIC = [0x4d, 0x53, 0x41, 0x4d]; // "MSAM"

function isU8(bytes) {
  return bytes.length >= HEADER_BYTES && MAGIC.every((b, i) => bytes[i] === b);
}

/**
 * Bytes of the uint8 format from its parts (the server writes them; the decoder's warm-up and the
 * tests make synthetic ones): scale, offset: 256 float32 each; q: 256*64*64 uint8, channel-major.
 */
export function encodeU8Bytes(scale, offset, q) {
  const bytes = new Uint8Array(U8_BYTES);
  const view = new DataView(bytes.buffer);
  bytes.set(MAGIC, 0);
  view.setUint8(4, 1);
  view.setUint8(5, 1);
  [256, 64, 64].forEach((n, i) => view.setUint16(6 + 2 * i, n, true));
  for (let c = 0; c < 256; c++) {
    view.setFloat32(HEADER_BYTES + 4 * c, scale[c], true);
    view.setFloat32(HEADER_BYTES + 4 * (256 + c), offset[c], true);
  }
  bytes.set(q, HEADER_BYTES + 8 * 256);
  return bytes;
}

/** Decode a fetched embedding (ArrayBuffer or Uint8Array) to a Float32Array of 256*64*64 values. */
export function decodeEmbedding(buf) {
  const bytes = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  if (isU8(bytes)) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const version = view.getUint8(4);
    const encoding = view.getUint8(5);
    if (version !== 1 || encoding !== 1) {
      throw new Error(`embedding format version ${version}/${encoding} is not supported by this page (reload it)`);
    }
    const [c, h, w] = [view.getUint16(6, true), view.getUint16(8, true), view.getUint16(10, true)];
    if (c !== 256 || h !== 64 || w !== 64 || bytes.length !== U8_BYTES) {
      throw new Error(`embedding has shape ${c}x${h}x${w} and ${bytes.length} bytes, expected 256x64x64 and ${U8_BYTES}`);
    }
    const out = new Float32Array(EMBED_VALUES);
    const hw = h * w;
    const table = new Float32Array(256);
    const q = bytes.subarray(HEADER_BYTES + 8 * c);
    for (let ch = 0; ch < c; ch++) {
      const scale = view.getFloat32(HEADER_BYTES + 4 * ch, true);
      const offset = view.getFloat32(HEADER_BYTES + 4 * (c + ch), true);
      for (let v = 0; v < 256; v++) table[v] = Math.fround(Math.fround(v * scale) + offset);
      const base = ch * hw;
      for (let i = 0; i < hw; i++) out[base + i] = table[q[base + i]];
    }
    return out;
  }
  if (bytes.length !== F16_BYTES) {
    throw new Error(`embedding has ${bytes.length} bytes, expected ${U8_BYTES} (uint8) or ${F16_BYTES} (float16 1x256x64x64)`);
  }
  return float16ToFloat32(bytes);
}

/**
 * Fetch `url` and return its bytes (a Uint8Array in either wire format, not yet decoded: the app
 * hands them to the decoder worker, which decodes them where the values are used).
 */
export async function fetchEmbeddingBytes(url) {
  let r;
  try {
    r = await fetch(url, { credentials: "same-origin" });
  } catch (e) {
    throw new Error(`embedding fetch failed: ${e && e.message ? e.message : e}`);
  }
  if (!r.ok) throw new Error(`embedding fetch failed: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

/** Fetch `url` and return the embedding as a Float32Array of 256*64*64 values. */
export async function fetchEmbedding(url) {
  return decodeEmbedding(await fetchEmbeddingBytes(url));
}
