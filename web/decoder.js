// onnxruntime-web loading and the SAM mask decoder.
// A MaskModel is one decoder session + one image embedding; the page may hold two (compare mode).
// Both live in one decoder worker (web/decoder-worker.js running web/decoder-core.js): the embedding
// and the fast decoder's per-image cache stay there, so a prompt sends only its points and gets its
// masks back. Without worker support the same engine runs in the page.

import { DecoderEngine, EMBED_SIZE, errorText, importOrt } from "./decoder-core.js";
import { decoderPointInputs } from "./prompts.js";

const ortPromises = new Map();
let ortInfo = null;

function ortBaseUrl(config) {
  let base = config.ortBase || "/web/ort/";
  if (!base.endsWith("/")) base += "/";
  return new URL(base, location.href).href;
}

/** onnxruntime-web threads: up to 4 under cross-origin isolation (SharedArrayBuffer), else 1. */
function threadCount(config) {
  const isolated = config.crossOriginIsolated !== false && globalThis.crossOriginIsolated === true;
  return isolated ? Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 4)) : 1;
}

/**
 * Import onnxruntime-web in the page and configure its wasm backend (once per `proxy` setting).
 * The app's decoder does not use this (it runs in the decoder worker); the benchmarks use it to run
 * baseline models the way a page would by itself.
 * @param {{ortBase: string, crossOriginIsolated?: boolean, ortBundle?: string}} config
 * @param {boolean} proxy run inference in onnxruntime's own worker (env.wasm.proxy)
 */
export function loadOrt(config, proxy = false) {
  const key = proxy ? "proxy" : "direct";
  let p = ortPromises.get(key);
  if (!p) {
    const query = ortPromises.size > 0 ? "?instance=" + key : ""; // a second instance of the module
    p = importOrt({ base: ortBaseUrl(config), bundle: config.ortBundle || undefined, threads: threadCount(config),
      proxy, query });
    p.catch(() => ortPromises.delete(key)); // allow a retry
    ortPromises.set(key, p);
  }
  return p;
}

/** onnxruntime-web as the decoder runs it: {version, threads, isolated, worker, base, bundle}, once started. */
export function getOrtInfo() {
  return ortInfo;
}

/** The decoder engine in a module worker: call(op, args, transfer) -> Promise of the result. */
class WorkerBackend {
  constructor() {
    this.worker = new Worker(new URL("./decoder-worker.js", import.meta.url), { type: "module", name: "msam-decoder" });
    this.pending = new Map();
    this.nextId = 1;
    this.dead = null;
    this.worker.onmessage = (e) => {
      const { id, ok, result, error } = e.data || {};
      const p = this.pending.get(id);
      if (!p) return;
      this.pending.delete(id);
      if (ok) p.resolve(result);
      else p.reject(new Error(error));
    };
    const fail = (e) => {
      this.dead = new Error(`the decoder worker stopped (${errorText(e && (e.message || e.error))}); reload the page`);
      for (const p of this.pending.values()) p.reject(this.dead);
      this.pending.clear();
    };
    this.worker.onerror = fail;
    this.worker.onmessageerror = fail;
  }

  call(op, args = [], transfer = []) {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, args }, transfer);
    });
  }
}

/** The same engine in the page (inference then blocks the page while it runs). */
class PageBackend {
  constructor() {
    this.engine = new DecoderEngine();
    this.inPage = true;
  }

  async call(op, args = []) {
    return this.engine[op](...args);
  }
}

const backends = new Map(); // "auto" (worker, else the page) or "page" -> Promise of a backend

/**
 * Start the decoder engine once (in a worker; in the page if a worker cannot start it, or with
 * config.worker false) and resolve to its backend. Starting means importing onnxruntime-web and
 * starting its WebAssembly runtime, so calling this early (page load) hides that time.
 */
export function startDecoderEngine(config) {
  const key = config.worker === false || typeof Worker === "undefined" ? "page" : "auto";
  let p = backends.get(key);
  if (!p) {
    p = (async () => {
      const start = { ortBase: ortBaseUrl(config), ortBundle: config.ortBundle, threads: threadCount(config) };
      const describe = (info, worker) => ({ ...info, worker, base: start.ortBase, bundle: start.ortBundle || "ort.wasm.min.mjs" });
      let workerError = null;
      if (key === "auto") {
        let backend = null;
        try {
          backend = new WorkerBackend();
          ortInfo = describe(await backend.call("start", [start]), true);
          return backend;
        } catch (e) {
          workerError = e;
          backend?.worker.terminate();
          console.warn("[msam] decoder worker failed, running the decoder in the page:", errorText(e));
        }
      }
      const backend = new PageBackend();
      try {
        const info = describe(await backend.call("start", [start]), false);
        if (key === "auto" || !ortInfo) ortInfo = info;
      } catch (e) {
        throw workerError && !/onnxruntime/.test(errorText(e)) ? workerError : e;
      }
      return backend;
    })();
    p.catch(() => backends.delete(key)); // allow a retry
    backends.set(key, p);
  }
  return p;
}

/** A response's body as a Uint8Array, calling `onProgress(loaded, total)` as it arrives (total: the
 * Content-Length when the body is not content-encoded, else 0). */
async function readWithProgress(r, onProgress) {
  if (!onProgress || !r.body) return new Uint8Array(await r.arrayBuffer());
  const encoded = r.headers.get("content-encoding");
  const total = encoded && encoded !== "identity" ? 0 : Number(r.headers.get("content-length")) || 0;
  const reader = r.body.getReader();
  const chunks = [];
  let loaded = 0;
  onProgress(0, total);
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    try { onProgress(loaded, total); } catch { /* a progress display never stops the download */ }
  }
  if (total && loaded === total && chunks.length === 1) return chunks[0];
  const out = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.byteLength; }
  return out;
}

let nextModelId = 1;

export class MaskModel {
  /** @param {{ortBase: string, crossOriginIsolated?: boolean, ortBundle?: string, worker?: boolean}} config */
  constructor(config) {
    this.config = config;
    this.id = nextModelId++;
    this.backend = null;
    this.decoderUrl = null;
    this.loading = null;
    this.provider = null;
    this.hasEmbedding = false;
    this.info = null;
    this.fast = false; // the session is the fast decoder (takes an image cache)
    this.prepareMs = null; // fast decoder: time of the last per-image run
    this.onProgress = null; // (loaded, total) bytes of the decoder download, as they arrive (total 0: unknown)
    this.loadTimings = null; // {fetchMs, createMs, sessionMs, startedAt, readyAt, optimizationLevel, bytes} of the last load
    this.warmUpResult = null; // {runs, ms} of the warm-up after load
    this._prepared = Promise.resolve();
  }

  /** Load (once per URL) the decoder ONNX. Resolves to this; rejects with a readable Error. */
  load(decoderUrl) {
    if (this.loading && this.decoderUrl === decoderUrl) return this.loading;
    this.decoderUrl = decoderUrl;
    this.hasEmbedding = false;
    this.loading = (async () => {
      const t0 = performance.now();
      const backendP = startDecoderEngine(this.config); // starts while the model downloads
      backendP.catch(() => {});
      let bytes;
      try {
        const r = await fetch(decoderUrl);
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        bytes = await readWithProgress(r, this.onProgress);
      } catch (e) {
        throw new Error(`decoder failed to load (${decoderUrl}): ${errorText(e)}`);
      }
      const t1 = performance.now();
      const backend = await backendP;
      let res;
      try {
        const size = bytes.byteLength;
        res = await backend.call("load", [this.id, bytes], [bytes.buffer]);
        res.bytes = size;
      } catch (e) {
        throw new Error(`decoder failed to load (${decoderUrl}): ${errorText(e)}`);
      }
      this.backend = backend;
      this.fast = res.fast;
      this.provider = backend.inPage ? "wasm" : "wasm (worker)";
      const t2 = performance.now();
      this.loadTimings = { fetchMs: t1 - t0, createMs: t2 - t1, sessionMs: res.createMs, startedAt: t0, readyAt: t2,
        optimizationLevel: res.optimizationLevel, bytes: res.bytes };
      performance.mark("msam-decoder-ready", { detail: { url: decoderUrl, bytes: res.bytes } });
      if (!backend.inPage && this.config.warmUp !== false) {
        // in the background; a real embedding stops it (and queues behind at most one of its runs)
        backend.call("warmUp", [this.id]).then((w) => { this.warmUpResult = w; }, () => {});
      }
      return this;
    })();
    this.loading.catch(() => {}); // errors are reported by whoever awaits it
    return this.loading;
  }

  get ready() {
    return !!(this.backend && this.hasEmbedding && this.info);
  }

  /**
   * Set the image embedding and its image info; the decoder gets a copy of `embedding`: a
   * Float32Array of 1*256*64*64 values, or the bytes fetched from the server (Uint8Array, either
   * wire format of web/embedding.js), which the decoder engine decodes in its worker, off the
   * page's thread. With the fast decoder this also starts the per-image run (queued before any
   * decode). The returned promise settles when that is done, or rejects if the bytes are not an
   * embedding (callers need not wait: decodes are queued after it).
   */
  setEmbedding(embedding, info) {
    this.hasEmbedding = !!embedding;
    this.info = embedding ? info : null;
    if (embedding instanceof Float32Array && embedding.length !== EMBED_SIZE) {
      throw new Error(`embedding has ${embedding.length} values, expected ${EMBED_SIZE}`);
    }
    if (!this.loading) return Promise.resolve();
    const p = (async () => {
      await this.loading;
      const data = embedding ? embedding.slice() : null;
      const res = await this.backend.call("setEmbedding", [this.id, data], data ? [data.buffer] : []);
      if (res && res.prepareMs != null) this.prepareMs = res.prepareMs;
    })();
    this._prepared = p.catch(() => {});
    p.catch(() => {}); // reported by the decode that needs it
    return p;
  }

  /** Resolves when the current embedding's per-image work (fast decoder) is done. */
  whenPrepared() {
    return this._prepared;
  }

  /**
   * Run the decoder.
   * @param {{points: {x,y,label}[], box: object|null}} prompts in original-image pixels
   * @param {Float32Array|null} maskInput previous low-res logits (256*256) or null
   * @returns {Promise<{lowRes: Float32Array, scores: Float32Array, ms: number}>}
   *   lowRes: [4,256,256] logits (0 single-mask, 1..3 multimask), scores: [4]
   */
  async decode(prompts, maskInput = null) {
    if (this.loading) await this.loading;
    if (!this.backend) throw new Error("decoder not loaded");
    if (!this.hasEmbedding || !this.info) throw new Error("no image embedding");
    const { coords, labels, n } = decoderPointInputs(prompts.points || [], prompts.box || null, this.info);
    const mask = maskInput ? maskInput.slice() : null;
    const prompt = { coords, labels, n, maskInput: mask, origSize: [this.info.height, this.info.width] };
    return this.backend.call("decode", [this.id, prompt], mask ? [mask.buffer] : []);
  }

  /**
   * Decode several prompts (no mask inputs), in runs of up to `maxBatch` where the decoder takes a
   * batch (decoder-core.js decodeBatch). Resolves to the results of `decode`, in order.
   * @param {{points: {x,y,label}[], box: object|null}[]} promptsList in original-image pixels
   */
  async decodeBatch(promptsList, maxBatch) {
    if (this.loading) await this.loading;
    if (!this.backend) throw new Error("decoder not loaded");
    if (!this.hasEmbedding || !this.info) throw new Error("no image embedding");
    const origSize = [this.info.height, this.info.width];
    const prompts = promptsList.map((p) => ({ ...decoderPointInputs(p.points || [], p.box || null, this.info), origSize }));
    return this.backend.call("decodeBatch", [this.id, prompts, maxBatch]);
  }
}
