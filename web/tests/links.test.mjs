// Unit tests of web/links.js StoredImages: a link is only handed out once the server said
// its image is stored; failures give a message and are asked again next time.
import { test } from "node:test";
import assert from "node:assert/strict";
import { StoredImages } from "../links.js";

const ID = "0123456789abcdef0123456789abcdef";

function response(status, body = "") {
  return { status, ok: status >= 200 && status < 300, text: async () => body };
}

test("an image the server reported as stored needs no request", async () => {
  const calls = [];
  const s = new StoredImages(async (url) => { calls.push(url); return response(200); });
  s.note({ image_id: ID, stored: true });
  await s.ensure(ID);
  assert.deepEqual(calls, []);
  assert.ok(s.has(ID));
});

test("an image not yet stored is asked for once, by POST, and concurrent asks share it", async () => {
  const calls = [];
  let release;
  const gate = new Promise((r) => { release = r; });
  const s = new StoredImages(async (url, opts) => { calls.push([url, opts.method]); await gate; return response(200); });
  s.note({ image_id: ID, stored: false });
  assert.equal(s.has(ID), false);
  const a = s.ensure(ID), b = s.ensure(ID);
  release();
  await Promise.all([a, b]);
  assert.deepEqual(calls, [[`/msam/store/${ID}`, "POST"]]);
  await s.ensure(ID);
  assert.equal(calls.length, 1);
});

test("a refusal rejects with the server's reason, and the next ensure asks again", async () => {
  const replies = [response(503, "the server cannot store images now"), response(404), response(200)];
  let n = 0;
  const s = new StoredImages(async () => replies[n++]);
  await assert.rejects(s.ensure(ID), /cannot store images now/);
  await assert.rejects(s.ensure(ID), /no longer on the server/);
  assert.equal(s.has(ID), false);
  await s.ensure(ID);
  assert.ok(s.has(ID));
});

test("a network failure rejects with a clear message", async () => {
  const s = new StoredImages(async () => { throw new TypeError("Failed to fetch"); });
  await assert.rejects(s.ensure(ID), /could not be reached/);
});
