// Unit tests of the compare-mode part of share links (web/prompts.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { parsePrompts, formatPrompts, COMPARE_MODELS } from "../prompts.js";

test("share link: compare mode round trip", () => {
  const p = { imageId: "abc", points: [{ x: 1, y: 2, label: 1 }], box: null, mask: "auto", compare: "vit_b" };
  const s = formatPrompts(p);
  assert.equal(s, "?image=abc&points=1,2,1&mask=auto&compare=vit_b");
  assert.equal(parsePrompts(s).compare, "vit_b");
  assert.deepEqual(COMPARE_MODELS, ["vit_b", "vit_l", "vit_h"]);
});

test("share link: compare only for known models, absent otherwise", () => {
  assert.equal(formatPrompts({ imageId: "x", compare: null }), "?image=x&mask=auto");
  assert.equal(formatPrompts({ imageId: "x", compare: "vit_t" }), "?image=x&mask=auto");
  assert.equal("compare" in parsePrompts("?image=x&compare=vit_x"), false);
  assert.equal("compare" in parsePrompts("?image=x"), false);
  assert.equal(parsePrompts("?image=x&compare=vit_h").compare, "vit_h");
});
