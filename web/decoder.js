// onnxruntime-web loading and the SAM mask decoder.
// A MaskModel is one decoder session + one image embedding; the page may hold two
// (compare mode), sharing the ORT module.

import { decoderPointInputs } from "./prompts.js";

export const EMBED_SHAPE = [1, 256, 64, 64];
export const EMBED_SIZE = 256 * 64 * 64;
export const LOW_RES_SIZE = 256 * 256;

// The "fast" decoder (mobilesam/export.py export_fast_decoder) takes a per-image cache besides the
// embedding: run once with empty cache tensors, it returns the cache as "<name>_out"; every later
// run with that cache decodes a prompt (the cache stays here, one copy per image).
export const CACHE_NAMES = ["cache_t2i_k", "cache_t2i_v", "cache_i2t_q", "cache_up"];
const CACHE_TOKENS = 64 * 64;
/** Shape of a cache tensor: [heads, tokens, 16] per attention head, or [tokens, 256]. */
export function cacheDims(name, tokens) {
  return name === "cache_up" ? [tokens, 256] : [8, tokens, 16];
}

const ortPromises = new Map();
let ortInfo = null;

/**
 * Import onnxruntime-web and configure its wasm backend (once per `proxy` setting: the
 * no-proxy fallback is a second instance of the module, imported under another URL).
 * @param {{ortBase: string, crossOriginIsolated?: boolean, ortBundle?: string}} config
 *   ortBase: URL ending in "/" of onnxruntime-web's dist/ folder.
 *   ortBundle: ESM bundle in it (default "ort.wasm.min.mjs", wasm EP only;
 *   "ort.webgpu.min.mjs" adds WebGPU).
 * @param {boolean} proxy run inference in a worker (env.wasm.proxy), keeping the page responsive
 */
export function loadOrt(config, proxy = false) {
  const key = proxy ? "proxy" : "direct";
  let p = ortPromises.get(key);
  if (!p) {
    p = (async () => {
      let base = config.ortBase || "/web/ort/";
      if (!base.endsWith("/")) base += "/";
      base = new URL(base, location.href).href;
      const bundle = config.ortBundle || "ort.wasm.min.mjs";
      // (runs before the first await: size counts the other instances only)
      const url = base + bundle + (ortPromises.size > 0 ? "?instance=" + key : "");
      const mod = await import(/* webpackIgnore: true */ url);
      const ort = mod.InferenceSession ? mod : mod.default;
      const isolated = config.crossOriginIsolated !== false && globalThis.crossOriginIsolated === true;
      const threads = isolated ? Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 4)) : 1;
      ort.env.wasm.wasmPaths = base;
      ort.env.wasm.numThreads = threads;
      ort.env.wasm.proxy = proxy;
      ort.env.logLevel = "error";
      ortInfo = { version: ort.env.versions?.web || "?", threads, isolated, proxy, base, bundle };
      return ort;
    })();
    p.catch(() => ortPromises.delete(key)); // allow a retry
    ortPromises.set(key, p);
  }
  return p;
}

export function getOrtInfo() {
  return ortInfo;
}

// A 67-byte ONNX model (y = Identity(x)): creating a session of it starts onnxruntime-web's
// WebAssembly runtime (compile, worker proxy, thread pool) while the real decoder downloads.
const WARMUP_MODEL = "CAcSADo3ChAKAXgSAXkiCElkZW50aXR5EgF3Wg8KAXgSCgoICAESBAoCCAFiDwoBeRIKCggIARIECgIIAUIECgAQDQ==";
const warmups = new Map();

/** Start onnxruntime-web (import + WebAssembly runtime) once per `proxy` setting; resolves to ort. */
export function warmOrt(config, proxy = false) {
  const key = proxy ? "proxy" : "direct";
  let p = warmups.get(key);
  if (!p) {
    p = (async () => {
      const ort = await loadOrt(config, proxy);
      try {
        const bytes = Uint8Array.from(atob(WARMUP_MODEL), (c) => c.charCodeAt(0));
        const s = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
        await s.release?.();
      } catch (e) {
        console.warn("[msam] onnxruntime-web warm-up failed:", errorText(e));
      }
      return ort;
    })();
    p.catch(() => warmups.delete(key));
    warmups.set(key, p);
  }
  return p;
}

function errorText(e) {
  if (!e) return "unknown error";
  if (typeof e === "string") return e;
  return e.message || String(e);
}

export class MaskModel {
  /** @param {{ortBase: string, crossOriginIsolated?: boolean, ortBundle?: string, executionProviders?: string[]}} config */
  constructor(config) {
    this.config = config;
    this.ort = null;
    this.session = null;
    this.decoderUrl = null;
    this.loading = null;
    this.provider = null;
    this.embedding = null; // Float32Array 1*256*64*64
    this._embTensor = null; // its ort.Tensor, made on first decode
    this.info = null;
    this.fast = false; // the session is the fast decoder (takes an image cache)
    this.cache = null; // fast decoder: {name: Float32Array} of the current embedding
    this._cacheFor = null; // the embedding `cache` belongs to
    this._preparing = null; // fast decoder: promise of the cache of the current embedding
    this.prepareMs = null; // fast decoder: time of the last per-image run
    this.loadTimings = null; // {fetchMs, createMs} of the last load
    this._chain = Promise.resolve(); // session.run calls, one at a time
  }

  /** Load (once per URL) the decoder ONNX. Resolves to this; rejects with a readable Error. */
  load(decoderUrl) {
    if (this.loading && this.decoderUrl === decoderUrl) return this.loading;
    this.decoderUrl = decoderUrl;
    this.session = null;
    this.loading = (async () => {
      const wanted = this.config.executionProviders || ["wasm"];
      const wasmOnly = wanted.every((ep) => ep === "wasm" || ep === "cpu");
      // proxy (a worker) only works with the wasm EP; without it, inference blocks the page
      const proxies = this.config.proxy === false || !wasmOnly ? [false] : [true, false];
      const attempts = wasmOnly ? [["wasm"]] : [wanted, ["wasm"]];
      let lastErr = null;
      let bytes;
      const t0 = performance.now();
      // the runtime starts while the model downloads (errors surface below, at loadOrt)
      if (wasmOnly) warmOrt(this.config, proxies[0]).catch(() => {});
      try {
        const r = await fetch(decoderUrl);
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        bytes = new Uint8Array(await r.arrayBuffer());
      } catch (e) {
        throw new Error(`decoder failed to load (${decoderUrl}): ${errorText(e)}`);
      }
      const t1 = performance.now();
      for (const proxy of proxies) {
        let ort;
        try {
          ort = await (wasmOnly ? warmOrt(this.config, proxy) : loadOrt(this.config, proxy));
        } catch (e) {
          lastErr = new Error(`onnxruntime-web failed to load from ${this.config.ortBase}: ${errorText(e)}`);
          continue;
        }
        for (const eps of attempts) {
          try {
            // (a worker takes the buffer it is given: keep ours for a retry)
            this.session = await ort.InferenceSession.create(proxy ? bytes.slice() : bytes, {
              executionProviders: eps,
              graphOptimizationLevel: "all",
            });
            this.ort = ort;
            this.provider = eps[0] + (proxy ? " (worker)" : "");
            break;
          } catch (e) {
            lastErr = e;
            if (proxy) console.warn("[msam] decoder in a worker failed, trying without:", errorText(e));
          }
        }
        if (this.session) break;
      }
      if (!this.session) {
        if (lastErr && /onnxruntime-web failed/.test(lastErr.message)) throw lastErr;
        throw new Error(`decoder failed to load (${decoderUrl}): ${errorText(lastErr)}`);
      }
      const need = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"];
      const missing = need.filter((n) => !this.session.inputNames.includes(n));
      if (missing.length) throw new Error(`decoder ${decoderUrl} lacks inputs ${missing.join(", ")}`);
      this.fast = CACHE_NAMES.every((n) => this.session.inputNames.includes(n));
      this.cache = null;
      this._cacheFor = null;
      this._preparing = null;
      this.loadTimings = { fetchMs: t1 - t0, createMs: performance.now() - t1, bytes: bytes.byteLength };
      return this;
    })();
    this.loading.catch(() => {}); // errors are reported by whoever awaits it
    return this.loading;
  }

  get ready() {
    return !!(this.session && this.embedding && this.info);
  }

  /**
   * Set the image embedding (Float32Array of 1*256*64*64) and its image info. With the fast
   * decoder this also starts the per-image run (queued before any decode); the returned promise
   * settles when it is done (callers need not wait: decodes are queued after it).
   */
  setEmbedding(f32, info) {
    this._embTensor = null;
    this.cache = null;
    this._cacheFor = null;
    this._preparing = null;
    if (!f32) {
      this.embedding = null;
      this.info = null;
      return Promise.resolve();
    }
    if (f32.length !== EMBED_SIZE) throw new Error(`embedding has ${f32.length} values, expected ${EMBED_SIZE}`);
    this.embedding = f32;
    this.info = info;
    if (!this.loading) return Promise.resolve();
    const p = this._enqueue(async () => {
      await this.loading;
      if (this.fast && this.embedding === f32) await this._prepare();
    });
    p.catch(() => {}); // reported by the decode that needs it
    return p;
  }

  /** Resolves when the current embedding's per-image work (fast decoder) is done. */
  whenPrepared() {
    return this._enqueue(async () => {});
  }

  _enqueue(fn) {
    const p = this._chain.then(fn, fn);
    this._chain = p.catch(() => {});
    return p;
  }

  /** Fast decoder: the image cache of the current embedding (computed once; call inside the chain). */
  async _prepare() {
    const emb = this.embedding;
    if (this.cache && this._cacheFor === emb) return this.cache;
    const ort = this.ort;
    const proxy = !!ort.env.wasm.proxy;
    const feeds = {
      image_embeddings: new ort.Tensor("float32", proxy ? emb.slice() : emb, EMBED_SHAPE),
      point_coords: new ort.Tensor("float32", new Float32Array(2), [1, 1, 2]),
      point_labels: new ort.Tensor("float32", Float32Array.of(-1), [1, 1]),
      mask_input: new ort.Tensor("float32", new Float32Array(LOW_RES_SIZE), [1, 1, 256, 256]),
      has_mask_input: new ort.Tensor("float32", Float32Array.of(0), [1]),
    };
    for (const name of CACHE_NAMES) feeds[name] = new ort.Tensor("float32", new Float32Array(0), cacheDims(name, 0));
    const t0 = performance.now();
    const out = await this.session.run(feeds, CACHE_NAMES.map((n) => n + "_out"));
    const cache = {};
    for (const name of CACHE_NAMES) {
      const t = out[name + "_out"];
      const want = cacheDims(name, CACHE_TOKENS);
      if (!t || t.dims.join() !== want.join()) throw new Error(`decoder cache ${name} has shape [${t && t.dims}], expected [${want}]`);
      cache[name] = t.data instanceof Float32Array ? t.data : new Float32Array(t.data);
    }
    for (const t of Object.values(out)) t.dispose?.();
    this.prepareMs = performance.now() - t0;
    if (this.embedding === emb) {
      this.cache = cache;
      this._cacheFor = emb;
    }
    return cache;
  }

  /**
   * Run the decoder.
   * @param {{points: {x,y,label}[], box: object|null}} prompts in original-image pixels
   * @param {Float32Array|null} maskInput previous low-res logits (256*256) or null
   * @returns {Promise<{lowRes: Float32Array, scores: Float32Array, ms: number}>}
   *   lowRes: [4,256,256] logits (0 single-mask, 1..3 multimask), scores: [4]
   */
  decode(prompts, maskInput = null) {
    const run = async () => {
      if (this.loading) await this.loading;
      if (!this.session) throw new Error("decoder not loaded");
      if (!this.embedding) throw new Error("no image embedding");
      const ort = this.ort;
      // With env.wasm.proxy the input buffers are transferred to the worker (detached here),
      // so each run then gets copies.
      const proxy = !!ort.env.wasm.proxy;
      let emb = this._embTensor;
      if (!emb || proxy) emb = new ort.Tensor("float32", proxy ? this.embedding.slice() : this.embedding, EMBED_SHAPE);
      if (!proxy) this._embTensor = emb;
      const { coords, labels, n } = decoderPointInputs(prompts.points || [], prompts.box || null, this.info);
      const feeds = {
        image_embeddings: emb,
        point_coords: new ort.Tensor("float32", coords, [1, n, 2]),
        point_labels: new ort.Tensor("float32", labels, [1, n]),
        mask_input: new ort.Tensor("float32", maskInput ? maskInput.slice() : new Float32Array(LOW_RES_SIZE), [1, 1, 256, 256]),
        has_mask_input: new ort.Tensor("float32", Float32Array.of(maskInput ? 1 : 0), [1]),
      };
      let fetches;
      if (this.fast) {
        const cache = await this._prepare();
        for (const name of CACHE_NAMES) {
          feeds[name] = new ort.Tensor("float32", proxy ? cache[name].slice() : cache[name], cacheDims(name, CACHE_TOKENS));
        }
        fetches = ["iou_predictions", "low_res_masks"];
      }
      const t0 = performance.now();
      const out = fetches ? await this.session.run(feeds, fetches) : await this.session.run(feeds);
      const ms = performance.now() - t0;
      const masks = out.low_res_masks || out[this.session.outputNames[0]];
      const iou = out.iou_predictions || out[this.session.outputNames[1]];
      if (!masks || !iou) throw new Error("decoder outputs low_res_masks / iou_predictions missing");
      if (masks.data.length !== 4 * LOW_RES_SIZE) {
        throw new Error(`low_res_masks has shape [${masks.dims}], expected [1,4,256,256]`);
      }
      const res = { lowRes: new Float32Array(masks.data), scores: new Float32Array(iou.data), ms };
      for (const t of Object.values(out)) t.dispose?.();
      return res;
    };
    return this._enqueue(run);
  }
}
