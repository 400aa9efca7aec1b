// Unit tests of web/isolation.js: the notice appears only when the page is known not to be isolated.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isolationNotice } from "../isolation.js";

const location = { href: "https://user-space.hf.space/?image=abc" };

test("an isolated page, or one whose isolation is unknown, shows no notice", () => {
  assert.equal(isolationNotice({ crossOriginIsolated: true, location }), null);
  assert.equal(isolationNotice({ location }), null);
  assert.equal(isolationNotice(null), null);
});

test("a framed page that is not isolated links to itself as the full page", () => {
  const win = { crossOriginIsolated: false, location, top: {} };
  win.self = win;
  const n = isolationNotice(win);
  assert.match(n.text, /inside another page.*one thread/);
  assert.equal(n.href, location.href);
});

test("a top-level page that is not isolated says so too", () => {
  const win = { crossOriginIsolated: false, location };
  win.self = win;
  win.top = win;
  assert.match(isolationNotice(win).text, /^This page is not cross-origin isolated/);
});
