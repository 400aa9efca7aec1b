// The in-page resize of a phone photo (web/resize.js) against the straightforward version it
// replaced (kept below as the baseline: per-channel byte reads, a Float64Array accumulator row, an
// RGB -> RGBA copy afterwards), on the same pixels in the same run, interleaved.
//
//   node bench/resize.mjs [--width 4032 --height 3024 --repeats 5] [--json]
//
// Both must give the same bytes (checked); prints the median seconds of each and the ratio.

import os from "node:os";
import { coefficients, preprocessShape, resizeBilinearRGBA } from "../web/resize.js";

const PRECISION_BITS = 22, HALF = 1 << 21;
const clip8 = (ss) => { const v = ss >> PRECISION_BITS; return v < 0 ? 0 : v > 255 ? 255 : v; };

/** The previous implementation, then the RGB -> RGBA copy resize-worker.js made. */
function baselineRGBA(src, inW, inH, outW, outH) {
  const horiz = coefficients(inW, outW), vert = coefficients(inH, outH);
  const yFirst = vert.bounds[0], yLast = vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1];
  const rows = yLast - yFirst;
  const tmp = new Uint8Array(outW * rows * 3);
  for (let y = 0; y < rows; y++) {
    const rowIn = (y + yFirst) * inW * 4, rowOut = y * outW * 3;
    for (let xx = 0; xx < outW; xx++) {
      const xmin = horiz.bounds[xx * 2], xmax = horiz.bounds[xx * 2 + 1], k = xx * horiz.ksize;
      let r = HALF, g = HALF, b = HALF;
      let p = rowIn + xmin * 4;
      for (let x = 0; x < xmax; x++, p += 4) {
        const c = horiz.kk[k + x];
        r += src[p] * c; g += src[p + 1] * c; b += src[p + 2] * c;
      }
      const o = rowOut + xx * 3;
      tmp[o] = clip8(r); tmp[o + 1] = clip8(g); tmp[o + 2] = clip8(b);
    }
  }
  const out = new Uint8Array(outW * outH * 3);
  const stride = outW * 3, acc = new Float64Array(stride);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = vert.bounds[yy * 2] - yFirst, ymax = vert.bounds[yy * 2 + 1], k = yy * vert.ksize;
    acc.fill(HALF);
    for (let y = 0; y < ymax; y++) {
      const c = vert.kk[k + y], row = (y + ymin) * stride;
      for (let i = 0; i < stride; i++) acc[i] += tmp[row + i] * c;
    }
    for (let i = 0; i < stride; i++) out[yy * stride + i] = clip8(acc[i]);
  }
  const rgba = new Uint8ClampedArray(outW * outH * 4);
  for (let i = 0, j = 0; i < out.length; i += 3, j += 4) {
    rgba[j] = out[i]; rgba[j + 1] = out[i + 1]; rgba[j + 2] = out[i + 2]; rgba[j + 3] = 255;
  }
  return rgba;
}

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

const W = arg("width", 4032), H = arg("height", 3024), repeats = arg("repeats", 5);
const [h, w] = preprocessShape(H, W);
// a photo-like test image: smooth gradients plus noise, opaque
const src = new Uint8ClampedArray(W * H * 4);
let seed = 1;
for (let y = 0, p = 0; y < H; y++) {
  for (let x = 0; x < W; x++, p += 4) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const n = seed >>> 28;
    src[p] = (x * 255) / W + n; src[p + 1] = (y * 255) / H + n; src[p + 2] = ((x + y) & 255) ^ n; src[p + 3] = 255;
  }
}
const fns = { baseline: () => baselineRGBA(src, W, H, w, h), resize_js: () => resizeBilinearRGBA(src, W, H, w, h) };
const a = fns.baseline(), b = fns.resize_js();
const same = a.length === b.length && a.every((v, i) => v === b[i]);
if (!same) throw new Error("web/resize.js and the baseline differ");
const times = { baseline: [], resize_js: [] };
for (let r = 0; r < repeats; r++) {
  for (const [name, fn] of Object.entries(fns)) {
    const t = performance.now();
    fn();
    times[name].push((performance.now() - t) / 1000);
  }
}
const median = (v) => [...v].sort((x, y) => x - y)[v.length >> 1];
const out = { benchmark: "resize", input: [W, H], output: [w, h], repeats, identical: same,
  baseline_s: +median(times.baseline).toFixed(4), resize_js_s: +median(times.resize_js).toFixed(4),
  ratio: +(median(times.resize_js) / median(times.baseline)).toFixed(3),
  machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, loadavg: os.loadavg().map((x) => +x.toFixed(2)) } };
if (process.argv.includes("--json")) console.log(JSON.stringify(out));
else {
  console.log(`resize ${W}x${H} -> ${w}x${h} (RGBA out), median of ${repeats}, identical bytes: ${same}`);
  console.log(`  baseline (previous web/resize.js + RGBA copy): ${out.baseline_s.toFixed(3)} s`);
  console.log(`  web/resize.js resizeBilinearRGBA:              ${out.resize_js_s.toFixed(3)} s`);
  console.log(`  ratio new/baseline: ${out.ratio}  (${out.machine.model}, ${out.machine.cpus} CPUs, load ${out.machine.loadavg.join(" ")})`);
}
