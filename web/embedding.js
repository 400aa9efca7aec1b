// Fetching an image embedding from the server and decoding it to float32 for the decoder.
// The server sends the 1x256x64x64 embedding as raw little-endian float16 bytes.

import { float16ToFloat32 } from "./masks.js";

const EMBED_BYTES = 256 * 64 * 64 * 2;

/** Fetch `url` and return the embedding as a Float32Array of 256*64*64 values. */
export async function fetchEmbedding(url) {
  let r;
  try {
    r = await fetch(url, { credentials: "same-origin" });
  } catch (e) {
    throw new Error(`embedding fetch failed: ${e && e.message ? e.message : e}`);
  }
  if (!r.ok) throw new Error(`embedding fetch failed: HTTP ${r.status}`);
  const buf = await r.arrayBuffer();
  if (buf.byteLength !== EMBED_BYTES) {
    throw new Error(`embedding has ${buf.byteLength} bytes, expected ${EMBED_BYTES} (float16 1x256x64x64)`);
  }
  return float16ToFloat32(buf);
}
