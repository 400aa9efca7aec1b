// MobileSAM browser demo: compare mode's state. When the image info has `compare` ({model,
// label, embedding_url, decoder_url, encode_ms, params}), a second MaskModel runs the original
// SAM's decoder on its own embedding for every prompt. A CompareSession owns what is specific
// to it: that decoder, the comparison model's state for this image, the view ("side" or
// "overlay"), its decode counters, and the full-size numbers (IoU, areas, scores, the summary
// row) with their caches. Its panel is drawn by compare-panel.js; the decode queue
// (scheduler.js) runs its decodes and stores them on the prompt entries as `cmp`
// ({key, result} or {key, error}, key = the comparison model's embedding URL: a decode for
// another model or image is stale).

import { selectIndex } from "./prompts.js";
import { fetchEmbeddingBytes } from "./embedding.js";
import { FullMaskMemo } from "./exports.js";
import { selectedLowRes } from "./scheduler.js";
import { errText, modelLabel, fmtInt, describePrompts, maskIoU } from "./util.js";

const hasPrompts = (e) => !!(e.points.length || e.box);

export class CompareSession {
  /**
   * @param {object} deps
   * @param {() => object} deps.createModel makes the comparison model's decoder (a MaskModel), once
   * @param {(url: string) => Promise<Uint8Array>} [deps.fetchEmbedding] the embedding's bytes
   * @param {() => void} [deps.onChange] the state changed: redraw
   * @param {(text: string) => void} [deps.onError] the comparison model cannot be used
   * @param {() => void} [deps.onDrop] compare mode was left (or its model changes)
   */
  constructor({ createModel, fetchEmbedding = fetchEmbeddingBytes, onChange = () => {}, onError = () => {},
    onDrop = () => {} }) {
    this.deps = { createModel, fetchEmbedding, onChange, onError, onDrop };
    this.model = null; // the comparison model's decoder (kept loaded when compare mode is left)
    this.state = null; // {model, label, key, decoderUrl, encodeMs, params, ready, error}, null outside compare mode
    this.view = "side"; // "side" (two canvases) or "overlay" (one canvas, two colours)
    this.decodeCount = 0;
    this.lastDecodeMs = null;
    this._full = new FullMaskMemo();
    this._stats = { a: null, b: null, value: null };
    this._byEntry = new WeakMap(); // prompt entry -> {memo: FullMaskMemo, a, b, iou} (objectIoUs)
  }

  /** Whether compare mode is on (its model may still be loading). */
  get on() {
    return !!this.state;
  }

  /** The comparison model's embedding URL (its decodes' key), or null outside compare mode. */
  get key() {
    return this.state ? this.state.key : null;
  }

  get label() {
    return this.state ? this.state.label : null;
  }

  /** Compare mode with the comparison model's embedding and decoder in place. */
  active() {
    return !!(this.state && this.state.ready && this.model && this.model.ready);
  }

  ensureModel() {
    if (!this.model) this.model = this.deps.createModel();
    return this.model;
  }

  setView(view) {
    this.view = view === "overlay" ? "overlay" : "side";
  }

  /** Leave compare mode (the comparison model's embedding is dropped; its decoder stays loaded). */
  drop() {
    this.state = null;
    this.model?.setEmbedding(null);
    this._full.clear();
    this._stats = { a: null, b: null, value: null };
    this.deps.onDrop();
  }

  /**
   * Enter, change or leave compare mode for the image `info`: `c` is info.compare or null.
   * Fetches the comparison model's embedding and loads its decoder. Resolves true when the model
   * has just become ready (the caller then decodes the current prompts with it), else false.
   * `isStale()`: the image changed meanwhile. Errors go to onError; MobileSAM keeps working.
   */
  async set(c, info, isStale = () => false) {
    const { onChange, onError } = this.deps;
    if (!c) {
      if (this.state) {
        this.drop();
        onChange();
      }
      return false;
    }
    if (this.state && this.state.key === c.embedding_url && this.state.decoderUrl === c.decoder_url) {
      Object.assign(this.state, { encodeMs: c.encode_ms, params: c.params, label: c.label });
      onChange();
      return false;
    }
    this.drop();
    const cmp = {
      model: c.model, label: c.label || modelLabel(c.model), key: c.embedding_url, decoderUrl: c.decoder_url,
      encodeMs: c.encode_ms, params: c.params, ready: false, error: null,
    };
    this.state = cmp;
    const stale = () => isStale() || this.state !== cmp;
    const cm = this.ensureModel();
    onChange();
    try {
      const [bytes] = await Promise.all([this.deps.fetchEmbedding(c.embedding_url), cm.load(c.decoder_url)]);
      if (stale()) return false;
      cm.setEmbedding(bytes, info).catch((e) => { // bytes that are not an embedding
        if (stale()) return;
        cmp.ready = false;
        cmp.error = errText(e);
        onError(`${cmp.label}: ${cmp.error}`);
        onChange();
      });
      cmp.ready = true;
    } catch (e) {
      if (stale()) return false;
      cmp.error = errText(e);
      onError(`${cmp.label}: ${cmp.error}`);
      onChange();
      return false;
    }
    return true;
  }

  /** Decode prompts with the comparison model (see MaskModel.decode). */
  decode(prompts, maskInput) {
    return this.model.decode(prompts, maskInput);
  }

  noteDecode(res) {
    this.decodeCount++;
    this.lastDecodeMs = res.ms;
  }

  /** The comparison model's current result of an entry (null when none or stale). */
  resultOf(entry) {
    if (!entry || !entry.cmp || !this.state || entry.cmp.key !== this.state.key) return null;
    return entry.cmp.result || null;
  }

  /** The comparison model's low-res logits of the candidate `entry` shows (for refinement), or null. */
  selectedLowRes(entry) {
    return selectedLowRes(entry, this.resultOf(entry));
  }

  /** Full-size mask of an entry's prompts by the comparison model (as exports.js fullMask), or null. */
  fullMask(info, entry) {
    const r = this.resultOf(entry);
    if (!info || !r || !hasPrompts(entry)) return null;
    return this._full.get(info, r, selectIndex(entry.maskMode, entry.points, entry.box, r.scores));
  }

  /**
   * Each object's mask IoU, MobileSAM vs the comparison model, at full size: [{id, name, iou}] in
   * object order for the objects with prompts (iou null while a decode is missing). `objects`:
   * [{id, name, entry}]; `fullA(o)`: MobileSAM's full-size mask of object o (app.objectFullMask).
   */
  objectIoUs(info, objects, fullA) {
    if (!this.state || !info) return [];
    return objects.filter((o) => hasPrompts(o.entry)).map((o) => {
      const e = o.entry, r = this.resultOf(e);
      if (!e.result || !r) return { id: o.id, name: o.name, iou: null };
      let m = this._byEntry.get(e);
      if (!m) this._byEntry.set(e, m = { memo: new FullMaskMemo(), a: null, b: null, iou: null });
      const a = fullA(o), b = m.memo.get(info, r, selectIndex(e.maskMode, e.points, e.box, r.scores));
      if (m.a !== a || m.b !== b) Object.assign(m, { a, b, iou: maskIoU(a.mask, b.mask) });
      return { id: o.id, name: o.name, iou: m.iou };
    });
  }

  /**
   * The committed comparison at full size, exactly as the PyTorch predictors would give it:
   * {iou, a: {area, score, index}, b: {...}, summary}, or null (no prompts, or a decode missing).
   * `fullA()`: MobileSAM's full-size mask of `entry` (exports.js fullMask).
   */
  stats(info, entry, fullA) {
    if (!this.state || !info || !entry.result || !hasPrompts(entry) || !this.resultOf(entry)) return null;
    const a = fullA(), b = this.fullMask(info, entry);
    if (!a || !b) return null;
    if (this._stats.a === a && this._stats.b === b) return this._stats.value;
    const num = (m) => ({ area: m.area, score: m.score, index: m.index });
    const value = { iou: maskIoU(a.mask, b.mask), a: num(a), b: num(b) };
    value.summary = this.summaryLine(info, value, entry);
    this._stats = { a, b, value };
    return value;
  }

  /** The summary row (the compare API's "summary" has the same form). */
  summaryLine(info, st, entry) {
    const cmp = this.state;
    const total = Math.max(1, info.width * info.height);
    const model = (label, m) => `${label} ${fmtInt(m.area)} px (${((100 * m.area) / total).toFixed(1)}%), score ${Number(m.score).toFixed(3)}`;
    const la = modelLabel(info.model || "vit_t");
    return `${info.width}×${info.height} image · ${describePrompts(entry.points, entry.box)} · ${model(la, st.a)} · `
      + `${model(cmp.label, st.b)} · IoU ${st.iou.toFixed(3)} · encoder ${la} ${fmtInt(Number(info.encode_ms) || 0)} ms, `
      + `${cmp.label} ${fmtInt(Number(cmp.encodeMs) || 0)} ms (this server)`;
  }

  /** getState().compare: null outside compare mode; numbers are the committed prompts' at full size. */
  snapshot(info, entry, fullA) {
    const cmp = this.state;
    if (!cmp) return null;
    const r = this.resultOf(entry);
    const has = hasPrompts(entry);
    const st = this.stats(info, entry, fullA);
    return {
      model: cmp.model,
      label: cmp.label,
      ready: this.active(),
      error: cmp.error,
      view: this.view,
      iou: st ? st.iou : null,
      scores: r && has ? Array.from(r.scores) : null,
      selectedIndex: r && has ? selectIndex(entry.maskMode, entry.points, entry.box, r.scores) : -1,
      score: st ? st.b.score : null,
      area: st ? st.b.area : null,
      mobilesam: st ? st.a : null,
      encodeMs: { mobilesam: info ? info.encode_ms : null, sam: cmp.encodeMs },
      params: { mobilesam: info ? info.mobilesam_params ?? null : null, sam: cmp.params },
      lastDecodeMs: this.lastDecodeMs,
      decodeCount: this.decodeCount,
      summary: st ? st.summary : null,
    };
  }
}
