// The decoder engine: onnxruntime-web sessions, each with its image embedding and (fast decoder)
// per-image cache kept here between prompts. It runs inside web/decoder-worker.js (the default: a
// prompt then sends only its points across, and the page never blocks on inference), or in the
// page itself when a worker cannot start. Every call is queued: one session run at a time.

import { decodeEmbedding, encodeU8Bytes } from "./embedding.js";

export const EMBED_SHAPE = [1, 256, 64, 64];
export const EMBED_SIZE = 256 * 64 * 64;
export const LOW_RES_SIZE = 256 * 256;

// The "fast" decoder (mobilesam/export.py export_fast_decoder) takes a per-image cache besides the
// embedding: run once with empty cache tensors, it returns the cache as "<name>_out"; every later
// run with that cache decodes a prompt.
export const CACHE_NAMES = ["cache_t2i_k", "cache_t2i_v", "cache_i2t_q", "cache_up"];
const CACHE_TOKENS = 64 * 64;
const REQUIRED_INPUTS = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"];

/** Shape of a cache tensor: [heads, tokens, 16] per attention head, or [tokens, 256]. */
export function cacheDims(name, tokens) {
  return name === "cache_up" ? [tokens, 256] : [8, tokens, 16];
}

// A 67-byte ONNX model (y = Identity(x)): creating a session of it starts the WebAssembly runtime
// (compile, thread pool) while the real decoder downloads.
const WARMUP_MODEL = "CAcSADo3ChAKAXgSAXkiCElkZW50aXR5EgF3Wg8KAXgSCgoICAESBAoCCAFiDwoBeRIKCggIARIECgIIAUIECgAQDQ==";

export function errorText(e) {
  if (!e) return "unknown error";
  if (typeof e === "string") return e;
  return e.message || String(e);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function readVarint(bytes, pos) {
  let value = 0;
  let scale = 1;
  for (;;) {
    if (pos >= bytes.length) throw new Error("truncated varint");
    const b = bytes[pos++];
    value += (b & 0x7f) * scale;
    if (b < 0x80) return [value, pos];
    scale *= 128;
  }
}

/**
 * The fields of a protobuf message's bytes, in order: [field number, bytes] for length-delimited
 * ones (sub-messages and strings, not parsed), [field number, null] for numbers (skipped). Throws
 * on malformed bytes.
 */
function* protoFields(bytes) {
  let pos = 0;
  while (pos < bytes.length) {
    let tag, len;
    [tag, pos] = readVarint(bytes, pos);
    const field = Math.floor(tag / 8);
    switch (tag & 7) {
      case 0: [, pos] = readVarint(bytes, pos); yield [field, null]; break;
      case 1: pos += 8; yield [field, null]; break;
      case 5: pos += 4; yield [field, null]; break;
      case 2:
        [len, pos] = readVarint(bytes, pos);
        if (pos + len > bytes.length) throw new Error("truncated field");
        yield [field, bytes.subarray(pos, pos + len)];
        pos += len;
        break;
      default: throw new Error("unsupported wire type");
    }
  }
}

/**
 * An ONNX model's metadata_props (ModelProto field 14: StringStringEntryProto, key 1, value 2) as
 * {key: value}, read by walking the top-level fields only: the graph (field 7, nearly all of the
 * bytes) is skipped by its length, not parsed. Returns {} for bytes that are not a well-formed model.
 */
export function onnxMetadata(bytes) {
  const meta = {};
  const text = new TextDecoder();
  try {
    for (const [field, value] of protoFields(bytes)) {
      if (field !== 14 || !value) continue;
      const entry = {};
      for (const [f, v] of protoFields(value)) if (v) entry[f] = text.decode(v);
      if (entry[1] != null) meta[entry[1]] = entry[2] ?? "";
    }
  } catch {
    return {};
  }
  return meta;
}

/**
 * onnxruntime-web's graph optimisation level for a model: the one its "mobilesam.load_optimization"
 * metadata names (mobilesam/export.py: "basic" for a fast decoder saved optimised whose positional
 * encoding and float16 / int8 weights are constants folded to float32 at load); else "disabled" for
 * one saved already optimised (optimize_offline writes "mobilesam.optimized": "onnxruntime <v>
 * ORT_ENABLE_EXTENDED"), which then skips the optimiser's ~100 ms at session creation and runs as
 * fast; "all" otherwise.
 */
export function graphOptimizationLevel(bytes) {
  const meta = onnxMetadata(bytes);
  const asked = meta["mobilesam.load_optimization"];
  if (["disabled", "basic", "extended", "all"].includes(asked)) return asked;
  const done = meta["mobilesam.optimized"] || "";
  return /ORT_ENABLE_(EXTENDED|ALL)\b/.test(done) ? "disabled" : "all";
}

/** Whether a fast decoder's bytes take a batch of prompts in one run (export format 5 on). */
export function batchCapable(bytes) {
  return Number(onnxMetadata(bytes)["mobilesam.export_format_version"]) >= 5;
}

/**
 * Split prompts into runs: consecutive prompts with the same number of points, at most `maxBatch` a
 * run. Returns [[start, end), ...] index ranges covering 0..prompts.length in order.
 */
export function batchRuns(prompts, maxBatch) {
  const runs = [];
  for (let i = 0; i < prompts.length;) {
    let j = i + 1;
    while (j < prompts.length && j - i < maxBatch && prompts[j].n === prompts[i].n) j++;
    runs.push([i, j]);
    i = j;
  }
  return runs;
}

/**
 * Import onnxruntime-web's ESM bundle from `base` (a URL ending in "/") and configure its wasm
 * backend. `query` tells a second instance of the module apart (the benchmarks' proxy one).
 */
export async function importOrt({ base, bundle = "ort.wasm.min.mjs", threads = 1, proxy = false, query = "" }) {
  let mod;
  try {
    mod = await import(/* webpackIgnore: true */ base + bundle + query);
  } catch (e) {
    throw new Error(`onnxruntime-web failed to load from ${base}: ${errorText(e)}`);
  }
  const ort = mod.InferenceSession ? mod : mod.default;
  ort.env.wasm.wasmPaths = base;
  ort.env.wasm.numThreads = Math.max(1, threads || 1);
  ort.env.wasm.proxy = proxy;
  ort.env.logLevel = "error";
  return ort;
}

export class DecoderEngine {
  constructor() {
    this.ort = null;
    this.info = null; // {version, threads, isolated}
    this.models = new Map(); // id -> {session, fast, embedding, cache, generation}
    this._chain = Promise.resolve();
    this._starting = null;
  }

  /** Run `fn` after every call queued before it (session runs never overlap). */
  _enqueue(fn) {
    const p = this._chain.then(fn, fn);
    this._chain = p.catch(() => {});
    return p;
  }

  /**
   * Import onnxruntime-web (wasm EP) and start its runtime.
   * @param {{ortBase: string, ortBundle?: string, threads: number}} config
   */
  start(config) {
    if (!this._starting) {
      this._starting = (async () => {
        let base = config.ortBase;
        if (!base.endsWith("/")) base += "/";
        const t0 = performance.now();
        const ort = await importOrt({ base, bundle: config.ortBundle || undefined, threads: config.threads });
        const t1 = performance.now();
        const bytes = Uint8Array.from(atob(WARMUP_MODEL), (c) => c.charCodeAt(0));
        try {
          const s = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
          await s.release?.();
        } catch (e) {
          throw new Error(`onnxruntime-web failed to start: ${errorText(e)}`);
        }
        this.ort = ort;
        this.info = { version: ort.env.versions?.web || "?", threads: ort.env.wasm.numThreads,
          isolated: globalThis.crossOriginIsolated === true,
          startMs: { import: t1 - t0, runtime: performance.now() - t1 } };
        return this.info;
      })();
      this._starting.catch(() => { this._starting = null; });
    }
    return this._starting;
  }

  /** Create model `id`'s session from the ONNX bytes (after start). Resolves to {inputNames, fast, createMs, optimizationLevel}. */
  async load(id, bytes) {
    if (!this._starting) throw new Error("onnxruntime-web is not started");
    await this._starting;
    return this._enqueue(async () => {
      const t0 = performance.now();
      const level = graphOptimizationLevel(bytes);
      const session = await this.ort.InferenceSession.create(bytes, {
        executionProviders: ["wasm"], graphOptimizationLevel: level });
      const missing = REQUIRED_INPUTS.filter((n) => !session.inputNames.includes(n));
      if (missing.length) {
        await session.release?.();
        throw new Error(`the decoder lacks inputs ${missing.join(", ")}`);
      }
      const old = this.models.get(id);
      if (old) await old.session.release?.();
      const fast = CACHE_NAMES.every((n) => session.inputNames.includes(n));
      const batch = fast && batchCapable(bytes);
      this.models.set(id, { session, fast, batch, embedding: null, cache: null, generation: 0 });
      return { inputNames: session.inputNames, fast, batch, createMs: performance.now() - t0, optimizationLevel: level };
    });
  }

  _model(id) {
    const m = this.models.get(id);
    if (!m) throw new Error("decoder not loaded");
    return m;
  }

  /**
   * Set model `id`'s embedding: a Float32Array (kept), or the fetched wire bytes (Uint8Array,
   * decoded here by web/embedding.js; a malformed one throws now and leaves no embedding), or null.
   * With the fast decoder its image cache is computed now. Resolves to {prepareMs} (null when there
   * is nothing to prepare).
   */
  setEmbedding(id, data) {
    const m = this._model(id);
    m.generation++; // stops a warm-up between two of its runs
    m.embedding = null;
    m.cache = null;
    if (!data) return Promise.resolve({ prepareMs: null });
    const f32 = data instanceof Float32Array ? data : decodeEmbedding(data);
    if (f32.length !== EMBED_SIZE) throw new Error(`embedding has ${f32.length} values, expected ${EMBED_SIZE}`);
    m.embedding = f32;
    const generation = m.generation;
    return this._enqueue(async () => {
      if (!m.fast || m.generation !== generation) return { prepareMs: null };
      const t0 = performance.now();
      m.cache = await this._prepare(m, f32);
      return { prepareMs: performance.now() - t0 };
    });
  }

  async _prepare(m, f32) {
    const ort = this.ort;
    const feeds = {
      image_embeddings: new ort.Tensor("float32", f32, EMBED_SHAPE),
      point_coords: new ort.Tensor("float32", new Float32Array(2), [1, 1, 2]),
      point_labels: new ort.Tensor("float32", Float32Array.of(-1), [1, 1]),
      mask_input: new ort.Tensor("float32", new Float32Array(LOW_RES_SIZE), [1, 1, 256, 256]),
      has_mask_input: new ort.Tensor("float32", Float32Array.of(0), [1]),
    };
    for (const name of CACHE_NAMES) feeds[name] = new ort.Tensor("float32", new Float32Array(0), cacheDims(name, 0));
    const out = await m.session.run(feeds, CACHE_NAMES.map((n) => n + "_out"));
    const cache = {};
    for (const name of CACHE_NAMES) {
      const t = out[name + "_out"];
      const want = cacheDims(name, CACHE_TOKENS);
      if (!t || t.dims.join() !== want.join()) throw new Error(`decoder cache ${name} has shape [${t && t.dims}], expected [${want}]`);
      cache[name] = new ort.Tensor("float32", t.data, want);
    }
    return cache;
  }

  /**
   * Decode one prompt with model `id`'s embedding.
   * @param {{coords: Float32Array, labels: Float32Array, n: number, maskInput: Float32Array|null,
   *   origSize?: number[]}} p decoder inputs (SAM's 1024-pixel frame); origSize [h, w] feeds
   *   `orig_im_size` of decoders with the official interface
   * @returns {Promise<{lowRes: Float32Array, scores: Float32Array, ms: number}>}
   */
  decode(id, p) {
    return this._enqueue(async () => {
      const m = this._model(id);
      if (!m.embedding) throw new Error("no image embedding");
      return this._run(m, p);
    });
  }

  /**
   * Decode several prompts without a mask input with model `id`'s embedding: a fast decoder that
   * takes a batch decodes consecutive prompts of the same length together, `maxBatch` at most a run
   * (one run's image-side products serve them all, and one call crosses to the worker); any other
   * decoder decodes them one by one. Resolves to their results in order ({lowRes, scores, ms}, ms
   * the run's time shared among its prompts).
   * @param {{coords: Float32Array, labels: Float32Array, n: number, origSize?: number[]}[]} prompts
   */
  decodeBatch(id, prompts, maxBatch = 8) {
    return this._enqueue(async () => {
      const m = this._model(id);
      if (!m.embedding) throw new Error("no image embedding");
      const out = [];
      for (const [i, j] of batchRuns(prompts, m.batch ? Math.max(1, maxBatch) : 1)) {
        if (j - i === 1) out.push(await this._run(m, { ...prompts[i], maskInput: null }));
        else out.push(...(await this._runBatch(m, prompts.slice(i, j))));
      }
      return out;
    });
  }

  async _runBatch(m, prompts) {
    const ort = this.ort;
    const b = prompts.length, n = prompts[0].n;
    const coords = new Float32Array(b * n * 2), labels = new Float32Array(b * n);
    prompts.forEach((p, i) => { coords.set(p.coords, i * n * 2); labels.set(p.labels, i * n); });
    if (!m.cache) m.cache = await this._prepare(m, m.embedding);
    const feeds = {
      image_embeddings: new ort.Tensor("float32", m.embedding, EMBED_SHAPE),
      point_coords: new ort.Tensor("float32", coords, [b, n, 2]),
      point_labels: new ort.Tensor("float32", labels, [b, n]),
      mask_input: new ort.Tensor("float32", new Float32Array(LOW_RES_SIZE), [1, 1, 256, 256]),
      has_mask_input: new ort.Tensor("float32", Float32Array.of(0), [1]),
      ...m.cache,
    };
    const t0 = performance.now();
    const out = await m.session.run(feeds, ["iou_predictions", "low_res_masks"]);
    const ms = (performance.now() - t0) / b;
    const masks = out.low_res_masks, iou = out.iou_predictions;
    if (!masks || !iou || masks.data.length !== b * 4 * LOW_RES_SIZE || iou.data.length !== b * 4) {
      throw new Error(`a batch of ${b} prompts gave low_res_masks [${masks && masks.dims}], expected [${b},4,256,256]`);
    }
    const res = prompts.map((_, i) => ({
      lowRes: masks.data.slice(i * 4 * LOW_RES_SIZE, (i + 1) * 4 * LOW_RES_SIZE),
      scores: iou.data.slice(i * 4, (i + 1) * 4),
      ms,
    }));
    for (const t of Object.values(out)) t.dispose?.();
    return res;
  }

  async _run(m, p) {
    const ort = this.ort;
    const feeds = {
      image_embeddings: new ort.Tensor("float32", m.embedding, EMBED_SHAPE),
      point_coords: new ort.Tensor("float32", p.coords, [1, p.n, 2]),
      point_labels: new ort.Tensor("float32", p.labels, [1, p.n]),
      mask_input: new ort.Tensor("float32", p.maskInput || new Float32Array(LOW_RES_SIZE), [1, 1, 256, 256]),
      has_mask_input: new ort.Tensor("float32", Float32Array.of(p.maskInput ? 1 : 0), [1]),
    };
    if (m.session.inputNames.includes("orig_im_size")) {
      feeds.orig_im_size = new ort.Tensor("float32", Float32Array.from(p.origSize || [1024, 1024]), [2]);
    }
    let fetches;
    if (m.fast) {
      if (!m.cache) m.cache = await this._prepare(m, m.embedding);
      Object.assign(feeds, m.cache);
      fetches = ["iou_predictions", "low_res_masks"];
    }
    const t0 = performance.now();
    const out = fetches ? await m.session.run(feeds, fetches) : await m.session.run(feeds);
    const ms = performance.now() - t0;
    const masks = out.low_res_masks;
    const iou = out.iou_predictions;
    if (!masks || !iou) throw new Error("decoder outputs low_res_masks / iou_predictions missing");
    if (masks.data.length !== 4 * LOW_RES_SIZE) {
      throw new Error(`low_res_masks has shape [${masks.dims}], expected [1,4,256,256]`);
    }
    const res = { lowRes: new Float32Array(masks.data), scores: new Float32Array(iou.data), ms };
    for (const t of Object.values(out)) t.dispose?.();
    return res;
  }

  /**
   * Warm the WebAssembly code up: the first runs of a fresh page execute baseline-compiled code
   * (about twice as slow) until V8 has optimised the hot kernels in the background, which takes a
   * few runs. This decodes a synthetic embedding up to `runs` times, with pauses that leave the
   * optimising compiler a core, and stops as soon as a real embedding is set.
   */
  async warmUp(id, runs = 6, pauseMs = 40) {
    const m = this._model(id);
    const generation = m.generation;
    // a synthetic embedding, made through the wire format's decoder so that decoding a real one is
    // warm too (its first run takes twice as long)
    const q = Uint8Array.from({ length: EMBED_SIZE }, (_, i) => 128 + Math.round(127 * Math.sin(i)));
    const f32 = decodeEmbedding(encodeU8Bytes(new Float32Array(256).fill(1 / 255), new Float32Array(256).fill(-0.5), q));
    const prompt = { coords: Float32Array.of(300, 400, 700, 600, 0, 0), labels: Float32Array.of(1, 0, -1), n: 3,
      maskInput: null, origSize: [1024, 1024] };
    const times = [];
    let cache = null;
    for (let r = 0; r < runs; r++) {
      const done = await this._enqueue(async () => {
        if (m.generation !== generation || this.models.get(id) !== m) return true;
        const fake = { session: m.session, fast: m.fast, embedding: f32, cache };
        if (m.fast && !cache) cache = fake.cache = await this._prepare(fake, f32);
        times.push((await this._run(fake, prompt)).ms);
        return false;
      });
      if (done) break;
      await sleep(pauseMs);
    }
    return { runs: times.length, ms: times };
  }

  async release(id) {
    return this._enqueue(async () => {
      const m = this.models.get(id);
      this.models.delete(id);
      if (m) await m.session.release?.();
    });
  }
}
