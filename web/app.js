// MobileSAM browser demo: the app. One MsamApp holds the image (info, photo, embedding), the
// prompt history and the status line, does the core work (loading an image, editing prompts:
// points, box, undo, clear, mask choice) and composes the parts that own the rest:
//   queue   (scheduler.js DecodeQueue): decode scheduling, hover/drag previews, decode counters
//   compare (compare.js CompareSession): compare mode's model, state, view and numbers
//   view    (ui.js AppView, with compare-panel.js): the DOM and its drawing caches
//   exports.js: full-size mask, downloads, share link (functions of explicit inputs)
//   objects (objects.js ObjectList): the photo's objects, each with its own prompt history; the
//     selected one is `entry` here. objects-export.js: exports of all of them.
//   upload  (upload.js ResizedUpload): a chosen photo sent resized first, shown here meanwhile
//   bridge  (bridge.js ServerDecoder): until the page's decoder is ready, clicks decoded by the server
//   stored  (links.js StoredImages): which images the server confirmed stored (links to them are durable)
// Nothing in here throws to the page: errors go to the status line. main.js creates it and
// exposes it as window.msam.

import { MaskModel, getOrtInfo } from "./decoder.js";
import { selectIndex, parsePrompts, clampPrompts, isMultimask } from "./prompts.js";
import { fetchEmbeddingBytes } from "./embedding.js";
import { CompareSession } from "./compare.js";
import { renderComparePanel, copySummary } from "./compare-panel.js";
import { AppView } from "./ui.js";
import { DecodeQueue } from "./scheduler.js";
import { ServerDecoder } from "./bridge.js";
import { ResizedUpload } from "./upload.js";
import * as exports from "./exports.js";
import { ObjectList, parseObjectsLink, makeEntry, MAX_OBJECTS } from "./objects.js";
import { parseBoxes } from "./boxes.js";
import { objectsDocument, labelMapPng, zipStore, objectFileName } from "./objects-export.js";
import { StoredImages } from "./links.js";
import { getConfig, errText, normalizeInfo, loadPhoto, modelLabel, sleep } from "./util.js";

const SERVER_ANSWERS = "Loading the mask decoder; the server answers clicks meanwhile…";
const SERVER_FIRST_MAX_MS = 2000; // how long the embedding's fetch waits for the server's masks (see _setImage)

// A prompt state: objects.js makeEntry.
/** Whether server info names an image (not null / "{}" / invalid). */
function hasImage(infoArg) {
  try {
    return normalizeInfo(infoArg) != null;
  } catch {
    return false;
  }
}

export class MsamApp {
  constructor() {
    this.config = getConfig();
    this.model = null; // MobileSAM's decoder (a MaskModel)
    this.root = null;
    this.view = null; // the AppView inside #msam-root

    this.info = null;
    this.image = null;
    this.ready = false;
    this.bridge = null; // until ready: the server's decoder of the image (bridge.js), or null
    this.loadToken = 0;
    this.imageToken = 0; // changes with the image (decodes of another image are dropped)
    this.loading = Promise.resolve();
    this.objects = new ObjectList();
    this._fullByObject = new WeakMap(); // object -> FullMaskMemo of its committed mask
    this.refine = false;
    this.hoverEnabled = true;
    this.status = { text: "", kind: "info" };

    this.compare = new CompareSession({
      createModel: () => new MaskModel(this.config),
      onChange: () => this.render(),
      onError: (text) => this.setStatus(text, "error"),
      onDrop: () => {
        this.view?.clearOverlay("b");
        this.queue.dropComparePreview();
      },
    });
    this.queue = new DecodeQueue({
      model: () => this.model,
      compare: this.compare,
      ready: () => this.ready,
      bridge: () => (this.ready ? null : this.bridge),
      current: () => this.entry,
      imageToken: () => this.imageToken,
      refine: () => this.refine,
      onChange: () => this.render(),
      onStats: () => this.renderInfo(),
      onOtherDecoded: () => this.renderSoon(), // another object's mask arrived (e.g. a batch of boxes)
      onError: (text) => this.setStatus(text, "error"),
    });

    this.upload = new ResizedUpload({
      config: () => getConfig(),
      showLocal: (photo, width, height, name) => this.showLocalPhoto(photo, width, height, name),
      encoded: (token, info) => { if (token === this.loadToken) this.setImage(info, null, { local: token }); },
      status: (token, text, kind) => { if (token === this.loadToken && !this.ready) this.setStatus(text, kind); },
      live: () => this.gradioLive,
    });
    this.decoderNote = ""; // the decoder's download progress, shown after the status text

    this.stored = new StoredImages();
    this.urlPrompts = null;
    this.userChoseImage = false; // a share link's late restore must not replace the user's choice
    // Gradio's page is live once its load event has run (it hands the share link's image, or none,
    // to setImage with fromLink): an upload handed to its upload box before may be lost (upload.js)
    this.gradioLive = new Promise((resolve) => { this._gradioIsLive = resolve; });
    try {
      const p = parseObjectsLink(location.search) || parsePrompts(location.search);
      if (p.imageId) this.urlPrompts = p;
    } catch { /* no URL prompts */ }
  }

  /** The selected object's current prompt entry: what the prompts edit. */
  get entry() {
    return this.objects.entry;
  }

  set entry(e) {
    this.objects.entry = e;
  }

  // ------------------------------------------------------------------ model

  ensureModel() {
    if (!this.model) {
      this.config = getConfig();
      this.model = new MaskModel(this.config);
    }
    if (this.config.decoderUrl && !this.model.loading) {
      this.model.onProgress = (loaded, total) => {
        const mb = (n) => (n / 1e6).toFixed(1);
        this.decoderNote = total ? `mask decoder ${Math.round((100 * loaded) / total)}% (${mb(loaded)} of ${mb(total)} MB)`
          : `mask decoder ${mb(loaded)} MB`;
        this.setStatus(this.status.text, this.status.kind);
      };
      this.model.load(this.config.decoderUrl).then(
        () => {
          this.decoderNote = "";
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
    if (this.view && this.view.isIn(root)) return;
    this.view?.destroy();
    this.root = root;
    this.view = new AppView(root, this.#actions(), { refine: this.refine, hoverEnabled: this.hoverEnabled });
    this.ensureModel();
    for (const seg of this.view.segs) {
      if (this.image && this.info) {
        seg.setImage(this.image, this.info.width, this.info.height);
      } else {
        seg.setPlaceholder(this.info ? "Loading image…" : "Upload or pick an image to start");
      }
    }
    this.setStatus(this.status.text, this.status.kind);
    this.render();
  }

  /** What the view's controls do. */
  #actions() {
    return {
      undo: () => this.undo(),
      clear: () => this.clear(),
      setRefine: (on) => this.setRefine(on),
      setHoverEnabled: (on) => this.setHoverEnabled(on),
      selectMask: (mode) => this.selectMask(mode),
      addPoint: (x, y, label) => this.addPoint(x, y, label),
      selectAt: (x, y) => this.selectObjectAt(x, y),
      newObject: () => this.newObject(),
      selectObject: (id) => this.selectObject(id),
      deleteObject: (id) => this.deleteObject(id),
      renameObject: (id, name) => this.renameObject(id, name),
      exportObjectsJson: (polygons) => this.exportObjectsJson(polygons),
      exportLabelMap: () => this.exportLabelMap(),
      exportCutoutsZip: () => this.exportCutoutsZip(),
      addBoxes: (text) => this.addBoxes(text),
      setBox: (b) => this.setBox(b),
      hover: (p) => this.onHover(p),
      drag: (b) => this.onDrag(b),
      exportMask: () => this.exportMask(),
      exportCutout: () => this.exportCutout(),
      exportRLE: () => this.exportRLE(),
      copyLink: () => this.copyLink(),
      setCompareView: (v) => this.setCompareView(v),
      copySummary: () => this.copySummary(),
    };
  }

  setStatus(text, kind = "info") {
    this.status = { text: text || "", kind };
    if (kind === "error" && text) console.warn("[msam]", text);
    const note = this.decoderNote && !(this.model && this.model.backend) ? this.decoderNote : "";
    this.view?.setStatus(note ? { text: [this.status.text || "Loading", note].join(" · "),
      kind: this.status.kind === "info" ? "busy" : this.status.kind } : this.status);
  }

  // ------------------------------------------------------------------ image

  /** Show the image of `infoArg` (server info; null clears). `fromLink`: the image of the page's share
   * link, restored by the server as the page opened; it is dropped if the user has chosen an image
   * meanwhile (the restore of an image no longer cached can take longer than a new upload). */
  setImage(infoArg, prompts, { fromLink = false, local = null } = {}) {
    if (fromLink) this._gradioIsLive();
    if (fromLink && this.userChoseImage) return Promise.resolve(false);
    const replaced = this.#adoptOriginal(infoArg);
    if (replaced) return replaced;
    if (!fromLink && hasImage(infoArg)) this.userChoseImage = true;
    // Gradio may hand over the same image info twice in a row: the load in flight goes on.
    const key = typeof infoArg === "string" ? infoArg : JSON.stringify(infoArg ?? null);
    const inFlight = this._inFlight;
    if (inFlight && inFlight.key === key && prompts == null && inFlight.token === this.loadToken) return inFlight.promise;
    const token = local != null && local === this.loadToken ? local : ++this.loadToken;
    const promise = this._loadImage(infoArg, prompts, token, local != null && local === token);
    this._inFlight = { key, token, promise };
    promise.finally(() => { if (this._inFlight?.promise === promise) this._inFlight = null; });
    return promise;
  }

  /** Info of an uploaded original whose resized copy (upload.js) the page shows or showed
   * (`info.replaces`): the page shows it now under the original's id (same embedding, prompts kept;
   * share links work from now on). Resolves to whether it is shown; null for other info. */
  #adoptOriginal(infoArg) {
    let info;
    try {
      info = normalizeInfo(infoArg);
    } catch {
      return null;
    }
    if (!info || !info.replaces) return null;
    if (this.info && this.info.image_id === info.replaces) {
      this.info = { ...this.info, ...info, pending_original: false, replaces: undefined };
      if (this._inFlight) this._inFlight.key = null;
      this.render();
      return this.#compareAdopted(info.compare);
    }
    if (this.info && this.info.image_id === info.image_id) return this.#compareAdopted(info.compare);
    return Promise.resolve(false); // the original of a photo the user has left meanwhile
  }

  /** Compare mode's part (`c`, may be null: nothing to do) of an adopted original's info (compare
   * mode switched on while the original was on its way), once the embedding is loaded. */
  async #compareAdopted(c) {
    const token = this.loadToken;
    if (c) await this.loading;
    if (c && token === this.loadToken) await this._setCompare(c, token);
    return token === this.loadToken && this.ready;
  }

  /** A photo chosen in the upload box, shown at once (`photo`: ImageBitmap, `width`×`height` upright)
   * while its resized copy is encoded (upload.js); clicks made meanwhile are kept and decoded once
   * the embedding is there. Returns the token its info must come with (setImage option `local`). */
  showLocalPhoto(photo, width, height, fileName = null) {
    this.userChoseImage = true;
    const token = ++this.loadToken; // a load in flight is for an image no longer wanted
    this.resetPrompts();
    this.ready = false;
    this.bridge = null;
    this.imageToken++;
    this.info = { width, height, image_id: null, local: true, file_name: fileName || undefined };
    this.image = photo;
    this.view?.clearOverlay("a");
    this._fullByObject = new WeakMap();
    this.compare.drop();
    this.ensureModel().setEmbedding(null);
    for (const seg of this.view?.segs || []) seg.setImage(photo, width, height);
    this.setStatus("Preparing the photo…", "busy");
    this.render();
    return token;
  }

  async _loadImage(infoArg, prompts, token, local = false) {
    let done;
    this.loading = new Promise((r) => { done = r; });
    try {
      await this._setImage(infoArg, prompts, token, local);
    } catch (e) {
      if (token === this.loadToken) {
        this.setStatus(errText(e), "error");
        this.queue.abandon();
      }
    } finally {
      done();
    }
    return token === this.loadToken && this.ready;
  }

  async _setImage(infoArg, prompts, token, local = false) {
    this.attach();
    const info = normalizeInfo(infoArg);
    this.stored.note(info);
    const stale = () => token !== this.loadToken;
    // the info of the photo shown by showLocalPhoto: its photo and the clicks made meanwhile stay
    const keep = local && info && this.info && this.info.local && this.info.width === info.width
      && this.info.height === info.height && this.image;
    if (typeof prompts === "string") prompts = parsePrompts(prompts);
    const fromLinkOrPrompts = !!prompts || !!this.urlPrompts;

    if (info && this.info && this.ready && info.image_id === this.info.image_id
        && info.embedding_url === this.info.embedding_url) {
      // Same image again (Gradio may fire twice, or compare mode was switched): keep the
      // embedding and the prompts; only the comparison model may change.
      this.info = { ...this.info, ...info, compare: info.compare };
      await this._setCompare(info.compare, token);
      if (stale()) return;
      if (prompts) await this.applyPrompts(prompts);
      this.render();
      return;
    }

    const localPhoto = keep ? this.image : null;
    if (!keep) {
      this.resetPrompts();
      this.imageToken++;
      this.view?.clearOverlay("a");
      this._fullByObject = new WeakMap();
      this.compare.drop();
    }
    this.ready = false;
    this.bridge = null;
    this.info = keep && !info.file_name ? { ...info, file_name: this.info.file_name } : info;
    this.image = localPhoto;
    const model = this.ensureModel();
    model.setEmbedding(null);
    if (!info) {
      for (const seg of this.view?.segs || []) {
        seg.setImage(null);
        seg.setPlaceholder("Upload or pick an image to start");
      }
      this.setStatus("");
      this.render();
      return;
    }
    if (!keep) {
      for (const seg of this.view?.segs || []) {
        seg.setImage(null);
        seg.setPlaceholder("Loading image…");
      }
    }
    // clicks made before the embedding and the decoder are here get the server's masks meanwhile
    if (this.config.decodeUrl && info.image_id) {
      this.bridge = new ServerDecoder(this.config.decodeUrl, info.image_id);
      this.queue.pump();
    }
    this.setStatus(this.bridge && !model.backend ? SERVER_ANSWERS : "Loading image embedding…", "busy");

    // The photo and the embedding load at once; prompts need only the embedding, so the decoder
    // gets it (and starts its per-image work) as soon as it arrives, whichever comes first. While the
    // page's decoder is still on its way, the server's masks for a click made meanwhile come first
    // (a third of the embedding's bytes, on the same link); the embedding follows them.
    const imgP = localPhoto ? Promise.resolve(localPhoto) : loadPhoto(info);
    const before = model.backend ? null : Promise.race([this.queue.serverAnswered(), sleep(SERVER_FIRST_MAX_MS)]);
    const embP = before ? before.then(() => fetchEmbeddingBytes(info.embedding_url))
      : fetchEmbeddingBytes(info.embedding_url); // decoded in the decoder's worker
    embP.catch(() => {});
    const shownP = imgP.then((img) => {
      if (stale()) return;
      this.image = img;
      for (const seg of this.view?.segs || []) seg.setImage(img, info.width, info.height);
      this.render();
      if (!fromLinkOrPrompts) this.view?.revealCanvas(); // a phone: the photo was chosen above the canvas
    }, (e) => {
      if (!stale()) this.setStatus(errText(e), "error");
    });
    // the comparison model's embedding and decoder load meanwhile
    const cmpP = this._setCompare(info.compare, token);
    let bytes;
    try {
      bytes = await embP;
    } catch (e) {
      if (!stale()) this.#failed(e);
      return;
    }
    if (stale()) return;
    if (!model.loading) {
      this.#failed("The mask decoder is not configured (MSAM_CONFIG.decoderUrl)");
      return;
    }
    if (!model.backend) {
      this.setStatus(this.bridge ? SERVER_ANSWERS : "Loading the mask decoder…", "busy");
    }
    try {
      await model.loading;
    } catch (e) {
      if (!stale()) this.#failed(e);
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
    this.queue.pump(); // clicks made before the embedding and the decoder were there
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

  /** The image cannot be used: say why; clicks waiting for it are dropped. */
  #failed(e) {
    this.setStatus(typeof e === "string" ? e : errText(e), "error");
    this.queue.abandon();
  }

  /** Enter, change or leave compare mode for the current image (`c`: info.compare or null); once
   * the comparison model is ready, the current prompts are decoded with it. */
  async _setCompare(c, token) {
    const started = await this.compare.set(c, this.info, () => token !== this.loadToken);
    if (!started) return;
    this.queue.ensureDecoded(this.entry);
    for (const o of this.objects.objects) this.queue.ensureDecoded(o.entry); // their IoUs in the panel
    await this.queue.idle();
    this.render();
  }

  /** Replace the prompts (points, box, mask choice) in one decode, or, for prompts with a refinement
   * history (`p.refine`, from a share link: see prompts.js refineSteps), replay that history with
   * "refine with previous mask" on, so that the mask is the one the link was made from. */
  async applyPrompts(p) {
    if (!this.info) return;
    if (Array.isArray(p.objects)) {
      await this.applyObjects(p.objects, p.selected);
      return;
    }
    this.#commitPrompts(p);
    await this.decodesIdle();
  }

  /** Several objects' prompts (a share link of several objects, parseObjectsLink): the current
   * objects are replaced by them, each replayed as applyPrompts replays one; `selected` is selected. */
  async applyObjects(list, selected = 0) {
    if (!this.info) return;
    this.resetPrompts();
    list.forEach((p, i) => {
      if (i > 0) this.objects.add();
      this.#commitPrompts(p);
    });
    const sel = this.objects.objects[selected] || this.objects.objects[0];
    this.selectObject(sel.id);
    await this.decodesIdle();
  }

  #commitPrompts(p) {
    const c = clampPrompts({ points: p.points || [], box: p.box || null }, this.info.width, this.info.height);
    const mode = p.mask === 1 || p.mask === 2 || p.mask === 3 ? p.mask : "auto";
    const points = c.points.map((pt) => ({ x: pt.x, y: pt.y, label: pt.label === 0 ? 0 : 1 }));
    const steps = Array.isArray(p.refine) ? p.refine : [];
    steps.forEach((step, i) => this.commit(points.slice(0, step.points), step.box ? c.box : null, step.mask, i > 0));
    this.commit(points, c.box, mode, steps.length > 0);
    if (steps.length) this.setRefine(true); // further clicks go on refining, as on the page the link came from
  }

  setRefine(on) {
    this.refine = !!on;
    this.view?.setRefine(this.refine);
  }

  resetPrompts() {
    this.objects.reset();
    this.queue.reset();
  }

  // ------------------------------------------------------------------ objects

  /** A new empty object, selected: the prompts now edit it. */
  newObject() {
    if (!this.info) return null;
    const o = this.objects.add();
    if (!o) {
      this.setStatus("This photo holds the most objects it can; delete one first.", "warn");
      return null;
    }
    this.afterSelect();
    return o.id;
  }

  selectObject(id) {
    if (this.objects.selectedId === id || !this.objects.select(id)) return;
    this.afterSelect();
  }

  /** Select the object whose mask covers image pixel (x, y) (Alt-click on the canvas); false if none. */
  selectObjectAt(x, y) {
    const o = this.info && this.objects.objectAt(x, y, this.info);
    if (!o) return false;
    this.selectObject(o.id);
    return true;
  }

  deleteObject(id) {
    const gone = this.objects.remove(id);
    if (!gone) return;
    for (let e = gone.entry; e; e = e.prev) this.queue.cancel(e);
    this.afterSelect();
  }

  /** One new object per box of `text` (boxes.js parseBoxes: COCO `bbox` records or x0,y0,x1,y1 lines),
   * decoded in turn (the selected object takes the first box if it has no prompts yet); the last one
   * is selected. Returns how many were added; a bad list adds none and says which lines are wrong. */
  addBoxes(text) {
    if (!this.info) {
      this.setStatus("Choose a photo first: the boxes are in its pixels.", "warn");
      return 0;
    }
    let boxes;
    try {
      boxes = parseBoxes(text, this.info);
    } catch (e) {
      this.setStatus(errText(e), "error");
      return 0;
    }
    const reuse = !this.entry.points.length && !this.entry.box;
    const room = MAX_OBJECTS - this.objects.objects.length + (reuse ? 1 : 0);
    if (boxes.length > room) {
      this.setStatus(`${boxes.length} boxes, but only ${room} more objects fit (at most ${MAX_OBJECTS} a photo).`, "error");
      return 0;
    }
    const entries = boxes.map((b, i) => {
      if (i > 0 || !reuse) this.objects.add({ name: b.name });
      else if (b.name) this.objects.rename(this.objects.selectedId, b.name);
      const c = clampPrompts({ points: [], box: b }, this.info.width, this.info.height);
      return (this.entry = makeEntry(this.entry, [], c.box, "auto", false));
    });
    this.queue.commitAll(entries); // decoded in order, in batches; masks are drawn as they arrive
    this.setStatus(`${boxes.length} box${boxes.length === 1 ? "" : "es"} added, one object each.`);
    this.afterSelect();
    return boxes.length;
  }

  renameObject(id, name) {
    if (this.objects.rename(id, name)) this.render();
  }

  afterSelect() {
    this.queue.hover(null); // the preview belonged to the object selected before
    this.afterEdit();
  }

  // ------------------------------------------------------------------ prompts

  addPoint(x, y, label = 1) {
    if (!this.info) return; // before the embedding or the decoder is ready, it waits in the queue
    if (!(x >= 0 && y >= 0 && x <= this.info.width && y <= this.info.height)) return;
    this.commit([...this.entry.points, { x, y, label: label === 0 ? 0 : 1 }], this.entry.box);
  }

  setBox(b) {
    if (!this.info || !b) return;
    const c = clampPrompts({ points: [], box: b }, this.info.width, this.info.height);
    if (!c.box) return;
    this.commit(this.entry.points, c.box);
  }

  undo() {
    if (!this.entry.prev) return;
    const old = this.entry;
    this.queue.cancel(old);
    this.entry = old.prev;
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
    this.queue.commit(entry);
    this.afterEdit();
  }

  afterEdit() {
    for (const seg of this.view?.segs || []) seg.setPrompts(this.entry.points, this.entry.box);
    this.queue.ensureDecoded(this.entry); // e.g. after undo, in a compare mode entered since
    if (this.queue.hoverPt) this.queue.requestPreview();
    this.render();
  }

  setHoverEnabled(on) {
    this.hoverEnabled = !!on;
    this.view?.setHoverEnabled(this.hoverEnabled);
    if (!this.hoverEnabled) this.onHover(null);
  }

  setCompareView(view) {
    this.compare.setView(view);
    this.render();
  }

  onHover(p) {
    this.queue.hover(this.hoverEnabled ? p : null);
  }

  onDrag(b) {
    this.queue.drag(b);
  }

  // ------------------------------------------------------------------ scheduling

  isIdle() {
    return this.queue.isIdle();
  }

  /** Resolves when no decode is in flight or pending. */
  decodesIdle() {
    return this.queue.idle();
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
    const p = this.queue.livePreview(e);
    if (p) {
      const key = this.compare.key;
      const cmpResult = p.cmp && key !== null && p.cmp.key === key ? p.cmp.result || null : null;
      return { result: p.result, cmpResult, points: p.points, box: p.box, mode: "auto", preview: true };
    }
    return { result: e.result, cmpResult: this.compare.resultOf(e), points: e.points, box: e.box, mode: e.maskMode,
      preview: false };
  }

  /** One render for a burst of changes (the decodes of many objects arriving one by one). */
  renderSoon() {
    if (this._renderTimer) return;
    this._renderTimer = setTimeout(() => { this._renderTimer = 0; this.render(); }, 30);
  }

  render() {
    if (!this.view) return;
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
    const view = this.view, u = view.u;
    const comparing = this.compare.on;
    const side = comparing && this.compare.view === "side";
    let idx = -1, cmpIdx = -1, ovA = null, ovB = null;
    if (info && s.result && hasPrompts) {
      idx = selectIndex(s.mode, s.points, s.box, s.result.scores);
      ovA = view.overlay("a", info, s.result, idx, s.preview, "mobilesam", this.objects.selected.color);
    }
    if (info && comparing && s.cmpResult && hasPrompts) {
      cmpIdx = selectIndex(s.mode, s.points, s.box, s.cmpResult.scores);
      ovB = view.overlay("b", info, s.cmpResult, cmpIdx, s.preview, side ? "sam" : "sam-outline");
    }
    // (while a click's decode is running the previous masks stay up)
    const keep = hasPrompts && this.entry.pending && !s.preview;
    const others = view.othersOverlay(info, this.objects.objects.filter((o) => o !== this.objects.selected));
    if (ovA || !keep) {
      const layers = others ? [{ source: others }] : [];
      if (ovA) layers.push({ source: ovA.canvas });
      if (comparing && !side && ovB) layers.push({ source: ovB.canvas });
      view.seg.setOverlays(layers);
    }
    if (ovB || !keep || !side) view.seg2.setOverlays(side && ovB ? [{ source: ovB.canvas }] : []);
    for (const seg of view.segs) seg.setPrompts(this.entry.points, this.entry.box);
    u.view.classList.toggle("msam-side", side);
    u.paneB.hidden = !side;
    u.labelA.hidden = !comparing;
    if (comparing) view.renderPaneLabels(modelLabel(info?.model || "vit_t"), this.compare.label, side);
    view.renderThumbs(s, idx, this.entry.maskMode, info, this.image);
    this.renderInfo(s, idx);
    renderComparePanel(u.cmp, { session: this.compare, info, s, idx, cmpIdx, ovA, ovB,
      stats: comparing ? this.compareStats() : null, lastDecodeMs: this.queue.lastDecodeMs,
      objectIoUs: comparing ? this.compareObjectIoUs() : [], selectedId: this.objects.selectedId });
    const committed = !!(this.entry.result && (this.entry.points.length || this.entry.box));
    u.dlMask.disabled = u.dlCut.disabled = u.dlRle.disabled = !committed || !info;
    u.dlCut.disabled = u.dlCut.disabled || !this.image;
    u.copy.disabled = !info || !!info.pending_original || !!info.local;
    u.undo.disabled = !this.entry.prev;
    u.clear.disabled = !info || !(this.entry.points.length || this.entry.box);
    view.renderObjects(this.objects, !!info);
    this.#dropStaleLink();
  }

  /** The share-link box and its "Link copied." line go once the prompts (or the compare model) they
   * were made from have changed: an old link must not pass for the current one. */
  #dropStaleLink() {
    const box = this.view.u.link;
    if (!box.value || box.value === this.shareLink()) return;
    box.value = "";
    if (/^Link (copied|ready)/.test(this.status.text)) this.setStatus("");
  }

  /** The info line (`s`, `idx`: what is shown, MsamApp.shown(); by default only the decode time). */
  renderInfo(s = this.shown(), idx = -1) {
    this.view?.renderInfo({ lastDecodeMs: this.queue.lastDecodeMs, s, idx, info: this.info, model: this.model });
  }

  // ------------------------------------------------------------------ exports

  /** Full-size mask of the committed prompts (exports.js fullMask), or null without image. */
  fullMask() {
    return this.objectFullMask(this.objects.selected);
  }

  /** Full-size committed mask of object `o` (as fullMask), memoised per object. */
  objectFullMask(o) {
    let memo = this._fullByObject.get(o);
    if (!memo) this._fullByObject.set(o, memo = new exports.FullMaskMemo());
    return exports.fullMask(this.info, o.entry, memo);
  }

  /** The objects with a committed mask, in order: [{o, m: full mask}]. */
  decodedObjects() {
    if (!this.info) return [];
    return this.objects.withPrompts().filter((o) => o.entry.result).map((o) => ({ o, m: this.objectFullMask(o) }));
  }

  /** The SA-1B / COCO document of all objects (objects-export.js objectsDocument), or null. */
  objectsDocument(polygons = false) {
    if (!this.info) return null;
    return objectsDocument(this.decodedObjects().map(({ o, m }) => ({ m, entry: o.entry, name: o.name })),
      { width: this.info.width, height: this.info.height, fileName: this.info.file_name || null, polygons });
  }

  /** The indexed PNG label map of all objects (value k: the k-th object with a mask), or null. */
  async labelMapPng() {
    const items = this.decodedObjects();
    if (!this.info || !items.length) return null;
    return labelMapPng(items.map((i) => i.m.mask), items.map((i) => i.o.color), this.info.width, this.info.height);
  }

  /** A zip of each object's cut-out PNG (cropped to its mask's box), or null. */
  async cutoutsZip() {
    const items = this.decodedObjects();
    if (!items.length || !this.image) return null;
    const files = [];
    for (const [i, { o, m }] of items.entries()) {
      const png = await exports.cutoutPng(m, this.image, true);
      if (png) files.push({ name: objectFileName(i + 1, o.name, "png"), data: new Uint8Array(await png.arrayBuffer()) });
    }
    return new Blob([zipStore(files)], { type: "application/zip" });
  }

  async exportObjectsJson(polygons = false) {
    await this.#download(async () => {
      const doc = this.objectsDocument(polygons);
      return doc && new Blob([JSON.stringify(doc)], { type: "application/json" });
    }, polygons ? "_objects_polygons.json" : "_objects.json");
  }

  exportLabelMap() {
    return this.#download(() => this.labelMapPng(), "_labels.png");
  }

  exportCutoutsZip() {
    return this.#download(() => this.cutoutsZip(), "_cutouts.zip");
  }

  async #download(make, suffix) {
    try {
      const blob = await make();
      if (blob) exports.downloadAs(blob, exports.downloadBaseName(this.info), suffix);
    } catch (e) {
      this.setStatus("Export failed: " + errText(e), "error");
    }
  }

  /** Compare mode: the comparison model's full-size committed mask, or null. */
  compareFullMask() {
    return this.compare.fullMask(this.info, this.entry);
  }

  /** Compare mode: each object's mask IoU, MobileSAM vs SAM (CompareSession.objectIoUs). */
  compareObjectIoUs() {
    return this.compare.objectIoUs(this.info, this.objects.objects, (o) => this.objectFullMask(o));
  }

  /** Compare mode: the committed comparison at full size (CompareSession.stats), or null. */
  compareStats() {
    return this.compare.stats(this.info, this.entry, () => this.fullMask());
  }

  maskPng() {
    return exports.maskPng(this.fullMask());
  }

  rleRecord() {
    return exports.rleRecord(this.fullMask(), this.entry);
  }

  shareLink() {
    if (this.info && (this.info.pending_original || this.info.local)) return null; // the original is not on the server yet
    return exports.shareLink(this.info, this.objects, this.compare.on ? this.compare.state.model : null);
  }

  async exportMask() {
    try {
      await exports.exportMask(this.fullMask(), exports.downloadBaseName(this.info));
    } catch (e) {
      this.setStatus("Export failed: " + errText(e), "error");
    }
  }

  async exportCutout() {
    try {
      await exports.exportCutout(this.fullMask(), this.image, exports.downloadBaseName(this.info));
    } catch (e) {
      this.setStatus("Export failed: " + errText(e), "error");
    }
  }

  exportRLE() {
    try {
      exports.exportRLE(this.rleRecord(), exports.downloadBaseName(this.info));
    } catch (e) {
      this.setStatus("Export failed: " + errText(e), "error");
    }
  }

  /** The share link, once the server confirmed that its image is stored (a link handed out must
   * open even if the server crashes right after); null without image; rejects with a message. */
  async durableShareLink() {
    const link = this.shareLink();
    if (!link) return null;
    await this.stored.ensure(this.info.image_id);
    return this.shareLink() === link ? link : this.durableShareLink(); // the prompts or image changed meanwhile
  }

  async copyLink() {
    if (!this.shareLink() || !this.view) return;
    this.setStatus("Storing the image for the link…");
    let link;
    try {
      link = await this.durableShareLink();
    } catch (e) {
      this.view.u.link.value = "";
      this.setStatus(errText(e), "error");
      return;
    }
    if (!link) return;
    const { text, kind } = await exports.copyLink(link, this.objects.withPrompts().map((o) => o.entry), this.view.u.link);
    this.setStatus(text, kind);
  }

  async copySummary() {
    const st = this.compareStats();
    if (!st || !this.view) return;
    this.setStatus(await copySummary(this.view.u.cmp, st.summary));
  }

  // ------------------------------------------------------------------ keyboard

  /** Ctrl+Z / Esc, when meant for the prompts: pressed on the page itself or in this UI, not in
   * another widget (a text field, the model dropdown, an image's fullscreen view) or already used. */
  onKey(e) {
    const ui = this.view?.ui;
    if (!this.info || !ui || !ui.isConnected || e.defaultPrevented) return;
    const t = e.target;
    const onPage = !t || t === document.body || t === document.documentElement || ui.contains(t);
    const editing = t && (t.isContentEditable || /^(TEXTAREA|SELECT)$/.test(t.tagName)
      || (t.tagName === "INPUT" && !/^(checkbox|radio|button)$/.test(t.type)));
    if (!onPage || editing) return;
    if (ui.offsetParent === null) return; // hidden tab
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
      maskFrom: e.result && has ? (e.result.server ? "server" : "page") : null, // whose decoder (bridge.js)
      refine: this.refine,
      lastDecodeMs: this.queue.lastDecodeMs,
      decodeCount: this.queue.decodeCount,
      previewReuses: this.queue.previewReuses,
      batchedDecodes: this.queue.batchedCount,
      ready: this.ready,
      idle: this.isIdle(),
      error: this.status.kind === "error" ? this.status.text : null,
      ort: getOrtInfo() ? { ...getOrtInfo(), provider: this.model?.provider || null } : null,
      compare: this.compare.snapshot(this.info, e, () => this.fullMask()),
      compareObjects: this.compare.on ? this.compareObjectIoUs() : null,
      objects: this.objects.snapshot(),
      selectedObject: this.objects.selectedId,
    };
  }
}
