// MobileSAM browser demo: the resized upload. A photo chosen in the upload box goes to the server
// first as the encoder's input, the photo resized to 1024 pixels on its long side here
// (resize-worker.js, web/resize.js: the server's own resample), a few hundred KB instead of a
// 2-3 MB phone photo; the server encodes it as the original's embedding (POST config.encodeUrl,
// mobilesam_app/resized_upload.py). The page shows the photo at once and takes clicks while that
// runs. Once the server has answered for the copy, the upload box gets its `change` event and uploads
// the original as it always did (in the background: share links, downloads and compare mode need it); the
// server recognises it and the page swaps in its id (app.js setImage, info.replaces).
//
// A photo dropped on the upload box, or pasted (Ctrl/Cmd+V) on the page outside a text field, takes
// the same path; the original then follows through the upload box's file input (the clipboard
// button of the upload box stays on the upload box's own path). So does a photo chosen in the early
// control (web/early.js, `choose`) before Gradio's page has loaded: its original follows once the
// upload box is there, and the early control goes then (`retireEarlyControl`).
//
// Anything unusual (compare mode on, several files, not a JPEG/PNG/WebP, transparency, a failed
// decode or request) leaves the photo to the upload box's usual path: nothing is lost.

import { sleep } from "./util.js";

const TYPES = new Set(["image/jpeg", "image/png", "image/webp"]);
const UPLOAD_INPUT = "#msam-upload input[type=file]";
const DROP_TARGET = "#msam-upload .upload-container"; // where the upload box takes drops
const CLEAR_BUTTON = '#msam-upload button[aria-label="Clear"], #msam-upload button[title="Clear"]';
const COMPARE_TOGGLE = "#msam-compare-toggle input[type=checkbox]";
const UPLOAD_BOX = "#msam-upload";
const EARLY_CONTROL = "#msam-early"; // web/early.js
const UPLOAD_BOX_WAIT_MS = 300_000; // how long a photo chosen early waits for the upload box (a slow link)
const INPUT_WAIT_MS = 5_000; // how long a dropped or pasted photo waits for the upload box's file input
const LIVE_WAIT_MS = 10_000; // how long a hand-on waits for Gradio's page to be live (host.live)
const TAKE_WAIT_MS = 5_000; // how long the upload box has to show that it took a file
const HAND_ON_TRIES = 3;
const UPLOAD_BOX_PHOTO = "#msam-upload img";

export class ResizedUpload {
  /**
   * @param {object} host
   * @param {() => object} host.config MSAM_CONFIG (encodeUrl; resizedUpload false turns this off)
   * @param {(photo, width, height, fileName) => number} host.showLocal show the chosen photo, take clicks; returns a token
   * @param {(token, info) => void} host.encoded the server's info for the photo shown as `token`
   * @param {(token, text, kind) => void} host.status progress / errors for the photo shown as `token`
   * @param {() => Promise<void>} [host.live] resolves once Gradio's page has run its load event
   */
  constructor(host) {
    this.host = host;
    this.worker = null;
    this.nextId = 1;
    this.pending = new Map();
    this.replaying = null; // the event being handed on to the upload box
    this.onChange = (e) => this.#intercept(e);
    this.onDrop = (e) => this.#interceptDrop(e);
    this.onPaste = (e) => this.#interceptPaste(e);
    this.last = null; // {ms, bytes, width, height, resizedWidth, resizedHeight} of the last photo sent
    this.handedOn = null; // {to: "input" | "drop" | "nothing", waitedMs, attempts} of the last original handed on
  }

  install(doc = document) {
    doc.addEventListener("change", this.onChange, true);
    doc.addEventListener("drop", this.onDrop, true);
    doc.addEventListener("paste", this.onPaste, true);
    // the resize worker started now (its module fetched and run) rather than when a photo is chosen
    if (this.enabled()) this.#ensureWorker();
  }

  enabled() {
    const c = this.host.config() || {};
    if (!c.encodeUrl || c.resizedUpload === false) return false;
    if (/[?&]upload=original(&|$)/.test(location.search)) return false;
    const compare = document.querySelector(COMPARE_TOGGLE);
    return !(compare && compare.checked) && typeof OffscreenCanvas !== "undefined" && typeof Worker !== "undefined";
  }

  /** A photo chosen before the upload box exists (the early control): sent resized if it can be, and
   * handed on to the upload box once that is there. */
  choose(file) {
    const handOn = () => this.#handOnFile(file, UPLOAD_BOX_WAIT_MS);
    if (this.#single([file])) this.#start(file, handOn);
    else handOn(); // the upload box's usual path
  }

  /** The one file of `files` if it can take this path now, else null. */
  #single(files) {
    return files && files.length === 1 && TYPES.has(files[0].type) && this.enabled() ? files[0] : null;
  }

  #intercept(e) {
    const input = e.target;
    if (!input || e === this.replaying || !input.matches || !input.matches(UPLOAD_INPUT)) return;
    const file = this.#single(input.files);
    if (!file) return;
    e.stopImmediatePropagation(); // the upload box gets it once the resized copy is on its way
    this.#start(file, () => this.#handOn(input, new Event("change", { bubbles: true })));
  }

  #interceptDrop(e) {
    const target = e.target && e.target.closest ? e.target.closest(DROP_TARGET) : null;
    if (!target || e === this.replaying) return;
    const file = this.#single(e.dataTransfer && e.dataTransfer.files);
    if (!file) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    this.#start(file, () => this.#handOnFile(file));
  }

  #interceptPaste(e) {
    const t = e.target;
    if (t && (t.isContentEditable || (t.closest && t.closest("input, textarea")))) return; // text pasted
    const target = document.querySelector(DROP_TARGET);
    const file = target ? this.#single(e.clipboardData && e.clipboardData.files) : null;
    if (!file) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    this.#start(file, () => this.#handOnFile(file));
  }

  /** Hand a dropped or pasted `file` on to the upload box as if chosen in it: its file input (once
   * its clear button has emptied it, when it shows a photo: the photo shown here stays), else a drop.
   * `waitMs`: how long to wait for the upload box and its file input (a photo chosen before they
   * existed). A file handed to the box before Gradio's page is live (its load event done,
   * `host.live`) can be dropped without a trace (a fresh-profile test: 3 of 6 full-suite runs, 1 of 4
   * runs beside two busy loops):
   * the hand-on waits for that (bounded) and is made again if the box did not take the file. */
  async #handOnFile(file, waitMs = 0) {
    const t0 = performance.now();
    let input = await this.#uploadInput(t0 + Math.max(waitMs, INPUT_WAIT_MS));
    if (input) await Promise.race([this.host.live ? this.host.live() : null, sleep(LIVE_WAIT_MS)]);
    for (let attempt = 1; input && attempt <= HAND_ON_TRIES; attempt++) {
      const dt = new DataTransfer();
      dt.items.add(file);
      input.files = dt.files;
      this.handedOn = { to: "input", waitedMs: performance.now() - t0, attempts: attempt };
      this.#handOn(input, new Event("change", { bubbles: true }));
      if (await this.#boxTook(input, TAKE_WAIT_MS)) return;
      input = document.querySelector(UPLOAD_INPUT);
    }
    if (input) {
      console.warn("[msam] the upload box did not take the original photo (no share link for it)");
      return;
    }
    const target = document.querySelector(DROP_TARGET);
    this.handedOn = { to: target ? "drop" : "nothing", waitedMs: performance.now() - t0 };
    if (target) this.#handOn(target, dropEvent(file));
    else console.warn("[msam] the upload box never came: the original photo was not uploaded (no share link)");
  }

  /** The upload box's file input, waited for until `deadline` (its clear button pressed once if the
   * box shows a photo); null if it did not come. */
  async #uploadInput(deadline) {
    let cleared = false;
    for (;;) {
      const input = document.querySelector(UPLOAD_INPUT);
      if (input) return input;
      const clear = cleared ? null : document.querySelector(CLEAR_BUTTON);
      if (clear) {
        clear.click(); // the box shows a photo: emptied, it shows its file input again
        cleared = true;
      }
      if (performance.now() >= deadline) return null;
      await sleep(50);
    }
  }

  /** Whether the upload box took the file handed to `input` within `ms`: Gradio replaces the input
   * while it uploads, then shows the photo. */
  async #boxTook(input, ms) {
    for (const t0 = performance.now(); ;) {
      if (!input.isConnected || document.querySelector(UPLOAD_BOX_PHOTO)) return true;
      if (performance.now() - t0 >= ms) return false;
      await sleep(50);
    }
  }

  #start(file, handOn) {
    this.#send(file, once(handOn)).catch((err) => console.warn("[msam] resized upload:", err));
  }

  /** Hand `event` (the user's, again) on to the upload box: it uploads the original as usual. */
  #handOn(target, event) {
    if (!target || !target.isConnected) return;
    this.replaying = event;
    try {
      target.dispatchEvent(event);
    } finally {
      this.replaying = null;
    }
  }

  #ensureWorker() {
    if (!this.worker) {
      this.worker = new Worker(new URL("./resize-worker.js", import.meta.url), { type: "module", name: "msam-resize" });
      this.worker.onmessage = (e) => {
        const p = this.pending.get(e.data.id);
        this.pending.delete(e.data.id);
        if (p) p(e.data);
      };
      this.worker.onerror = (e) => {
        for (const p of this.pending.values()) p({ ok: false, error: String(e.message || e) });
        this.pending.clear();
        this.worker = null;
      };
    }
    return this.worker;
  }

  #resize(file) {
    const worker = this.#ensureWorker();
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      worker.postMessage({ id, file, type: "image/jpeg", quality: 0.92 });
    });
  }

  /** Send `file` resized, then `handOn()` (once): the original to the upload box. */
  async #send(file, handOn) {
    const t0 = performance.now();
    const res = await this.#resize(file);
    if (!res.ok) {
      res.bitmap?.close?.();
      handOn(); // the usual path
      return;
    }
    const token = this.host.showLocal(res.bitmap, res.width, res.height, file.name);
    const url = `${this.host.config().encodeUrl}?width=${res.width}&height=${res.height}`;
    let info;
    try {
      info = await postWithProgress(url, res.blob, (sent, total) => {
        if (sent < total) this.host.status(token, `Uploading the photo (${Math.round((100 * sent) / total)}%)…`, "busy");
        else this.host.status(token, "Encoding the photo on the server…", "busy");
      });
    } catch (err) {
      handOn(); // the usual path: the upload box shows its own error if any
      return;
    }
    this.last = { ms: performance.now() - t0, bytes: res.blob.size, width: res.width, height: res.height,
      steps: res.ms };
    this.host.encoded(token, info); // the page fetches the embedding
    // The original follows now, in the background. Sent as soon as the copy's bytes were handed to the
    // network, its upload and the server's work on it overlapped the copy's upload and encode: the
    // copy's answer came 0.9-1.9 s later on an emulated 5 Mbit/s uplink (bench/first_visit.py).
    handOn();
  }
}

/** Remove the early upload control (web/early.js) once Gradio's upload box is on the page. */
export function retireEarlyControl(doc = document) {
  if (doc.querySelector(UPLOAD_BOX)) doc.querySelector(EARLY_CONTROL)?.remove();
}

/** `fn` callable once (later calls do nothing). */
function once(fn) {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}

/** A drop of `file` (as the user's drop: the upload box reads dataTransfer.files). */
function dropEvent(file) {
  const dt = new DataTransfer();
  dt.items.add(file);
  return new DragEvent("drop", { bubbles: true, cancelable: true, dataTransfer: dt });
}

/** POST `blob` to `url` (XMLHttpRequest: fetch reports no upload progress); resolves to the JSON
 * reply, rejects with its `error` text. `onProgress(sent, total)`; (total, total) once all is sent. */
function postWithProgress(url, blob, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.responseType = "json";
    xhr.setRequestHeader("Content-Type", blob.type || "application/octet-stream");
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded, e.total); };
    let sent = false;
    xhr.upload.onload = () => { sent = true; onProgress(blob.size, blob.size); };
    xhr.onload = () => {
      if (!sent) onProgress(blob.size, blob.size);
      const body = xhr.response;
      if (xhr.status === 200 && body && body.image_id) resolve(body);
      else reject(new Error((body && body.error) || `the server refused the photo (HTTP ${xhr.status})`));
    };
    xhr.onerror = () => reject(new Error("the photo could not be sent (network error)"));
    xhr.send(blob);
  });
}
