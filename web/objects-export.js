// MobileSAM browser demo: exports of all objects of a photo. Pure functions of full-size 0/1
// masks (Uint8Array, row-major width x height, as exports.js fullMask gives them), so they run
// (and are tested) under Node too:
//   objectsDocument  SA-1B / COCO JSON, one annotation per object (COCO RLE, or polygons)
//   maskToPolygons   a mask's outer outlines as COCO polygons
//   labelMapPng      an indexed (palette) PNG: 0 background, k the k-th object
//   zipStore         a store-only (uncompressed) ZIP file, for the per-object cut-outs

import { sa1bRecord, crc32, png8 } from "./masks.js";

/**
 * The SA-1B-style document of several objects: {image: {image_id, width, height, file_name},
 * annotations: [{id, name, segmentation, area, bbox, predicted_iou, point_coords, point_labels,
 * box, ...}], categories}. `segmentation` is COCO RLE {size: [h, w], counts: string}, or with
 * `polygons` a list of [x0, y0, x1, y1, ...] outlines (pixel corners).
 * @param items [{m: full mask {mask, width, height, area, score, stabilityScore, index}, entry, name}]
 */
export function objectsDocument(items, { width, height, fileName = null, polygons = false } = {}) {
  const image = { image_id: 0, width, height };
  if (fileName) image.file_name = fileName;
  const annotations = items.map(({ m, entry, name }, i) => {
    const rec = sa1bRecord({ mask: m.mask, width: m.width, height: m.height, area: m.area, score: m.score,
      stabilityScore: m.index >= 0 ? m.stabilityScore : undefined, points: entry.points, box: entry.box });
    if (polygons) rec.segmentation = maskToPolygons(m.mask, m.width, m.height);
    return { id: i + 1, name, category_id: 1, iscrowd: 0, ...rec };
  });
  return { image, annotations, categories: [{ id: 1, name: "object" }] };
}

/**
 * The outer outlines of a 0/1 mask's 4-connected regions as COCO polygons: [[x0, y0, x1, y1, ...]],
 * vertices on pixel corners, clockwise on screen, collinear vertices dropped. Holes are left out
 * (COCO polygons cannot hold them; use RLE for exact masks).
 */
export function maskToPolygons(mask, width, height) {
  const W1 = width + 1;
  const at = (x, y) => x >= 0 && y >= 0 && x < width && y < height && mask[y * width + x];
  // Directed boundary edges between pixel corners, the region on the right: out[v] up to two.
  const out1 = new Int32Array(W1 * (height + 1)).fill(-1);
  const out2 = new Int32Array(W1 * (height + 1)).fill(-1);
  const addEdge = (a, b) => { if (out1[a] < 0) out1[a] = b; else out2[a] = b; };
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (!mask[y * width + x]) continue;
      const tl = y * W1 + x, tr = tl + 1, bl = tl + W1, br = bl + 1;
      if (!at(x, y - 1)) addEdge(tl, tr);
      if (!at(x + 1, y)) addEdge(tr, br);
      if (!at(x, y + 1)) addEdge(br, bl);
      if (!at(x - 1, y)) addEdge(bl, tl);
    }
  }
  const polygons = [];
  const dir = (a, b) => [(b % W1) - (a % W1), Math.floor(b / W1) - Math.floor(a / W1)];
  const take = (v, from) => { // the unused edge out of v; at a saddle the right turn (4-connected)
    let n = out1[v], m = out2[v];
    if (n < 0) return -1;
    if (m >= 0 && from >= 0) {
      const [dx, dy] = dir(from, v), [ex, ey] = dir(v, m);
      if (dx * ey - dy * ex > 0) [n, m] = [m, n]; // m turns right (y down)
    }
    if (m >= 0) { if (n === out1[v]) out1[v] = m; out2[v] = -1; } else out1[v] = -1;
    return n;
  };
  for (let s = 0; s < out1.length; s++) {
    while (out1[s] >= 0) {
      const loop = [s];
      let prev = -1, v = s;
      for (;;) {
        const n = take(v, prev);
        if (n < 0 || n === s) break;
        loop.push(n);
        prev = v;
        v = n;
      }
      const poly = simplify(loop, W1);
      if (poly.length >= 6 && signedArea(poly) > 0) polygons.push(poly);
    }
  }
  return polygons;
}

function simplify(loop, W1) {
  const pts = loop.map((v) => [v % W1, Math.floor(v / W1)]);
  const out = [];
  for (let i = 0; i < pts.length; i++) {
    const a = pts[(i + pts.length - 1) % pts.length], b = pts[i], c = pts[(i + 1) % pts.length];
    if ((b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0]) !== 0) out.push(b[0], b[1]);
  }
  return out;
}

function signedArea(flat) {
  let s = 0;
  for (let i = 0; i < flat.length; i += 2) {
    const j = (i + 2) % flat.length;
    s += flat[i] * flat[j + 1] - flat[j] * flat[i + 1];
  }
  return s / 2;
}

/**
 * An indexed-colour PNG label map: pixel value k (1-based) where the k-th mask is set (a later mask
 * wins where they overlap), 0 elsewhere; palette entry k is `colors[k - 1]`, 0 black.
 * @param masks Uint8Array[] full-size 0/1 masks, row-major width x height
 * @param colors [[r, g, b]] one per mask
 * @returns {Promise<Blob>} image/png, 8-bit, colour type 3
 */
export async function labelMapPng(masks, colors, width, height) {
  if (masks.length > 255) throw new Error(`a label map holds at most 255 objects, got ${masks.length}`);
  const palette = new Uint8Array(3 * (masks.length + 1));
  colors.slice(0, masks.length).forEach((c, i) => palette.set(c, 3 * (i + 1)));
  return png8(labelMap(masks, width, height), width, height, palette);
}

/** Uint8Array width x height: k (1-based) where the k-th mask is set (later masks on top), else 0. */
export function labelMap(masks, width, height) {
  const labels = new Uint8Array(width * height);
  masks.forEach((m, i) => {
    for (let j = 0; j < labels.length; j++) if (m[j]) labels[j] = i + 1;
  });
  return labels;
}

/**
 * A ZIP file of `files` ([{name, data: Uint8Array}]) stored without compression (the entries are
 * PNGs, compressed already): local headers, data, central directory, end record. Names are UTF-8;
 * sizes must stay under 4 GiB (no ZIP64).
 * @returns {Uint8Array}
 */
export function zipStore(files, date = new Date()) {
  const enc = new TextEncoder();
  const dosTime = (date.getHours() << 11) | (date.getMinutes() << 5) | (date.getSeconds() >> 1);
  const dosDate = ((date.getFullYear() - 1980) << 9) | ((date.getMonth() + 1) << 5) | date.getDate();
  const locals = [], centrals = [];
  let offset = 0;
  for (const f of files) {
    const name = enc.encode(f.name);
    const crc = crc32(f.data);
    const common = (v, at) => { // the fields local and central headers share, from `at`
      v.setUint16(at, 20, true); // version needed
      v.setUint16(at + 2, 0x0800, true); // UTF-8 names
      v.setUint16(at + 4, 0, true); // stored
      v.setUint16(at + 6, dosTime, true);
      v.setUint16(at + 8, dosDate, true);
      v.setUint32(at + 10, crc, true);
      v.setUint32(at + 14, f.data.length, true);
      v.setUint32(at + 18, f.data.length, true);
      v.setUint16(at + 22, name.length, true);
    };
    const local = new Uint8Array(30 + name.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    common(lv, 4);
    local.set(name, 30);
    const central = new Uint8Array(46 + name.length);
    const cv = new DataView(central.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true); // version made by
    common(cv, 6);
    cv.setUint32(42, offset, true);
    central.set(name, 46);
    locals.push(local, f.data);
    centrals.push(central);
    offset += local.length + f.data.length;
  }
  const cdSize = centrals.reduce((n, c) => n + c.length, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, files.length, true);
  ev.setUint16(10, files.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  const out = new Uint8Array(offset + cdSize + 22);
  let at = 0;
  for (const part of [...locals, ...centrals, end]) { out.set(part, at); at += part.length; }
  return out;
}

/** A file name for object `name` number `i` (1-based) in a zip: "03_dog.png". */
export function objectFileName(i, name, ext) {
  const safe = String(name || "object").replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 60) || "object";
  return `${String(i).padStart(2, "0")}_${safe}.${ext}`;
}
