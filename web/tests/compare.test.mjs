// Unit tests of web/compare.js CompareSession: entering, changing and leaving compare mode
// (with a stand-in decoder and embedding fetch), stale loads, errors, and the full-size
// numbers and getState().compare object; and of the exports.js helpers it shares.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CompareSession } from "../compare.js";
import { FullMaskMemo, fullMask, shareLink } from "../exports.js";

const LOW = 256 * 256;

function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

/** A stand-in MaskModel: load() and the embedding fetch wait for the test. */
function setup() {
  const log = { created: 0, loads: [], fetches: [], embeddings: [], changes: 0, errors: [], drops: 0 };
  const pending = { load: null, fetch: null, embedding: null };
  const model = {
    ready: false,
    load(url) {
      log.loads.push(url);
      pending.load = deferred();
      return pending.load.promise.then(() => { model.ready = true; });
    },
    setEmbedding(bytes) {
      log.embeddings.push(bytes);
      pending.embedding = deferred();
      return pending.embedding.promise;
    },
    decode: async (prompts) => ({ prompts }),
  };
  const s = new CompareSession({
    createModel: () => { log.created++; return model; },
    fetchEmbedding: (url) => { log.fetches.push(url); pending.fetch = deferred(); return pending.fetch.promise; },
    onChange: () => { log.changes++; },
    onError: (t) => { log.errors.push(t); },
    onDrop: () => { log.drops++; },
  });
  return { s, model, log, pending };
}

const VIT_B = { model: "vit_b", label: "SAM ViT-B", embedding_url: "/emb/b", decoder_url: "/dec/b", encode_ms: 900, params: 89e6 };
const VIT_H = { model: "vit_h", label: "SAM ViT-H", embedding_url: "/emb/h", decoder_url: "/dec/h", encode_ms: 5000, params: 632e6 };
const INFO = { image_id: "img", width: 64, height: 48, input_width: 1024, input_height: 768, encode_ms: 120,
  mobilesam_params: 6e6, model: "vit_t" };

test("compare mode: off, loading, ready; the same model again keeps its state", async () => {
  const { s, model, log, pending } = setup();
  assert.equal(await s.set(null, INFO), false); // off and staying off: nothing happens
  assert.equal(log.changes, 0);
  assert.equal(s.on, false);
  assert.equal(s.key, null);

  const p = s.set(VIT_B, INFO);
  assert.equal(s.on, true);
  assert.equal(s.key, "/emb/b");
  assert.equal(s.label, "SAM ViT-B");
  assert.equal(s.state.ready, false);
  assert.equal(s.active(), false);
  assert.deepEqual(log.loads, ["/dec/b"]);
  assert.deepEqual(log.fetches, ["/emb/b"]);
  pending.fetch.resolve("bytes-b");
  pending.load.resolve();
  assert.equal(await p, true); // just became ready: the caller decodes the prompts
  assert.deepEqual(log.embeddings, ["bytes-b"]);
  assert.equal(s.active(), true);

  // the same model and image: only its numbers are refreshed
  assert.equal(await s.set({ ...VIT_B, encode_ms: 950, label: "ViT-B" }, INFO), false);
  assert.equal(s.state.encodeMs, 950);
  assert.equal(s.label, "ViT-B");
  assert.equal(s.active(), true);
  assert.equal(log.fetches.length, 1);

  // leaving: the embedding is dropped, the decoder is kept for later
  s.set(null, INFO);
  assert.equal(s.on, false);
  assert.equal(s.active(), false);
  assert.equal(log.embeddings.at(-1), null);
  assert.equal(log.drops >= 1, true);
  assert.equal(s.snapshot(INFO, { points: [], box: null }, () => null), null);
  s.set(VIT_H, INFO);
  assert.equal(log.created, 1); // one decoder, reloaded
  assert.deepEqual(log.loads, ["/dec/b", "/dec/h"]);
});

test("compare mode: a load overtaken by another model or image is dropped", async () => {
  const { s, log, pending } = setup();
  const first = s.set(VIT_B, INFO);
  const fetchB = pending.fetch, loadB = pending.load;
  const second = s.set(VIT_H, INFO); // another model before the first one arrived
  assert.equal(s.key, "/emb/h");
  fetchB.resolve("bytes-b");
  loadB.resolve();
  assert.equal(await first, false);
  assert.deepEqual(log.embeddings.filter(Boolean), []); // vit_b's embedding never set
  let imageChanged = false;
  pending.fetch.resolve("bytes-h");
  pending.load.resolve();
  assert.equal(await second, true);

  const { s: s2, pending: p2 } = setup();
  const third = s2.set(VIT_B, INFO, () => imageChanged);
  imageChanged = true;
  p2.fetch.resolve("x");
  p2.load.resolve();
  assert.equal(await third, false);
  assert.equal(s2.state.ready, false);
});

test("compare mode: errors go to the state and the status line", async () => {
  const { s, log, pending } = setup();
  const p = s.set(VIT_B, INFO);
  pending.fetch.reject(new Error("404 embedding"));
  pending.load.resolve();
  assert.equal(await p, false);
  assert.equal(s.state.error, "404 embedding");
  assert.deepEqual(log.errors, ["SAM ViT-B: 404 embedding"]);
  assert.equal(s.active(), false);

  // bytes that are not an embedding: reported when the decoder rejects them
  const { s: s2, log: log2, pending: p2 } = setup();
  const q = s2.set(VIT_B, INFO);
  p2.fetch.resolve("junk");
  p2.load.resolve();
  assert.equal(await q, true);
  p2.embedding.reject(new Error("bad embedding size"));
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(s2.state.ready, false);
  assert.equal(s2.state.error, "bad embedding size");
  assert.deepEqual(log2.errors, ["SAM ViT-B: bad embedding size"]);
});

test("compare mode: view and decode counters", () => {
  const { s } = setup();
  assert.equal(s.view, "side");
  s.setView("overlay");
  assert.equal(s.view, "overlay");
  s.setView("anything");
  assert.equal(s.view, "side");
  s.noteDecode({ ms: 4.5 });
  s.noteDecode({ ms: 2 });
  assert.equal(s.decodeCount, 2);
  assert.equal(s.lastDecodeMs, 2);
});

/** A decode result whose candidate k is `fill(k)` everywhere (positive: inside the mask). */
function result(fill, scores) {
  const lowRes = new Float32Array(4 * LOW);
  for (let k = 0; k < 4; k++) lowRes.fill(fill(k), k * LOW, (k + 1) * LOW);
  return { lowRes, scores: Float32Array.from(scores) };
}

/** A result whose candidate 0 covers the left `frac` of the image's part of the low-res grid. */
function leftPart(frac) {
  const r = result(() => -10, [0.8, 0.1, 0.1, 0.1]);
  const cols = Math.round(256 * frac); // the image fills the grid's width (input_width 1024)
  for (let y = 0; y < 256; y++) r.lowRes.fill(10, y * 256, y * 256 + cols);
  return r;
}

test("compare mode: full-size numbers, summary and the getState().compare object", async () => {
  const { s, pending } = setup();
  const p = s.set(VIT_B, INFO);
  pending.fetch.resolve("b");
  pending.load.resolve();
  await p;
  const box = { x0: 0, y0: 0, x1: 63, y1: 47 };
  const a = leftPart(1);
  const b = leftPart(0.5);
  const entry = { points: [], box, maskMode: "auto", result: a, cmp: { key: "/emb/b", result: b } };
  const memo = new FullMaskMemo();
  const fullA = () => fullMask(INFO, entry, memo);
  assert.equal(s.resultOf(entry), b);
  assert.equal(s.resultOf({ ...entry, cmp: { key: "/emb/h", result: b } }), null); // another model's: stale

  const st = s.stats(INFO, entry, fullA);
  assert.equal(st.a.area, 64 * 48);
  assert.equal(st.b.area, 32 * 48);
  assert.equal(st.iou, 0.5);
  assert.equal(s.stats(INFO, entry, fullA), st); // cached while the masks are the same
  assert.equal(st.summary, "64×48 image · box · MobileSAM 3,072 px (100.0%), score 0.800 · "
    + "SAM ViT-B 1,536 px (50.0%), score 0.800 · IoU 0.500 · encoder MobileSAM 120 ms, SAM ViT-B 900 ms (this server)");

  s.noteDecode({ ms: 12.5 });
  const snap = s.snapshot(INFO, entry, fullA);
  assert.deepEqual(Object.keys(snap), ["model", "label", "ready", "error", "view", "iou", "scores", "selectedIndex",
    "score", "area", "mobilesam", "encodeMs", "params", "lastDecodeMs", "decodeCount", "summary"]);
  assert.deepEqual(snap, {
    model: "vit_b", label: "SAM ViT-B", ready: true, error: null, view: "side", iou: 0.5,
    scores: Array.from(Float32Array.from([0.8, 0.1, 0.1, 0.1])), selectedIndex: 0, score: Math.fround(0.8),
    area: 1536, mobilesam: { area: 3072, score: Math.fround(0.8), index: 0 },
    encodeMs: { mobilesam: 120, sam: 900 }, params: { mobilesam: 6e6, sam: 89e6 },
    lastDecodeMs: 12.5, decodeCount: 1, summary: st.summary,
  });

  // the comparison decode missing: no numbers, but the state is there
  const bare = { ...entry, cmp: null };
  const snap2 = s.snapshot(INFO, bare, () => fullMask(INFO, bare, memo));
  assert.equal(snap2.iou, null);
  assert.equal(snap2.scores, null);
  assert.equal(snap2.selectedIndex, -1);
  assert.equal(s.fullMask(INFO, bare), null);
});

test("exports: full-size masks are memoised; the share link names the compare model", () => {
  const memo = new FullMaskMemo();
  const r = leftPart(0.25);
  const e = { points: [{ x: 5, y: 5, label: 1 }], box: null, maskMode: 1, result: r, refine: false, prev: null };
  const m = fullMask(INFO, e, memo);
  assert.equal(m.index, 1);
  assert.equal(fullMask(INFO, e, memo), m);
  const single = fullMask(INFO, { ...e, points: [], box: { x0: 0, y0: 0, x1: 9, y1: 9 }, maskMode: "auto" }, memo);
  assert.notEqual(single, m);
  assert.equal(single.index, 0);
  assert.equal(single.area, 16 * 48); // candidate 0: the left quarter
  assert.equal(m.area, 0); // candidate 1: empty
  assert.equal(fullMask(null, e, memo), null);
  assert.equal(fullMask(INFO, { ...e, result: null }, memo).area, 0);
  const loc = { origin: "http://h", pathname: "/" };
  assert.equal(shareLink(INFO, e, "vit_b", loc), "http://h/?image=img&points=5,5,1&mask=1&compare=vit_b");
  assert.equal(shareLink(INFO, e, null, loc), "http://h/?image=img&points=5,5,1&mask=1");
  assert.equal(shareLink(null, e, null, loc), null);
});

test("downloads are named after the chosen photo, else after the start of the image id", async () => {
  const { downloadBaseName } = await import("../exports.js");
  assert.equal(downloadBaseName({ image_id: "a".repeat(32), file_name: "IMG_1234.JPG" }), "IMG_1234");
  assert.equal(downloadBaseName({ image_id: "a".repeat(32), file_name: "my holiday (2).webp" }), "my_holiday_2_");
  assert.equal(downloadBaseName({ image_id: "0123456789abcdef0123456789abcdef" }), "image-01234567");
  assert.equal(downloadBaseName(null), "image");
});

test("compare mode: each object's IoU at full size; null while its comparison decode is missing", async () => {
  const { s, pending } = setup();
  assert.deepEqual(s.objectIoUs(INFO, [], () => null), []); // outside compare mode
  const p = s.set(VIT_B, INFO);
  pending.fetch.resolve("b");
  pending.load.resolve();
  await p;
  const box = { x0: 0, y0: 0, x1: 63, y1: 47 };
  const obj = (id, a, b) => ({ id, name: `Object ${id}`,
    entry: { points: [], box, maskMode: "auto", result: a, cmp: b ? { key: "/emb/b", result: b } : null } });
  const objects = [obj(1, leftPart(1), leftPart(0.5)), obj(2, leftPart(0.5), leftPart(0.5)), obj(3, leftPart(1), null),
    { id: 4, name: "Object 4", entry: { points: [], box: null, maskMode: "auto", result: null, cmp: null } }];
  const memos = new Map(objects.map((o) => [o, new FullMaskMemo()]));
  const fullA = (o) => fullMask(INFO, o.entry, memos.get(o));
  const ious = s.objectIoUs(INFO, objects, fullA);
  assert.deepEqual(ious, [{ id: 1, name: "Object 1", iou: 0.5 }, { id: 2, name: "Object 2", iou: 1 },
    { id: 3, name: "Object 3", iou: null }]); // object 4 has no prompts
  assert.deepEqual(s.objectIoUs(INFO, objects, fullA), ious);
});
