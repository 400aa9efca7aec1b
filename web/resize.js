// Resizing a photo to the encoder's input size in the browser, as the server does it: the official
// ResizeLongestSide (mobilesam/utils/transforms.py) resizes the long side to 1024 pixels with
// Pillow's bilinear filter, which antialiases when it shrinks (a triangle filter as wide as the
// scale). This is Pillow's own algorithm (libImaging/Resample.c): the same double-precision filter
// weights, rounded to 22-bit fixed point, a horizontal pass rounded to uint8, then a vertical pass
// over the rows used. On the same decoded pixels the result is byte-identical to Pillow's.

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

function clip8(ss) {
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/**
 * Resize RGBA pixels (`src`: Uint8ClampedArray/Uint8Array of inW*inH*4, e.g. ImageData.data) to
 * outW×outH RGB (Uint8Array outW*outH*3), as Pillow's Image.resize(BILINEAR) of the RGB image.
 */
export function resizeBilinearRGB(src, inW, inH, outW, outH) {
  const horiz = coefficients(inW, outW);
  const vert = coefficients(inH, outH);
  const needH = outW !== inW;
  const needV = outH !== inH;
  // the rows the vertical pass reads
  const yFirst = needV ? vert.bounds[0] : 0;
  const yLast = needV ? vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1] : inH;
  const rows = yLast - yFirst;
  // horizontal pass: rows yFirst..yLast, RGB out
  const tmpW = needH ? outW : inW;
  const tmp = new Uint8Array(tmpW * rows * 3);
  if (needH) {
    const { ksize, bounds, kk } = horiz;
    for (let y = 0; y < rows; y++) {
      const rowIn = (y + yFirst) * inW * 4;
      const rowOut = y * outW * 3;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1], k = xx * ksize;
        let r = HALF, g = HALF, b = HALF;
        let p = rowIn + xmin * 4;
        for (let x = 0; x < xmax; x++, p += 4) {
          const c = kk[k + x];
          r += src[p] * c;
          g += src[p + 1] * c;
          b += src[p + 2] * c;
        }
        const o = rowOut + xx * 3;
        tmp[o] = clip8(r);
        tmp[o + 1] = clip8(g);
        tmp[o + 2] = clip8(b);
      }
    }
  } else {
    for (let y = 0; y < rows; y++) {
      for (let x = 0; x < inW; x++) {
        const p = ((y + yFirst) * inW + x) * 4, o = (y * inW + x) * 3;
        tmp[o] = src[p];
        tmp[o + 1] = src[p + 1];
        tmp[o + 2] = src[p + 2];
      }
    }
  }
  if (!needV) return tmp;
  // vertical pass over the horizontal pass's rows
  const out = new Uint8Array(outW * outH * 3);
  const { ksize, bounds, kk } = vert;
  const stride = outW * 3;
  const acc = new Float64Array(stride);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bounds[yy * 2] - yFirst, ymax = bounds[yy * 2 + 1], k = yy * ksize;
    acc.fill(HALF);
    for (let y = 0; y < ymax; y++) {
      const c = kk[k + y];
      const row = (y + ymin) * stride;
      for (let i = 0; i < stride; i++) acc[i] += tmp[row + i] * c;
    }
    const o = yy * stride;
    for (let i = 0; i < stride; i++) out[o + i] = clip8(acc[i]);
  }
  return out;
}
