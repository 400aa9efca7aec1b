// MobileSAM browser demo: entry module.
//
// The server encodes the image and calls window.msam.setImage(info); the embedding is
// fetched once, and every click / box / hover runs the ONNX mask decoder here with
// onnxruntime-web (no server round trip per prompt). See README "The app" for the
// server contract. Nothing in here throws to the page: errors go to the status line.

import { MaskModel, getOrtInfo } from "./decoder.js";
import {
  upscaleLowRes, postprocessMask, overlayRGBA, maskToGrayRGBA,
  applyCutout, sa1bRecord, LOW_RES,
} from "./masks.js";
import { selectIndex, parsePrompts, formatPrompts, clampPrompts, isMultimask } from "./prompts.js";
import { SegCanvas } from "./canvas.js";
import { fetchEmbedding } from "./embedding.js";

const FILL = [30, 144, 255, 110];
const EDGE = [255, 255, 255, 235];
const PREVIEW_FILL = [30, 144, 255, 80];
const PREVIEW_EDGE = [255, 255, 255, 170];

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
  return {
    ...info,
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
function makeEntry(prev, points, box, maskMode = "auto", refine = false) {
  return { id: ++ENTRY_ID, prev, points, box, maskMode, refine, result: null, error: null, pending: false };
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
    this._fullCache = { key: null, value: null };
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

  // ------------------------------------------------------------------ DOM

  /** (Re)build the UI inside #msam-root when it appears or is re-rendered. */
  attach() {
    const root = document.getElementById("msam-root");
    if (!root) return;
    if (root === this.root && this.ui && root.contains(this.ui)) return;
    if (this.seg) this.seg.destroy();
    this.root = root;
    this.buildUI(root);
    this.ensureModel();
    if (this.image && this.info) {
      this.seg.setImage(this.image, this.info.width, this.info.height);
    } else {
      this.seg.setPlaceholder(this.info ? "Loading image…" : "Upload or pick an image to start");
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
    u.view = el("div", { class: "msam-view" });
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
    this.seg = new SegCanvas(u.view, {
      onPoint: (p) => this.addPoint(p.x, p.y, p.label),
      onBox: (b) => this.setBox(b),
      onHover: (p) => this.onHover(p),
      onDrag: (b) => this.onDrag(b),
    });
    this.seg.setHoverEnabled(this.hoverEnabled);
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
      // Same image again (Gradio may fire twice): keep the embedding.
      this.info = { ...this.info, ...info };
      if (prompts) await this.applyPrompts(prompts);
      this.render();
      return;
    }

    this.resetPrompts();
    this.ready = false;
    this.info = info;
    this.image = null;
    this._overlayCache = { key: null, canvas: null };
    this._fullCache = { key: null, value: null };
    const model = this.ensureModel();
    model.setEmbedding(null);
    if (!info) {
      this.seg?.setImage(null);
      this.seg?.setPlaceholder("Upload or pick an image to start");
      this.setStatus("");
      this.render();
      return;
    }
    this.seg?.setImage(null);
    this.seg?.setPlaceholder("Loading image…");
    this.setStatus("Loading image embedding…", "busy");

    const imgP = info.image_url ? loadImage(info.image_url) : Promise.reject(new Error("image info has no image_url"));
    const embP = fetchEmbedding(info.embedding_url);
    imgP.catch(() => {});
    embP.catch(() => {});
    try {
      const img = await imgP;
      if (stale()) return;
      this.image = img;
      this.seg?.setImage(img, info.width, info.height);
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

    let p = prompts || null;
    if (!p && this.urlPrompts && this.urlPrompts.imageId === info.image_id) {
      p = this.urlPrompts;
      this.urlPrompts = null; // only the first matching setImage
    }
    if (p) await this.applyPrompts(p);
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
    if (this.hoverPt) this.requestPreview();
    this.render();
  }

  setHoverEnabled(on) {
    this.hoverEnabled = !!on;
    if (this.u) this.u.hover.checked = this.hoverEnabled;
    this.seg?.setHoverEnabled(this.hoverEnabled);
    if (!this.hoverEnabled) this.onHover(null);
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
    const maskInput = entry.refine ? this.selectedLowRes(entry.prev) : null;
    const token = this.loadToken;
    try {
      const res = await this.model.decode({ points: entry.points, box: entry.box }, maskInput);
      if (token !== this.loadToken) return;
      entry.result = res;
      this.noteDecode(res);
    } catch (e) {
      if (token !== this.loadToken) return;
      entry.error = errText(e);
      this.setStatus("Decoder failed: " + entry.error, "error");
    } finally {
      entry.pending = false;
    }
    if (entry === this.entry) this.render();
  }

  async decodePreview(req) {
    // what a click here would give: the committed prompts plus this one
    const maskInput = this.refine ? this.selectedLowRes(req.entry) : null;
    const token = this.loadToken;
    try {
      const res = await this.model.decode({ points: req.points, box: req.box }, maskInput);
      if (token !== this.loadToken) return;
      this.noteDecode(res);
      if (req.entry === this.entry && (this.hoverPt || this.dragBox)) {
        this.preview = { entry: req.entry, result: res, points: req.points, box: req.box };
        this.render();
      } else {
        this.renderInfo();
      }
    } catch (e) {
      if (token !== this.loadToken) return;
      this.setStatus("Decoder failed: " + errText(e), "error");
    }
  }

  noteDecode(res) {
    this.decodeCount++;
    this.lastDecodeMs = res.ms;
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
      return { result: p.result, points: p.points, box: p.box, mode: "auto", preview: true };
    }
    return { result: e.result, points: e.points, box: e.box, mode: e.maskMode, preview: false };
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
    let idx = -1;
    if (info && s.result && hasPrompts) {
      idx = selectIndex(s.mode, s.points, s.box, s.result.scores);
      const key = s.result;
      if (this._overlayCache.key !== key || this._overlayCache.idx !== idx || this._overlayCache.preview !== s.preview) {
        this._overlayCache = { key, idx, preview: s.preview, canvas: this.overlayCanvas(s.result, idx, s.preview) };
      }
      this.seg.setOverlays([{ source: this._overlayCache.canvas }]);
    } else if (!(hasPrompts && this.entry.pending && !s.preview)) {
      // (while a click's decode is running the previous mask stays up)
      this.seg.setOverlays([]);
    }
    this.seg.setPrompts(this.entry.points, this.entry.box);
    this.renderThumbs(s, idx);
    this.renderInfo(s, idx);
    const committed = !!(this.entry.result && (this.entry.points.length || this.entry.box));
    u.dlMask.disabled = u.dlCut.disabled = u.dlRle.disabled = !committed || !info;
    u.dlCut.disabled = u.dlCut.disabled || !this.image;
    u.copy.disabled = !info;
    u.undo.disabled = !this.entry.prev;
    u.clear.disabled = !info || !(this.entry.points.length || this.entry.box);
  }

  overlayCanvas(result, idx, preview) {
    const { input_width: iw, input_height: ih } = this.info;
    const logits = upscaleLowRes(result.lowRes, idx, ih, iw);
    const mask = new Uint8Array(logits.length);
    for (let i = 0; i < logits.length; i++) mask[i] = logits[i] > 0 ? 1 : 0;
    const cssW = this.seg?.cssW || iw;
    const radius = Math.max(1, Math.round((1.5 * iw) / Math.max(1, cssW)));
    const px = overlayRGBA(mask, iw, ih, preview ? PREVIEW_FILL : FILL, preview ? PREVIEW_EDGE : EDGE, radius);
    const c = document.createElement("canvas");
    c.width = iw;
    c.height = ih;
    c.getContext("2d").putImageData(new ImageData(px, iw, ih), 0, 0);
    return c;
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
