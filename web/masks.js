// Pure mask functions: float16 decoding, SAM's exact mask post-processing,
// and the data behind the exports (COCO RLE, SA-1B record, overlay pixels).
// No DOM here, so everything in this file runs (and is tested) under Node.

// ---------------------------------------------------------------------------
// float16 -> float32
// ---------------------------------------------------------------------------

/** One IEEE 754 binary16 bit pattern (0..65535) as a number. */
export function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero and subnormals
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

let HALF_TABLE = null;

/** All 65536 float16 values as float32 (256 KiB, built once). */
function halfTable() {
  if (!HALF_TABLE) {
    HALF_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) HALF_TABLE[h] = halfToFloat(h);
  }
  return HALF_TABLE;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Little-endian float16 data to a Float32Array.
 * @param {ArrayBuffer|ArrayBufferView} src raw bytes (an even number) or a Uint16Array of bit patterns
 * @param {Float32Array} [out] destination, at least src-length long
 */
export function float16ToFloat32(src, out) {
  const table = halfTable();
  let u16;
  if (src instanceof Uint16Array) {
    u16 = src;
  } else {
    const bytes = src instanceof ArrayBuffer
      ? new Uint8Array(src)
      : new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
    if (bytes.byteLength % 2) throw new Error(`float16 data has an odd number of bytes (${bytes.byteLength})`);
    if (LITTLE_ENDIAN && bytes.byteOffset % 2 === 0) {
      u16 = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
    } else {
      u16 = new Uint16Array(bytes.byteLength / 2);
      for (let i = 0; i < u16.length; i++) u16[i] = bytes[2 * i] | (bytes[2 * i + 1] << 8);
    }
  }
  const n = u16.length;
  const dst = out || new Float32Array(n);
  if (dst.length < n) throw new Error("output array too short");
  for (let i = 0; i < n; i++) dst[i] = table[u16[i]];
  return dst;
}

// ---------------------------------------------------------------------------
// Bilinear resize with PyTorch F.interpolate(mode="bilinear", align_corners=False) semantics
// ---------------------------------------------------------------------------
//
// Mirrors ATen's CPU kernel in float32: scale = float(in)/out;
// src = scale*(dst+0.5)-0.5 (clamped at 0), i0 = min(floor(src), in-1),
// i1 = i0 + (i0 < in-1), l1 = src-i0, l0 = 1-l1; each output is
// t0*w0 + t1*w1 first along the width, then along the height. The x86 builds of
// PyTorch (AVX2/AVX-512 kernels) contract these to fused multiply-adds; doing the
// same (a*b+c in double, one rounding to float32) reproduces its results bit for
// bit for the sizes SAM uses (checked against torch 2.13 CPU; outputs of at most
// 64x64 pixels take another kernel path and may differ in the last bit).

const fround = Math.fround;
const TABLES = new Map();

/**
 * Per-axis source indices and weights for resizing `inSize` -> `outSize`.
 * @param {number} inSize
 * @param {number} outSize
 * @returns {{i0: Int32Array, i1: Int32Array, w0: Float32Array, w1: Float32Array}}
 */
export function resizeTable(inSize, outSize) {
  const key = inSize + "x" + outSize;
  let t = TABLES.get(key);
  if (t) return t;
  const i0 = new Int32Array(outSize);
  const i1 = new Int32Array(outSize);
  const w0 = new Float32Array(outSize);
  const w1 = new Float32Array(outSize);
  const scale = fround(inSize / outSize);
  for (let d = 0; d < outSize; d++) {
    if (inSize === outSize) {
      i0[d] = d; i1[d] = d; w0[d] = 1; w1[d] = 0;
      continue;
    }
    let src = fround(scale * fround(d + 0.5) - 0.5); // fused multiply-add
    if (src < 0) src = 0;
    const a = Math.min(Math.floor(src), inSize - 1);
    const lam = Math.min(Math.max(fround(src - a), 0), 1);
    i0[d] = a;
    i1[d] = a < inSize - 1 ? a + 1 : a;
    w1[d] = lam;
    w0[d] = fround(1 - lam);
  }
  t = { i0, i1, w0, w1 };
  if (TABLES.size > 64) TABLES.clear();
  TABLES.set(key, t);
  return t;
}

/**
 * Width pass: rows [0, rows) of a srcH x srcW plane (starting at `offset`) resized to
 * dstW columns. Returns a rows x dstW Float32Array.
 */
function resizeRows(src, offset, srcW, rows, dstW, cols, out) {
  const { i0, i1, w0, w1 } = cols;
  const tmp = out || new Float32Array(rows * dstW);
  for (let r = 0; r < rows; r++) {
    const base = offset + r * srcW;
    const o = r * dstW;
    for (let c = 0; c < dstW; c++) {
      tmp[o + c] = src[base + i0[c]] * w0[c] + fround(src[base + i1[c]] * w1[c]);
    }
  }
  return tmp;
}

/**
 * Bilinear resize (align_corners=False) of one srcH x srcW float plane, optionally
 * cropping the output to its first `outH` rows / `outW` columns (what SAM does after
 * its first upsampling). Result: Float32Array outH x outW, row-major.
 */
export function resizeBilinear(src, srcH, srcW, dstH, dstW, opts = {}) {
  const offset = opts.offset || 0;
  const outH = Math.min(opts.outH ?? dstH, dstH);
  const outW = Math.min(opts.outW ?? dstW, dstW);
  const rowsT = resizeTable(srcH, dstH);
  const colsT = resizeTable(srcW, dstW);
  // Only the source rows the kept output rows read.
  let maxRow = 0;
  for (let r = 0; r < outH; r++) maxRow = Math.max(maxRow, rowsT.i1[r]);
  const tmp = resizeRows(src, offset, srcW, Math.min(maxRow + 1, srcH), outW, colsT);
  const out = new Float32Array(outH * outW);
  const { i0, i1, w0, w1 } = rowsT;
  for (let r = 0; r < outH; r++) {
    const a = i0[r] * outW, b = i1[r] * outW, wa = w0[r], wb = w1[r], o = r * outW;
    for (let c = 0; c < outW; c++) out[o + c] = tmp[a + c] * wa + fround(tmp[b + c] * wb);
  }
  return out;
}

export const LOW_RES = 256;
export const ENCODER_SIZE = 1024;

/**
 * SAM step 1: low-res logits (256x256 plane `index` of a [1,C,256,256] array) upsampled
 * to 1024x1024 and cropped to the un-padded input_height x input_width.
 * @returns {Float32Array} inputH x inputW logits
 */
export function upscaleLowRes(lowRes, index, inputH, inputW) {
  return resizeBilinear(lowRes, LOW_RES, LOW_RES, ENCODER_SIZE, ENCODER_SIZE, {
    offset: index * LOW_RES * LOW_RES, outH: inputH, outW: inputW,
  });
}

/** Logits > threshold as a 0/1 Uint8Array. */
export function threshold(logits, thr = 0) {
  const out = new Uint8Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] > thr ? 1 : 0;
  return out;
}

/**
 * Exactly `Sam.postprocess_masks` followed by `> 0` (what `SamPredictor.predict` returns):
 * upsample 256 -> 1024, crop to input size, resize to height x width, threshold.
 * Also counts for SAM's stability score (logits > +offset vs > -offset).
 * @returns {{mask: Uint8Array, width: number, height: number, area: number, stabilityScore: number}}
 */
export function postprocessMask(lowRes, index, inputH, inputW, height, width, opts = {}) {
  const offset = opts.stabilityOffset ?? 1.0;
  const crop = upscaleLowRes(lowRes, index, inputH, inputW);
  const colsT = resizeTable(inputW, width);
  const rowsT = resizeTable(inputH, height);
  const tmp = resizeRows(crop, 0, inputW, inputH, width, colsT);
  const mask = new Uint8Array(width * height);
  const { i0, i1, w0, w1 } = rowsT;
  let area = 0, hi = 0, lo = 0;
  const hiThr = offset, loThr = -offset;
  for (let r = 0; r < height; r++) {
    const a = i0[r] * width, b = i1[r] * width, wa = w0[r], wb = w1[r], o = r * width;
    for (let c = 0; c < width; c++) {
      const v = fround(tmp[a + c] * wa + fround(tmp[b + c] * wb));
      if (v > 0) { mask[o + c] = 1; area++; }
      if (v > hiThr) hi++;
      if (v > loThr) lo++;
    }
  }
  return { mask, width, height, area, stabilityScore: lo > 0 ? hi / lo : 0 };
}

// ---------------------------------------------------------------------------
// Mask statistics
// ---------------------------------------------------------------------------

export function maskArea(mask) {
  let n = 0;
  for (let i = 0; i < mask.length; i++) n += mask[i] ? 1 : 0;
  return n;
}

/**
 * Tight box [x0, y0, w, h] in SAM's SA-1B convention (`box_xyxy_to_xywh(batched_mask_to_box)`):
 * x1/y1 are the last set column/row (inclusive), so w = x1 - x0, h = y1 - y0
 * (a one-pixel mask has w = h = 0). An empty mask gives [0, 0, 0, 0].
 */
export function maskBBox(mask, width, height) {
  let x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (let y = 0; y < height; y++) {
    const o = y * width;
    let first = -1, last = -1;
    for (let x = 0; x < width; x++) {
      if (mask[o + x]) { if (first < 0) first = x; last = x; }
    }
    if (first >= 0) {
      if (y < y0) y0 = y;
      y1 = y;
      if (first < x0) x0 = first;
      if (last > x1) x1 = last;
    }
  }
  if (x1 < 0) return [0, 0, 0, 0];
  return [x0, y0, x1 - x0, y1 - y0];
}

// ---------------------------------------------------------------------------
// COCO run-length encoding
// ---------------------------------------------------------------------------

/**
 * Uncompressed COCO RLE counts of a row-major 0/1 mask: runs in column-major
 * (Fortran) order, alternating 0s and 1s, starting with a (possibly empty) run of 0s.
 */
export function rleCounts(mask, height, width) {
  const counts = [];
  let prev = 0, run = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const v = mask[y * width + x] ? 1 : 0;
      if (v !== prev) { counts.push(run); run = 0; prev = v; }
      run++;
    }
  }
  counts.push(run);
  return counts;
}

/** pycocotools' `rleToString`: signed 5-bit chunks, 0x20 = more, +48; deltas from i-2 for i > 2. */
export function rleCountsToString(counts) {
  let s = "";
  for (let i = 0; i < counts.length; i++) {
    let x = counts[i];
    if (i > 2) x -= counts[i - 2];
    let more = true;
    while (more) {
      let c = x & 0x1f;
      x >>= 5; // arithmetic shift (runs < 2^31)
      more = c & 0x10 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      s += String.fromCharCode(c + 48);
    }
  }
  return s;
}

/** pycocotools' `rleFrString`: the run lengths back from a compressed string. */
export function rleStringToCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = true;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

/** Row-major 0/1 mask from uncompressed counts. */
export function rleDecode(counts, height, width) {
  const mask = new Uint8Array(height * width);
  let pos = 0, v = 0;
  for (const n of counts) {
    if (v) for (let k = pos; k < pos + n; k++) mask[(k % height) * width + Math.floor(k / height)] = 1;
    pos += n; v ^= 1;
  }
  return mask;
}

/** `{size: [h, w], counts: "<COCO compressed RLE>"}` of a row-major 0/1 mask. */
export function cocoRLE(mask, height, width) {
  return { size: [height, width], counts: rleCountsToString(rleCounts(mask, height, width)) };
}

const round = (v, d) => Math.round(v * 10 ** d) / 10 ** d;

/**
 * SA-1B style annotation record of one mask.
 * @param {{mask: Uint8Array, width: number, height: number, score: number,
 *          points?: {x:number,y:number,label:number}[], box?: object|null,
 *          stabilityScore?: number, area?: number}} m
 */
export function sa1bRecord(m) {
  const { mask, width, height } = m;
  const rec = {
    segmentation: cocoRLE(mask, height, width),
    area: m.area ?? maskArea(mask),
    bbox: maskBBox(mask, width, height),
    predicted_iou: Number.isFinite(m.score) ? m.score : 0,
    point_coords: (m.points || []).map((p) => [round(p.x, 2), round(p.y, 2)]),
  };
  if (m.stabilityScore != null && Number.isFinite(m.stabilityScore)) rec.stability_score = m.stabilityScore;
  rec.crop_box = [0, 0, width, height];
  // Not in SA-1B, kept so the prompt can be replayed.
  rec.point_labels = (m.points || []).map((p) => p.label);
  if (m.box) rec.box = [m.box.x0, m.box.y0, m.box.x1, m.box.y1].map((v) => round(v, 2));
  return rec;
}

// ---------------------------------------------------------------------------
// Drawing helpers (pixel buffers; the canvas module puts them on screen)
// ---------------------------------------------------------------------------

/**
 * RGBA overlay of a mask: `fill` (r,g,b,a 0..255) inside, `edge` on mask pixels whose
 * 4-neighbourhood within `radius` leaves the mask (or the image), transparent outside.
 */
export function overlayRGBA(mask, width, height, fill, edge, radius = 1, out) {
  const px = out || new Uint8ClampedArray(width * height * 4);
  const p32 = new Uint32Array(px.buffer, px.byteOffset, width * height);
  const pack = (c) => (LITTLE_ENDIAN
    ? ((c[3] << 24) | (c[2] << 16) | (c[1] << 8) | c[0]) >>> 0
    : ((c[0] << 24) | (c[1] << 16) | (c[2] << 8) | c[3]) >>> 0);
  const f = pack(fill), e = pack(edge);
  p32.fill(0);
  const r = Math.max(1, radius | 0);
  for (let y = 0; y < height; y++) {
    const o = y * width;
    for (let x = 0; x < width; x++) {
      if (!mask[o + x]) continue;
      let isEdge = false;
      for (let k = 1; k <= r && !isEdge; k++) {
        if (x - k < 0 || !mask[o + x - k] || x + k >= width || !mask[o + x + k]
          || y - k < 0 || !mask[o - k * width + x] || y + k >= height || !mask[o + k * width + x]) isEdge = true;
      }
      p32[o + x] = isEdge ? e : f;
    }
  }
  return px;
}

// ---------------------------------------------------------------------------
// Mask PNG: 8-bit grayscale, 255 inside and 0 outside (as the server's `segment` API writes it)
// ---------------------------------------------------------------------------

let CRC_TABLE = null;

/** CRC-32 (IEEE, as PNG and ZIP use it) of a Uint8Array. */
export function crc32(bytes) {
  let crc = 0xffffffff;
  if (!CRC_TABLE) {
    CRC_TABLE = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      CRC_TABLE[n] = c >>> 0;
    }
  }
  for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** One PNG chunk: length, type, data, CRC. */
export function pngChunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/**
 * 8-bit pixels (Uint8Array, row-major width x height) as a PNG file: grayscale (colour type 0), or
 * indexed (colour type 3) with `palette` (Uint8Array of r, g, b per index). Compressed with the
 * platform's zlib (CompressionStream "deflate": browsers and Node 18+).
 * @returns {Promise<Blob>} of type image/png
 */
export async function png8(pixels, width, height, palette = null) {
  const rows = new Uint8Array((width + 1) * height); // each row: filter type 0, then its pixels
  for (let y = 0; y < height; y++) rows.set(pixels.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  const zlib = new Uint8Array(await new Response(
    new Blob([rows]).stream().pipeThrough(new CompressionStream("deflate"))).arrayBuffer());
  const header = new Uint8Array(13);
  const h = new DataView(header.buffer);
  h.setUint32(0, width);
  h.setUint32(4, height);
  header[8] = 8; // bit depth; compression 0, filter 0, no interlace
  header[9] = palette ? 3 : 0;
  const signature = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);
  const chunks = [pngChunk("IHDR", header), ...(palette ? [pngChunk("PLTE", palette)] : []), pngChunk("IDAT", zlib)];
  return new Blob([signature, ...chunks, pngChunk("IEND", new Uint8Array(0))], { type: "image/png" });
}

/**
 * A 0/1 mask (Uint8Array, row-major width x height) as an 8-bit grayscale PNG file (255 inside).
 * @returns {Promise<Blob>} of type image/png
 */
export async function maskToGrayPng(mask, width, height) {
  if (mask.length !== width * height) throw new Error(`mask has ${mask.length} values, expected ${width}x${height}`);
  const gray = new Uint8Array(mask.length);
  for (let i = 0; i < mask.length; i++) gray[i] = mask[i] ? 255 : 0;
  return png8(gray, width, height);
}

/** Cut-out: keeps the image pixels inside the mask, transparent (all 0) outside. In place. */
export function applyCutout(rgba, mask) {
  for (let i = 0, j = 0; i < mask.length; i++, j += 4) {
    if (!mask[i]) { rgba[j] = 0; rgba[j + 1] = 0; rgba[j + 2] = 0; rgba[j + 3] = 0; } else rgba[j + 3] = 255;
  }
  return rgba;
}
