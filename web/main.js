// MobileSAM browser demo: entry module (the page loads /web/main.js).
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
//
// The modules: app.js (MsamApp: the image, the prompt history, image loading, prompt editing,
// render orchestration; it composes the objects below), scheduler.js (DecodeQueue: decode
// scheduling and hover/drag previews), compare.js (CompareSession: compare mode's state and
// numbers), ui.js (AppView: the DOM) with compare-panel.js (compare mode's panel), exports.js
// (full-size mask, downloads, share link), util.js (helpers); decoder.js, masks.js,
// prompts.js, canvas.js and embedding.js below them. This one creates the app, defines
// window.msam (replaying calls queued before it ran), and attaches the UI to #msam-root.

import { MsamApp } from "./app.js";
import { parsePrompts, formatPrompts } from "./prompts.js";
import { maskBitsBase64 } from "./exports.js";
import { blobToDataURL, errText, el } from "./util.js";
import { retireEarlyControl } from "./upload.js";

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
  /** Load an image: info from the server (object or JSON string; null/{} clears). options.fromLink:
   * the share link's image, ignored once the user has chosen one. */
  setImage: (info, prompts, options) => app.setImage(info, prompts, options).catch((e) => { app.setStatus(errText(e), "error"); return false; }),
  getState: safe(() => app.getState()),
  parsePrompts: safe((search) => parsePrompts(search ?? location.search)),
  formatPrompts: safe((p) => formatPrompts(p)),
  whenIdle: () => app.whenIdle().catch(() => {}),
  /** A photo (File) chosen before the upload box was there (web/early.js): as if chosen in it. */
  choosePhoto: safe((file) => app.upload.choose(file)),
  /** Full-size mask of the committed prompts as a grayscale PNG data URL (a Promise; null without image). */
  getMaskDataURL: () => app.maskPng().then((png) => (png ? blobToDataURL(png) : null)).catch((e) => {
    app.setStatus(errText(e), "error");
    return null;
  }),
  /** {width, height, data: Uint8Array 0/1 row-major} of the full-size committed mask. */
  getMaskBits: safe(() => {
    const m = app.fullMask();
    return m ? { width: m.width, height: m.height, data: m.mask } : null;
  }),
  /** Same, with data as base64 of the 0/1 bytes (cheap to pass out of the page). */
  getMaskBitsBase64: safe(() => maskBitsBase64(app.fullMask())),
  /** Compare mode: the comparison model's full-size committed mask, as getMaskBitsBase64 (null outside it). */
  getCompareMaskBitsBase64: safe(() => maskBitsBase64(app.compareFullMask())),
  /** Compare mode's view: "side" (two images) or "overlay" (one image, two colours). */
  setCompareView: safe((view) => app.setCompareView(view)),
  /** The SA-1B / COCO RLE record that "Download COCO RLE JSON" saves. */
  getRLE: safe(() => app.rleRecord()),
  /** The share link (a Promise), once the server confirmed that its image is stored; null without image. */
  getShareLink: () => app.durableShareLink().catch((e) => { app.setStatus(errText(e), "error"); return null; }),
  // prompt editing (what the mouse does), for scripts and tests
  addPoint: safe((x, y, label = 1) => app.addPoint(x, y, label)),
  setBox: safe((x0, y0, x1, y1) => app.setBox(typeof x0 === "object" ? x0 : { x0, y0, x1, y1 })),
  setPrompts: (p) => app.applyPrompts(typeof p === "string" ? parsePrompts(p) : p || {}).catch((e) => app.setStatus(errText(e), "error")),
  undo: safe(() => app.undo()),
  clear: safe(() => app.clear()),
  selectMask: safe((mode) => app.selectMask(mode)),
  setRefine: safe((on) => app.setRefine(on)),
  setHoverPreview: safe((on) => app.setHoverEnabled(on)),
  /** Low-res logits [4*256*256] and scores [4] of the committed decode (copies), or null. */
  getLowRes: safe(() => (app.entry.result ? { lowRes: app.entry.result.lowRes.slice(), scores: Array.from(app.entry.result.scores) } : null)),
  // objects (objects.js): the prompts edit the selected one
  newObject: safe(() => app.newObject()),
  selectObject: safe((id) => app.selectObject(id)),
  selectObjectAt: safe((x, y) => app.selectObjectAt(x, y)),
  deleteObject: safe((id) => app.deleteObject(id)),
  renameObject: safe((id, name) => app.renameObject(id, name)),
  /** One object per box of a COCO JSON / x0,y0,x1,y1 text (boxes.js); returns how many were added. */
  addBoxes: safe((text) => app.addBoxes(text)),
  /** The SA-1B / COCO document of all objects that "All objects: COCO JSON" saves. */
  getObjectsJSON: safe((polygons = false) => app.objectsDocument(polygons)),
  /** The objects' full-size masks, as getMaskBitsBase64, in object order (objects without prompts left out). */
  getObjectMasksBase64: safe(() => app.decodedObjects().map(({ o, m }) => ({ id: o.id, ...maskBitsBase64(m) }))),
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
    retireEarlyControl();
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
  app.upload.install(); // a photo chosen in the upload box goes resized first (upload.js)
  if (window.MSAM_CONFIG && window.MSAM_CONFIG.decoderUrl) {
    try { app.ensureModel(); } catch (e) { console.warn("[msam]", e); }
  }
  window.dispatchEvent(new CustomEvent("msam-ready"));
}
