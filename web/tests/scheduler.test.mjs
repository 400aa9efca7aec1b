// Unit tests of web/scheduler.js DecodeQueue: decode order, the preview slot, cancellation,
// stale decodes, errors and compare mode, with stand-in decoders whose decodes finish when a
// test says so.
import { test } from "node:test";
import assert from "node:assert/strict";
import { DecodeQueue, selectedLowRes } from "../scheduler.js";

const LOW = 256 * 256;

/** A result like MaskModel.decode's: 4 candidates of low-res logits, each filled with its index + `tag`. */
function result(tag, scores = [0.5, 0.6, 0.9, 0.7], ms = 3) {
  const lowRes = new Float32Array(4 * LOW);
  for (let k = 0; k < 4; k++) lowRes.fill(k + tag, k * LOW, (k + 1) * LOW);
  return { lowRes, scores: Float32Array.from(scores), ms };
}

/** A decoder whose decodes wait until finish(i) / fail(i); `calls` records what was asked. */
function fakeModel(name) {
  const calls = [];
  return {
    name,
    calls,
    decode(prompts, mask) {
      let resolve, reject;
      const p = new Promise((res, rej) => { resolve = res; reject = rej; });
      calls.push({ prompts, mask, resolve, reject });
      return p;
    },
  };
}

let ID = 0;
function entry(prev, points, box = null, refine = false) {
  return { id: ++ID, prev, points, box, maskMode: "auto", refine, result: null, error: null, pending: false, cmp: null };
}
const pt = (x, y, label = 1) => ({ x, y, label });

/** A stand-in CompareSession: off unless `on()`. */
function fakeCompare() {
  const model = fakeModel("cmp");
  const c = {
    model, key: null, label: "SAM ViT-B", decodes: 0,
    active: () => c.key !== null,
    decode: (p, m) => model.decode(p, m),
    noteDecode() { c.decodes++; },
    resultOf: (e) => (e && e.cmp && e.cmp.key === c.key ? e.cmp.result || null : null),
    selectedLowRes: (e) => selectedLowRes(e, c.resultOf(e)),
  };
  return c;
}

function setup() {
  const model = fakeModel("a");
  const compare = fakeCompare();
  const h = { ready: true, current: entry(null, []), token: 1, refine: false, changes: 0, stats: 0, errors: [] };
  const q = new DecodeQueue({
    model: () => model,
    compare,
    ready: () => h.ready,
    bridge: () => h.bridge || null,
    current: () => h.current,
    imageToken: () => h.token,
    refine: () => h.refine,
    onChange: () => { h.changes++; },
    onStats: () => { h.stats++; },
    onError: (t) => { h.errors.push(t); },
  });
  /** Make `e` the current entry and commit it (as MsamApp.commit does). */
  const commit = (e) => { h.current = e; q.commit(e); return e; };
  return { q, model, compare, h, commit };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

test("commits are decoded one at a time, in order; previews wait for them", async () => {
  const { q, model, h, commit } = setup();
  const e1 = commit(entry(h.current, [pt(1, 1)]));
  const e2 = commit(entry(e1, [pt(1, 1), pt(2, 2)]));
  q.hover({ x: 5, y: 5 });
  assert.equal(model.calls.length, 1);
  assert.deepEqual(model.calls[0].prompts.points, [pt(1, 1)]);
  assert.equal(e1.pending && e2.pending, true);
  assert.equal(q.isIdle(), false);
  model.calls[0].resolve(result(0));
  await tick();
  assert.equal(e1.result.scores[2], Math.fround(0.9));
  assert.equal(e1.pending, false);
  assert.equal(model.calls.length, 2);
  assert.deepEqual(model.calls[1].prompts.points, [pt(1, 1), pt(2, 2)]);
  model.calls[1].resolve(result(1));
  await tick();
  // then the preview: the current entry's points plus the hover point
  assert.equal(model.calls.length, 3);
  assert.deepEqual(model.calls[2].prompts.points, [pt(1, 1), pt(2, 2), pt(5, 5)]);
  const idle = q.idle();
  model.calls[2].resolve(result(2, [0.1, 0.2, 0.3, 0.4], 7));
  await idle;
  assert.equal(q.isIdle(), true);
  const p = q.livePreview(e2);
  assert.ok(p);
  assert.deepEqual(p.points, [pt(1, 1), pt(2, 2), pt(5, 5)]);
  assert.equal(q.decodeCount, 3);
  assert.equal(q.lastDecodeMs, 7);
  assert.equal(e1.result !== e2.result, true);
  assert.equal(h.changes, 2); // e2 (the current entry) and the preview; e1 was replaced before it landed
});

test("the preview slot keeps only the newest request", async () => {
  const { q, model, h, commit } = setup();
  const e1 = commit(entry(h.current, [pt(1, 1)]));
  q.hover({ x: 10, y: 10 });
  q.hover({ x: 20, y: 20 });
  q.hover({ x: 30, y: 30 });
  assert.equal(q.previewReq.seq, 3);
  model.calls[0].resolve(result(0));
  await tick();
  assert.equal(model.calls.length, 2);
  assert.deepEqual(model.calls[1].prompts.points.at(-1), pt(30, 30));
  // a request made while one runs replaces the older waiting one; the running one still lands
  q.hover({ x: 40, y: 40 });
  q.hover({ x: 50, y: 50 });
  model.calls[1].resolve(result(1));
  await tick();
  assert.equal(q.livePreview(e1).points.at(-1).x, 30);
  assert.equal(model.calls.length, 3);
  assert.deepEqual(model.calls[2].prompts.points.at(-1), pt(50, 50));
  model.calls[2].resolve(result(2));
  await q.idle();
  assert.equal(model.calls.length, 3);
  assert.equal(q.livePreview(e1).points.at(-1).x, 50);
});

test("a drag previews the committed points with the dragged box; ending it drops the preview", async () => {
  const { q, model, h, commit } = setup();
  const e1 = commit(entry(h.current, [pt(1, 1)]));
  model.calls[0].resolve(result(0));
  await q.idle();
  const box = { x0: 0, y0: 0, x1: 9, y1: 9 };
  q.drag(box);
  assert.deepEqual(model.calls[1].prompts, { points: [pt(1, 1)], box });
  model.calls[1].resolve(result(1));
  await q.idle();
  assert.ok(q.livePreview(e1));
  const before = h.changes;
  q.drag(null);
  assert.equal(q.preview, null);
  assert.equal(q.livePreview(e1), null);
  assert.equal(h.changes, before + 1);
});

test("leaving the image with the pointer drops the waiting preview; a late one only updates the counters", async () => {
  const { q, model, h, commit } = setup();
  const e1 = commit(entry(h.current, [pt(1, 1)]));
  model.calls[0].resolve(result(0));
  await q.idle();
  q.hover({ x: 3, y: 3 });
  assert.equal(model.calls.length, 2);
  q.hover(null); // while the preview decodes
  assert.equal(q.previewReq, null);
  model.calls[1].resolve(result(1));
  await q.idle();
  assert.equal(q.preview, null);
  assert.equal(q.livePreview(e1), null);
  assert.equal(h.stats, 1); // the info line (decode time) is updated
  assert.equal(q.decodeCount, 2);
});

test("an undone entry is not decoded; a preview for a replaced entry is skipped", async () => {
  const { q, model, h, commit } = setup();
  const e0 = h.current;
  const e1 = commit(entry(e0, [pt(1, 1)]));
  const e2 = commit(entry(e1, [pt(1, 1), pt(2, 2)]));
  q.cancel(e2);
  h.current = e1;
  assert.equal(e2.cancelled, true);
  assert.deepEqual(q.commits, []);
  model.calls[0].resolve(result(0));
  await q.idle();
  assert.equal(model.calls.length, 1);
  assert.equal(e2.result, null);
  // a preview request made for e1, then e1 is replaced by a commit before it runs
  q.hover({ x: 4, y: 4 });
  model.calls[1].resolve(result(1)); // (the preview runs at once: nothing else queued)
  await q.idle();
  assert.ok(q.livePreview(e1));
  const e3 = commit(entry(e1, [pt(1, 1), pt(7, 7)]));
  assert.equal(q.preview, null); // a commit drops the old preview
  q.hover({ x: 6, y: 6 }); // request for e3, waits behind e3's decode
  h.current = entry(e3, [pt(9, 9)]); // the user moved on without this queue knowing (not committed)
  model.calls[2].resolve(result(2));
  await q.idle();
  assert.equal(model.calls.length, 3); // the preview for e3 is stale: not decoded
});

test("ensureDecoded queues only what is missing, once", async () => {
  const { q, model, h } = setup();
  const empty = h.current;
  q.ensureDecoded(empty); // no prompts: nothing to decode
  const e1 = entry(empty, [pt(1, 1)]);
  h.current = e1;
  q.ensureDecoded(e1);
  q.ensureDecoded(e1); // already pending
  assert.equal(model.calls.length, 1);
  model.calls[0].resolve(result(0));
  await q.idle();
  q.ensureDecoded(e1); // has its result
  assert.equal(model.calls.length, 1);
  h.ready = false;
  const e2 = entry(e1, [pt(2, 2)]);
  q.ensureDecoded(e2); // no embedding: nothing queued
  assert.equal(q.commits.length, 0);
});

test("without an embedding the queue empties; decodes of a previous image are dropped", async () => {
  const { q, model, h, commit } = setup();
  const e1 = commit(entry(h.current, [pt(1, 1)]));
  const e2 = commit(entry(e1, [pt(2, 2)]));
  h.token = 2; // another image while e1 decodes
  h.ready = false;
  model.calls[0].resolve(result(0));
  await q.idle();
  assert.equal(e1.result, null);
  assert.equal(e1.pending, false);
  assert.equal(model.calls.length, 1);
  assert.deepEqual(q.commits, []);
  assert.equal(e2.result, null);
  assert.equal(q.decodeCount, 0);
});

test("a failed decode is reported and kept on the entry; the queue goes on", async () => {
  const { q, model, h, commit } = setup();
  const e1 = commit(entry(h.current, [pt(1, 1)]));
  const e2 = commit(entry(e1, [pt(2, 2)]));
  model.calls[0].reject(new Error("boom"));
  await tick();
  assert.equal(e1.error, "boom");
  assert.deepEqual(h.errors, ["Decoder failed: boom"]);
  assert.equal(q.needsDecode(e1), false); // an error is not retried
  model.calls[1].resolve(result(1));
  await q.idle();
  assert.ok(e2.result);
});

test("refinement passes the previous entry's chosen low-res mask", async () => {
  const { q, model, h, commit } = setup();
  const e1 = commit(entry(h.current, [pt(1, 1)]));
  model.calls[0].resolve(result(10, [0.1, 0.2, 0.9, 0.3])); // auto, one point: candidate 2
  await q.idle();
  const e2 = commit(entry(e1, [pt(1, 1), pt(2, 2)], null, true));
  assert.equal(model.calls[1].mask.length, LOW);
  assert.equal(model.calls[1].mask[0], 12);
  model.calls[1].resolve(result(20));
  await q.idle();
  // previews refine when the app's checkbox is on
  h.refine = true;
  q.hover({ x: 3, y: 3 });
  assert.equal(model.calls[2].mask[0], 20); // e2 has 2 points: the single-mask output 0
  h.refine = false;
  model.calls[2].resolve(result(30));
  await q.idle();
  assert.equal(e2.refine, true);
});

test("compare mode: both decoders run at once, results keyed by the comparison model", async () => {
  const { q, model, compare, h, commit } = setup();
  const e1 = commit(entry(h.current, [pt(1, 1)]));
  model.calls[0].resolve(result(0));
  await q.idle();
  assert.equal(compare.model.calls.length, 0);
  compare.key = "/emb/vit_b";
  assert.equal(q.needsDecode(e1), true); // its SAM decode is missing
  q.ensureDecoded(e1);
  assert.equal(model.calls.length, 1); // MobileSAM's result is kept
  assert.equal(compare.model.calls.length, 1);
  compare.model.calls[0].resolve(result(5));
  await q.idle();
  assert.equal(e1.cmp.key, "/emb/vit_b");
  assert.equal(e1.cmp.result.lowRes[0], 5);
  assert.equal(compare.decodes, 1);
  // a new commit: both at once
  const e2 = commit(entry(e1, [pt(1, 1), pt(2, 2)]));
  assert.equal(model.calls.length, 2);
  assert.equal(compare.model.calls.length, 2);
  compare.model.calls[1].reject(new Error("oom"));
  model.calls[1].resolve(result(1));
  await q.idle();
  assert.ok(e2.result);
  assert.deepEqual(e2.cmp, { key: "/emb/vit_b", error: "oom" });
  assert.deepEqual(h.errors, ["SAM ViT-B decoder failed: oom"]);
  // the comparison model changes while a decode runs: its result is stale and not stored
  const e3 = commit(entry(e2, [pt(3, 3)]));
  compare.key = "/emb/vit_h";
  model.calls[2].resolve(result(2));
  compare.model.calls[2].resolve(result(6));
  await tick();
  assert.equal(e3.cmp, null);
  // ... and the entry is queued again for the new model
  assert.equal(compare.model.calls.length, 4);
  compare.model.calls[3].resolve(result(7));
  await q.idle();
  assert.equal(e3.cmp.key, "/emb/vit_h");
});

test("reset forgets queued work and the pointer", () => {
  const { q, h, commit } = setup();
  commit(entry(h.current, [pt(1, 1)]));
  commit(entry(h.current, [pt(2, 2)]));
  q.hover({ x: 1, y: 1 });
  q.reset();
  assert.deepEqual(q.commits, []);
  assert.equal(q.previewReq, null);
  assert.equal(q.hoverPt, null);
  assert.equal(q.dragBox, null);
  assert.equal(q.previewing, false);
});

test("clicks made before the embedding is ready wait for it, in order; abandon drops them", async () => {
  const { q, model, h, commit } = setup();
  h.ready = false;
  const e1 = commit(entry(h.current, [pt(1, 1)]));
  const e2 = commit(entry(e1, [pt(1, 1), pt(2, 2)]));
  await tick();
  assert.equal(model.calls.length, 0);
  assert.deepEqual(q.commits, [e1, e2]);
  assert.equal(q.isIdle(), false);
  h.ready = true; // the embedding and the decoder are there: the app pumps the queue
  q.pump();
  await tick();
  assert.equal(model.calls.length, 1);
  assert.deepEqual(model.calls[0].prompts.points, [pt(1, 1)]);
  model.calls[0].resolve(result(0));
  await tick();
  assert.equal(model.calls.length, 2);
  model.calls[1].resolve(result(1));
  await q.idle();
  assert.ok(e1.result && e2.result);

  h.ready = false; // another image whose embedding fails
  const e3 = commit(entry(e2, [pt(3, 3)]));
  const idle = q.idle();
  q.abandon();
  await idle;
  assert.equal(e3.pending, false);
  assert.deepEqual(q.commits, []);
});

test("before the embedding is ready, the current click gets the server's masks, then the page decoder's", async () => {
  const { q, model, h, commit } = setup();
  const server = fakeModel("server");
  h.ready = false;
  const e1 = commit(entry(h.current, [pt(1, 1)]));
  await tick();
  assert.equal(server.calls.length, 0, "no server decoder yet: the click waits");
  assert.equal(e1.result, null);
  h.bridge = server; // the image's info arrived: the app pumps the queue
  q.pump();
  await tick();
  assert.equal(server.calls.length, 1);
  assert.deepEqual(server.calls[0].prompts.points, [pt(1, 1)]);
  const e2 = commit(entry(e1, [pt(1, 1), pt(2, 2)])); // while the server answers
  const changes = h.changes;
  server.calls[0].resolve({ ...result(7), server: true });
  await tick();
  assert.equal(e1.result.server, true, "kept for the history meanwhile");
  assert.equal(h.changes, changes, "not the current entry any more: nothing to redraw");
  assert.equal(server.calls.length, 2, "then the newest click, once");
  assert.deepEqual(server.calls[1].prompts.points, [pt(1, 1), pt(2, 2)]);
  server.calls[1].reject(new Error("HTTP 404"));
  await tick();
  assert.equal(e2.result, null, "a failed server decode leaves it to the page's decoder");
  assert.equal(server.calls.length, 2, "each entry is asked once");
  assert.deepEqual(q.commits, [e1, e2], "both stay queued for the page's decoder");
  assert.equal(model.calls.length, 0);

  h.ready = true; // the embedding and the decoder are there
  q.pump();
  await tick();
  assert.equal(model.calls.length, 1, "the server's result is decoded again by the page");
  assert.deepEqual(model.calls[0].prompts.points, [pt(1, 1)]);
  model.calls[0].resolve(result(1));
  await tick();
  model.calls[1].resolve(result(2));
  await q.idle();
  assert.equal(e1.result.server, undefined);
  assert.equal(e1.result.lowRes[0], 1);
  assert.equal(e2.result.lowRes[0], 2);
  assert.equal(server.calls.length, 2);
});

test("the page's decoder does not wait for the server's answer, and a late answer does not replace its mask", async () => {
  const { q, model, h, commit } = setup();
  const server = fakeModel("server");
  h.ready = false;
  h.bridge = server;
  const e1 = commit(entry(h.current, [pt(1, 1)]));
  await tick();
  assert.equal(server.calls.length, 1);
  h.ready = true; // the embedding and the decoder arrive while the server is still answering
  q.pump();
  await tick();
  assert.equal(model.calls.length, 1);
  model.calls[0].resolve(result(1));
  await q.idle();
  assert.equal(e1.result.lowRes[0], 1);
  server.calls[0].resolve({ ...result(7), server: true });
  await tick();
  assert.equal(e1.result.lowRes[0], 1, "the page decoder's mask stays");
  assert.equal(e1.result.server, undefined);
});

test("a refining click and a click of an image since left are not sent to the server", async () => {
  const { q, h, commit } = setup();
  const server = fakeModel("server");
  h.ready = false;
  h.bridge = server;
  const e1 = commit(entry(h.current, [pt(1, 1)], null, true));
  await tick();
  assert.equal(server.calls.length, 0, "its mask input is the page decoder's");
  assert.deepEqual(q.commits, [e1]);
  const e2 = commit(entry(e1, [pt(1, 1), pt(2, 2)]));
  await tick();
  assert.equal(server.calls.length, 1);
  h.token = 2; // a new photo while the server answers
  server.calls[0].resolve({ ...result(7), server: true });
  await tick();
  assert.equal(e2.result, null);
});

test("compare mode entered after refined clicks decodes their chain, each model refining its own mask", async () => {
  const { q, model, compare, h, commit } = setup();
  const e1 = commit(entry(h.current, [pt(1, 1)], null, true));
  model.calls[0].resolve(result(10, [0.1, 0.2, 0.9, 0.3]));
  await q.idle();
  const e2 = commit(entry(e1, [pt(1, 1), pt(2, 2)], null, true));
  model.calls[1].resolve(result(20));
  await q.idle();
  compare.key = "/emb/vit_b"; // compare mode begins: the app asks for the current entry
  q.ensureDecoded(e2);
  assert.equal(compare.model.calls.length, 1);
  assert.deepEqual(compare.model.calls[0].prompts.points, [pt(1, 1)]); // e1 first...
  assert.equal(compare.model.calls[0].mask, null);
  compare.model.calls[0].resolve(result(50, [0.1, 0.2, 0.3, 0.9])); // auto: candidate 3
  await tick();
  await tick();
  assert.equal(compare.model.calls.length, 2);
  assert.equal(compare.model.calls[1].mask[0], 53); // ...then e2, refined with SAM's own mask of e1
  compare.model.calls[1].resolve(result(60));
  await q.idle();
  // a later refined click: SAM refines from its mask of e2
  commit(entry(e2, [pt(1, 1), pt(2, 2), pt(3, 3)], null, true));
  assert.equal(compare.model.calls[2].mask[0], 60);
  assert.equal(model.calls.length, 3); // MobileSAM decoded each entry once
  compare.model.calls[2].resolve(result(70));
  model.calls[2].resolve(result(30));
  await q.idle();
});

test("boxes committed together are decoded in batches of batchMax; an error fails only its batch", async () => {
  const { q, model, h, commit } = setup();
  const batches = [];
  model.decodeBatch = (list, maxBatch) => {
    let resolve, reject;
    const p = new Promise((res, rej) => { resolve = res; reject = rej; });
    batches.push({ list, maxBatch, resolve, reject });
    return p;
  };
  q.batchMax = 3;
  h.ready = false; // as after "Add boxes" before the embedding arrives
  const box = (i) => ({ x0: i, y0: i, x1: i + 10, y1: i + 10 });
  const boxes = [0, 1, 2, 3, 4].map((i) => commit(entry(null, [], box(i))));
  const click = commit(entry(boxes[4], [pt(1, 1)], box(4))); // points too: decoded alone
  h.ready = true;
  q.pump();
  await tick();
  assert.equal(batches.length, 1);
  assert.deepEqual(batches[0].list.map((p) => p.box), [box(0), box(1), box(2)]);
  assert.equal(batches[0].maxBatch, 3);
  batches[0].resolve([result(0), result(1), result(2)]);
  await tick();
  assert.equal(batches.length, 2);
  assert.deepEqual(batches[1].list.map((p) => p.box), [box(3), box(4)]);
  batches[1].reject(new Error("out of memory"));
  await tick();
  assert.equal(model.calls.length, 1); // the entry with a point: one decode of its own
  assert.deepEqual(model.calls[0].prompts.points, [pt(1, 1)]);
  model.calls[0].resolve(result(5));
  await q.idle();
  assert.deepEqual(boxes.slice(0, 3).map((e) => e.result.lowRes[0]), [0, 1, 2]);
  assert.deepEqual(boxes.slice(3).map((e) => [e.result, e.error, e.pending]),
    [[null, "out of memory", false], [null, "out of memory", false]]);
  assert.equal(click.result.lowRes[0], 5);
  assert.equal(q.decodeCount, 4);
  assert.equal(q.batchedCount, 3);
  assert.deepEqual(h.errors, ["Decoder failed: out of memory"]);
});

test("serverAnswered settles at once with no server decode in flight, else when it has (answer or failure)", async () => {
  const { q, h, commit } = setup();
  const server = fakeModel("server");
  const settled = (p) => Promise.race([p.then(() => true), tick().then(() => false)]);
  assert.equal(await settled(q.serverAnswered()), true, "none in flight");
  h.ready = false;
  h.bridge = server;
  const e1 = commit(entry(h.current, [pt(1, 1)]));
  await tick();
  assert.equal(server.calls.length, 1);
  const first = q.serverAnswered();
  assert.equal(await settled(first), false, "the server is answering");
  server.calls[0].resolve({ ...result(7), server: true });
  assert.equal(await settled(first), true);
  commit(entry(e1, [pt(1, 1), pt(2, 2)]));
  await tick();
  assert.equal(server.calls.length, 2);
  const second = q.serverAnswered();
  assert.equal(await settled(second), false);
  server.calls[1].reject(new Error("HTTP 404"));
  assert.equal(await settled(second), true, "a failed decode settles it too");
});

/** A queue whose current entry (one point at (1, 1)) is decoded, with a finished hover preview at
 * (5, 5) when `previewDone` (else still running): {q, model, h, commit, e1}. */
async function hoveredAfterOneClick(previewDone = true) {
  const t = setup();
  const e1 = t.commit(entry(t.h.current, [pt(1, 1)]));
  t.model.calls[0].resolve(result(0));
  await t.q.idle();
  t.q.hover({ x: 5, y: 5 });
  if (previewDone) {
    t.model.calls[1].resolve(result(1));
    await t.q.idle();
  }
  return { ...t, e1 };
}

test("a click where the hover preview was decoded takes the preview's masks: no second decode", async () => {
  const { q, model, commit, e1 } = await hoveredAfterOneClick();
  q.hover(null); // the canvas drops the hover point as the click lands
  const e2 = commit(entry(e1, [pt(1, 1), pt(5, 5)]));
  assert.equal(model.calls.length, 2);
  assert.equal(e2.result.lowRes[0], 1);
  assert.equal(e2.pending, false);
  assert.equal(q.isIdle(), true);
  assert.equal(q.decodeCount, 2);
  assert.equal(q.previewReuses, 1);
  // a background click, or a click elsewhere, at the same spot is decoded
  const e3 = commit(entry(e1, [pt(1, 1), pt(5, 5, 0)]));
  assert.equal(model.calls.length, 3);
  model.calls[2].resolve(result(2));
  await q.idle();
  assert.equal(e3.result.lowRes[0], 2);
  assert.equal(q.previewReuses, 1);
});

test("a click made while its preview decodes waits for that decode and takes it", async () => {
  const { q, model, h, commit, e1 } = await hoveredAfterOneClick(false);
  assert.equal(model.calls.length, 2); // the preview runs
  q.hover(null);
  const e2 = commit(entry(e1, [pt(1, 1), pt(5, 5)]));
  assert.equal(e2.pending, true);
  model.calls[1].resolve(result(1));
  await q.idle();
  assert.equal(model.calls.length, 2);
  assert.equal(e2.result.lowRes[0], 1);
  assert.equal(e2.pending, false);
  assert.equal(q.previewReuses, 1);
  assert.ok(h.changes > 0);
});

test("a preview is not reused across images, with a mask input, or after another entry", async () => {
  const { q, model, h, commit, e1 } = await hoveredAfterOneClick();
  // refining: the click's decode takes the previous mask, the preview did not
  const refined = commit(entry(e1, [pt(1, 1), pt(5, 5)], null, true));
  assert.equal(model.calls.length, 3);
  model.calls[2].resolve(result(2));
  await q.idle();
  assert.equal(refined.result.lowRes[0], 2);
  // the same prompts after another entry (undo, then a different history) are decoded
  h.current = e1;
  const other = commit(entry(refined, [pt(1, 1), pt(5, 5)]));
  assert.equal(model.calls.length, 4);
  model.calls[3].resolve(result(3));
  await q.idle();
  // another image: the preview was of the old one
  h.current = e1;
  h.token = 2;
  const again = commit(entry(e1, [pt(1, 1), pt(5, 5)]));
  assert.equal(model.calls.length, 5);
  model.calls[4].resolve(result(4));
  await q.idle();
  assert.equal(again.result.lowRes[0], 4);
  assert.equal(other.result.lowRes[0], 3);
  assert.equal(q.previewReuses, 0);
});

test("a dragged box's preview answers the box it commits; in compare mode both models' masks are taken", async () => {
  const { q, model, compare, h, commit } = setup();
  compare.key = "/emb/vit_b";
  const e1 = commit(entry(h.current, [pt(1, 1)]));
  model.calls[0].resolve(result(0));
  compare.model.calls[0].resolve(result(10));
  await q.idle();
  const box = { x0: 2, y0: 3, x1: 40, y1: 50 };
  q.drag({ ...box });
  model.calls[1].resolve(result(1));
  compare.model.calls[1].resolve(result(11));
  await q.idle();
  q.drag(null);
  const e2 = commit(entry(e1, [pt(1, 1)], { ...box }));
  assert.equal(model.calls.length, 2);
  assert.equal(compare.model.calls.length, 2);
  assert.equal(e2.result.lowRes[0], 1);
  assert.deepEqual(e2.cmp.key, "/emb/vit_b");
  assert.equal(e2.cmp.result.lowRes[0], 11);
  // the comparison model changed since the preview: MobileSAM's mask is taken, SAM's is decoded
  q.drag({ ...box, x1: 41 });
  model.calls[2].resolve(result(2));
  compare.model.calls[2].resolve(result(12));
  await q.idle();
  q.drag(null);
  compare.key = "/emb/vit_h";
  const e3 = commit(entry(e2, [pt(1, 1)], { ...box, x1: 41 }));
  assert.equal(model.calls.length, 3);
  assert.equal(compare.model.calls.length, 4); // e2's chain is not asked again: e3's own SAM decode only
  compare.model.calls.at(-1).resolve(result(13));
  await q.idle();
  assert.equal(e3.result.lowRes[0], 2);
  assert.equal(e3.cmp.key, "/emb/vit_h");
  assert.equal(q.previewReuses, 2);
});
