// MobileSAM browser demo: the resized upload. A photo chosen in the upload box goes to the server
// first as the encoder's input, the photo resized to 1024 pixels on its long side here
// (resize-worker.js, web/resize.js: the server's own resample), a few hundred KB instead of a
// 2-3 MB phone photo; the server encodes it as the original's embedding (POST config.encodeUrl,
// mobilesam_app/resized_upload.py). The page shows the photo at once and takes clicks while that
// runs. Once the copy is sent, the upload box gets its `change` event and uploads the original as
// it always did (in the background: share links, downloads and compare mode need it); the
// server recognises it and the page swaps in its id (app.js setImage, info.replaces).
//
// Anything unusual (compare mode on, several files, not a JPEG/PNG/WebP, transparency, a failed
// decode or request) leaves the photo to the upload box's usual path: nothing is lost.

const TYPES = new Set(["image/jpeg", "image/png", "image/webp"]);
const UPLOAD_INPUT = "#msam-upload input[type=file]";
const COMPARE_TOGGLE = "#msam-compare-toggle input[type=checkbox]";

export class ResizedUpload {
  /**
   * @param {object} host
   * @param {() => object} host.config MSAM_CONFIG (encodeUrl; resizedUpload false turns this off)
   * @param {(photo, width, height, fileName) => number} host.showLocal show the chosen photo, take clicks; returns a token
   * @param {(token, info) => void} host.encoded the server's info for the photo shown as `token`
   * @param {(token, text, kind) => void} host.status progress / errors for the photo shown as `token`
   */
  constructor(host) {
    this.host = host;
    this.worker = null;
    this.nextId = 1;
    this.pending = new Map();
    this.replaying = null; // the input whose change event is being handed on
    this.onChange = (e) => this.#intercept(e);
    this.last = null; // {ms, bytes, width, height, resizedWidth, resizedHeight} of the last photo sent
  }

  install(doc = document) {
    doc.addEventListener("change", this.onChange, true);
  }

  enabled() {
    const c = this.host.config() || {};
    if (!c.encodeUrl || c.resizedUpload === false) return false;
    if (/[?&]upload=original(&|$)/.test(location.search)) return false;
    const compare = document.querySelector(COMPARE_TOGGLE);
    return !(compare && compare.checked) && typeof OffscreenCanvas !== "undefined" && typeof Worker !== "undefined";
  }

  #intercept(e) {
    const input = e.target;
    if (!input || input === this.replaying || !input.matches || !input.matches(UPLOAD_INPUT)) return;
    const files = input.files;
    if (!files || files.length !== 1 || !TYPES.has(files[0].type) || !this.enabled()) return;
    e.stopImmediatePropagation(); // the upload box gets it once the resized copy is on its way
    this.#send(input, files[0]).catch((err) => console.warn("[msam] resized upload:", err));
  }

  /** Hand the change event on to the upload box (it uploads the original as usual). */
  #handOn(input) {
    if (!input || !input.isConnected) return;
    this.replaying = input;
    try {
      input.dispatchEvent(new Event("change", { bubbles: true }));
    } finally {
      this.replaying = null;
    }
  }

  #resize(file) {
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
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.worker.postMessage({ id, file, type: "image/jpeg", quality: 0.92 });
    });
  }

  async #send(input, file) {
    const t0 = performance.now();
    const res = await this.#resize(file);
    if (!res.ok) {
      res.bitmap?.close?.();
      this.#handOn(input); // the usual path
      return;
    }
    const token = this.host.showLocal(res.bitmap, res.width, res.height, file.name);
    const url = `${this.host.config().encodeUrl}?width=${res.width}&height=${res.height}`;
    let info;
    try {
      info = await postWithProgress(url, res.blob, (sent, total) => {
        if (sent < total) this.host.status(token, `Uploading the photo (${Math.round((100 * sent) / total)}%)…`, "busy");
        else if (input) {
          this.host.status(token, "Encoding the photo on the server…", "busy");
          const original = input;
          input = null;
          this.#handOn(original); // the original follows, in the background
        }
      });
    } catch (err) {
      if (input) this.#handOn(input); // the usual path: the upload box shows its own error if any
      else this.host.status(token, String(err.message || err), "error");
      return;
    }
    if (input) this.#handOn(input);
    this.last = { ms: performance.now() - t0, bytes: res.blob.size, width: res.width, height: res.height,
      steps: res.ms };
    this.host.encoded(token, info);
  }
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
