// MobileSAM browser demo: the DOM. An AppView builds the widget inside #msam-root (toolbar,
// the image pane(s), the compare panel, mask candidates, info line, exports, status line) and
// draws the parts of it that are not compare-specific: mask overlays, pane labels, the
// multimask thumbnails and the info line. It owns the DOM and its drawing caches; what it draws
// comes in as arguments, and what the user does goes out through the `actions` it was given.

import { getOrtInfo } from "./decoder.js";
import { upscaleLowRes, overlayRGBA, LOW_RES } from "./masks.js";
import { selectIndex } from "./prompts.js";
import { SegCanvas } from "./canvas.js";
import { buildComparePanel } from "./compare-panel.js";
import { el, modelLabel } from "./util.js";
import { isolationNotice } from "./isolation.js";

/** Whether the page is used with a touch screen and no mouse (a phone or tablet): the help and
 * controls then speak of taps and the +/- point control, not of right-click or hover. */
export function isTouchScreen() {
  try {
    return matchMedia("(hover: none) and (pointer: coarse)").matches;
  } catch {
    return false;
  }
}

const MOUSE_HINT = "Click: foreground point · right-click or shift-click: background point · drag: box · Alt-click a mask: select its object · Ctrl+Z: undo · Esc: clear";
const TOUCH_HINT = "Tap: add a point (the +/− button chooses foreground or background) · drag with one finger: box · tap an object in the list to edit it";

const FILL = [30, 144, 255, 110];
const EDGE = [255, 255, 255, 235];
const PREVIEW_FILL = [30, 144, 255, 80];
const PREVIEW_EDGE = [255, 255, 255, 170];
// compare mode: the original SAM's mask in orange (MobileSAM's stays blue)
const SAM_FILL = [255, 140, 0, 110];
const SAM_PREVIEW_FILL = [255, 140, 0, 80];
const SAM_OUTLINE_FILL = [255, 140, 0, 45]; // overlaid on MobileSAM's: mostly the outline
const SAM_OUTLINE_EDGE = [255, 140, 0, 255];

/**
 * The widget. `actions` (what the user does): undo(), clear(), setRefine(on), setHoverEnabled(on),
 * selectMask(mode), addPoint(x, y, label), setBox(box), hover(p), drag(box), exportMask(),
 * exportCutout(), exportRLE(), copyLink(), setCompareView(view), copySummary(); objects: selectAt(x, y),
 * newObject(), selectObject(id), deleteObject(id), renameObject(id, name), exportObjectsJson(polygons),
 * exportLabelMap(), exportCutoutsZip(), addBoxes(text).
 * `initial`: {refine, hoverEnabled} for the two checkboxes.
 */
export class AppView {
  constructor(root, actions, { refine = false, hoverEnabled = true } = {}) {
    const btn = (label, title, onclick, cls = "") =>
      el("button", { type: "button", class: "msam-btn " + cls, title, text: label, onclick });
    const u = {};
    u.undo = btn("Undo", "Remove the last point or box (Ctrl+Z)", () => actions.undo());
    u.clear = btn("Clear", "Remove all prompts (Esc)", () => actions.clear());
    u.refine = el("input", { type: "checkbox" });
    u.refine.checked = refine;
    u.refine.addEventListener("change", () => actions.setRefine(u.refine.checked));
    u.hover = el("input", { type: "checkbox" });
    u.hover.checked = hoverEnabled;
    u.hover.addEventListener("change", () => actions.setHoverEnabled(u.hover.checked));
    // the kind of point a click or tap adds: + foreground, − background (right-click / Shift always background)
    this.pointLabel = 1;
    u.pointLabel = btn("+ foreground", "What a tap or click adds: foreground (+) or background (−) points", () => {
      this.pointLabel = this.pointLabel === 1 ? 0 : 1;
      u.pointLabel.textContent = this.pointLabel === 1 ? "+ foreground" : "− background";
      u.pointLabel.setAttribute("aria-pressed", String(this.pointLabel === 0));
      u.pointLabel.classList.toggle("msam-bg-mode", this.pointLabel === 0);
    }, "msam-point-label");
    u.pointLabel.setAttribute("aria-pressed", "false");
    u.auto = btn("Auto", "Choose the mask as SamPredictor does", () => actions.selectMask("auto"), "msam-auto");
    u.thumbs = [1, 2, 3].map((k) => {
      const c = el("canvas", { class: "msam-thumb-canvas", width: "84", height: "64" });
      const s = el("span", { class: "msam-thumb-score", text: `#${k}` });
      const b = el("button", { type: "button", class: "msam-thumb", title: `Multimask candidate ${k}`,
        onclick: () => actions.selectMask(k) }, c, s);
      return { button: b, canvas: c, score: s };
    });
    // the view: MobileSAM's canvas (pane A) and, in compare mode, SAM's beside it (pane B)
    u.labelA = el("div", { class: "msam-pane-label" });
    u.labelB = el("div", { class: "msam-pane-label" });
    u.paneA = el("div", { class: "msam-pane msam-pane-a" }, u.labelA);
    u.paneB = el("div", { class: "msam-pane msam-pane-b" }, u.labelB);
    u.view = el("div", { class: "msam-view" }, u.paneA, u.paneB);
    u.cmp = buildComparePanel({ setView: (v) => actions.setCompareView(v), copySummary: () => actions.copySummary() }, btn);
    u.info = el("div", { class: "msam-info" });
    u.status = el("div", { class: "msam-status", role: "status", "aria-live": "polite" });
    u.link = el("input", { type: "text", class: "msam-link", readonly: "", placeholder: "Share link" });
    u.link.addEventListener("focus", () => u.link.select());
    u.dlMask = btn("Download mask PNG", "Mask at the original size: 255 inside, 0 outside", () => actions.exportMask());
    u.dlCut = btn("Download cut-out PNG", "Image pixels inside the mask, transparent outside", () => actions.exportCutout());
    u.dlRle = btn("Download COCO RLE JSON", "SA-1B style annotation with a COCO compressed RLE", () => actions.exportRLE());
    u.copy = btn("Copy link", "Link that reopens this image with these prompts", () => actions.copyLink());
    // the objects: a list (select, rename, delete) and "New object"
    u.newObject = btn("New object", "Start another object: the prompts then edit it", () => actions.newObject(), "msam-new-object");
    u.objectList = el("ul", { class: "msam-object-list" });
    u.objects = el("div", { class: "msam-objects" },
      el("span", { class: "msam-label", text: "Objects:" }), u.objectList, u.newObject);
    this._objectActions = actions;
    // many boxes at once: pasted, or read from a file, then "Add boxes"
    u.boxesText = el("textarea", { class: "msam-boxes-text", rows: "4",
      placeholder: "COCO JSON with \"bbox\": [x, y, w, h] records, or one x0,y0,x1,y1 box a line" });
    u.boxesFile = el("input", { type: "file", accept: ".json,.txt,.csv,application/json,text/plain" });
    u.boxesFile.addEventListener("change", async () => {
      const f = u.boxesFile.files && u.boxesFile.files[0];
      if (!f) return;
      u.boxesText.value = await f.text();
      u.boxesFile.value = "";
      actions.addBoxes(u.boxesText.value);
    });
    u.addBoxes = btn("Add boxes", "One object per box, each segmented with its box", () => actions.addBoxes(u.boxesText.value),
      "msam-add-boxes");
    u.boxes = el("details", { class: "msam-boxes" }, el("summary", { text: "Many boxes at once" }), u.boxesText,
      el("div", { class: "msam-boxes-row" }, u.boxesFile, u.addBoxes));
    u.polygons = el("input", { type: "checkbox" });
    u.dlObjects = btn("All objects: COCO JSON", "SA-1B / COCO annotations of every object (RLE, or polygons)",
      () => actions.exportObjectsJson(u.polygons.checked), "msam-dl-objects");
    u.dlLabels = btn("Label map PNG", "Indexed PNG: 0 background, k the k-th object", () => actions.exportLabelMap(), "msam-dl-labels");
    u.dlZip = btn("Cut-outs ZIP", "Each object's cut-out PNG, in one zip", () => actions.exportCutoutsZip(), "msam-dl-zip");

    const slow = isolationNotice();
    u.isolation = slow && el("div", { class: "msam-isolation", role: "note" }, document.createTextNode(slow.text + " "),
      el("a", { href: slow.href, target: "_blank", rel: "noopener", class: "msam-full-page", text: slow.linkText }));

    this.ui = el("div", { class: "msam" },
      ...(u.isolation ? [u.isolation] : []),
      el("div", { class: "msam-toolbar" },
        u.pointLabel, u.undo, u.clear,
        el("label", { class: "msam-check", title: "Feed the previous mask's logits back to the decoder" },
          u.refine, document.createTextNode(" refine with previous mask")),
        el("label", { class: "msam-check msam-hover-check", title: "Preview the mask under the cursor" },
          u.hover, document.createTextNode(" hover preview"))),
      u.objects,
      u.boxes,
      u.view,
      u.cmp.panel,
      el("div", { class: "msam-candidates" },
        el("span", { class: "msam-label", text: "Mask:" }), u.auto, ...u.thumbs.map((t) => t.button)),
      u.info,
      u.hint = el("div", { class: "msam-hint", text: isTouchScreen() ? TOUCH_HINT : MOUSE_HINT }),
      el("div", { class: "msam-exports" }, u.dlMask, u.dlCut, u.dlRle, u.copy, u.link),
      el("div", { class: "msam-exports msam-exports-all" }, u.dlObjects,
        el("label", { class: "msam-check", title: "Polygons instead of RLE in the COCO JSON" }, u.polygons,
          document.createTextNode(" polygons")), u.dlLabels, u.dlZip),
      u.status,
    );
    root.replaceChildren(this.ui);
    this.root = root;
    this.u = u;
    const handlers = (other) => ({
      onPoint: (p) => (p.select ? actions.selectAt(p.x, p.y) : actions.addPoint(p.x, p.y, p.label === 0 ? 0 : this.pointLabel)),
      onBox: (b) => actions.setBox(b),
      onHover: (p) => { this[other]?.mirror(p, null); actions.hover(p); },
      onDrag: (b) => { this[other]?.mirror(null, b); actions.drag(b); },
    });
    this.seg = new SegCanvas(u.paneA, handlers("seg2"));
    this.seg2 = new SegCanvas(u.paneB, handlers("seg"));
    this.seg.setHoverEnabled(hoverEnabled);
    this.seg2.setHoverEnabled(hoverEnabled);
    this._overlays = { a: {}, b: {} }; // the last overlay drawn per pane/model
    this._others = { key: [], canvas: null, pixels: null, masks: new WeakMap() }; // the other objects' masks, drawn together
    this._small = null; // the image scaled down for the thumbnails
  }

  /** Bring the image into view on a small touch screen (the photo was chosen above it). */
  revealCanvas() {
    if (!isTouchScreen()) return;
    const r = this.u.view.getBoundingClientRect();
    if (r.top < 0 || r.bottom > (window.innerHeight || 0)) this.u.view.scrollIntoView({ block: "center", behavior: "instant" });
  }

  /** Whether this view is the one inside `root` (a re-render of the page replaces it). */
  isIn(root) {
    return root === this.root && root.contains(this.ui);
  }

  destroy() {
    this.seg.destroy();
    this.seg2.destroy();
  }

  /** Both canvases: MobileSAM's and (compare mode, side by side) the comparison model's. */
  get segs() {
    return [this.seg, this.seg2];
  }

  setStatus({ text, kind }) {
    this.u.status.textContent = text;
    this.u.status.className = "msam-status msam-" + kind;
  }

  setRefine(on) {
    this.u.refine.checked = on;
  }

  setHoverEnabled(on) {
    this.u.hover.checked = on;
    this.seg.setHoverEnabled(on);
    this.seg2.setHoverEnabled(on);
  }

  /** Forget the overlay drawn for model `which` ("a": MobileSAM, "b": the comparison model). */
  clearOverlay(which) {
    this._overlays[which] = {};
  }

  /** An overlay canvas (and its input-frame 0/1 mask) of one model's result, kept until another is asked for. */
  overlay(which, info, result, idx, preview, style, color = null) {
    const c = this._overlays[which];
    if (c.key === result && c.idx === idx && c.preview === preview && c.style === style && c.color === color) return c;
    const { canvas, mask } = overlayCanvas(info, result, idx, preview, style, this.seg.cssW, color);
    this._overlays[which] = { key: result, idx, preview, style, color, canvas, mask };
    return this._overlays[which];
  }

  /** One canvas (input frame) with the committed masks of `objects` (ObjectList objects, in order,
   * later on top), each in its colour; null when none has a mask. Rebuilt only when one changes. */
  othersOverlay(info, objects) {
    if (!info) return null;
    const layers = [];
    for (const o of objects) {
      const e = o.entry;
      if (!e.result || !(e.points.length || e.box)) continue;
      layers.push({ result: e.result, idx: selectIndex(e.maskMode, e.points, e.box, e.result.scores), color: o.color });
    }
    const c = this._others;
    const sameLayer = (l, k) => l.result === k.result && l.idx === k.idx && l.color === k.color;
    const kept = c.info === info && c.key.length <= layers.length && c.key.every((k, i) => sameLayer(layers[i], k))
      ? c.key.length : 0; // the layers drawn already, when the new list only adds to them (boxes arriving)
    if (kept === layers.length && c.info === info) return c.canvas;
    if (!layers.length) {
      Object.assign(c, { key: [], info, canvas: null, pixels: null });
      return null;
    }
    if (!kept) c.pixels = null;
    c.pixels = drawLayers(info, layers.slice(kept), this.seg.cssW, c.masks, c.pixels);
    c.key = layers;
    c.info = info;
    c.canvas = pixelsCanvas(c.pixels, info);
    return c.canvas;
  }

  /** The object list: one row per object (swatch, name field, delete), the selected one marked. */
  renderObjects(list, enabled) {
    const u = this.u, actions = this._objectActions;
    u.newObject.disabled = !enabled;
    const rows = list.objects.map((o) => {
      const e = o.entry;
      const what = e.box ? (e.points.length ? `box + ${e.points.length} pt` : "box") : `${e.points.length} pt`;
      return { id: o.id, name: o.name, color: o.color.join(","), sel: o.id === list.selectedId, what };
    });
    const key = JSON.stringify(rows);
    if (this._objectsKey === key) return;
    this._objectsKey = key;
    u.objectList.replaceChildren(...rows.map((r) => {
      const name = el("input", { type: "text", class: "msam-object-name", value: r.name, "aria-label": "Object name" });
      name.addEventListener("change", () => actions.renameObject(r.id, name.value));
      name.addEventListener("focus", () => actions.selectObject(r.id));
      const pick = el("button", { type: "button", class: "msam-object-pick", title: "Edit this object",
        onclick: () => actions.selectObject(r.id) },
        el("span", { class: "msam-swatch", style: `background: rgb(${r.color})` }),
        document.createTextNode(r.what));
      const del = el("button", { type: "button", class: "msam-object-delete", title: `Delete ${r.name}`, text: "×",
        "aria-label": `Delete ${r.name}`, onclick: () => actions.deleteObject(r.id) });
      return el("li", { class: "msam-object" + (r.sel ? " msam-selected" : ""), "data-object-id": String(r.id),
        "aria-selected": String(r.sel) }, pick, name, del);
    }));
  }

  /** Compare mode: which model each pane (or colour, when overlaid) shows. */
  renderPaneLabels(a, b, side) {
    const u = this.u;
    const swatch = (cls) => el("span", { class: "msam-swatch " + cls });
    if (side) {
      u.labelA.replaceChildren(swatch("msam-swatch-a"), document.createTextNode(a));
      u.labelB.replaceChildren(swatch("msam-swatch-b"), document.createTextNode(b));
    } else {
      u.labelA.replaceChildren(swatch("msam-swatch-a"), document.createTextNode(`${a} (filled)  `),
        swatch("msam-swatch-b"), document.createTextNode(`${b} (outlined)`));
    }
  }

  /** The "Auto" button and the three multimask candidates (score and a small picture) of what is
   * shown (`s`, MsamApp.shown()), candidate `idx` chosen by mask mode `maskMode`. */
  renderThumbs(s, idx, maskMode, info, image) {
    const u = this.u;
    const scores = s.result && (s.points.length || s.box) ? s.result.scores : null;
    u.auto.classList.toggle("msam-active", maskMode === "auto");
    u.auto.textContent = maskMode === "auto" && idx >= 0 ? `Auto (${idx === 0 ? "single" : "#" + idx})` : "Auto";
    for (let k = 1; k <= 3; k++) {
      const t = u.thumbs[k - 1];
      t.button.disabled = !scores;
      t.button.classList.toggle("msam-active", idx === k);
      t.button.classList.toggle("msam-chosen", maskMode === k);
      t.score.textContent = scores ? `#${k} ${scores[k].toFixed(3)}` : `#${k}`;
      const key = scores ? s.result : null;
      if (t.key === key && t.imgKey === image) continue;
      t.key = key;
      t.imgKey = image;
      drawThumb(t.canvas, key ? s.result.lowRes : null, k, info, this.#smallImage(info, image));
    }
  }

  /** The image scaled down once for the thumbnails. */
  #smallImage(info, image) {
    if (!image || !info) return null;
    if (this._small && this._small.image === image) return this._small.canvas;
    const s = Math.min(1, 168 / info.width, 128 / info.height);
    const c = document.createElement("canvas");
    c.width = Math.max(1, Math.round(info.width * s));
    c.height = Math.max(1, Math.round(info.height * s));
    const ctx = c.getContext("2d");
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(image, 0, 0, c.width, c.height);
    this._small = { image, canvas: c };
    return c;
  }

  /** The info line: last decode time, the mask shown (`s`, candidate `idx`) and its score, encoder
   * time, onnxruntime-web (`model`: MobileSAM's MaskModel). */
  renderInfo({ lastDecodeMs, s, idx = -1, info, model }) {
    const parts = [];
    if (lastDecodeMs != null) parts.push(`decode ${lastDecodeMs.toFixed(1)} ms`);
    if (idx >= 0 && s && s.result) {
      const which = idx === 0 ? "single-mask output" : `candidate #${idx}`;
      parts.push(`${s.preview ? "preview " : ""}${which}, score ${s.result.scores[idx].toFixed(3)}`);
    }
    if (info && info.encode_ms != null) parts.push(`encoder ${Number(info.encode_ms).toFixed(0)} ms (server)`);
    const o = getOrtInfo();
    if (o && model?.session) {
      parts.push(`onnxruntime-web ${o.version}, ${model.provider}, ${o.threads} thread${o.threads > 1 ? "s" : ""}`);
    }
    this.u.info.textContent = parts.join(" · ");
  }
}

/** Candidate `idx` of a decode result as a 0/1 mask of the input frame (input_height x input_width). */
function inputMask(info, result, idx) {
  const { input_width: iw, input_height: ih } = info;
  const logits = upscaleLowRes(result.lowRes, idx, ih, iw);
  const mask = new Uint8Array(logits.length);
  for (let i = 0; i < logits.length; i++) mask[i] = logits[i] > 0 ? 1 : 0;
  return mask;
}

const edgeRadius = (iw, cssW) => Math.max(1, Math.round((1.5 * iw) / Math.max(1, cssW || iw)));

/** The masks of several objects ([{result, idx, color}], later on top) drawn over `pixels` (RGBA of the
 * input frame; a new transparent one when null); `masks` caches each result's masks. Returns the pixels. */
function drawLayers(info, layers, cssW, masks, pixels = null) {
  const { input_width: iw, input_height: ih } = info;
  const all = pixels || new Uint8ClampedArray(iw * ih * 4);
  const all32 = new Uint32Array(all.buffer);
  const tmp = new Uint8ClampedArray(iw * ih * 4);
  const tmp32 = new Uint32Array(tmp.buffer);
  for (const l of layers) {
    let byIdx = masks.get(l.result);
    if (!byIdx) masks.set(l.result, byIdx = new Map());
    let mask = byIdx.get(l.idx);
    if (!mask) byIdx.set(l.idx, mask = inputMask(info, l.result, l.idx));
    overlayRGBA(mask, iw, ih, [...l.color, 95], [...l.color, 230], edgeRadius(iw, cssW), tmp);
    for (let i = 0; i < tmp32.length; i++) if (tmp32[i]) all32[i] = tmp32[i];
  }
  return all;
}

function pixelsCanvas(pixels, info) {
  const c = document.createElement("canvas");
  c.width = info.input_width;
  c.height = info.input_height;
  c.getContext("2d").putImageData(new ImageData(pixels, c.width, c.height), 0, 0);
  return c;
}

function overlayCanvas(info, result, idx, preview, style, cssW, color = null) {
  const { input_width: iw, input_height: ih } = info;
  const mask = inputMask(info, result, idx);
  let radius = edgeRadius(iw, cssW);
  let fill = preview ? PREVIEW_FILL : FILL, edge = preview ? PREVIEW_EDGE : EDGE;
  if (color && style === "mobilesam") fill = [...color, preview ? PREVIEW_FILL[3] : FILL[3]];
  if (style === "sam") {
    fill = preview ? SAM_PREVIEW_FILL : SAM_FILL;
  } else if (style === "sam-outline") {
    fill = SAM_OUTLINE_FILL;
    edge = SAM_OUTLINE_EDGE;
    radius = Math.max(2, Math.round(radius * 1.5));
  }
  const px = overlayRGBA(mask, iw, ih, fill, edge, radius);
  const c = document.createElement("canvas");
  c.width = iw;
  c.height = ih;
  c.getContext("2d").putImageData(new ImageData(px, iw, ih), 0, 0);
  return { canvas: c, mask };
}

function drawThumb(canvas, lowRes, k, info, small) {
  const ctx = canvas.getContext("2d");
  const tw = 84, th = 64;
  canvas.width = tw;
  canvas.height = th;
  ctx.clearRect(0, 0, tw, th);
  if (!info) return;
  const scale = Math.min(tw / info.width, th / info.height);
  const w = Math.max(1, Math.round(info.width * scale)), h = Math.max(1, Math.round(info.height * scale));
  const ox = (tw - w) / 2, oy = (th - h) / 2;
  if (small) ctx.drawImage(small, ox, oy, w, h);
  if (!lowRes) return;
  // low-res logits, cropped to the image's part of the 256 grid
  const lw = Math.max(1, Math.ceil(info.input_width / 4)), lh = Math.max(1, Math.ceil(info.input_height / 4));
  const px = new Uint8ClampedArray(lw * lh * 4);
  const off = k * LOW_RES * LOW_RES;
  for (let y = 0; y < lh; y++) {
    for (let x = 0; x < lw; x++) {
      if (lowRes[off + y * LOW_RES + x] > 0) {
        const j = (y * lw + x) * 4;
        px[j] = 30; px[j + 1] = 144; px[j + 2] = 255; px[j + 3] = 170;
      }
    }
  }
  const m = document.createElement("canvas");
  m.width = lw;
  m.height = lh;
  m.getContext("2d").putImageData(new ImageData(px, lw, lh), 0, 0);
  ctx.drawImage(m, ox, oy, w, h);
}
