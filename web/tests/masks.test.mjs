// Unit tests of web/masks.js. Expected values in reference.json come from PyTorch and
// pycocotools (see make_reference.py); the rest are computed independently here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  halfToFloat, float16ToFloat32, resizeTable, resizeBilinear, upscaleLowRes, postprocessMask,
  threshold, maskArea, maskBBox, rleCounts, rleCountsToString, rleStringToCounts, rleDecode,
  cocoRLE, sa1bRecord, overlayRGBA, maskToGrayPng, applyCutout,
} from "../masks.js";

const REF = JSON.parse(readFileSync(new URL("./reference.json", import.meta.url), "utf8"));

function fnv(bytes) {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i];
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

// ------------------------------------------------------------------ float16

test("float16: special values, subnormals, infinities", () => {
  const cases = [
    [0x0000, 0], [0x3c00, 1], [0xc000, -2], [0x3555, 0.333251953125], [0x7bff, 65504],
    [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24], [0x0400, 2 ** -14], [0x8001, -(2 ** -24)],
    [0x7c00, Infinity], [0xfc00, -Infinity], [0x3bff, 0.99951171875], [0x5640, 100],
  ];
  for (const [h, v] of cases) assert.equal(halfToFloat(h), v, `0x${h.toString(16)}`);
  assert.ok(Object.is(halfToFloat(0x8000), -0));
  assert.ok(Number.isNaN(halfToFloat(0x7e00)));
  assert.ok(Number.isNaN(halfToFloat(0xfc01)));
  const bytes = new Uint8Array(cases.flatMap(([h]) => [h & 0xff, h >> 8]));
  const f = float16ToFloat32(bytes.buffer);
  assert.deepEqual(Array.from(f), cases.map(([, v]) => v));
});

test("float16: all 65536 patterns match numpy", () => {
  const u16 = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) u16[i] = i;
  const f = float16ToFloat32(new Uint8Array(u16.buffer));
  const bits = new Uint32Array(f.buffer);
  for (let i = 0; i < 65536; i++) if (Number.isNaN(f[i])) bits[i] = 0x7fc00000;
  let sum = 0;
  for (let i = 0; i < 65536; i++) sum = (sum + bits[i]) % 2 ** 32;
  assert.equal(sum, REF.f16_bits_sum);
  assert.equal(fnv(new Uint8Array(bits.buffer)), REF.f16_fnv);
});

test("float16: unaligned byte views and output array", () => {
  const buf = new Uint8Array(7);
  buf.set([0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b], 1); // 1, -2, 65504 at byte offset 1
  const out = new Float32Array(3);
  float16ToFloat32(buf.subarray(1), out);
  assert.deepEqual(Array.from(out), [1, -2, 65504]);
  assert.throws(() => float16ToFloat32(new Uint8Array(3)));
});

// ------------------------------------------------------------------ bilinear

/** Independent double-precision F.interpolate(bilinear, align_corners=False). */
function refResize(src, h, w, oh, ow) {
  const out = new Float64Array(oh * ow);
  const coord = (d, inS, outS) => {
    let s = (inS / outS) * (d + 0.5) - 0.5;
    if (s < 0) s = 0;
    const a = Math.min(Math.floor(s), inS - 1);
    const b = a < inS - 1 ? a + 1 : a;
    const l = inS === outS ? 0 : s - a;
    return [inS === outS ? d : a, inS === outS ? d : b, l];
  };
  for (let y = 0; y < oh; y++) {
    const [y0, y1, ly] = coord(y, h, oh);
    for (let x = 0; x < ow; x++) {
      const [x0, x1, lx] = coord(x, w, ow);
      const top = src[y0 * w + x0] * (1 - lx) + src[y0 * w + x1] * lx;
      const bot = src[y1 * w + x0] * (1 - lx) + src[y1 * w + x1] * lx;
      out[y * ow + x] = top * (1 - ly) + bot * ly;
    }
  }
  return out;
}

function rand(seed) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

test("bilinear: matches an independent reference (up/down, odd sizes, crop)", () => {
  const r = rand(7);
  for (const [h, w, oh, ow] of [[4, 4, 16, 16], [5, 7, 13, 3], [9, 6, 4, 11], [8, 8, 8, 8], [1, 5, 3, 10], [6, 1, 2, 4]]) {
    const src = Float32Array.from({ length: h * w }, () => r() * 20 - 10);
    const got = resizeBilinear(src, h, w, oh, ow);
    const want = refResize(src, h, w, oh, ow);
    for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) < 1e-4, `${h}x${w}->${oh}x${ow} @${i}`);
    const ch = Math.max(1, oh - 2), cw = Math.max(1, ow - 1);
    const crop = resizeBilinear(src, h, w, oh, ow, { outH: ch, outW: cw });
    for (let y = 0; y < ch; y++) for (let x = 0; x < cw; x++) assert.equal(crop[y * cw + x], got[y * ow + x]);
  }
});

test("bilinear: index/weight tables follow PyTorch (clamp at 0, last index repeats)", () => {
  const t = resizeTable(256, 1024);
  assert.deepEqual([t.i0[0], t.i1[0], t.w0[0], t.w1[0]], [0, 1, 1, 0]); // src -0.375 -> 0
  assert.deepEqual([t.i0[2], t.i1[2], t.w0[2], t.w1[2]], [0, 1, 0.875, 0.125]); // src 0.125
  assert.deepEqual([t.i0[1023], t.i1[1023], t.w1[1023]], [255, 255, 0.375]); // src 255.375
  const same = resizeTable(5, 5);
  assert.deepEqual(Array.from(same.i0), [0, 1, 2, 3, 4]);
  assert.deepEqual(Array.from(same.w1), [0, 0, 0, 0, 0]);
});

/** The synthetic low-res logits of make_reference.py. */
function syntheticLowRes() {
  const lr = new Float32Array(4 * 256 * 256);
  for (let k = 0; k < 4; k++) {
    for (let i = 0; i < 256; i++) {
      for (let j = 0; j < 256; j++) {
        const d = (i - 120 - 9 * k) ** 2 + (j - 130 + 7 * k) ** 2;
        lr[k * 65536 + i * 256 + j] = (3000 - d) / 64 + (((i * 37 + j * 91 + k * 13) % 97) - 48) / 16;
      }
    }
  }
  return lr;
}

test("postprocess: equals torch Sam.postprocess_masks bit for bit", () => {
  const lr = syntheticLowRes();
  for (const c of REF.postprocess) {
    const label = `${c.width}x${c.height} mask ${c.index}`;
    const crop = upscaleLowRes(lr, c.index, c.input_height, c.input_width);
    assert.equal(crop.length, c.input_width * c.input_height);
    for (const [y, x, v] of c.crop_samples) assert.equal(crop[y * c.input_width + x], Math.fround(v), `${label} crop (${y},${x})`);
    const cm = threshold(crop);
    assert.equal(maskArea(cm), c.crop_area, label);
    assert.equal(fnv(cm), c.crop_fnv, label);

    const m = postprocessMask(lr, c.index, c.input_height, c.input_width, c.height, c.width);
    assert.equal(m.mask.length, c.width * c.height);
    assert.equal(m.area, c.area, label);
    assert.equal(maskArea(m.mask), c.area, label);
    assert.equal(fnv(m.mask), c.fnv, label);
    assert.equal(m.stabilityScore, c.gtm1 ? c.gt1 / c.gtm1 : 0, label); // 0, not NaN, for an empty mask
    const full = resizeBilinear(crop, c.input_height, c.input_width, c.height, c.width);
    for (const [y, x, v] of c.samples) assert.equal(full[y * c.width + x], Math.fround(v), `${label} (${y},${x})`);
  }
});

// ------------------------------------------------------------------ RLE

/** The masks of make_reference.py, row-major. */
function referenceMasks() {
  const make = (h, w, f) => {
    const m = new Uint8Array(h * w);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) m[y * w + x] = f(y, x) ? 1 : 0;
    return m;
  };
  return {
    zeros_4x5: make(4, 5, () => 0),
    ones_4x5: make(4, 5, () => 1),
    first_3x3: make(3, 3, (y, x) => y === 0 && x === 0),
    pattern_13x17: make(13, 17, (y, x) => (x * 7 + y * 3) % 5 < 2),
    disc_30x40: make(30, 40, (y, x) => (x - 22) ** 2 + (y - 14) ** 2 < 120),
    rect_300x400: make(300, 400, (y, x) => y >= 20 && y < 280 && x >= 50 && x < 330 && !(y >= 100 && y < 120 && x >= 100 && x < 110)),
    rings_257x513: make(257, 513, (y, x) => Math.floor(Math.floor(Math.sqrt((x - 300) ** 2 + (y - 100) ** 2)) / 17) % 2 === 1),
  };
}

test("RLE: COCO compressed strings equal pycocotools.mask.encode", () => {
  const masks = referenceMasks();
  for (const [name, want] of Object.entries(REF.rle)) {
    const [h, w] = want.size;
    const m = masks[name];
    const rle = cocoRLE(m, h, w);
    assert.deepEqual(rle.size, want.size, name);
    assert.equal(rle.counts, want.counts, name);
    assert.equal(maskArea(m), want.area, name);
    // round trip
    const counts = rleStringToCounts(want.counts);
    assert.deepEqual(counts, rleCounts(m, h, w), name);
    assert.deepEqual(rleDecode(counts, h, w), m, name);
  }
});

test("RLE: runs are column-major and start with zeros", () => {
  // 2x3 mask, rows [1,0,0],[1,1,0]: column-major 1,1,0,1,0,0
  const m = Uint8Array.from([1, 0, 0, 1, 1, 0]);
  assert.deepEqual(rleCounts(m, 2, 3), [0, 2, 1, 1, 2]);
  assert.deepEqual(rleCounts(new Uint8Array(6), 2, 3), [6]);
  // large runs and negative deltas survive the 5-bit chunking
  for (const counts of [[0, 1e6, 3, 5e5, 1], [123456, 7, 89, 100000, 2, 0], [31, 32, 15, 16, 17, 1]]) {
    assert.deepEqual(rleStringToCounts(rleCountsToString(counts)), counts);
  }
});

// ------------------------------------------------------------------ stats / record

test("bbox and area: SAM's SA-1B convention", () => {
  const masks = referenceMasks();
  // pycocotools toBbox gives w = x1 - x0 + 1; SAM's batched_mask_to_box + xyxy->xywh gives x1 - x0
  for (const [name, want] of Object.entries(REF.rle)) {
    const [h, w] = want.size;
    const box = maskBBox(masks[name], w, h);
    const [x, y, bw, bh] = want.toBbox;
    if (want.area === 0) assert.deepEqual(box, [0, 0, 0, 0]);
    else assert.deepEqual(box, [x, y, bw - 1, bh - 1], name);
  }
  const one = new Uint8Array(12);
  one[1 * 4 + 2] = 1; // (x=2, y=1) in a 3x4 (h x w) mask
  assert.deepEqual(maskBBox(one, 4, 3), [2, 1, 0, 0]);
  assert.equal(maskArea(one), 1);
});

test("sa1bRecord: fields and types", () => {
  const m = referenceMasks().disc_30x40;
  const rec = sa1bRecord({
    mask: m, width: 40, height: 30, score: 0.93, stabilityScore: 0.97,
    points: [{ x: 22.04, y: 14, label: 1 }, { x: 3, y: 4.5, label: 0 }], box: null,
  });
  assert.deepEqual(rec.segmentation, { size: [30, 40], counts: REF.rle.disc_30x40.counts });
  assert.equal(rec.area, 373);
  assert.deepEqual(rec.bbox, [12, 4, 20, 20]);
  assert.equal(rec.predicted_iou, 0.93);
  assert.equal(rec.stability_score, 0.97);
  assert.deepEqual(rec.point_coords, [[22.04, 14], [3, 4.5]]);
  assert.deepEqual(rec.point_labels, [1, 0]);
  assert.deepEqual(rec.crop_box, [0, 0, 40, 30]);
  assert.deepEqual(Object.keys(rec).slice(0, 7),
    ["segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"]);
  JSON.parse(JSON.stringify(rec));
});

// ------------------------------------------------------------------ pixels

test("overlay, grayscale and cut-out pixels", () => {
  // 4x4 mask with a 3x3 block at the top left
  const m = new Uint8Array(16);
  for (let y = 0; y < 3; y++) for (let x = 0; x < 3; x++) m[y * 4 + x] = 1;
  const fill = [1, 2, 3, 4], edge = [9, 9, 9, 9];
  const px = overlayRGBA(m, 4, 4, fill, edge, 1);
  const at = (x, y) => Array.from(px.subarray((y * 4 + x) * 4, (y * 4 + x) * 4 + 4));
  assert.deepEqual(at(1, 1), fill); // interior
  assert.deepEqual(at(0, 0), edge); // image border counts as outside
  assert.deepEqual(at(2, 1), edge);
  assert.deepEqual(at(3, 3), [0, 0, 0, 0]);
  const rgba = new Uint8ClampedArray(16 * 4).fill(200);
  applyCutout(rgba, m);
  assert.deepEqual(Array.from(rgba.subarray(0, 4)), [200, 200, 200, 255]);
  assert.deepEqual(Array.from(rgba.subarray(12, 16)), [0, 0, 0, 0]);
});

// ------------------------------------------------------------------ mask PNG

test("mask PNG: 8-bit grayscale, 255 inside, valid chunks (CRC-32) and zlib data", async () => {
  const { inflateSync, crc32 } = await import("node:zlib").then((z) => ({ inflateSync: z.inflateSync, crc32: z.crc32 }));
  const width = 7, height = 5;
  const mask = new Uint8Array(width * height);
  for (let i = 0; i < mask.length; i++) mask[i] = (i * 7) % 3 === 0 ? 1 : 0;
  const blob = await maskToGrayPng(mask, width, height);
  assert.equal(blob.type, "image/png");
  const png = new Uint8Array(await blob.arrayBuffer());
  assert.deepEqual(Array.from(png.subarray(0, 8)), [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const chunks = {};
  for (let at = 8; at < png.length;) {
    const len = view.getUint32(at);
    const type = String.fromCharCode(...png.subarray(at + 4, at + 8));
    const data = png.subarray(at + 8, at + 8 + len);
    assert.equal(view.getUint32(at + 8 + len), crc32(png.subarray(at + 4, at + 8 + len)), type);
    chunks[type] = data;
    at += 12 + len;
  }
  assert.deepEqual(Object.keys(chunks), ["IHDR", "IDAT", "IEND"]);
  const ihdr = new DataView(chunks.IHDR.buffer, chunks.IHDR.byteOffset, 13);
  assert.deepEqual([ihdr.getUint32(0), ihdr.getUint32(4), ...chunks.IHDR.subarray(8)], [width, height, 8, 0, 0, 0, 0]);
  const rows = inflateSync(chunks.IDAT);
  assert.equal(rows.length, (width + 1) * height);
  for (let y = 0; y < height; y++) {
    assert.equal(rows[y * (width + 1)], 0); // filter: none
    for (let x = 0; x < width; x++) assert.equal(rows[y * (width + 1) + 1 + x], mask[y * width + x] ? 255 : 0);
  }
  await assert.rejects(maskToGrayPng(mask, width + 1, height), /expected 8x5/);
});
