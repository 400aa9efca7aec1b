import { test } from "node:test";
import assert from "node:assert/strict";
import { inflateSync } from "node:zlib";

import { ObjectList, makeEntry, maskCovers, formatObjectsLink, parseObjectsLink, PALETTE, MAX_OBJECTS } from "../objects.js";
import { objectsDocument, maskToPolygons, labelMap, labelMapPng, zipStore, objectFileName } from "../objects-export.js";
import { parsePrompts, formatPrompts, refineSteps } from "../prompts.js";
import { LOW_RES, crc32, rleDecode, rleStringToCounts } from "../masks.js";

const INFO = { width: 800, height: 600, input_width: 1024, input_height: 768 };

/** A decode result whose candidate 0 covers low-res cells [gx0, gx1) x [gy0, gy1). */
function resultCovering(gx0, gy0, gx1, gy1) {
  const lowRes = new Float32Array(4 * LOW_RES * LOW_RES).fill(-5);
  for (let y = gy0; y < gy1; y++) for (let x = gx0; x < gx1; x++) lowRes[y * LOW_RES + x] = 5;
  return { lowRes, scores: Float32Array.of(0.9, 0.1, 0.2, 0.3) };
}

test("each object keeps its own prompt history, colour and name; the selected one is edited", () => {
  const list = new ObjectList();
  assert.equal(list.objects.length, 1);
  const first = list.selected;
  list.entry = makeEntry(list.entry, [{ x: 1, y: 2, label: 1 }], null);
  const second = list.add();
  assert.equal(list.selected, second);
  assert.deepEqual(list.entry.points, []);
  list.entry = makeEntry(list.entry, [], { x0: 1, y0: 1, x1: 5, y1: 5 });
  assert.notDeepEqual(first.color, second.color);
  assert.deepEqual(first.color, PALETTE[0]);
  assert.ok(list.select(first.id));
  assert.deepEqual(list.entry.points, [{ x: 1, y: 2, label: 1 }]);
  assert.equal(list.entry.prev.prev, null); // its own undo chain: one edit back to the empty state
  assert.equal(list.select(999), false);
  assert.ok(list.rename(second.id, "  dog "));
  assert.equal(second.name, "dog");
  list.rename(second.id, "");
  assert.equal(second.name, `Object ${second.id}`);
  assert.deepEqual(list.withPrompts().map((o) => o.id), [first.id, second.id]);
});

test("removing the selected object selects its neighbour; the last one is replaced by an empty one", () => {
  const list = new ObjectList();
  const a = list.selected, b = list.add(), c = list.add();
  list.select(b.id);
  assert.equal(list.remove(b.id), b);
  assert.equal(list.selected, c);
  list.remove(c.id);
  assert.equal(list.selected, a);
  list.remove(a.id);
  assert.equal(list.objects.length, 1);
  assert.notEqual(list.selected, a);
  assert.equal(list.remove(12345), null);
});

test("no more than MAX_OBJECTS objects", () => {
  const list = new ObjectList();
  while (list.add()) { /* fill */ }
  assert.equal(list.objects.length, MAX_OBJECTS);
});

test("objectAt finds the topmost object whose mask covers a pixel", () => {
  const list = new ObjectList();
  const a = list.selected;
  a.entry = makeEntry(a.entry, [{ x: 10, y: 10, label: 1 }, { x: 11, y: 11, label: 1 }], null);
  a.entry.result = resultCovering(0, 0, 128, 128); // the image's top-left quarter of the 1024 frame
  const b = list.add();
  b.entry = makeEntry(b.entry, [{ x: 300, y: 300, label: 1 }, { x: 301, y: 301, label: 1 }], null);
  b.entry.result = resultCovering(64, 64, 192, 192);
  // image (x, y) -> input frame x*1.28 -> low-res /4
  assert.equal(list.objectAt(50, 50, INFO), a);
  assert.equal(list.objectAt(250, 250, INFO), b); // both cover it; b is on top
  assert.equal(list.objectAt(700, 500, INFO), null);
  assert.equal(maskCovers(makeEntry(null, [], null), 50, 50, INFO), false);
});

test("a share link of several objects carries each one's prompts, mask choice and refinement", () => {
  const list = new ObjectList();
  list.entry = makeEntry(list.entry, [{ x: 810, y: 624, label: 1 }], null, "auto", false);
  list.entry = makeEntry(list.entry, [{ x: 810, y: 624, label: 1 }, { x: 1100, y: 800, label: 0 }], null, 2, true);
  const b = list.add();
  b.entry = makeEntry(b.entry, [], { x0: 10.5, y0: 20, x1: 300, y1: 400.2 });
  list.add(); // empty: not in the link
  list.select(b.id);
  const q = formatObjectsLink({ imageId: "abc", objects: list.objects, selected: list.selectedIndex, compare: "vit_b" });
  const p = parseObjectsLink(q);
  assert.equal(p.imageId, "abc");
  assert.equal(p.compare, "vit_b");
  assert.equal(p.selected, 1);
  assert.equal(p.objects.length, 2);
  assert.deepEqual(p.objects[0].points, [{ x: 810, y: 624, label: 1 }, { x: 1100, y: 800, label: 0 }]);
  assert.equal(p.objects[0].mask, 2);
  assert.deepEqual(p.objects[0].refine, refineSteps(list.objects[0].entry));
  assert.deepEqual(p.objects[1].box, { x0: 10.5, y0: 20, x1: 300, y1: 400.2 });
  assert.equal(parsePrompts(q).imageId, "abc"); // the image part reads as before
});

test("one object gives the single-object link of before; a link without obj has no objects", () => {
  const list = new ObjectList();
  list.entry = makeEntry(list.entry, [{ x: 5, y: 6, label: 1 }], null);
  list.add();
  const q = formatObjectsLink({ imageId: "id1", objects: list.objects, selected: 1 });
  assert.equal(q, formatPrompts({ imageId: "id1", points: [{ x: 5, y: 6, label: 1 }], mask: "auto" }));
  assert.equal(parseObjectsLink(q), null);
  const bad = parseObjectsLink("?image=x&obj=garbage&obj=points%3D1%2C2%2C1&sel=9");
  assert.equal(bad.objects.length, 1);
  assert.equal(bad.selected, 0);
});

test("polygons outline each 4-connected region; holes are left out", () => {
  const w = 6, h = 5;
  const mask = new Uint8Array(w * h);
  for (let y = 1; y < 4; y++) for (let x = 1; x < 4; x++) mask[y * w + x] = 1; // a 3x3 square
  mask[2 * w + 2] = 0; // with a hole
  mask[4 * w + 5] = 1; // and a lone pixel touching it only diagonally? (no: far away)
  const polys = maskToPolygons(mask, w, h);
  assert.deepEqual(polys, [[1, 1, 4, 1, 4, 4, 1, 4], [5, 4, 6, 4, 6, 5, 5, 5]]);
  const diag = Uint8Array.of(1, 0, 0, 1); // 2x2, two pixels touching at a corner: two regions
  assert.equal(maskToPolygons(diag, 2, 2).length, 2);
});

test("the SA-1B document holds one annotation per object with an exact RLE", () => {
  const w = 4, h = 3;
  const m1 = Uint8Array.of(1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0);
  const m2 = Uint8Array.of(0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1);
  const item = (mask, score, points) => ({ m: { mask, width: w, height: h, area: mask.reduce((a, b) => a + b), score,
    index: 0, stabilityScore: 0.9 }, entry: { points, box: null }, name: "n" + score });
  const doc = objectsDocument([item(m1, 0.5, [{ x: 1, y: 1, label: 1 }]), item(m2, 0.7, [])],
    { width: w, height: h, fileName: "a.jpg" });
  assert.deepEqual(doc.image, { image_id: 0, width: w, height: h, file_name: "a.jpg" });
  assert.deepEqual(doc.annotations.map((a) => [a.id, a.name, a.area, a.predicted_iou]), [[1, "n0.5", 4, 0.5], [2, "n0.7", 4, 0.7]]);
  const back = rleDecode(rleStringToCounts(doc.annotations[1].segmentation.counts), h, w);
  assert.deepEqual(Array.from(back), Array.from(m2));
  const poly = objectsDocument([item(m1, 0.5, [])], { width: w, height: h, polygons: true });
  assert.deepEqual(poly.annotations[0].segmentation, [[0, 0, 2, 0, 2, 2, 0, 2]]);
});

test("the label map PNG is indexed, later objects on top", async () => {
  const a = Uint8Array.of(1, 1, 0, 0), b = Uint8Array.of(0, 1, 1, 0);
  assert.deepEqual(Array.from(labelMap([a, b], 2, 2)), [1, 2, 2, 0]);
  const png = new Uint8Array(await (await labelMapPng([a, b], [[255, 0, 0], [0, 255, 0]], 2, 2)).arrayBuffer());
  const chunks = {};
  for (let at = 8; at < png.length;) {
    const len = new DataView(png.buffer).getUint32(at);
    const type = String.fromCharCode(...png.subarray(at + 4, at + 8));
    chunks[type] = png.subarray(at + 8, at + 8 + len);
    assert.equal(new DataView(png.buffer).getUint32(at + 8 + len), crc32(png.subarray(at + 4, at + 8 + len)));
    at += 12 + len;
  }
  assert.equal(chunks.IHDR[9], 3);
  assert.deepEqual(Array.from(chunks.PLTE), [0, 0, 0, 255, 0, 0, 0, 255, 0]);
  assert.deepEqual(Array.from(inflateSync(chunks.IDAT)), [0, 1, 2, 0, 2, 0]);
});

test("the store-only zip lists every file with its CRC and bytes", () => {
  const files = [{ name: objectFileName(1, "a dog", "png"), data: Uint8Array.of(1, 2, 3) },
    { name: objectFileName(12, "", "png"), data: new TextEncoder().encode("hello") }];
  const zip = zipStore(files, new Date(2026, 0, 2, 3, 4, 6));
  const v = new DataView(zip.buffer);
  const end = zip.length - 22;
  assert.equal(v.getUint32(end, true), 0x06054b50);
  assert.equal(v.getUint16(end + 10, true), 2);
  let at = v.getUint32(end + 16, true);
  const seen = [];
  for (let i = 0; i < 2; i++) {
    assert.equal(v.getUint32(at, true), 0x02014b50);
    const size = v.getUint32(at + 24, true), nameLen = v.getUint16(at + 28, true), local = v.getUint32(at + 42, true);
    const name = new TextDecoder().decode(zip.subarray(at + 46, at + 46 + nameLen));
    const dataAt = local + 30 + v.getUint16(local + 26, true);
    const data = zip.subarray(dataAt, dataAt + size);
    assert.equal(v.getUint32(at + 16, true), crc32(data));
    seen.push([name, Array.from(data)]);
    at += 46 + nameLen;
  }
  assert.deepEqual(seen, [["01_a_dog.png", [1, 2, 3]], ["12_object.png", [104, 101, 108, 108, 111]]]);
});
