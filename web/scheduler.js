// MobileSAM browser demo: the decode queue. A DecodeQueue owns everything about scheduling
// decodes: the committed prompt states waiting in order, the one preview slot (hover/drag;
// the newest request wins, a stale one is never decoded), whether a decode is running, the
// idle waiters, the pointer's hover point / drag box and the preview result on screen, and
// MobileSAM's decode counters. In compare mode each decode runs MobileSAM's and the comparison
// model's decoder at once.
//
// It fills in the decoder's part of the prompt entries (app.js makeEntry): result, error,
// pending, cancelled and cmp (the comparison model's decode: {key, result} or {key, error}).
// Everything else comes from its host (MsamApp), through the callbacks given to the constructor.

import { LOW_RES } from "./masks.js";
import { selectIndex } from "./prompts.js";
import { errText } from "./util.js";

/** Low-res logits [256*256] of the candidate a prompt entry shows in `result` (for refinement), or null. */
export function selectedLowRes(entry, result = entry && entry.result) {
  if (!entry || !result) return null;
  const idx = selectIndex(entry.maskMode, entry.points, entry.box, result.scores);
  return result.lowRes.subarray(idx * LOW_RES * LOW_RES, (idx + 1) * LOW_RES * LOW_RES);
}

const hasPrompts = (entry) => !!(entry.points.length || entry.box);

const samePoints = (a, b) => a.length === b.length && a.every((p, i) => p.x === b[i].x && p.y === b[i].y && p.label === b[i].label);
const sameBox = (a, b) => (!a && !b) || (!!a && !!b && a.x0 === b.x0 && a.y0 === b.y0 && a.x1 === b.x1 && a.y1 === b.y1);

/** Whether preview decode `p` ({entry, points, box, refine, token}) computed exactly what committing
 * `entry` asks: the same prompts after the same entry, on the same image, neither with a mask input. */
function previewAnswers(p, entry) {
  return !!p && p.entry === entry.prev && p.token === entry.token && !p.refine && !entry.refine
    && samePoints(p.points, entry.points) && sameBox(p.box, entry.box);
}

/** Most prompt states decoded in one decoder run (a pasted list of boxes; bench/batch_boxes.py). */
export const DECODE_BATCH = 8;

export class DecodeQueue {
  /**
   * @param {object} host
   * @param {() => {decode: Function}} host.model MobileSAM's decoder (a MaskModel)
   * @param {import("./compare.js").CompareSession} host.compare the comparison model (compare.js)
   * @param {() => boolean} host.ready whether the image's embedding is in place
   * @param {() => ({decode: Function}|null)} [host.bridge] until then, the server's decoder of the image
   *   (bridge.js ServerDecoder), or null
   * @param {() => object} host.current the current prompt entry
   * @param {() => number} host.imageToken changes with the image (decodes of another image are dropped)
   * @param {() => boolean} host.refine whether "refine with previous mask" is on (previews)
   * @param {() => void} host.onChange a decode of the current entry, or a preview, arrived: redraw
   * @param {() => void} host.onStats only the decode counters changed
   * @param {() => void} [host.onOtherDecoded] an entry other than the current one was decoded
   * @param {(text: string) => void} host.onError a decoder failed
   */
  constructor(host) {
    this.host = host;
    this.commits = []; // entries to decode, in order
    this.previewReq = null; // {entry, points, box, seq}: the newest hover/drag request
    this.previewSeq = 0;
    this.running = false;
    this.idleWaiters = [];
    this.hoverPt = null; // {x, y} under the pointer (hover preview on), or null
    this.dragBox = null; // the box being dragged, or null
    this.preview = null; // {entry, result, cmp, points, box}: the last preview decoded
    // The last preview decoded ({entry, points, box, refine, token, result, cmp}), kept after the
    // pointer leaves: a click where the pointer rests commits the prompts it previewed and takes this
    // result instead of decoding them again (previewAnswers), also when it lands after the click.
    this.lastPreview = null;
    this.previewReuses = 0; // committed states answered by a preview's decode
    this.batchMax = DECODE_BATCH; // committed states decoded together (1: one by one)
    this.decodeCount = 0; // MobileSAM's decodes (commits and previews)
    this.batchedCount = 0; // of which decoded in batches (several committed boxes a call)
    this.lastDecodeMs = null;
    this.asking = false; // a server decode (bridge.js) is in flight
    this.answered = Promise.resolve(); // settles when that decode has
  }

  // ---------------------------------------------------------------- prompt states

  /** Forget everything queued and the pointer state (a new image, or its prompts reset). */
  reset() {
    this.commits = [];
    this.previewReq = null;
    this.preview = null;
    this.lastPreview = null;
    this.hoverPt = null;
    this.dragBox = null;
  }

  /** Whether an entry lacks a decode: MobileSAM's, or (in compare mode) the comparison model's. */
  needsDecode(entry) {
    if (!hasPrompts(entry)) return false;
    const cmp = this.host.compare;
    return ((!entry.result || entry.result.server) && !entry.error) || (cmp.active() && !(entry.cmp && entry.cmp.key === cmp.key));
  }

  /** A new committed state: it becomes current (the preview of the old one goes), decoded in turn. */
  commit(entry) {
    this.commitAll([entry]);
  }

  /** Several committed states at once (a list of boxes: one per object), queued before any is
   * decoded so that those that can share a decoder run do. */
  commitAll(entries) {
    this.preview = null;
    for (const entry of entries) {
      if (!hasPrompts(entry)) continue;
      if (entry.refine) this.ensureDecoded(entry.prev); // each model refines its own previous mask
      entry.token = this.host.imageToken(); // until the image's embedding is ready, it waits
      if (previewAnswers(this.lastPreview, entry)) this.#takePreview(this.lastPreview, entry);
      if (!this.needsDecode(entry)) continue;
      entry.pending = true;
      this.commits.push(entry);
    }
    this.pump();
  }

  /** Give committed `entry` the results of preview decode `p` (previewAnswers(p, entry) holds): MobileSAM's,
   * and the comparison model's if it is the current one. */
  #takePreview(p, entry) {
    entry.result = p.result;
    const cmp = this.host.compare;
    if (p.cmp && p.cmp.result && p.cmp.key === cmp.key) entry.cmp = p.cmp;
    this.previewReuses++;
  }

  /** Queue an entry's missing decodes (unless already queued or running). A refining entry's
   * predecessors come first: compare mode entered after refined clicks decodes their whole chain
   * with the comparison model, so that its mask is what a share link of these prompts replays. */
  ensureDecoded(entry) {
    if (!entry || entry.pending || entry.cancelled || !this.host.ready() || !this.needsDecode(entry)) return;
    if (entry.refine) this.ensureDecoded(entry.prev);
    entry.pending = true;
    entry.token = this.host.imageToken();
    this.commits.push(entry);
    this.pump();
  }

  /** The image's embedding will not come (it failed): the entries waiting for it are dropped. */
  abandon() {
    for (const e of this.commits) e.pending = false;
    this.commits = [];
    this.previewReq = null;
    this.pump();
  }

  /** An entry undone: it is not decoded if still queued. */
  cancel(entry) {
    entry.cancelled = true;
    this.commits = this.commits.filter((e) => e !== entry);
    this.preview = null;
  }

  // ---------------------------------------------------------------- hover / drag previews

  /** Whether the pointer asks for a preview (hovering or dragging). */
  get previewing() {
    return !!(this.hoverPt || this.dragBox);
  }

  /** The preview to show instead of `entry` (the current entry), or null. */
  livePreview(entry) {
    return this.preview && this.preview.entry === entry && this.previewing ? this.preview : null;
  }

  /** Compare mode left: previews lose their comparison mask. */
  dropComparePreview() {
    if (this.preview) this.preview.cmp = null;
  }

  /** The pointer is at `p` (null: it left, or hover preview is off). */
  hover(p) {
    this.hoverPt = p || null;
    if (!this.hoverPt) {
      this.previewReq = null;
      if (!this.dragBox) this.preview = null;
      this.host.onChange();
      return;
    }
    this.requestPreview();
  }

  /** A box is being dragged (null: the drag ended). */
  drag(b) {
    this.dragBox = b || null;
    if (!this.dragBox) {
      this.previewReq = null;
      this.preview = null;
      this.host.onChange();
      return;
    }
    this.requestPreview();
  }

  /** Ask for a preview of the current entry plus the hover point, or with the dragged box. */
  requestPreview() {
    if (!this.host.ready()) return;
    const entry = this.host.current();
    let points, box;
    if (this.dragBox) {
      points = entry.points;
      box = this.dragBox;
    } else if (this.hoverPt) {
      points = [...entry.points, { x: this.hoverPt.x, y: this.hoverPt.y, label: 1 }];
      box = entry.box;
    } else {
      return;
    }
    this.previewReq = { entry, points, box, seq: ++this.previewSeq };
    this.pump();
  }

  // ---------------------------------------------------------------- running

  isIdle() {
    return !this.running && !this.commits.length && !this.previewReq;
  }

  /** Resolves when no decode is in flight or pending. */
  idle() {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((r) => { this.idleWaiters.push(r); this.pump(); });
  }

  /** Run queued decodes: commits first, in order; then the newest preview request. */
  async pump() {
    if (this.running) return;
    this.running = true;
    try {
      for (;;) {
        if (!this.host.ready()) {
          // commits of the image being loaded wait for its embedding (pump again once ready);
          // those of an image since left are dropped
          const token = this.host.imageToken();
          for (const e of this.commits) if (e.token !== token) e.pending = false;
          this.commits = this.commits.filter((e) => e.token === token);
          this.previewReq = null;
          const ask = this.#bridgeRequest();
          if (ask) this.#askServer(ask); // not awaited: the page's decoder goes ahead once it is ready
          break;
        }
        const entry = this.commits.shift();
        if (entry) {
          if (entry.cancelled) continue;
          const batch = this.#batchAfter(entry);
          if (batch.length > 1) await this.#decodeBatch(batch);
          else await this.#decodeEntry(entry);
          continue;
        }
        const req = this.previewReq;
        this.previewReq = null;
        if (!req) break;
        if (req.entry !== this.host.current() || !this.previewing) continue;
        await this.#decodePreview(req);
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

  /**
   * While the image's embedding or the page's decoder is on its way: the current entry's masks from
   * the server (host.bridge), shown until the page's decoder decodes the entry in its turn (it stays
   * queued). Once per entry (a failure leaves it to the page's decoder); not for a refining entry
   * (its mask input is the page's). Returns {server, entry} to ask, or null.
   */
  #bridgeRequest() {
    const server = this.host.bridge?.();
    const entry = this.host.current();
    if (!server || this.asking || !entry || entry.bridged || entry.refine || entry.cancelled || entry.result || entry.error
        || !this.commits.includes(entry)) return null;
    return { server, entry };
  }

  /** Ask the server for `entry`'s masks; its answer is shown unless the page's decoder answered first.
   * A newer entry committed meanwhile is sent once this answer is in (one request at a time). */
  async #askServer({ server, entry }) {
    entry.bridged = true;
    this.asking = true;
    let settle;
    this.answered = new Promise((r) => { settle = r; });
    const token = this.host.imageToken();
    try {
      const res = await server.decode({ points: entry.points, box: entry.box });
      if (token === this.host.imageToken() && !entry.result && !entry.error && !entry.cancelled) {
        entry.result = res;
        if (entry === this.host.current()) this.host.onChange();
      }
    } catch (e) {
      console.warn("[msam] the server's decode failed; the page's decoder will answer:", errText(e));
    } finally {
      this.asking = false;
      settle();
    }
    this.pump();
  }

  /** Resolves once no server decode (host.bridge) is in flight: at once when none is. */
  serverAnswered() {
    return this.answered;
  }

  /**
   * Decode `prompts` with MobileSAM (when `needA`) and, in compare mode, with the comparison model
   * (when `needB`), both at once. Returns {a: result|Error|null, b: {key, result}|{key, error}|null}.
   */
  async #decodeBoth(prompts, needA, needB, maskA, maskB) {
    const cmp = this.host.compare;
    const cmpKey = cmp.key;
    const [ra, rb] = await Promise.allSettled([
      needA ? this.host.model().decode(prompts, maskA) : null,
      needB ? cmp.decode(prompts, maskB) : null,
    ]);
    const a = !needA ? null : ra.status === "fulfilled" ? ra.value : new Error(errText(ra.reason));
    let b = null;
    if (needB) {
      b = rb.status === "fulfilled" ? { key: cmpKey, result: rb.value } : { key: cmpKey, error: errText(rb.reason) };
    }
    return { a, b };
  }

  async #decodeEntry(entry) {
    const host = this.host, cmp = host.compare;
    const needA = !entry.result || !!entry.result.server;
    const needB = cmp.active() && !(entry.cmp && entry.cmp.key === cmp.key);
    const token = host.imageToken();
    try {
      const { a, b } = await this.#decodeBoth({ points: entry.points, box: entry.box }, needA, needB,
        needA && entry.refine ? selectedLowRes(entry.prev) : null,
        needB && entry.refine ? cmp.selectedLowRes(entry.prev) : null);
      if (token !== host.imageToken()) return;
      if (a instanceof Error) {
        entry.error = a.message;
        host.onError("Decoder failed: " + entry.error);
      } else if (a) {
        entry.result = a;
        this.#noteDecode(a);
      }
      if (b && cmp.key !== null && b.key === cmp.key) {
        entry.cmp = b;
        if (b.error) host.onError(`${cmp.label} decoder failed: ${b.error}`);
        else cmp.noteDecode(b.result);
      }
    } finally {
      entry.pending = false;
    }
    if (entry === host.current()) {
      this.ensureDecoded(entry); // compare mode began while this decode ran
      host.onChange();
    } else {
      host.onOtherDecoded?.(); // another object's (app.js objects) or an undone state's
    }
  }

  /** Whether a committed entry can share a decoder run with others: a box alone (what a pasted list
   * of boxes commits: the same prompt length for all), no mask input, MobileSAM's decode only. */
  #batchable(entry) {
    return !!entry.box && !entry.points.length && !entry.cancelled && !entry.refine && (!entry.result || entry.result.server) && !entry.error
      && !this.host.compare.active();
  }

  /** `entry` (just taken off the queue) and the batchable entries queued right after it, up to batchMax. */
  #batchAfter(entry) {
    const batch = [entry];
    if (!this.#batchable(entry)) return batch;
    while (batch.length < this.batchMax && this.commits.length && this.#batchable(this.commits[0])) {
      batch.push(this.commits.shift());
    }
    return batch;
  }

  /** Decode several committed entries (no mask inputs, MobileSAM only) in as few decoder runs as it takes. */
  async #decodeBatch(entries) {
    const host = this.host;
    const token = host.imageToken();
    let results;
    try {
      results = await host.model().decodeBatch(entries.map((e) => ({ points: e.points, box: e.box })), this.batchMax);
    } catch (e) {
      results = entries.map(() => new Error(errText(e)));
    }
    for (const e of entries) e.pending = false;
    if (token !== host.imageToken()) return;
    let failed = null;
    entries.forEach((e, i) => {
      const r = results[i];
      if (r instanceof Error || !r) {
        e.error = r ? r.message : "no result";
        failed = e.error;
      } else {
        e.result = r;
        this.#noteDecode(r);
        this.batchedCount++;
      }
    });
    if (failed) host.onError("Decoder failed: " + failed);
    const current = host.current();
    if (entries.includes(current)) {
      this.ensureDecoded(current); // compare mode began while this decode ran
      host.onChange();
    }
    if (entries.some((e) => e !== current)) host.onOtherDecoded?.();
  }

  async #decodePreview(req) {
    // what a click here would give: the committed prompts plus this one
    const host = this.host, cmp = host.compare;
    const token = host.imageToken();
    const needB = cmp.active();
    const refine = host.refine();
    const { a, b } = await this.#decodeBoth({ points: req.points, box: req.box }, true, needB,
      refine ? selectedLowRes(req.entry) : null,
      needB && refine ? cmp.selectedLowRes(req.entry) : null);
    if (token !== host.imageToken()) return;
    if (a instanceof Error) {
      host.onError("Decoder failed: " + a.message);
      return;
    }
    this.#noteDecode(a);
    if (b && b.result) cmp.noteDecode(b.result);
    this.lastPreview = { entry: req.entry, points: req.points, box: req.box, refine, token, result: a, cmp: b };
    // a click made while this preview ran, where it was previewed: its answer (no second decode)
    for (const e of this.commits) {
      if (!e.cancelled && !e.result && previewAnswers(this.lastPreview, e)) this.#takePreview(this.lastPreview, e);
    }
    if (req.entry === host.current() && this.previewing) {
      this.preview = { entry: req.entry, result: a, cmp: b, points: req.points, box: req.box };
      host.onChange();
    } else {
      host.onStats();
    }
  }

  #noteDecode(res) {
    this.decodeCount++;
    this.lastDecodeMs = res.ms;
  }
}
