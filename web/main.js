// MobileSAM browser demo: entry module.
//
// The server encodes the image and calls window.msam.setImage(info); the embedding is
// fetched once, and every click / box / hover runs the ONNX mask decoder here with
// onnxruntime-web (no server round trip per prompt). See README "The app" for the
// server contract. Nothing in here throws to the page: errors go to the status line.
//
// Compare mode: when the info has `compare` ({model, label, embedding_url, decoder_url,
// encode_ms, params}), a second MaskModel runs the original SAM's decoder on its own
// embedding for every prompt; both masks are drawn (side by side or overlaid) with their
// IoU, scores, encoder times and encoder sizes.

import { MaskModel, getOrtInfo } from "./decoder.js";
import {
  upscaleLowRes, postprocessMask, overlayRGBA, maskToGrayRGBA,
  applyCutout, sa1bRecord, maskArea, LOW_RES,
} from "./masks.js";
import { selectIndex, parsePrompts, formatPrompts, clampPrompts, isMultimask } from "./prompts.js";
import { SegCanvas } from "./canvas.js";
import { fetchEmbedding } from "./embedding.js";

const FILL = [30, 144, 255, 110];
const EDGE = [255, 255, 255, 235];
const PREVIEW_FILL = [30, 144, 255, 80];
const PREVIEW_EDGE = [255, 255, 255, 170];
// compare mode: the original SAM's mask in orange (MobileSAM's stays blue)
const SAM_FILL = [255, 140, 0, 110];
const SAM_PREVIEW_FILL = [255, 140, 0, 80];
const SAM_OUTLINE_FILL = [255, 140, 0, 45]; // overlaid on MobileSAM's: mostly the outline
const SAM_OUTLINE_EDGE = [255, 140, 0, 255];
const MODEL_LABELS = { vit_t: "MobileSAM", vit_b: "SAM ViT-B", vit_l: "SAM ViT-L", vit_h: "SAM ViT-H" };
const modelLabel = (m) => MODEL_LABELS[m] || String(m || "model");

function getConfig() {
  const c = (typeof window !== "undefined" && window.MSAM_CONFIG) || {};
  return {
    ortBase: c.ortBase || "/web/ort/",
    decoderUrl: c.decoderUrl || null,
    crossOriginIsolated: c.crossOriginIsolated !== false,
    ortBundle: c.ortBundle,
    executionProviders: c.executionProviders,
    proxy: c.proxy,
  };
}

function errText(e) {
  if (!e) return "unknown error";
  return typeof e === "string" ? e : e.message || String(e);
}

/** `info` from the server as an object, or null for "no image". */
function normalizeInfo(info) {
  if (info == null) return null;
  if (typeof info === "string") {
    const t = info.trim();
    if (!t || t === "null") return null;
    info = JSON.parse(t);
  }
  if (typeof info !== "object" || Array.isArray(info)) throw new Error("image info must be an object");
  if (!Object.keys(info).length || info.image_id == null || !info.embedding_url) return null;
  const n = (k) => {
    const v = Number(info[k]);
    if (!(v > 0)) throw new Error(`image info: bad ${k} (${info[k]})`);
    return v;
  };
  const width = n("width"), height = n("height");
  const long = Math.max(width, height);
  let compare = null;
  const c = info.compare;
  if (c && typeof c === "object" && c.embedding_url && c.decoder_url && c.model) {
    compare = { ...c, model: String(c.model), label: c.label || modelLabel(c.model) };
  }
  return {
    ...info,
    compare,
    image_id: String(info.image_id),
    width, height,
    // default: SAM's ResizeLongestSide.get_preprocess_shape
    input_width: info.input_width ? n("input_width") : Math.floor(width * (1024 / long) + 0.5),
    input_height: info.input_height ? n("input_height") : Math.floor(height * (1024 / long) + 0.5),
  };
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.crossOrigin = "anonymous";
    img.decoding = "async";
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`image failed to load (${url})`));
    img.src = url;
  });
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c) e.appendChild(c);
  return e;
}

function downloadBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name });
  a.style.display = "none";
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function canvasToBlob(canvas) {
  return new Promise((resolve, reject) => {
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("PNG encoding failed"))), "image/png");
  });
}

function safeName(s) {
  return String(s || "image").replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 80);
}

// A prompt state. Each edit (point, box, clear) makes a new one linked to the previous
// (undo goes back along `prev`); its decoder result is cached on it.
let ENTRY_ID = 0;
// In compare mode `cmp` holds the comparison model's decode: {key, result} or {key, error},
// key = that model's embedding URL (a result for another model or image is stale).
function makeEntry(prev, points, box, maskMode = "auto", refine = false) {
  return { id: ++ENTRY_ID, prev, points, box, maskMode, refine, result: null, error: null, pending: false, cmp: null };
}

const fmtInt = (v) => Math.round(v).toLocaleString("en-US");
const fmtMs = (ms) => (ms == null || !Number.isFinite(Number(ms)) ? "–" : `${fmtInt(Number(ms))} ms`);
const fmtParams = (n) => (n > 0 ? `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)} M` : "–");

/** "2 points (1 foreground, 1 background) + box": the prompts in words (as the server's summary). */
function describePrompts(points, box) {
  const parts = [];
  if (points.length) {
    const fg = points.filter((p) => p.label === 1).length;
    parts.push(`${points.length} point${points.length !== 1 ? "s" : ""} (${fg} foreground, ${points.length - fg} background)`);
  }
  if (box) parts.push("box");
  return parts.join(" + ") || "no prompts";
}

/** IoU of two 0/1 masks of the same size; two empty masks agree fully (1). */
function maskIoU(a, b) {
  let inter = 0, union = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i], y = b[i];
    inter += x & y;
    union += x | y;
  }
  return union === 0 ? 1 : inter / union;
}


class MsamApp {
  constructor() {
    this.config = getConfig();
    this.model = null;
    this.root = null;
    this.ui = null;
    this.seg = null;

    this.info = null;
    this.image = null;
    this.ready = false;
    this.loadToken = 0;
    this.imageToken = 0; // changes with the image (decodes of another image are dropped)
    // compare mode: the comparison model's decoder, and its state for this image
    this.cmpModel = null;
    this.cmp = null; // {model, label, key, decoderUrl, encodeMs, params, ready, error}
    this.cmpView = "side"; // "side" (two canvases) or "overlay" (one canvas, two colours)
    this.cmpDecodeCount = 0;
    this.cmpLastDecodeMs = null;
    this._cmpStats = { key: null, value: null };
    this.loading = Promise.resolve();
    this.entry = makeEntry(null, [], null);
    this.refine = false;
    this.hoverEnabled = true;
    this.hoverPt = null;
    this.dragBox = null;
    this.preview = null; // {entry, result, points, box}
    this.decodeCount = 0;
    this.lastDecodeMs = null;
    this.status = { text: "", kind: "info" };

    // decode scheduling: commits run in order; one preview slot, newest wins
    this.commits = [];
    this.previewReq = null;
    this.running = false;
    this.idleWaiters = [];
    this.previewSeq = 0;

    this.urlPrompts = null;
    try {
      const p = parsePrompts(location.search);
      if (p.imageId) this.urlPrompts = p;
    } catch { /* no URL prompts */ }

    this._overlayCache = { key: null, canvas: null };
    this._cmpOverlayCache = { key: null, canvas: null };
    this._fullCache = { key: null, value: null };
    this._cmpFullCache = { key: null, value: null };
  }

  // ------------------------------------------------------------------ model

  ensureModel() {
    if (!this.model) {
      this.config = getConfig();
      this.model = new MaskModel(this.config);
    }
    if (this.config.decoderUrl && !this.model.loading) {
      this.model.load(this.config.decoderUrl).then(
        () => {
          const o = getOrtInfo();
          if (this.status.kind === "error" && /decoder|onnxruntime/.test(this.status.text)) this.setStatus("");
          this.renderInfo();
          if (o && !o.isolated) console.info("[msam] not cross-origin isolated: onnxruntime-web runs on 1 thread");
        },
        (e) => this.setStatus(errText(e), "error"),
      );
    } else if (!this.config.decoderUrl) {
      this.setStatus("MSAM_CONFIG.decoderUrl is not set: the mask decoder cannot load", "error");
    }
    return this.model;
  }

  /** The comparison model's decoder session (one MaskModel, reloaded when the model changes). */
  ensureCmpModel() {
    if (!this.cmpModel) this.cmpModel = new MaskModel(this.config);
    return this.cmpModel;
  }

  /** Compare mode with the comparison model's embedding and decoder in place. */
  cmpActive() {
    return !!(this.cmp && this.cmp.ready && this.cmpModel && this.cmpModel.ready);
  }

  // ------------------------------------------------------------------ DOM

  /** (Re)build the UI inside #msam-root when it appears or is re-rendered. */
  attach() {
    const root = document.getElementById("msam-root");
    if (!root) return;
    if (root === this.root && this.ui && root.contains(this.ui)) return;
    if (this.seg) this.seg.destroy();
    if (this.seg2) this.seg2.destroy();
    this.root = root;
    this.buildUI(root);
    this.ensureModel();
    for (const seg of [this.seg, this.seg2]) {
      if (this.image && this.info) {
        seg.setImage(this.image, this.info.width, this.info.height);
      } else {
        seg.setPlaceholder(this.info ? "Loading image…" : "Upload or pick an image to start");
      }
    }
    this.setStatus(this.status.text, this.status.kind);
    this.render();
  }

  buildUI(root) {
    const btn = (label, title, onclick, cls = "") =>
      el("button", { type: "button", class: "msam-btn " + cls, title, text: label, onclick });
    const u = {};
    u.undo = btn("Undo", "Remove the last point or box (Ctrl+Z)", () => this.undo());
    u.clear = btn("Clear", "Remove all prompts (Esc)", () => this.clear());
    u.refine = el("input", { type: "checkbox" });
    u.refine.checked = this.refine;
    u.refine.addEventListener("change", () => { this.refine = u.refine.checked; });
    u.hover = el("input", { type: "checkbox" });
    u.hover.checked = this.hoverEnabled;
    u.hover.addEventListener("change", () => this.setHoverEnabled(u.hover.checked));
    u.auto = btn("Auto", "Choose the mask as SamPredictor does", () => this.selectMask("auto"), "msam-auto");
    u.thumbs = [1, 2, 3].map((k) => {
      const c = el("canvas", { class: "msam-thumb-canvas", width: "84", height: "64" });
      const s = el("span", { class: "msam-thumb-score", text: `#${k}` });
      const b = el("button", { type: "button", class: "msam-thumb", title: `Multimask candidate ${k}`,
        onclick: () => this.selectMask(k) }, c, s);
      return { button: b, canvas: c, score: s };
    });
    // the view: MobileSAM's canvas (pane A) and, in compare mode, SAM's beside it (pane B)
    u.labelA = el("div", { class: "msam-pane-label" });
    u.labelB = el("div", { class: "msam-pane-label" });
    u.paneA = el("div", { class: "msam-pane msam-pane-a" }, u.labelA);
    u.paneB = el("div", { class: "msam-pane msam-pane-b" }, u.labelB);
    u.view = el("div", { class: "msam-view" }, u.paneA, u.paneB);
    u.cmp = this.buildComparePanel(btn);
    u.info = el("div", { class: "msam-info" });
    u.status = el("div", { class: "msam-status", role: "status", "aria-live": "polite" });
    u.link = el("input", { type: "text", class: "msam-link", readonly: "", placeholder: "Share link" });
    u.link.addEventListener("focus", () => u.link.select());
    u.dlMask = btn("Download mask PNG", "Mask at the original size: 255 inside, 0 outside", () => this.exportMask());
    u.dlCut = btn("Download cut-out PNG", "Image pixels inside the mask, transparent outside", () => this.exportCutout());
    u.dlRle = btn("Download COCO RLE JSON", "SA-1B style annotation with a COCO compressed RLE", () => this.exportRLE());
    u.copy = btn("Copy link", "Link that reopens this image with these prompts", () => this.copyLink());

    const ui = el("div", { class: "msam" },
      el("div", { class: "msam-toolbar" },
        u.undo, u.clear,
        el("label", { class: "msam-check", title: "Feed the previous mask's logits back to the decoder" },
          u.refine, document.createTextNode(" refine with previous mask")),
        el("label", { class: "msam-check", title: "Preview the mask under the cursor" },
          u.hover, document.createTextNode(" hover preview"))),
      u.view,
      u.cmp.panel,
      el("div", { class: "msam-candidates" },
        el("span", { class: "msam-label", text: "Mask:" }), u.auto, ...u.thumbs.map((t) => t.button)),
      u.info,
      el("div", { class: "msam-hint", text:
        "Click: foreground point · right-click or shift-click: background point · drag: box · Ctrl+Z: undo · Esc: clear" }),
      el("div", { class: "msam-exports" }, u.dlMask, u.dlCut, u.dlRle, u.copy, u.link),
      u.status,
    );
    root.replaceChildren(ui);
    this.ui = ui;
    this.u = u;
    const handlers = (other) => ({
      onPoint: (p) => this.addPoint(p.x, p.y, p.label),
      onBox: (b) => this.setBox(b),
      onHover: (p) => { this[other]?.mirror(p, null); this.onHover(p); },
      onDrag: (b) => { this[other]?.mirror(null, b); this.onDrag(b); },
    });
    this.seg = new SegCanvas(u.paneA, handlers("seg2"));
    this.seg2 = new SegCanvas(u.paneB, handlers("seg"));
    this.seg.setHoverEnabled(this.hoverEnabled);
    this.seg2.setHoverEnabled(this.hoverEnabled);
  }

  /** Compare mode's numbers: IoU, a table per model, the summary row to copy, the view switch. */
  buildComparePanel(btn) {
    const c = {};
    c.iou = el("strong", { class: "msam-cmp-iou", text: "–" });
    c.iouNote = el("span", { class: "msam-cmp-note" });
    c.side = btn("Side by side", "MobileSAM's mask and SAM's on two copies of the image", () => this.setCompareView("side"));
    c.overlay = btn("Overlay", "Both masks on one image: MobileSAM blue, SAM orange", () => this.setCompareView("overlay"));
    c.state = el("span", { class: "msam-cmp-state" });
    const cell = (cls = "") => el("td", { class: cls });
    const rows = [
      ["area", "Mask area", "Pixels inside the mask at the image's full size"],
      ["score", "Score (predicted IoU)", "The decoder's own quality estimate of the mask it chose"],
      ["encode", "Encoder time (this server)", "Time to compute the image embedding on this server (once per image)"],
      ["params", "Image encoder parameters", "Size of the image encoder: the part that differs between MobileSAM and SAM"],
      ["decode", "Decoder time (your browser)", "Time of the last mask decode in this browser"],
    ];
    c.headA = el("th", { scope: "col" });
    c.headB = el("th", { scope: "col" });
    c.cells = {};
    const body = el("tbody");
    for (const [key, label, title] of rows) {
      const a = cell("msam-cmp-a"), b = cell("msam-cmp-b");
      c.cells[key] = [a, b];
      body.appendChild(el("tr", {}, el("th", { scope: "row", title, text: label }), a, b));
    }
    c.table = el("table", { class: "msam-cmp-table" },
      el("thead", {}, el("tr", {}, el("th", { text: "" }), c.headA, c.headB)), body);
    c.summary = el("textarea", { class: "msam-cmp-summary", readonly: "", rows: "2", spellcheck: "false",
      "aria-label": "Comparison summary", placeholder: "Add a point or a box to compare the masks" });
    c.summary.addEventListener("focus", () => c.summary.select());
    c.copy = btn("Copy summary", "Copy this comparison as one line of text", () => this.copySummary());
    c.panel = el("div", { class: "msam-compare", hidden: "" },
      el("div", { class: "msam-cmp-head" },
        el("span", { class: "msam-cmp-iou-label", title: "Intersection over union of the two masks at full size: "
          + "1 = identical, 0 = disjoint", text: "Mask IoU, MobileSAM vs SAM:" }),
        c.iou, c.iouNote, c.state,
        el("span", { class: "msam-cmp-views" }, c.side, c.overlay)),
      c.table,
      el("div", { class: "msam-cmp-summary-row" }, c.summary, c.copy));
    return c;
  }

  setStatus(text, kind = "info") {
    this.status = { text: text || "", kind };
    if (kind === "error" && text) console.warn("[msam]", text);
    if (!this.u) return;
    this.u.status.textContent = this.status.text;
    this.u.status.className = "msam-status msam-" + kind;
  }

  // ------------------------------------------------------------------ image

  async setImage(infoArg, prompts) {
    const token = ++this.loadToken;
    let done;
    this.loading = new Promise((r) => { done = r; });
    try {
      await this._setImage(infoArg, prompts, token);
    } catch (e) {
      if (token === this.loadToken) this.setStatus(errText(e), "error");
    } finally {
      done();
    }
    return token === this.loadToken && this.ready;
  }

  async _setImage(infoArg, prompts, token) {
    this.attach();
    const info = normalizeInfo(infoArg);
    const stale = () => token !== this.loadToken;
    if (typeof prompts === "string") prompts = parsePrompts(prompts);

    if (info && this.info && this.ready && info.image_id === this.info.image_id
        && info.embedding_url === this.info.embedding_url) {
      // Same image again (Gradio may fire twice, or compare mode was switched): keep the
      // embedding and the prompts; only the comparison model may change.
      this.info = { ...this.info, ...info, compare: info.compare };
      await this.setCompare(info.compare, token);
      if (stale()) return;
      if (prompts) await this.applyPrompts(prompts);
      this.render();
      return;
    }

    this.resetPrompts();
    this.ready = false;
    this.imageToken++;
    this.info = info;
    this.image = null;
    this._overlayCache = { key: null, canvas: null };
    this._fullCache = { key: null, value: null };
    this.dropCompare();
    const model = this.ensureModel();
    model.setEmbedding(null);
    if (!info) {
      for (const seg of [this.seg, this.seg2]) {
        seg?.setImage(null);
        seg?.setPlaceholder("Upload or pick an image to start");
      }
      this.setStatus("");
      this.render();
      return;
    }
    for (const seg of [this.seg, this.seg2]) {
      seg?.setImage(null);
      seg?.setPlaceholder("Loading image…");
    }
    this.setStatus("Loading image embedding…", "busy");

    const imgP = info.image_url ? loadImage(info.image_url) : Promise.reject(new Error("image info has no image_url"));
    const embP = fetchEmbedding(info.embedding_url);
    imgP.catch(() => {});
    embP.catch(() => {});
    // the comparison model's embedding and decoder load meanwhile
    const cmpP = this.setCompare(info.compare, token);
    try {
      const img = await imgP;
      if (stale()) return;
      this.image = img;
      this.seg?.setImage(img, info.width, info.height);
      this.seg2?.setImage(img, info.width, info.height);
    } catch (e) {
      if (stale()) return;
      this.setStatus(errText(e), "error");
    }
    let f32;
    try {
      f32 = await embP;
    } catch (e) {
      if (!stale()) this.setStatus(errText(e), "error");
      return;
    }
    if (stale()) return;
    if (!model.loading) {
      this.setStatus("The mask decoder is not configured (MSAM_CONFIG.decoderUrl)", "error");
      return;
    }
    try {
      await model.loading;
    } catch (e) {
      if (!stale()) this.setStatus(errText(e), "error");
      return;
    }
    if (stale()) return;
    model.setEmbedding(f32, info);
    this.ready = true;
    if (this.status.kind !== "error") this.setStatus("");
    this.render();
    await cmpP; // prompts from a link are decoded by both models at once
    if (stale()) return;

    let p = prompts || null;
    if (!p && this.urlPrompts && this.urlPrompts.imageId === info.image_id) {
      p = this.urlPrompts;
      this.urlPrompts = null; // only the first matching setImage
    }
    if (p) await this.applyPrompts(p);
    this.render();
  }

  /** Leave compare mode (the comparison model's embedding is dropped; its decoder stays loaded). */
  dropCompare() {
    this.cmp = null;
    this.cmpModel?.setEmbedding(null);
    this._cmpOverlayCache = { key: null, canvas: null };
    this._cmpFullCache = { key: null, value: null };
    this._cmpStats = { key: null, value: null };
    if (this.preview) this.preview.cmp = null;
  }

  /**
   * Enter, change or leave compare mode for the current image: `c` is info.compare or null.
   * Fetches the comparison model's embedding and loads its decoder, then decodes the current
   * prompts with it. Errors go to the status line; MobileSAM keeps working.
   */
  async setCompare(c, token) {
    if (!c) {
      if (this.cmp) {
        this.dropCompare();
        this.render();
      }
      return;
    }
    if (this.cmp && this.cmp.key === c.embedding_url && this.cmp.decoderUrl === c.decoder_url) {
      Object.assign(this.cmp, { encodeMs: c.encode_ms, params: c.params, label: c.label });
      this.render();
      return;
    }
    this.dropCompare();
    const cmp = {
      model: c.model, label: c.label || modelLabel(c.model), key: c.embedding_url, decoderUrl: c.decoder_url,
      encodeMs: c.encode_ms, params: c.params, ready: false, error: null,
    };
    this.cmp = cmp;
    const stale = () => token !== this.loadToken || this.cmp !== cmp;
    const cm = this.ensureCmpModel();
    this.render();
    try {
      const [f32] = await Promise.all([fetchEmbedding(c.embedding_url), cm.load(c.decoder_url)]);
      if (stale()) return;
      cm.setEmbedding(f32, this.info);
      cmp.ready = true;
    } catch (e) {
      if (stale()) return;
      cmp.error = errText(e);
      this.setStatus(`${cmp.label}: ${cmp.error}`, "error");
      this.render();
      return;
    }
    this.ensureDecoded(this.entry);
    await this.decodesIdle();
    this.render();
  }

  /** Replace the prompts (points, box, mask choice) in one decode. */
  async applyPrompts(p) {
    if (!this.info) return;
    const c = clampPrompts({ points: p.points || [], box: p.box || null }, this.info.width, this.info.height);
    const mode = p.mask === 1 || p.mask === 2 || p.mask === 3 ? p.mask : "auto";
    this.commit(c.points.map((pt) => ({ x: pt.x, y: pt.y, label: pt.label === 0 ? 0 : 1 })), c.box, mode, false);
    await this.decodesIdle();
  }

  resetPrompts() {
    this.entry = makeEntry(null, [], null);
    this.commits = [];
    this.previewReq = null;
    this.preview = null;
    this.hoverPt = null;
    this.dragBox = null;
  }

  // ------------------------------------------------------------------ prompts

  addPoint(x, y, label = 1) {
    if (!this.info || !this.ready) return;
    if (!(x >= 0 && y >= 0 && x <= this.info.width && y <= this.info.height)) return;
    this.commit([...this.entry.points, { x, y, label: label === 0 ? 0 : 1 }], this.entry.box);
  }

  setBox(b) {
    if (!this.info || !this.ready || !b) return;
    const c = clampPrompts({ points: [], box: b }, this.info.width, this.info.height);
    if (!c.box) return;
    this.commit(this.entry.points, c.box);
  }

  undo() {
    if (!this.entry.prev) return;
    const old = this.entry;
    old.cancelled = true;
    this.commits = this.commits.filter((e) => e !== old);
    this.entry = old.prev;
    this.preview = null;
    this.afterEdit();
  }

  clear() {
    if (!this.info) return;
    if (!this.entry.points.length && !this.entry.box) return;
    this.commit([], null);
  }

  selectMask(mode) {
    this.entry.maskMode = mode === 1 || mode === 2 || mode === 3 ? mode : "auto";
    this.render();
  }

  commit(points, box, maskMode = "auto", refine = this.refine) {
    const entry = makeEntry(this.entry, points, box, maskMode, refine);
    this.entry = entry;
    this.preview = null;
    if (points.length || box) {
      entry.pending = true;
      this.commits.push(entry);
      this.pump();
    }
    this.afterEdit();
  }

  afterEdit() {
    this.seg?.setPrompts(this.entry.points, this.entry.box);
    this.seg2?.setPrompts(this.entry.points, this.entry.box);
    this.ensureDecoded(this.entry); // e.g. after undo, in a compare mode entered since
    if (this.hoverPt) this.requestPreview();
    this.render();
  }

  /** Whether an entry lacks a decode: MobileSAM's, or (in compare mode) the comparison model's. */
  needsDecode(entry) {
    if (!(entry.points.length || entry.box)) return false;
    return (!entry.result && !entry.error) || (this.cmpActive() && !(entry.cmp && entry.cmp.key === this.cmp.key));
  }

  /** Queue an entry's missing decodes (unless already queued or running). */
  ensureDecoded(entry) {
    if (!entry || entry.pending || entry.cancelled || !this.ready || !this.needsDecode(entry)) return;
    entry.pending = true;
    this.commits.push(entry);
    this.pump();
  }

  setHoverEnabled(on) {
    this.hoverEnabled = !!on;
    if (this.u) this.u.hover.checked = this.hoverEnabled;
    this.seg?.setHoverEnabled(this.hoverEnabled);
    this.seg2?.setHoverEnabled(this.hoverEnabled);
    if (!this.hoverEnabled) this.onHover(null);
  }

  setCompareView(view) {
    this.cmpView = view === "overlay" ? "overlay" : "side";
    this.render();
  }

  onHover(p) {
    this.hoverPt = this.hoverEnabled ? p : null;
    if (!this.hoverPt) {
      this.previewReq = null;
      if (!this.dragBox) this.preview = null;
      this.render();
      return;
    }
    this.requestPreview();
  }

  onDrag(b) {
    this.dragBox = b;
    if (!b) {
      this.previewReq = null;
      this.preview = null;
      this.render();
      return;
    }
    this.requestPreview();
  }

  requestPreview() {
    if (!this.ready) return;
    let points, box;
    if (this.dragBox) {
      points = this.entry.points;
      box = this.dragBox;
    } else if (this.hoverPt) {
      points = [...this.entry.points, { x: this.hoverPt.x, y: this.hoverPt.y, label: 1 }];
      box = this.entry.box;
    } else {
      return;
    }
    this.previewReq = { entry: this.entry, points, box, seq: ++this.previewSeq };
    this.pump();
  }

  /** Low-res logits of an entry's selected mask (for refinement), or null. */
  selectedLowRes(entry) {
    if (!entry || !entry.result) return null;
    const idx = selectIndex(entry.maskMode, entry.points, entry.box, entry.result.scores);
    return entry.result.lowRes.subarray(idx * LOW_RES * LOW_RES, (idx + 1) * LOW_RES * LOW_RES);
  }

  /** The same for the comparison model's decode of `entry` (its own previous mask), or null. */
  selectedCmpLowRes(entry) {
    const r = this.cmpResultOf(entry);
    if (!r) return null;
    const idx = selectIndex(entry.maskMode, entry.points, entry.box, r.scores);
    return r.lowRes.subarray(idx * LOW_RES * LOW_RES, (idx + 1) * LOW_RES * LOW_RES);
  }

  /** The comparison model's current result of an entry (null when none or stale). */
  cmpResultOf(entry) {
    if (!entry || !entry.cmp || !this.cmp || entry.cmp.key !== this.cmp.key) return null;
    return entry.cmp.result || null;
  }

  /**
   * Decode `prompts` with MobileSAM (when `needA`) and, in compare mode, with the comparison model
   * (when `needB`), both at once. Returns {a: result|Error|null, b: {key, result}|{key, error}|null}.
   */
  async decodeBoth(prompts, needA, needB, maskA, maskB) {
    const cmpKey = this.cmp ? this.cmp.key : null;
    const [ra, rb] = await Promise.allSettled([
      needA ? this.model.decode(prompts, maskA) : null,
      needB ? this.cmpModel.decode(prompts, maskB) : null,
    ]);
    const a = !needA ? null : ra.status === "fulfilled" ? ra.value : new Error(errText(ra.reason));
    let b = null;
    if (needB) {
      b = rb.status === "fulfilled" ? { key: cmpKey, result: rb.value } : { key: cmpKey, error: errText(rb.reason) };
    }
    return { a, b };
  }

  // ------------------------------------------------------------------ scheduling

  /** Run queued decodes: commits first, in order; then the newest preview request. */
  async pump() {
    if (this.running) return;
    this.running = true;
    try {
      for (;;) {
        if (!this.ready) {
          this.commits = [];
          this.previewReq = null;
          break;
        }
        const entry = this.commits.shift();
        if (entry) {
          if (entry.cancelled) continue;
          await this.decodeEntry(entry);
          continue;
        }
        const req = this.previewReq;
        this.previewReq = null;
        if (!req) break;
        if (req.entry !== this.entry || !(this.hoverPt || this.dragBox)) continue;
        await this.decodePreview(req);
      }
    } finally {
      this.running = false;
    }
    if (this.isIdle()) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const r of w) r();
    }
  }

  async decodeEntry(entry) {
    const needA = !entry.result;
    const needB = this.cmpActive() && !(entry.cmp && entry.cmp.key === this.cmp.key);
    const token = this.imageToken;
    try {
      const { a, b } = await this.decodeBoth({ points: entry.points, box: entry.box }, needA, needB,
        needA && entry.refine ? this.selectedLowRes(entry.prev) : null,
        needB && entry.refine ? this.selectedCmpLowRes(entry.prev) : null);
      if (token !== this.imageToken) return;
      if (a instanceof Error) {
        entry.error = a.message;
        this.setStatus("Decoder failed: " + entry.error, "error");
      } else if (a) {
        entry.result = a;
        this.noteDecode(a);
      }
      if (b && this.cmp && b.key === this.cmp.key) {
        entry.cmp = b;
        if (b.error) this.setStatus(`${this.cmp.label} decoder failed: ${b.error}`, "error");
        else this.noteCmpDecode(b.result);
      }
    } finally {
      entry.pending = false;
    }
    if (entry === this.entry) {
      this.ensureDecoded(entry); // compare mode began while this decode ran
      this.render();
    }
  }

  async decodePreview(req) {
    // what a click here would give: the committed prompts plus this one
    const token = this.imageToken;
    const needB = this.cmpActive();
    const { a, b } = await this.decodeBoth({ points: req.points, box: req.box }, true, needB,
      this.refine ? this.selectedLowRes(req.entry) : null,
      needB && this.refine ? this.selectedCmpLowRes(req.entry) : null);
    if (token !== this.imageToken) return;
    if (a instanceof Error) {
      this.setStatus("Decoder failed: " + a.message, "error");
      return;
    }
    this.noteDecode(a);
    if (b && b.result) this.noteCmpDecode(b.result);
    if (req.entry === this.entry && (this.hoverPt || this.dragBox)) {
      this.preview = { entry: req.entry, result: a, cmp: b, points: req.points, box: req.box };
      this.render();
    } else {
      this.renderInfo();
    }
  }

  noteDecode(res) {
    this.decodeCount++;
    this.lastDecodeMs = res.ms;
  }

  noteCmpDecode(res) {
    this.cmpDecodeCount++;
    this.cmpLastDecodeMs = res.ms;
  }

  isIdle() {
    return !this.running && !this.commits.length && !this.previewReq;
  }

  /** Resolves when no decode is in flight or pending. */
  decodesIdle() {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((r) => { this.idleWaiters.push(r); this.pump(); });
  }

  /** Resolves when no image is loading and no decode is in flight or pending. */
  async whenIdle() {
    for (;;) {
      const loading = this.loading;
      await loading;
      await this.decodesIdle();
      if (loading === this.loading && this.isIdle()) return;
    }
  }

  // ------------------------------------------------------------------ rendering

  /** What is on screen: the preview while hovering/dragging, else the committed entry. */
  shown() {
    const e = this.entry;
    if (this.preview && this.preview.entry === e && (this.hoverPt || this.dragBox)) {
      const p = this.preview;
      const cmpResult = p.cmp && this.cmp && p.cmp.key === this.cmp.key ? p.cmp.result || null : null;
      return { result: p.result, cmpResult, points: p.points, box: p.box, mode: "auto", preview: true };
    }
    return { result: e.result, cmpResult: this.cmpResultOf(e), points: e.points, box: e.box, mode: e.maskMode,
      preview: false };
  }

  render() {
    if (!this.u) return;
    try {
      this._render();
    } catch (e) {
      this.setStatus("Drawing failed: " + errText(e), "error");
    }
  }

  _render() {
    const info = this.info;
    const s = this.shown();
    const hasPrompts = s.points.length || s.box;
    const u = this.u;
    const comparing = !!this.cmp;
    const side = comparing && this.cmpView === "side";
    let idx = -1, cmpIdx = -1, ovA = null, ovB = null;
    if (info && s.result && hasPrompts) {
      idx = selectIndex(s.mode, s.points, s.box, s.result.scores);
      ovA = this.overlay("_overlayCache", s.result, idx, s.preview, "mobilesam");
    }
    if (info && comparing && s.cmpResult && hasPrompts) {
      cmpIdx = selectIndex(s.mode, s.points, s.box, s.cmpResult.scores);
      ovB = this.overlay("_cmpOverlayCache", s.cmpResult, cmpIdx, s.preview, side ? "sam" : "sam-outline");
    }
    // (while a click's decode is running the previous masks stay up)
    const keep = hasPrompts && this.entry.pending && !s.preview;
    if (ovA || !keep) {
      const layers = ovA ? [{ source: ovA.canvas }] : [];
      if (comparing && !side && ovB) layers.push({ source: ovB.canvas });
      this.seg.setOverlays(layers);
    }
    if (ovB || !keep || !side) this.seg2.setOverlays(side && ovB ? [{ source: ovB.canvas }] : []);
    this.seg.setPrompts(this.entry.points, this.entry.box);
    this.seg2.setPrompts(this.entry.points, this.entry.box);
    u.view.classList.toggle("msam-side", side);
    u.paneB.hidden = !side;
    u.labelA.hidden = !comparing;
    if (comparing) this.renderPaneLabels(side);
    this.renderThumbs(s, idx);
    this.renderInfo(s, idx);
    this.renderCompare(s, idx, cmpIdx, ovA, ovB);
    const committed = !!(this.entry.result && (this.entry.points.length || this.entry.box));
    u.dlMask.disabled = u.dlCut.disabled = u.dlRle.disabled = !committed || !info;
    u.dlCut.disabled = u.dlCut.disabled || !this.image;
    u.copy.disabled = !info;
    u.undo.disabled = !this.entry.prev;
    u.clear.disabled = !info || !(this.entry.points.length || this.entry.box);
  }

  /** An overlay canvas (and its input-frame 0/1 mask) of one model's result, cached in this[cacheName]. */
  overlay(cacheName, result, idx, preview, style) {
    const c = this[cacheName];
    if (c.key === result && c.idx === idx && c.preview === preview && c.style === style) return c;
    const { canvas, mask } = this.overlayCanvas(result, idx, preview, style);
    this[cacheName] = { key: result, idx, preview, style, canvas, mask };
    return this[cacheName];
  }

  overlayCanvas(result, idx, preview, style = "mobilesam") {
    const { input_width: iw, input_height: ih } = this.info;
    const logits = upscaleLowRes(result.lowRes, idx, ih, iw);
    const mask = new Uint8Array(logits.length);
    for (let i = 0; i < logits.length; i++) mask[i] = logits[i] > 0 ? 1 : 0;
    const cssW = this.seg?.cssW || iw;
    let radius = Math.max(1, Math.round((1.5 * iw) / Math.max(1, cssW)));
    let fill = preview ? PREVIEW_FILL : FILL, edge = preview ? PREVIEW_EDGE : EDGE;
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

  renderPaneLabels(side) {
    const u = this.u;
    const swatch = (cls) => el("span", { class: "msam-swatch " + cls });
    const a = modelLabel(this.info?.model || "vit_t"), b = this.cmp.label;
    if (side) {
      u.labelA.replaceChildren(swatch("msam-swatch-a"), document.createTextNode(a));
      u.labelB.replaceChildren(swatch("msam-swatch-b"), document.createTextNode(b));
    } else {
      u.labelA.replaceChildren(swatch("msam-swatch-a"), document.createTextNode(`${a} (filled)  `),
        swatch("msam-swatch-b"), document.createTextNode(`${b} (outlined)`));
    }
  }

  // ------------------------------------------------------------------ compare numbers

  /** Full-size mask of the committed prompts by the comparison model (as fullMask()), or null. */
  cmpFullMask() {
    const info = this.info;
    const e = this.entry;
    const r = this.cmpResultOf(e);
    if (!info || !r || !(e.points.length || e.box)) return null;
    const idx = selectIndex(e.maskMode, e.points, e.box, r.scores);
    if (this._cmpFullCache.key === r && this._cmpFullCache.idx === idx) return this._cmpFullCache.value;
    const m = postprocessMask(r.lowRes, idx, info.input_height, info.input_width, info.height, info.width);
    const value = { ...m, index: idx, score: r.scores[idx] };
    this._cmpFullCache = { key: r, idx, value };
    return value;
  }

  /**
   * The committed comparison at full size, exactly as the PyTorch predictors would give it:
   * {iou, a: {area, score, index}, b: {...}, summary}, or null (no prompts, or a decode missing).
   */
  compareStats() {
    const e = this.entry;
    if (!this.cmp || !this.info || !e.result || !(e.points.length || e.box) || !this.cmpResultOf(e)) return null;
    const a = this.fullMask(), b = this.cmpFullMask();
    if (!a || !b) return null;
    if (this._cmpStats.a === a && this._cmpStats.b === b) return this._cmpStats.value;
    const num = (m) => ({ area: m.area, score: m.score, index: m.index });
    const value = { iou: maskIoU(a.mask, b.mask), a: num(a), b: num(b) };
    value.summary = this.summaryLine(value, e);
    this._cmpStats = { a, b, value };
    return value;
  }

  /** The summary row (the compare API's "summary" has the same form). */
  summaryLine(st, e) {
    const info = this.info, cmp = this.cmp;
    const total = Math.max(1, info.width * info.height);
    const model = (label, m) => `${label} ${fmtInt(m.area)} px (${((100 * m.area) / total).toFixed(1)}%), score ${Number(m.score).toFixed(3)}`;
    const la = modelLabel(info.model || "vit_t");
    return `${info.width}×${info.height} image · ${describePrompts(e.points, e.box)} · ${model(la, st.a)} · `
      + `${model(cmp.label, st.b)} · IoU ${st.iou.toFixed(3)} · encoder ${la} ${fmtInt(Number(info.encode_ms) || 0)} ms, `
      + `${cmp.label} ${fmtInt(Number(cmp.encodeMs) || 0)} ms (this server)`;
  }

  renderCompare(s, idx, cmpIdx, ovA, ovB) {
    const c = this.u.cmp;
    const cmp = this.cmp;
    c.panel.hidden = !cmp;
    if (!cmp) return;
    const info = this.info;
    c.side.classList.toggle("msam-active", this.cmpView === "side");
    c.overlay.classList.toggle("msam-active", this.cmpView === "overlay");
    c.headA.replaceChildren(el("span", { class: "msam-swatch msam-swatch-a" }),
      document.createTextNode(modelLabel(info?.model || "vit_t")));
    c.headB.replaceChildren(el("span", { class: "msam-swatch msam-swatch-b" }), document.createTextNode(cmp.label));
    c.state.textContent = cmp.error ? `${cmp.label} unavailable: ${cmp.error}`
      : !cmp.ready ? `Loading ${cmp.label}'s embedding and decoder…` : "";
    c.state.className = "msam-cmp-state" + (cmp.error ? " msam-error" : "");
    const hasPrompts = s.points.length || s.box;
    // on screen: the committed masks at full size (exact), or a hover preview at the encoder's resolution
    let iou = null, areaA = null, areaB = null;
    if (hasPrompts && ovA && ovB && s.preview) {
      const scale = (info.width * info.height) / Math.max(1, info.input_width * info.input_height);
      iou = maskIoU(ovA.mask, ovB.mask);
      areaA = maskArea(ovA.mask) * scale;
      areaB = maskArea(ovB.mask) * scale;
    }
    const st = this.compareStats();
    if (!s.preview && st) {
      iou = st.iou;
      areaA = st.a.area;
      areaB = st.b.area;
    }
    c.iou.textContent = iou == null ? "–" : iou.toFixed(3);
    c.iouNote.textContent = iou == null ? (hasPrompts ? "" : "(add a point or a box)") : s.preview ? "(preview)" : "";
    const total = info ? Math.max(1, info.width * info.height) : 1;
    const area = (v, approx) => (v == null ? "–" : `${approx ? "≈" : ""}${fmtInt(v)} px (${((100 * v) / total).toFixed(1)}%)`);
    const score = (r, k) => (r && k >= 0 ? `${r.scores[k].toFixed(3)}${k > 0 ? ` (#${k})` : ""}` : "–");
    const set = (key, a, b) => { c.cells[key][0].textContent = a; c.cells[key][1].textContent = b; };
    set("area", area(areaA, s.preview), area(areaB, s.preview));
    set("score", score(s.result, idx), score(s.cmpResult, cmpIdx));
    set("encode", fmtMs(info?.encode_ms), fmtMs(cmp.encodeMs));
    set("params", fmtParams(Number(info?.mobilesam_params)), fmtParams(Number(cmp.params)));
    const dms = (v) => (v == null ? "–" : `${v.toFixed(1)} ms`);
    set("decode", dms(this.lastDecodeMs), dms(this.cmpLastDecodeMs));
    const summary = st ? st.summary : "";
    if (c.summary.value !== summary) c.summary.value = summary;
    c.copy.disabled = !summary;
  }

  async copySummary() {
    const st = this.compareStats();
    if (!st) return;
    const c = this.u.cmp;
    c.summary.value = st.summary;
    c.summary.focus();
    c.summary.select();
    try {
      await navigator.clipboard.writeText(st.summary);
      this.setStatus("Summary copied.");
    } catch {
      this.setStatus("Summary ready to copy (the clipboard is not available here).");
    }
  }

  renderThumbs(s, idx) {
    const u = this.u;
    const info = this.info;
    const scores = s.result && (s.points.length || s.box) ? s.result.scores : null;
    u.auto.classList.toggle("msam-active", this.entry.maskMode === "auto");
    u.auto.textContent = this.entry.maskMode === "auto" && idx >= 0 ? `Auto (${idx === 0 ? "single" : "#" + idx})` : "Auto";
    for (let k = 1; k <= 3; k++) {
      const t = u.thumbs[k - 1];
      t.button.disabled = !scores;
      t.button.classList.toggle("msam-active", idx === k);
      t.button.classList.toggle("msam-chosen", this.entry.maskMode === k);
      t.score.textContent = scores ? `#${k} ${scores[k].toFixed(3)}` : `#${k}`;
      const key = scores ? s.result : null;
      if (t.key === key && t.imgKey === this.image) continue;
      t.key = key;
      t.imgKey = this.image;
      this.drawThumb(t.canvas, key ? s.result.lowRes : null, k, info);
    }
  }

  drawThumb(canvas, lowRes, k, info) {
    const ctx = canvas.getContext("2d");
    const tw = 84, th = 64;
    canvas.width = tw;
    canvas.height = th;
    ctx.clearRect(0, 0, tw, th);
    if (!info) return;
    const scale = Math.min(tw / info.width, th / info.height);
    const w = Math.max(1, Math.round(info.width * scale)), h = Math.max(1, Math.round(info.height * scale));
    const ox = (tw - w) / 2, oy = (th - h) / 2;
    const small = this.smallImage();
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

  /** The image scaled down once for the thumbnails. */
  smallImage() {
    if (!this.image || !this.info) return null;
    if (this._small && this._small.image === this.image) return this._small.canvas;
    const s = Math.min(1, 168 / this.info.width, 128 / this.info.height);
    const c = document.createElement("canvas");
    c.width = Math.max(1, Math.round(this.info.width * s));
    c.height = Math.max(1, Math.round(this.info.height * s));
    const ctx = c.getContext("2d");
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(this.image, 0, 0, c.width, c.height);
    this._small = { image: this.image, canvas: c };
    return c;
  }

  renderInfo(s = this.shown(), idx = -1) {
    if (!this.u) return;
    const parts = [];
    if (this.lastDecodeMs != null) parts.push(`decode ${this.lastDecodeMs.toFixed(1)} ms`);
    if (idx >= 0 && s.result) {
      const which = idx === 0 ? "single-mask output" : `candidate #${idx}`;
      parts.push(`${s.preview ? "preview " : ""}${which}, score ${s.result.scores[idx].toFixed(3)}`);
    }
    if (this.info && this.info.encode_ms != null) parts.push(`encoder ${Number(this.info.encode_ms).toFixed(0)} ms (server)`);
    const o = getOrtInfo();
    if (o && this.model?.session) {
      parts.push(`onnxruntime-web ${o.version}, ${this.model.provider}, ${o.threads} thread${o.threads > 1 ? "s" : ""}`);
    }
    this.u.info.textContent = parts.join(" · ");
  }

  // ------------------------------------------------------------------ exports

  /** Full-size mask of the committed prompts: {mask, width, height, area, stabilityScore, index, score}. */
  fullMask() {
    const info = this.info;
    const e = this.entry;
    if (!info) return null;
    if (!e.result || !(e.points.length || e.box)) {
      return { mask: new Uint8Array(info.width * info.height), width: info.width, height: info.height,
        area: 0, stabilityScore: 0, index: -1, score: 0 };
    }
    const idx = selectIndex(e.maskMode, e.points, e.box, e.result.scores);
    if (this._fullCache.key === e.result && this._fullCache.idx === idx) return this._fullCache.value;
    const m = postprocessMask(e.result.lowRes, idx, info.input_height, info.input_width, info.height, info.width);
    const value = { ...m, index: idx, score: e.result.scores[idx] };
    this._fullCache = { key: e.result, idx, value };
    return value;
  }

  maskCanvas() {
    const m = this.fullMask();
    if (!m) return null;
    const c = document.createElement("canvas");
    c.width = m.width;
    c.height = m.height;
    c.getContext("2d").putImageData(new ImageData(maskToGrayRGBA(m.mask), m.width, m.height), 0, 0);
    return c;
  }

  async exportMask() {
    try {
      const c = this.maskCanvas();
      if (!c) return;
      downloadBlob(await canvasToBlob(c), `${safeName(this.info.image_id)}_mask.png`);
    } catch (e) {
      this.setStatus("Export failed: " + errText(e), "error");
    }
  }

  async exportCutout() {
    try {
      const m = this.fullMask();
      if (!m || !this.image) return;
      const c = document.createElement("canvas");
      c.width = m.width;
      c.height = m.height;
      const ctx = c.getContext("2d", { willReadFrequently: true });
      ctx.drawImage(this.image, 0, 0, m.width, m.height);
      const d = ctx.getImageData(0, 0, m.width, m.height);
      applyCutout(d.data, m.mask);
      ctx.putImageData(d, 0, 0);
      downloadBlob(await canvasToBlob(c), `${safeName(this.info.image_id)}_cutout.png`);
    } catch (e) {
      this.setStatus("Export failed: " + errText(e), "error");
    }
  }

  rleRecord() {
    const m = this.fullMask();
    if (!m) return null;
    return sa1bRecord({
      mask: m.mask, width: m.width, height: m.height, area: m.area, score: m.score,
      stabilityScore: m.index >= 0 ? m.stabilityScore : undefined,
      points: this.entry.points, box: this.entry.box,
    });
  }

  exportRLE() {
    try {
      const rec = this.rleRecord();
      if (!rec) return;
      const blob = new Blob([JSON.stringify(rec)], { type: "application/json" });
      downloadBlob(blob, `${safeName(this.info.image_id)}_mask.json`);
    } catch (e) {
      this.setStatus("Export failed: " + errText(e), "error");
    }
  }

  shareLink() {
    if (!this.info) return null;
    return location.origin + location.pathname + formatPrompts({
      imageId: this.info.image_id, points: this.entry.points, box: this.entry.box, mask: this.entry.maskMode,
      compare: this.cmp ? this.cmp.model : null, // reopening it re-enters compare mode
    });
  }

  async copyLink() {
    const link = this.shareLink();
    if (!link) return;
    this.u.link.value = link;
    this.u.link.focus();
    this.u.link.select();
    try {
      await navigator.clipboard.writeText(link);
      this.setStatus("Link copied.");
    } catch {
      this.setStatus("Link ready to copy (the clipboard is not available here).");
    }
  }

  // ------------------------------------------------------------------ keyboard

  onKey(e) {
    if (!this.info || !this.ui || !this.ui.isConnected) return;
    const t = e.target;
    const editing = t && t !== this.seg?.canvas && !t.readOnly
      && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
    if (editing) return;
    if (this.ui.offsetParent === null) return; // hidden tab
    if ((e.ctrlKey || e.metaKey) && !e.shiftKey && (e.key === "z" || e.key === "Z")) {
      e.preventDefault();
      this.undo();
    } else if (e.key === "Escape") {
      this.clear();
    }
  }

  // ------------------------------------------------------------------ state

  getState() {
    const e = this.entry;
    const has = !!(e.points.length || e.box);
    const idx = e.result && has ? selectIndex(e.maskMode, e.points, e.box, e.result.scores) : -1;
    return {
      imageId: this.info ? this.info.image_id : null,
      points: e.points.map((p) => ({ ...p })),
      box: e.box ? { ...e.box } : null,
      maskMode: e.maskMode,
      selectedIndex: idx,
      multimask: isMultimask(e.points, e.box),
      scores: e.result && has ? Array.from(e.result.scores) : null,
      refine: this.refine,
      lastDecodeMs: this.lastDecodeMs,
      decodeCount: this.decodeCount,
      ready: this.ready,
      idle: this.isIdle(),
      error: this.status.kind === "error" ? this.status.text : null,
      ort: getOrtInfo() ? { ...getOrtInfo(), provider: this.model?.provider || null } : null,
      compare: this.compareState(),
    };
  }

  /** Compare mode's state (null outside it); numbers are the committed prompts' at full size. */
  compareState() {
    const cmp = this.cmp;
    if (!cmp) return null;
    const e = this.entry;
    const r = this.cmpResultOf(e);
    const has = !!(e.points.length || e.box);
    const st = this.compareStats();
    return {
      model: cmp.model,
      label: cmp.label,
      ready: this.cmpActive(),
      error: cmp.error,
      view: this.cmpView,
      iou: st ? st.iou : null,
      scores: r && has ? Array.from(r.scores) : null,
      selectedIndex: r && has ? selectIndex(e.maskMode, e.points, e.box, r.scores) : -1,
      score: st ? st.b.score : null,
      area: st ? st.b.area : null,
      mobilesam: st ? st.a : null,
      encodeMs: { mobilesam: this.info ? this.info.encode_ms : null, sam: cmp.encodeMs },
      params: { mobilesam: this.info ? this.info.mobilesam_params ?? null : null, sam: cmp.params },
      lastDecodeMs: this.cmpLastDecodeMs,
      decodeCount: this.cmpDecodeCount,
      summary: st ? st.summary : null,
    };
  }
}

// -------------------------------------------------------------------- bootstrap

const app = new MsamApp();

function safe(fn) {
  return (...args) => {
    try {
      return fn(...args);
    } catch (e) {
      app.setStatus(errText(e), "error");
      return null;
    }
  };
}

const api = {
  /** Load an image: info from the server (object or JSON string; null/{} clears). */
  setImage: (info, prompts) => app.setImage(info, prompts).catch((e) => { app.setStatus(errText(e), "error"); return false; }),
  getState: safe(() => app.getState()),
  parsePrompts: safe((search) => parsePrompts(search ?? location.search)),
  formatPrompts: safe((p) => formatPrompts(p)),
  whenIdle: () => app.whenIdle().catch(() => {}),
  /** Full-size mask of the committed prompts as a PNG data URL (null without image). */
  getMaskDataURL: safe(() => app.maskCanvas()?.toDataURL("image/png") ?? null),
  /** {width, height, data: Uint8Array 0/1 row-major} of the full-size committed mask. */
  getMaskBits: safe(() => {
    const m = app.fullMask();
    return m ? { width: m.width, height: m.height, data: m.mask } : null;
  }),
  /** Same, with data as base64 of the 0/1 bytes (cheap to pass out of the page). */
  getMaskBitsBase64: safe(() => {
    const m = app.fullMask();
    if (!m) return null;
    let s = "";
    for (let i = 0; i < m.mask.length; i += 0x8000) s += String.fromCharCode.apply(null, m.mask.subarray(i, i + 0x8000));
    return { width: m.width, height: m.height, area: m.area, data: btoa(s) };
  }),
  /** Compare mode: the comparison model's full-size committed mask, as getMaskBitsBase64 (null outside it). */
  getCompareMaskBitsBase64: safe(() => {
    const m = app.cmpFullMask();
    if (!m) return null;
    let s = "";
    for (let i = 0; i < m.mask.length; i += 0x8000) s += String.fromCharCode.apply(null, m.mask.subarray(i, i + 0x8000));
    return { width: m.width, height: m.height, area: m.area, data: btoa(s) };
  }),
  /** Compare mode's view: "side" (two images) or "overlay" (one image, two colours). */
  setCompareView: safe((view) => app.setCompareView(view)),
  /** The SA-1B / COCO RLE record that "Download COCO RLE JSON" saves. */
  getRLE: safe(() => app.rleRecord()),
  getShareLink: safe(() => app.shareLink()),
  // prompt editing (what the mouse does), for scripts and tests
  addPoint: safe((x, y, label = 1) => app.addPoint(x, y, label)),
  setBox: safe((x0, y0, x1, y1) => app.setBox(typeof x0 === "object" ? x0 : { x0, y0, x1, y1 })),
  setPrompts: (p) => app.applyPrompts(typeof p === "string" ? parsePrompts(p) : p || {}).catch((e) => app.setStatus(errText(e), "error")),
  undo: safe(() => app.undo()),
  clear: safe(() => app.clear()),
  selectMask: safe((mode) => app.selectMask(mode)),
  setRefine: safe((on) => { app.refine = !!on; if (app.u) app.u.refine.checked = app.refine; }),
  setHoverPreview: safe((on) => app.setHoverEnabled(on)),
  /** Low-res logits [4*256*256] and scores [4] of the committed decode (copies), or null. */
  getLowRes: safe(() => (app.entry.result ? { lowRes: app.entry.result.lowRes.slice(), scores: Array.from(app.entry.result.scores) } : null)),
  attach: safe(() => app.attach()),
  _app: app,
};

if (typeof window !== "undefined") {
  // Calls made before this module ran (a page may define a stub that queues them:
  // window.msam = {_queue: [], setImage(...a) { this._queue.push(["setImage", a]); }}) are replayed.
  const queued = (window.msam && Array.isArray(window.msam._queue) && window.msam._queue) || [];
  window.msam = Object.assign(window.msam || {}, api);
  delete window.msam._queue;
  for (const [name, args] of queued) {
    try { if (typeof api[name] === "function") api[name](...(args || [])); } catch (e) { console.warn("[msam]", e); }
  }
  const styleHref = new URL("./style.css", import.meta.url).href;
  if (!document.querySelector(`link[href="${styleHref}"]`)) {
    document.head.appendChild(el("link", { rel: "stylesheet", href: styleHref }));
  }
  const tryAttach = () => {
    try { app.attach(); } catch (e) { console.warn("[msam] attach failed", e); }
  };
  let scheduled = false;
  const mo = new MutationObserver(() => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => { scheduled = false; tryAttach(); });
  });
  const startObserving = () => {
    mo.observe(document.documentElement, { childList: true, subtree: true });
    tryAttach();
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startObserving);
  else startObserving();
  setInterval(tryAttach, 1000); // in case a re-render slips past the observer
  document.addEventListener("keydown", (e) => { try { app.onKey(e); } catch { /* ignore */ } });
  if (window.MSAM_CONFIG && window.MSAM_CONFIG.decoderUrl) {
    try { app.ensureModel(); } catch (e) { console.warn("[msam]", e); }
  }
  window.dispatchEvent(new CustomEvent("msam-ready"));
}
