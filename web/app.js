// MobileSAM browser demo: the app. One MsamApp holds the state (image info and embedding,
// the prompt history, the preview, compare mode's fields) and does the core work: loading an
// image, editing prompts (points, box, undo, clear, mask choice, hover/drag previews),
// queueing decodes (scheduler.js) and drawing the result (ui.js, compare.js). Nothing in
// here throws to the page: errors go to the status line. main.js creates it and exposes it
// as window.msam.

import { MaskModel, getOrtInfo } from "./decoder.js";
import { selectIndex, parsePrompts, clampPrompts, isMultimask } from "./prompts.js";
import { fetchEmbeddingBytes } from "./embedding.js";
import { setCompare, dropCompare, cmpResultOf, renderCompare, compareState } from "./compare.js";
import { buildUI, overlay, renderPaneLabels, renderThumbs, renderInfo } from "./ui.js";
import { needsDecode, pump } from "./scheduler.js";
import { getConfig, errText, normalizeInfo, loadPhoto } from "./util.js";

// A prompt state. Each edit (point, box, clear) makes a new one linked to the previous
// (undo goes back along `prev`); its decoder result is cached on it.
let ENTRY_ID = 0;
// In compare mode `cmp` holds the comparison model's decode: {key, result} or {key, error},
// key = that model's embedding URL (a result for another model or image is stale).
/** Whether server info names an image (not null / "{}" / invalid). */
function hasImage(infoArg) {
  try {
    return normalizeInfo(infoArg) != null;
  } catch {
    return false;
  }
}

function makeEntry(prev, points, box, maskMode = "auto", refine = false) {
  return { id: ++ENTRY_ID, prev, points, box, maskMode, refine, result: null, error: null, pending: false, cmp: null };
}

export class MsamApp {
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
    this.userChoseImage = false; // a share link's late restore must not replace the user's choice
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
          renderInfo(this);
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
    if (this.seg2) this.seg2.destroy();
    this.root = root;
    buildUI(this, root);
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

  setStatus(text, kind = "info") {
    this.status = { text: text || "", kind };
    if (kind === "error" && text) console.warn("[msam]", text);
    if (!this.u) return;
    this.u.status.textContent = this.status.text;
    this.u.status.className = "msam-status msam-" + kind;
  }

  // ------------------------------------------------------------------ image

  /** Show the image of `infoArg` (server info; null clears). `fromLink`: the image of the page's share
   * link, restored by the server as the page opened; it is dropped if the user has chosen an image
   * meanwhile (the restore of an image no longer cached can take longer than a new upload). */
  setImage(infoArg, prompts, { fromLink = false } = {}) {
    if (fromLink && this.userChoseImage) return Promise.resolve(false);
    if (!fromLink && hasImage(infoArg)) this.userChoseImage = true;
    // Gradio may hand over the same image info twice in a row: the load in flight goes on.
    const key = typeof infoArg === "string" ? infoArg : JSON.stringify(infoArg ?? null);
    const inFlight = this._inFlight;
    if (inFlight && inFlight.key === key && prompts == null && inFlight.token === this.loadToken) return inFlight.promise;
    const token = ++this.loadToken;
    const promise = this._loadImage(infoArg, prompts, token);
    this._inFlight = { key, token, promise };
    promise.finally(() => { if (this._inFlight?.promise === promise) this._inFlight = null; });
    return promise;
  }

  async _loadImage(infoArg, prompts, token) {
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
      await setCompare(this, info.compare, token);
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
    dropCompare(this);
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

    // The photo and the embedding load at once; prompts need only the embedding, so the decoder
    // gets it (and starts its per-image work) as soon as it arrives, whichever comes first.
    const imgP = loadPhoto(info);
    const embP = fetchEmbeddingBytes(info.embedding_url); // decoded in the decoder's worker
    embP.catch(() => {});
    const shownP = imgP.then((img) => {
      if (stale()) return;
      this.image = img;
      this.seg?.setImage(img, info.width, info.height);
      this.seg2?.setImage(img, info.width, info.height);
      this.render();
    }, (e) => {
      if (!stale()) this.setStatus(errText(e), "error");
    });
    // the comparison model's embedding and decoder load meanwhile
    const cmpP = setCompare(this, info.compare, token);
    let bytes;
    try {
      bytes = await embP;
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
    model.setEmbedding(bytes, info).catch((e) => { // bytes that are not an embedding
      if (stale()) return;
      this.ready = false;
      this.setStatus(errText(e), "error");
      this.render();
    });
    this.ready = true;
    if (this.status.kind !== "error") this.setStatus("");
    this.render();
    await shownP;
    if (stale()) return;
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

  /** Replace the prompts (points, box, mask choice) in one decode, or, for prompts with a refinement
   * history (`p.refine`, from a share link: see prompts.js refineSteps), replay that history with
   * "refine with previous mask" on, so that the mask is the one the link was made from. */
  async applyPrompts(p) {
    if (!this.info) return;
    const c = clampPrompts({ points: p.points || [], box: p.box || null }, this.info.width, this.info.height);
    const mode = p.mask === 1 || p.mask === 2 || p.mask === 3 ? p.mask : "auto";
    const points = c.points.map((pt) => ({ x: pt.x, y: pt.y, label: pt.label === 0 ? 0 : 1 }));
    const steps = Array.isArray(p.refine) ? p.refine : [];
    steps.forEach((step, i) => this.commit(points.slice(0, step.points), step.box ? c.box : null, step.mask, i > 0));
    this.commit(points, c.box, mode, steps.length > 0);
    if (steps.length) this.setRefine(true); // further clicks go on refining, as on the page the link came from
    await this.decodesIdle();
  }

  setRefine(on) {
    this.refine = !!on;
    if (this.u) this.u.refine.checked = this.refine;
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
      pump(this);
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
    pump(this);
  }

  // ------------------------------------------------------------------ scheduling

  /** Queue an entry's missing decodes (unless already queued or running). */
  ensureDecoded(entry) {
    if (!entry || entry.pending || entry.cancelled || !this.ready || !needsDecode(this, entry)) return;
    entry.pending = true;
    this.commits.push(entry);
    pump(this);
  }

  isIdle() {
    return !this.running && !this.commits.length && !this.previewReq;
  }

  /** Resolves when no decode is in flight or pending. */
  decodesIdle() {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((r) => { this.idleWaiters.push(r); pump(this); });
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
    return { result: e.result, cmpResult: cmpResultOf(this, e), points: e.points, box: e.box, mode: e.maskMode,
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
      ovA = overlay(this, "_overlayCache", s.result, idx, s.preview, "mobilesam");
    }
    if (info && comparing && s.cmpResult && hasPrompts) {
      cmpIdx = selectIndex(s.mode, s.points, s.box, s.cmpResult.scores);
      ovB = overlay(this, "_cmpOverlayCache", s.cmpResult, cmpIdx, s.preview, side ? "sam" : "sam-outline");
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
    if (comparing) renderPaneLabels(this, side);
    renderThumbs(this, s, idx);
    renderInfo(this, s, idx);
    renderCompare(this, s, idx, cmpIdx, ovA, ovB);
    const committed = !!(this.entry.result && (this.entry.points.length || this.entry.box));
    u.dlMask.disabled = u.dlCut.disabled = u.dlRle.disabled = !committed || !info;
    u.dlCut.disabled = u.dlCut.disabled || !this.image;
    u.copy.disabled = !info;
    u.undo.disabled = !this.entry.prev;
    u.clear.disabled = !info || !(this.entry.points.length || this.entry.box);
  }

  // ------------------------------------------------------------------ keyboard

  /** Ctrl+Z / Esc, when meant for the prompts: pressed on the page itself or in this UI, not in
   * another widget (a text field, the model dropdown, an image's fullscreen view) or already used. */
  onKey(e) {
    if (!this.info || !this.ui || !this.ui.isConnected || e.defaultPrevented) return;
    const t = e.target;
    const onPage = !t || t === document.body || t === document.documentElement || this.ui.contains(t);
    const editing = t && (t.isContentEditable || /^(TEXTAREA|SELECT)$/.test(t.tagName)
      || (t.tagName === "INPUT" && !/^(checkbox|radio|button)$/.test(t.type)));
    if (!onPage || editing) return;
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
      compare: compareState(this),
    };
  }
}
