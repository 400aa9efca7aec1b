// Unit tests of web/prompts.js: decoder inputs, mask selection, share-link strings.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  decoderPointInputs, selectIndex, isMultimask, parsePrompts, formatPrompts, normBox, clampPrompts, q,
  refineSteps, MAX_REFINE_STEPS,
} from "../prompts.js";

const info = { width: 1500, height: 1000, input_width: 1024, input_height: 683 };

test("decoder inputs: points + padding point without a box", () => {
  const { coords, labels, n } = decoderPointInputs([{ x: 750, y: 500, label: 1 }, { x: 10, y: 20, label: 0 }], null, info);
  assert.equal(n, 3);
  assert.deepEqual(Array.from(labels), [1, 0, -1]);
  const want = [750 * (1024 / 1500), 500 * (683 / 1000), 10 * (1024 / 1500), 20 * (683 / 1000), 0, 0].map(Math.fround);
  assert.deepEqual(Array.from(coords), want);
});

test("decoder inputs: box as corners 2/3, no padding", () => {
  const box = { x0: 100, y0: 200, x1: 300, y1: 400 };
  const a = decoderPointInputs([], box, info);
  assert.deepEqual(Array.from(a.labels), [2, 3]);
  assert.equal(a.coords.length, 4);
  const b = decoderPointInputs([{ x: 1, y: 2, label: 1 }], box, info);
  assert.deepEqual(Array.from(b.labels), [1, 2, 3]);
  assert.equal(b.coords[2], Math.fround(100 * (1024 / 1500)));
});

test("mask selection follows SamPredictor", () => {
  const scores = Float32Array.from([0.5, 0.7, 0.9, 0.8]);
  const one = [{ x: 1, y: 1, label: 1 }];
  const two = [...one, { x: 2, y: 2, label: 0 }];
  const box = { x0: 0, y0: 0, x1: 5, y1: 5 };
  assert.equal(isMultimask(one, null), true);
  assert.equal(selectIndex("auto", one, null, scores), 2);
  assert.equal(selectIndex("auto", two, null, scores), 0);
  assert.equal(selectIndex("auto", one, box, scores), 0);
  assert.equal(selectIndex("auto", [], box, scores), 0);
  assert.equal(selectIndex(3, two, null, scores), 3);
  assert.equal(selectIndex("auto", one, null, Float32Array.from([0, 0.9, 0.9, 0.1])), 1); // ties: first
});

test("share link: format and parse round trip", () => {
  const p = {
    imageId: "abc123",
    points: [{ x: 10.04, y: 20.06, label: 1 }, { x: 300, y: 4.5, label: 0 }],
    box: { x0: 1, y0: 2.25, x1: 30, y1: 40 },
    mask: 2,
  };
  const s = formatPrompts(p);
  assert.equal(s, "?image=abc123&points=10,20.1,1;300,4.5,0&box=1,2.3,30,40&mask=2");
  const r = parsePrompts(s);
  assert.equal(r.imageId, "abc123");
  assert.deepEqual(r.points, [{ x: 10, y: 20.1, label: 1 }, { x: 300, y: 4.5, label: 0 }]);
  assert.deepEqual(r.box, { x0: 1, y0: 2.3, x1: 30, y1: 40 });
  assert.equal(r.mask, 2);
  assert.equal(formatPrompts({ imageId: "x", points: [], box: null, mask: "auto" }), "?image=x&mask=auto");
});

test("share link: parsing is forgiving", () => {
  assert.deepEqual(parsePrompts(""), { imageId: null, points: [], box: null, mask: "auto" });
  const r = parsePrompts("?image=a%20b&points=1,2;bad;3,4,0;5,6,7;,,&box=9,8,1,2&mask=5");
  assert.equal(r.imageId, "a b");
  assert.deepEqual(r.points, [{ x: 1, y: 2, label: 1 }, { x: 3, y: 4, label: 0 }]);
  assert.deepEqual(r.box, { x0: 1, y0: 2, x1: 9, y1: 8 });
  assert.equal(r.mask, "auto");
  assert.equal(parsePrompts("box=1,2,3").box, null);
  assert.equal(parsePrompts(new URLSearchParams("mask=auto&image=z")).imageId, "z");
});

test("boxes and clamping", () => {
  assert.deepEqual(normBox(50, 60, -5, 10, 40, 30), { x0: 0, y0: 10, x1: 40, y1: 30 });
  const c = clampPrompts({ points: [{ x: -1, y: 5, label: 1 }, { x: 5, y: 5, label: 1 }], box: { x0: 5, y0: 5, x1: 5, y1: 9 } }, 10, 10);
  assert.deepEqual(c.points, [{ x: 5, y: 5, label: 1 }]);
  assert.equal(c.box, null); // zero width
  assert.equal(q(1.25), 1.3);
  assert.equal(q(123.44999), 123.4);
});

// ---------------------------------------------------------------- refinement history in links

const P = [{ x: 10, y: 20, label: 1 }, { x: 30, y: 40, label: 0 }, { x: 50.5, y: 60, label: 1 }];
const BOX = { x0: 1, y0: 2, x1: 300, y1: 400 };
/** History entries as app.js makes them: each commit links to the state before it. */
function history(states) {
  let prev = { points: [], box: null, maskMode: "auto", refine: false, prev: null };
  for (const s of states) prev = { maskMode: "auto", refine: true, ...s, prev };
  return prev;
}

test("refine steps: the earlier states a refined mask was decoded from, oldest first", () => {
  const e = history([
    { points: P.slice(0, 1), box: null, refine: false },
    { points: P.slice(0, 1), box: BOX, maskMode: 2 },
    { points: P.slice(0, 2), box: BOX },
    { points: P, box: BOX, maskMode: 1 },
  ]);
  assert.deepEqual(refineSteps(e), [
    { points: 1, box: false, mask: "auto" }, { points: 1, box: true, mask: 2 }, { points: 2, box: true, mask: "auto" },
  ]);
  // the chain stops at a state decoded without a mask input
  assert.deepEqual(refineSteps(history([{ points: P.slice(0, 1), box: null }, { points: P.slice(0, 2), box: null, refine: false },
    { points: P, box: null }])), [{ points: 2, box: false, mask: "auto" }]);
  assert.deepEqual(refineSteps(history([{ points: P, box: null, refine: false }])), []);
  assert.deepEqual(refineSteps(history([{ points: P, box: null }])), []); // its previous state is empty
});

test("refine steps: null when a link cannot reproduce the history", () => {
  const redrawnBox = history([{ points: [], box: { ...BOX, x1: 200 } }, { points: [], box: BOX }]);
  assert.equal(refineSteps(redrawnBox), null);
  const notAPrefix = history([{ points: [P[1]], box: null }, { points: [P[0], P[1]], box: null }]);
  assert.equal(refineSteps(notAPrefix), null);
  const long = history(Array.from({ length: MAX_REFINE_STEPS + 2 }, () => ({ points: P.slice(0, 1), box: null })));
  assert.equal(refineSteps(long), null);
});

test("refine steps survive the link: format then parse", () => {
  const refine = [{ points: 0, box: true, mask: "auto" }, { points: 1, box: true, mask: 3 }, { points: 2, box: false, mask: "auto" }];
  const s = formatPrompts({ imageId: "ab", points: P, box: BOX, mask: 1, refine });
  assert.match(s, /&refine=0b,1bm3,2(&|$)/);
  const back = parsePrompts(s);
  assert.deepEqual(back.refine, refine);
  assert.equal(back.mask, 1);
  assert.equal(formatPrompts({ imageId: "ab", points: P, refine: [] }).includes("refine"), false);
});

test("a malformed or inconsistent refine parameter is dropped, never thrown on", () => {
  const base = "?image=ab&points=1,2,1;3,4,1&box=0,0,9,9";
  for (const bad of ["x", "3", "1,,2", "1c", "1m4", "-1", "1b;2"]) {
    assert.equal(parsePrompts(`${base}&refine=${bad}`).refine, undefined, bad);
  }
  assert.equal(parsePrompts("?image=ab&points=1,2,1&refine=1b").refine, undefined); // no box in the link
  assert.deepEqual(parsePrompts(`${base}&refine=0b,1`).refine, [{ points: 0, box: true, mask: "auto" }, { points: 1, box: false, mask: "auto" }]);
});
