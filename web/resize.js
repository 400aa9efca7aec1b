// Resizing a photo to the encoder's input size in the browser, as the server does it: the official
// ResizeLongestSide (mobilesam/utils/transforms.py) resizes the long side to 1024 pixels with
// Pillow's bilinear filter, which antialiases when it shrinks (a triangle filter as wide as the
// scale). This is Pillow's own algorithm (libImaging/Resample.c): the same double-precision filter
// weights, rounded to 22-bit fixed point, a horizontal pass rounded to uint8, then a vertical pass
// over the rows used. On the same decoded pixels the result is byte-identical to Pillow's. The sums
// are Pillow's int32 ones (Math.imul, | 0: they never exceed 2^31), one pass per axis, the
// horizontal one only over the rows the vertical one reads.

export const ENCODER_SIDE = 1024;
const PRECISION_BITS = 32 - 8 - 2;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);

/** [height, width] of an image of `h`×`w` resized to `longSide` on its long side (get_preprocess_shape). */
export function preprocessShape(h, w, longSide = ENCODER_SIDE) {
  const scale = (longSide * 1.0) / Math.max(h, w);
  return [Math.trunc(h * scale + 0.5), Math.trunc(w * scale + 0.5)];
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for one axis: {ksize, bounds: Int32Array [out*2]
 * (first input index, count), kk: Int32Array [out*ksize] fixed-point weights}. */
export function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = 1.0 * filterscale; // bilinear: support 1
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  const ss = 1.0 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0.0;
    for (let x = 0; x < xmax; x++) {
      let t = (x + xmin - center + 0.5) * ss;
      if (t < 0) t = -t;
      w[x] = t < 1.0 ? 1.0 - t : 0.0;
      ww += w[x];
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0.0 ? w[x] / ww : w[x];
      kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

/**
 * Resize RGBA pixels (`src`: Uint8ClampedArray/Uint8Array of inW*inH*4, e.g. ImageData.data) to
 * outW×outH RGB (Uint8Array outW*outH*3), as Pillow's Image.resize(BILINEAR) of the RGB image.
 */
export function resizeBilinearRGB(src, inW, inH, outW, outH) {
  return resizeBilinear(src, inW, inH, outW, outH, 3);
}

/** As resizeBilinearRGB, to opaque RGBA (Uint8ClampedArray outW*outH*4, alpha 255: an ImageData's data). */
export function resizeBilinearRGBA(src, inW, inH, outW, outH) {
  return resizeBilinear(src, inW, inH, outW, outH, 4);
}

/** The rows [first, last) of the input that the vertical pass reads. */
function rowsRead(vert, inH, outH, needV) {
  return needV ? [vert.bounds[0], vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1]] : [0, inH];
}

/** Pillow's horizontal pass (ImagingResampleHorizontal_8bpc) over input rows [yFirst, yLast) of RGBA
 * `src`, to RGB rows of `outW` (Uint8Array). Each pixel is read once as a 32-bit word (little-endian:
 * R in the low byte); the sums stay below 2^31 (weights >= 0 summing to ~2^22, 255 at most). */
function horizontalPass(src, inW, yFirst, yLast, outW, { ksize, bounds, kk }) {
  const rows = yLast - yFirst;
  const px = new Uint32Array(src.buffer, src.byteOffset, src.length >> 2);
  const tmp = new Uint8Array(outW * rows * 3);
  let o = 0;
  for (let y = yFirst; y < yLast; y++) {
    const rowIn = y * inW;
    for (let xx = 0; xx < outW; xx++) {
      const n = bounds[xx * 2 + 1], k = xx * ksize;
      let p = rowIn + bounds[xx * 2];
      let r = HALF, g = HALF, b = HALF;
      for (let x = 0; x < n; x++, p++) {
        const c = kk[k + x], v = px[p];
        r = (r + Math.imul(v & 255, c)) | 0;
        g = (g + Math.imul((v >>> 8) & 255, c)) | 0;
        b = (b + Math.imul((v >>> 16) & 255, c)) | 0;
      }
      tmp[o++] = clip8(r);
      tmp[o++] = clip8(g);
      tmp[o++] = clip8(b);
    }
  }
  return tmp;
}

/** RGB rows [yFirst, yLast) of RGBA `src` as they are (no horizontal resize). */
function dropAlpha(src, inW, yFirst, yLast) {
  const tmp = new Uint8Array(inW * (yLast - yFirst) * 3);
  for (let p = yFirst * inW * 4, o = 0, end = yLast * inW * 4; p < end; p += 4) {
    tmp[o++] = src[p];
    tmp[o++] = src[p + 1];
    tmp[o++] = src[p + 2];
  }
  return tmp;
}

/** Pillow's vertical pass (ImagingResampleVertical_8bpc) over the RGB rows `tmp` (the first is input
 * row `yFirst`) to `channels` (3: RGB, 4: RGBA with alpha 255) per pixel. */
function verticalPass(tmp, outW, outH, yFirst, channels, { ksize, bounds, kk }) {
  const stride = outW * 3;
  const out = channels === 4 ? new Uint8ClampedArray(outW * outH * 4) : new Uint8Array(outW * outH * 3);
  let o = 0;
  for (let yy = 0; yy < outH; yy++) {
    const n = bounds[yy * 2 + 1], k = yy * ksize;
    const row0 = (bounds[yy * 2] - yFirst) * stride;
    for (let i = 0; i < stride; i += 3) {
      let r = HALF, g = HALF, b = HALF;
      for (let y = 0, q = row0 + i; y < n; y++, q += stride) {
        const c = kk[k + y];
        r = (r + Math.imul(tmp[q], c)) | 0;
        g = (g + Math.imul(tmp[q + 1], c)) | 0;
        b = (b + Math.imul(tmp[q + 2], c)) | 0;
      }
      out[o++] = clip8(r);
      out[o++] = clip8(g);
      out[o++] = clip8(b);
      if (channels === 4) out[o++] = 255;
    }
  }
  return out;
}

/** RGB rows (Uint8Array w*h*3) to `channels` per pixel (4: alpha 255, Uint8ClampedArray). */
function withChannels(rgb, channels) {
  if (channels === 3) return rgb;
  const out = new Uint8ClampedArray((rgb.length / 3) * 4);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    out[j] = rgb[i];
    out[j + 1] = rgb[i + 1];
    out[j + 2] = rgb[i + 2];
    out[j + 3] = 255;
  }
  return out;
}

function resizeBilinear(src, inW, inH, outW, outH, channels) {
  if (src.byteOffset % 4 !== 0) src = src.slice();
  const needH = outW !== inW, needV = outH !== inH;
  const vert = needV ? coefficients(inH, outH) : null;
  const [yFirst, yLast] = rowsRead(vert, inH, outH, needV);
  const tmp = needH ? horizontalPass(src, inW, yFirst, yLast, outW, coefficients(inW, outW))
    : dropAlpha(src, inW, yFirst, yLast);
  return needV ? verticalPass(tmp, outW, outH, yFirst, channels, vert) : withChannels(tmp, channels);
}

function clip8(ss) {
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}
