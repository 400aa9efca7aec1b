// MobileSAM browser demo: masks from the server while the page's own decoder loads.
// A ServerDecoder decodes one prompt of an encoded image on the server (POST <decodeUrl><image id>)
// and answers as MaskModel.decode does (web/decoder.js), with the logits in float16
// (mobilesam_app/mask_codec.py). The decode queue (scheduler.js) shows such a result at once and
// decodes the prompt again with the page's decoder when that is ready, so what stays on screen is
// the page decoder's mask. On a first visit the decoder's download takes seconds; the photo's
// embedding is on the server long before, so the first click need not wait for it.

import { LOW_RES, float16ToFloat32 } from "./masks.js";

const MAGIC = "MSLR";
const HEADER = 16;

/**
 * mask_codec bytes -> {scores: Float32Array(M), lowRes: Float32Array(M*256*256)}.
 * @param {ArrayBuffer} buffer
 */
export function parseMasks(buffer) {
  const view = new DataView(buffer);
  if (buffer.byteLength < HEADER) throw new Error("the server's masks are too short");
  const magic = String.fromCharCode(...new Uint8Array(buffer, 0, 4));
  const version = view.getUint8(4), encoding = view.getUint8(5);
  const m = view.getUint16(6, true), h = view.getUint16(8, true), w = view.getUint16(10, true);
  if (magic !== MAGIC || version !== 1 || encoding !== 1) throw new Error("the server's masks are not of format version 1");
  const n = m * h * w;
  if (h !== LOW_RES || w !== LOW_RES || buffer.byteLength !== HEADER + 4 * m + 2 * n) {
    throw new Error(`the server's masks have ${buffer.byteLength} bytes for shape ${m}x${h}x${w}`);
  }
  const scores = new Float32Array(m);
  for (let i = 0; i < m; i++) scores[i] = view.getFloat32(HEADER + 4 * i, true);
  const high = new Uint8Array(buffer, HEADER + 4 * m, n), low = new Uint8Array(buffer, HEADER + 4 * m + n, n);
  const halves = new Uint16Array(n);
  for (let i = 0; i < n; i++) halves[i] = (high[i] << 8) | low[i];
  return { scores, lowRes: float16ToFloat32(halves) };
}

export class ServerDecoder {
  /**
   * @param {string} url the decode route's prefix (MSAM_CONFIG.decodeUrl, "/msam/decode/")
   * @param {string} imageId the encoded image (its info's image_id)
   */
  constructor(url, imageId) {
    this.url = url + encodeURIComponent(imageId);
    this.imageId = imageId;
  }

  /**
   * One prompt's masks, as MaskModel.decode gives them, plus `server: true`.
   * @param {{points: {x,y,label}[], box: object|null}} prompts in original-image pixels
   * @returns {Promise<{lowRes: Float32Array, scores: Float32Array, ms: number, server: true}>}
   */
  async decode(prompts) {
    const box = prompts.box;
    const body = JSON.stringify({
      points: (prompts.points || []).map((p) => [p.x, p.y, p.label]),
      box: box ? [box.x0, box.y0, box.x1, box.y1] : null,
    });
    const t0 = performance.now();
    const r = await fetch(this.url, { method: "POST", headers: { "Content-Type": "application/json" }, body });
    if (!r.ok) {
      let why = `HTTP ${r.status}`;
      try { why = (await r.json()).error || why; } catch { /* not JSON */ }
      throw new Error(why);
    }
    const res = parseMasks(await r.arrayBuffer());
    return { ...res, ms: performance.now() - t0, server: true };
  }
}
