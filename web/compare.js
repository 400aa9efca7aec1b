// MobileSAM browser demo: compare mode. When the image info has `compare` ({model, label,
// embedding_url, decoder_url, encode_ms, params}), a second MaskModel runs the original SAM's
// decoder on its own embedding for every prompt; this module holds what is specific to it:
// entering/leaving it, its decode bookkeeping, the full-size numbers (IoU, areas, scores),
// the summary row, its panel and the getState().compare object.
//
// Its state lives on the app: cmp ({model, label, key, decoderUrl, encodeMs, params, ready,
// error}), cmpModel, cmpView, cmpDecodeCount, cmpLastDecodeMs and the _cmp* caches; each
// prompt entry's `cmp` holds the comparison model's decode ({key, result} or {key, error}).

import { MaskModel } from "./decoder.js";
import { postprocessMask, maskArea, LOW_RES } from "./masks.js";
import { selectIndex } from "./prompts.js";
import { fetchEmbeddingBytes } from "./embedding.js";
import { fullMask } from "./exports.js";
import { el, errText, modelLabel, fmtInt, fmtMs, fmtParams, describePrompts, maskIoU } from "./util.js";

/** The comparison model's decoder session (one MaskModel, reloaded when the model changes). */
export function ensureCmpModel(app) {
  if (!app.cmpModel) app.cmpModel = new MaskModel(app.config);
  return app.cmpModel;
}

/** Compare mode with the comparison model's embedding and decoder in place. */
export function cmpActive(app) {
  return !!(app.cmp && app.cmp.ready && app.cmpModel && app.cmpModel.ready);
}

/** Compare mode's numbers: IoU, a table per model, the summary row to copy, the view switch. */
export function buildComparePanel(app, btn) {
  const c = {};
  c.iou = el("strong", { class: "msam-cmp-iou", text: "–" });
  c.iouNote = el("span", { class: "msam-cmp-note" });
  c.side = btn("Side by side", "MobileSAM's mask and SAM's on two copies of the image", () => app.setCompareView("side"));
  c.overlay = btn("Overlay", "Both masks on one image: MobileSAM blue, SAM orange", () => app.setCompareView("overlay"));
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
  c.copy = btn("Copy summary", "Copy this comparison as one line of text", () => copySummary(app));
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

/** Leave compare mode (the comparison model's embedding is dropped; its decoder stays loaded). */
export function dropCompare(app) {
  app.cmp = null;
  app.cmpModel?.setEmbedding(null);
  app._cmpOverlayCache = { key: null, canvas: null };
  app._cmpFullCache = { key: null, value: null };
  app._cmpStats = { key: null, value: null };
  if (app.preview) app.preview.cmp = null;
}

/**
 * Enter, change or leave compare mode for the current image: `c` is info.compare or null.
 * Fetches the comparison model's embedding and loads its decoder, then decodes the current
 * prompts with it. Errors go to the status line; MobileSAM keeps working.
 */
export async function setCompare(app, c, token) {
  if (!c) {
    if (app.cmp) {
      dropCompare(app);
      app.render();
    }
    return;
  }
  if (app.cmp && app.cmp.key === c.embedding_url && app.cmp.decoderUrl === c.decoder_url) {
    Object.assign(app.cmp, { encodeMs: c.encode_ms, params: c.params, label: c.label });
    app.render();
    return;
  }
  dropCompare(app);
  const cmp = {
    model: c.model, label: c.label || modelLabel(c.model), key: c.embedding_url, decoderUrl: c.decoder_url,
    encodeMs: c.encode_ms, params: c.params, ready: false, error: null,
  };
  app.cmp = cmp;
  const stale = () => token !== app.loadToken || app.cmp !== cmp;
  const cm = ensureCmpModel(app);
  app.render();
  try {
    const [bytes] = await Promise.all([fetchEmbeddingBytes(c.embedding_url), cm.load(c.decoder_url)]);
    if (stale()) return;
    cm.setEmbedding(bytes, app.info).catch((e) => { // bytes that are not an embedding
      if (stale()) return;
      cmp.ready = false;
      cmp.error = errText(e);
      app.setStatus(`${cmp.label}: ${cmp.error}`, "error");
      app.render();
    });
    cmp.ready = true;
  } catch (e) {
    if (stale()) return;
    cmp.error = errText(e);
    app.setStatus(`${cmp.label}: ${cmp.error}`, "error");
    app.render();
    return;
  }
  app.ensureDecoded(app.entry);
  await app.decodesIdle();
  app.render();
}

/** The comparison model's current result of an entry (null when none or stale). */
export function cmpResultOf(app, entry) {
  if (!entry || !entry.cmp || !app.cmp || entry.cmp.key !== app.cmp.key) return null;
  return entry.cmp.result || null;
}

/** The same for the comparison model's decode of `entry` (its own previous mask), or null. */
export function selectedCmpLowRes(app, entry) {
  const r = cmpResultOf(app, entry);
  if (!r) return null;
  const idx = selectIndex(entry.maskMode, entry.points, entry.box, r.scores);
  return r.lowRes.subarray(idx * LOW_RES * LOW_RES, (idx + 1) * LOW_RES * LOW_RES);
}

export function noteCmpDecode(app, res) {
  app.cmpDecodeCount++;
  app.cmpLastDecodeMs = res.ms;
}

/** Full-size mask of the committed prompts by the comparison model (as fullMask()), or null. */
export function cmpFullMask(app) {
  const info = app.info;
  const e = app.entry;
  const r = cmpResultOf(app, e);
  if (!info || !r || !(e.points.length || e.box)) return null;
  const idx = selectIndex(e.maskMode, e.points, e.box, r.scores);
  if (app._cmpFullCache.key === r && app._cmpFullCache.idx === idx) return app._cmpFullCache.value;
  const m = postprocessMask(r.lowRes, idx, info.input_height, info.input_width, info.height, info.width);
  const value = { ...m, index: idx, score: r.scores[idx] };
  app._cmpFullCache = { key: r, idx, value };
  return value;
}

/**
 * The committed comparison at full size, exactly as the PyTorch predictors would give it:
 * {iou, a: {area, score, index}, b: {...}, summary}, or null (no prompts, or a decode missing).
 */
export function compareStats(app) {
  const e = app.entry;
  if (!app.cmp || !app.info || !e.result || !(e.points.length || e.box) || !cmpResultOf(app, e)) return null;
  const a = fullMask(app), b = cmpFullMask(app);
  if (!a || !b) return null;
  if (app._cmpStats.a === a && app._cmpStats.b === b) return app._cmpStats.value;
  const num = (m) => ({ area: m.area, score: m.score, index: m.index });
  const value = { iou: maskIoU(a.mask, b.mask), a: num(a), b: num(b) };
  value.summary = summaryLine(app, value, e);
  app._cmpStats = { a, b, value };
  return value;
}

/** The summary row (the compare API's "summary" has the same form). */
export function summaryLine(app, st, e) {
  const info = app.info, cmp = app.cmp;
  const total = Math.max(1, info.width * info.height);
  const model = (label, m) => `${label} ${fmtInt(m.area)} px (${((100 * m.area) / total).toFixed(1)}%), score ${Number(m.score).toFixed(3)}`;
  const la = modelLabel(info.model || "vit_t");
  return `${info.width}×${info.height} image · ${describePrompts(e.points, e.box)} · ${model(la, st.a)} · `
    + `${model(cmp.label, st.b)} · IoU ${st.iou.toFixed(3)} · encoder ${la} ${fmtInt(Number(info.encode_ms) || 0)} ms, `
    + `${cmp.label} ${fmtInt(Number(cmp.encodeMs) || 0)} ms (this server)`;
}

export function renderCompare(app, s, idx, cmpIdx, ovA, ovB) {
  const c = app.u.cmp;
  const cmp = app.cmp;
  c.panel.hidden = !cmp;
  if (!cmp) return;
  const info = app.info;
  c.side.classList.toggle("msam-active", app.cmpView === "side");
  c.overlay.classList.toggle("msam-active", app.cmpView === "overlay");
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
  const st = compareStats(app);
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
  set("decode", dms(app.lastDecodeMs), dms(app.cmpLastDecodeMs));
  const summary = st ? st.summary : "";
  if (c.summary.value !== summary) c.summary.value = summary;
  c.copy.disabled = !summary;
}

export async function copySummary(app) {
  const st = compareStats(app);
  if (!st) return;
  const c = app.u.cmp;
  c.summary.value = st.summary;
  c.summary.focus();
  c.summary.select();
  try {
    await navigator.clipboard.writeText(st.summary);
    app.setStatus("Summary copied.");
  } catch {
    app.setStatus("Summary ready to copy (the clipboard is not available here).");
  }
}

/** Compare mode's state (null outside it); numbers are the committed prompts' at full size. */
export function compareState(app) {
  const cmp = app.cmp;
  if (!cmp) return null;
  const e = app.entry;
  const r = cmpResultOf(app, e);
  const has = !!(e.points.length || e.box);
  const st = compareStats(app);
  return {
    model: cmp.model,
    label: cmp.label,
    ready: cmpActive(app),
    error: cmp.error,
    view: app.cmpView,
    iou: st ? st.iou : null,
    scores: r && has ? Array.from(r.scores) : null,
    selectedIndex: r && has ? selectIndex(e.maskMode, e.points, e.box, r.scores) : -1,
    score: st ? st.b.score : null,
    area: st ? st.b.area : null,
    mobilesam: st ? st.a : null,
    encodeMs: { mobilesam: app.info ? app.info.encode_ms : null, sam: cmp.encodeMs },
    params: { mobilesam: app.info ? app.info.mobilesam_params ?? null : null, sam: cmp.params },
    lastDecodeMs: app.cmpLastDecodeMs,
    decodeCount: app.cmpDecodeCount,
    summary: st ? st.summary : null,
  };
}
