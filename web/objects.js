// MobileSAM browser demo: the objects of one photo. An ObjectList owns them: each object has its
// own prompt history (a chain of prompt entries, see makeEntry), mask choice (the entry's
// maskMode), colour and name; one is selected, and the page's prompts edit that one. It also
// knows which object's mask covers a pixel (select by clicking a mask) and the share-link form of
// all objects. No DOM here: it runs (and is tested) under Node.

import { formatPrompts, parsePrompts, refineSteps, selectIndex } from "./prompts.js";
import { LOW_RES } from "./masks.js";

// A prompt state. Each edit (point, box, clear) makes a new one linked to the previous
// (undo goes back along `prev`). The decode queue (scheduler.js) fills in its decoder results:
// `result` / `error` (MobileSAM), `cmp` (compare mode: the comparison model's {key, result} or
// {key, error}, key = that model's embedding URL), `pending` and `cancelled`.
let ENTRY_ID = 0;
export function makeEntry(prev, points, box, maskMode = "auto", refine = false) {
  return { id: ++ENTRY_ID, prev, points, box, maskMode, refine, result: null, error: null, pending: false, cmp: null };
}

/** Object colours (RGB), in order of creation; the first is the single-object page's blue. */
export const PALETTE = [
  [30, 144, 255], [255, 99, 71], [50, 205, 50], [255, 215, 0], [186, 85, 211], [0, 206, 209],
  [255, 140, 0], [255, 20, 147], [154, 205, 50], [106, 90, 205], [240, 128, 128], [0, 139, 139],
];

/** Most objects one photo holds (a detector's output included). */
export const MAX_OBJECTS = 256;

const hasPrompts = (entry) => !!(entry.points.length || entry.box);

export class ObjectList {
  constructor() {
    this.objects = []; // [{id, name, color, entry}] in creation order (later ones drawn on top)
    this.selectedId = null;
    this.nextId = 1;
    this.reset();
  }

  /** One empty object, as for a new photo. Returns the objects that were dropped. */
  reset() {
    const dropped = this.objects;
    this.objects = [];
    this.nextId = 1;
    this.add();
    return dropped;
  }

  /** A new empty object (or one with `entry`), selected. Null when MAX_OBJECTS are there already. */
  add({ name = null, entry = null } = {}) {
    if (this.objects.length >= MAX_OBJECTS) return null;
    const id = this.nextId++;
    const obj = { id, name: name || `Object ${id}`, color: PALETTE[(id - 1) % PALETTE.length],
      entry: entry || makeEntry(null, [], null) };
    this.objects.push(obj);
    this.selectedId = id;
    return obj;
  }

  byId(id) {
    return this.objects.find((o) => o.id === id) || null;
  }

  get selected() {
    return this.byId(this.selectedId) || this.objects[0];
  }

  get selectedIndex() {
    return this.objects.indexOf(this.selected);
  }

  /** The selected object's current prompt entry (what the page's prompts edit). */
  get entry() {
    return this.selected.entry;
  }

  set entry(e) {
    this.selected.entry = e;
  }

  /** Make object `id` the one the prompts edit; false for an unknown id. */
  select(id) {
    if (!this.byId(id)) return false;
    this.selectedId = id;
    return true;
  }

  /** Remove object `id` (the last one left is emptied instead); the neighbour after it, or else
   * before it, becomes selected if it was. Returns the removed object, or null. */
  remove(id) {
    const i = this.objects.findIndex((o) => o.id === id);
    if (i < 0) return null;
    const [gone] = this.objects.splice(i, 1);
    if (!this.objects.length) {
      this.add();
    } else if (this.selectedId === id) {
      this.selectedId = this.objects[Math.min(i, this.objects.length - 1)].id;
    }
    return gone;
  }

  rename(id, name) {
    const o = this.byId(id);
    if (!o) return false;
    const t = String(name ?? "").trim().slice(0, 100);
    o.name = t || `Object ${o.id}`;
    return true;
  }

  /** The objects whose committed entry has prompts. */
  withPrompts() {
    return this.objects.filter((o) => hasPrompts(o.entry));
  }

  /**
   * The topmost object (last drawn) whose committed mask covers image pixel (x, y), or null.
   * Read from the decoder's low-res logits (256 grid of the 1024 input frame), so it needs no
   * full-size mask. `info`: the image's {width, height, input_width, input_height}.
   */
  objectAt(x, y, info) {
    for (let i = this.objects.length - 1; i >= 0; i--) {
      if (maskCovers(this.objects[i].entry, x, y, info)) return this.objects[i];
    }
    return null;
  }

  /** Per-object numbers for getState().objects. */
  snapshot() {
    return this.objects.map((o) => {
      const e = o.entry;
      const has = hasPrompts(e);
      const idx = e.result && has ? selectIndex(e.maskMode, e.points, e.box, e.result.scores) : -1;
      return {
        id: o.id, name: o.name, color: [...o.color], selected: o.id === this.selectedId,
        points: e.points.map((p) => ({ ...p })), box: e.box ? { ...e.box } : null, maskMode: e.maskMode,
        selectedIndex: idx, score: idx >= 0 ? e.result.scores[idx] : null, decoded: !!e.result || !has,
      };
    });
  }
}

/** Whether `entry`'s committed mask covers image pixel (x, y) (low-res logits > 0). */
export function maskCovers(entry, x, y, info) {
  if (!entry.result || !hasPrompts(entry)) return false;
  const idx = selectIndex(entry.maskMode, entry.points, entry.box, entry.result.scores);
  const gx = Math.floor(((x * info.input_width) / info.width) / 4);
  const gy = Math.floor(((y * info.input_height) / info.height) / 4);
  if (gx < 0 || gy < 0 || gx >= LOW_RES || gy >= LOW_RES) return false;
  return entry.result.lowRes[idx * LOW_RES * LOW_RES + gy * LOW_RES + gx] > 0;
}

/**
 * The query string of a share link of several objects: "?image=ID&obj=O1&obj=O2...&sel=K[&compare=M]",
 * each O the URL-encoded query of one object in formatPrompts' form without image or compare
 * ("points=...&box=...&mask=...[&refine=...]"), K the selected object's index. One object gives
 * formatPrompts' single-object link (links made before objects existed open the same).
 * @param objects [{entry, name}] in order
 */
export function formatObjectsLink({ imageId, objects, selected = 0, compare = null }) {
  const one = (o) => ({ points: o.entry.points, box: o.entry.box, mask: o.entry.maskMode, refine: refineSteps(o.entry) });
  const used = objects.filter((o) => hasPrompts(o.entry));
  if (used.length <= 1) return formatPrompts({ imageId, ...(used.length ? one(used[0]) : {}), compare });
  const head = formatPrompts({ imageId, compare }); // "?image=..&mask=auto[&compare=..]"
  const params = new URLSearchParams(head.slice(1));
  params.delete("mask");
  const parts = [];
  if (params.get("image")) parts.push("image=" + encodeURIComponent(params.get("image")));
  for (const o of used) parts.push("obj=" + encodeURIComponent(formatPrompts(one(o)).slice(1)));
  const sel = Math.max(0, used.indexOf(objects[selected]));
  parts.push("sel=" + sel);
  if (params.get("compare")) parts.push("compare=" + params.get("compare"));
  return "?" + parts.join("&");
}

/**
 * Objects from a share link's query (see formatObjectsLink): {imageId, objects: [parsePrompts of
 * each obj], selected, compare?}, or null when the link has no `obj` parameter. Objects without a
 * valid prompt are skipped; malformed parts are never thrown on.
 */
export function parseObjectsLink(search) {
  let params;
  try {
    params = search instanceof URLSearchParams ? search : new URLSearchParams(search || "");
  } catch {
    return null;
  }
  const values = params.getAll("obj");
  if (!values.length) return null;
  const objects = [];
  for (const v of values.slice(0, MAX_OBJECTS)) {
    const p = parsePrompts(v);
    if (p.points.length || p.box) objects.push({ points: p.points, box: p.box, mask: p.mask, refine: p.refine });
  }
  const base = parsePrompts(params);
  const sel = Number(params.get("sel"));
  const out = { imageId: base.imageId, objects,
    selected: Number.isInteger(sel) && sel >= 0 && sel < objects.length ? sel : 0 };
  if (base.compare) out.compare = base.compare;
  return out;
}
