// Benchmark page: the app's own decoder code (web/decoder.js MaskModel, web/embedding.js) and the
// same onnxruntime-web module (loadOrt) for the baseline, in one browser session.
import { MaskModel, loadOrt, getOrtInfo } from "/web/decoder.js";
import { fetchEmbedding } from "/web/embedding.js";
import { decoderPointInputs, selectIndex } from "/web/prompts.js";

const LOW = 256 * 256;
const now = () => performance.now();
// ?threads=1 (page URL) runs onnxruntime-web on one thread (as without cross-origin isolation).
const config = { ortBase: "/web/ort/", crossOriginIsolated: new URLSearchParams(location.search).get("threads") !== "1" };

function median(a) {
  const s = [...a].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** An onnxruntime-web session of `url` made as MaskModel makes its own (wasm EP, worker proxy). */
async function plainSession(url) {
  const ort = await loadOrt(config, true);
  const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
  // onnxruntime-web 1.30 cannot optimise some graphs (a Reshape fusion fails on the single-mask
  // export): then the least optimisation that loads is used, and reported.
  let lastErr = null;
  for (const level of ["all", "extended", "basic", "disabled"]) {
    try {
      const session = await ort.InferenceSession.create(bytes.slice(), { executionProviders: ["wasm"], graphOptimizationLevel: level });
      return { ort, session, level, error: lastErr };
    } catch (e) {
      lastErr = String(e && e.message ? e.message : e).slice(0, 300);
    }
  }
  throw new Error(`${url}: ${lastErr}`);
}

/** One run of the official-interface decoder (with orig_im_size: masks at the original size). */
async function runOfficial(ort, session, emb, info, prompt, maskInput) {
  const { coords, labels, n } = decoderPointInputs(prompt.points || [], prompt.box || null, info);
  const feeds = {
    image_embeddings: new ort.Tensor("float32", emb.slice(), [1, 256, 64, 64]),
    point_coords: new ort.Tensor("float32", coords, [1, n, 2]),
    point_labels: new ort.Tensor("float32", labels, [1, n]),
    mask_input: new ort.Tensor("float32", maskInput ? maskInput.slice() : new Float32Array(LOW), [1, 1, 256, 256]),
    has_mask_input: new ort.Tensor("float32", Float32Array.of(maskInput ? 1 : 0), [1]),
  };
  if (session.inputNames.includes("orig_im_size")) {
    feeds.orig_im_size = new ort.Tensor("float32", Float32Array.of(info.height, info.width), [2]);
  }
  const t0 = now();
  const out = await session.run(feeds);
  const ms = now() - t0;
  const res = { ms, scores: Float32Array.from(out.iou_predictions.data), lowRes: Float32Array.from(out.low_res_masks.data),
    masksShape: out.masks ? out.masks.dims : null };
  for (const t of Object.values(out)) t.dispose?.();
  return res;
}

function bestLowRes(res, prompt) {
  const k = res.scores.length === 1 ? 0 : selectIndex("auto", prompt.points || [], prompt.box || null, res.scores);
  return res.lowRes.subarray(k * LOW, (k + 1) * LOW).slice();
}

/**
 * Interleaved timing: each round runs every prompt on every baseline session, then on ours (MaskModel).
 * spec: {embeddingUrl, info, prompts: [{points, box, refine}], baselines: {name: url}, oursUrl, rounds}
 */
async function decode(spec) {
  const emb = await fetchEmbedding(spec.embeddingUrl);
  const info = spec.info;
  const base = {};
  for (const [name, url] of Object.entries(spec.baselines || {})) base[name] = await plainSession(url);
  const model = new MaskModel(config);
  await model.load(spec.oursUrl);
  const t0 = now();
  await model.setEmbedding(emb, info);
  if (model.whenPrepared) await model.whenPrepared();
  const prepareMs = now() - t0;
  const times = { ours_wall: [], ours_run: [] };
  for (const name of Object.keys(base)) { times[name + "_wall"] = []; times[name + "_run"] = []; }
  const rounds = spec.rounds || 5;
  const warm = spec.warmup ?? 1;
  for (let r = 0; r < rounds + warm; r++) {
    for (const name of Object.keys(base)) {
      let prev = null;
      for (const p of spec.prompts) {
        const t = now();
        const res = await runOfficial(base[name].ort, base[name].session, emb, info, p, p.refine ? prev : null);
        const wall = now() - t;
        prev = bestLowRes(res, p);
        if (r >= warm) { times[name + "_wall"].push(wall); times[name + "_run"].push(res.ms); }
      }
    }
    let prev = null;
    for (const p of spec.prompts) {
      const t = now();
      const res = await model.decode({ points: p.points || [], box: p.box || null }, p.refine ? prev : null);
      const wall = now() - t;
      prev = bestLowRes(res, p);
      if (r >= warm) { times.ours_wall.push(wall); times.ours_run.push(res.ms); }
    }
  }
  const summary = {};
  for (const [k, v] of Object.entries(times)) summary[k] = { p50: median(v), min: Math.min(...v), n: v.length };
  const levels = {};
  for (const [name, b] of Object.entries(base)) levels[name] = { level: b.level, error: b.error };
  return { summary, prepareMs, levels, ort: getOrtInfo(), provider: model.provider };
}

/** Outputs of ours for the given prompts (low-res logits and scores), for a correctness check. */
async function outputs(spec) {
  const emb = await fetchEmbedding(spec.embeddingUrl);
  const model = new MaskModel(config);
  await model.load(spec.oursUrl);
  await model.setEmbedding(emb, spec.info);
  const out = [];
  let prev = null;
  for (const p of spec.prompts) {
    const res = await model.decode({ points: p.points || [], box: p.box || null }, p.refine ? prev : null);
    prev = bestLowRes(res, p);
    let s = "";
    const bytes = new Uint8Array(res.lowRes.buffer, res.lowRes.byteOffset, res.lowRes.byteLength);
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    out.push({ scores: Array.from(res.scores), lowRes: btoa(s) });
  }
  return out;
}

/**
 * Time to a usable decoder session in a fresh page: decoder engine start (worker, onnxruntime-web
 * import, WebAssembly runtime), model fetch, session create. With spec.embeddingUrl, then the
 * per-image work; with spec.decodes, after spec.idleMs more (the page open, no photo chosen yet),
 * that many decodes of a point prompt, each timed (spec.warmUp false: without the warm-up runs).
 */
async function sessionStart(spec) {
  const t0 = now();
  const model = new MaskModel({ ...config, warmUp: spec.warmUp !== false });
  await model.load(spec.url);
  const loaded = now();
  let prepared = null;
  const decodes = [];
  if (spec.embeddingUrl) {
    const emb = await fetchEmbedding(spec.embeddingUrl);
    if (spec.idleMs) await new Promise((r) => setTimeout(r, spec.idleMs));
    const t1 = now();
    await model.setEmbedding(emb, spec.info);
    await model.whenPrepared();
    prepared = now() - t1;
    const { width, height } = spec.info;
    for (let i = 0; i < (spec.decodes || 0); i++) {
      const t = now();
      await model.decode({ points: [{ x: width * (0.3 + 0.04 * i), y: height / 2, label: 1 }], box: null });
      decodes.push(now() - t);
    }
  }
  return { totalMs: loaded - t0, timings: model.loadTimings || null, prepareMs: prepared, decodes,
    warmUp: model.warmUpResult, ort: getOrtInfo() };
}

window.bench = { ready: true, decode, outputs, sessionStart, crossOriginIsolated: globalThis.crossOriginIsolated };

/** Session creation time of `url` per graph optimization level (development aid). */
window.bench.createTimes = async (url, levels, proxy = true) => {
  const ort = await loadOrt(config, proxy);
  const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
  const out = {};
  for (const level of levels) {
    const t0 = now();
    try {
      const s = await ort.InferenceSession.create(bytes.slice(), { executionProviders: ["wasm"], graphOptimizationLevel: level });
      out[level] = now() - t0;
      await s.release();
    } catch (e) { out[level] = String(e).slice(0, 200); }
  }
  return out;
};

/** Time runs of a model with random inputs of the given shapes (development aid). */
window.bench.timeModel = async (url, shapes, runs = 10) => {
  const { ort, session } = await plainSession(url);
  const feeds = {};
  for (const [name, dims] of Object.entries(shapes)) {
    const n = dims.reduce((a, b) => a * b, 1);
    const d = new Float32Array(n);
    for (let i = 0; i < n; i++) d[i] = Math.random() - 0.5;
    feeds[name] = d;
  }
  const times = [];
  for (let r = 0; r < runs + 1; r++) {
    const f = {};
    for (const [name, dims] of Object.entries(shapes)) f[name] = new ort.Tensor("float32", feeds[name].slice(), dims);
    const t0 = now();
    const out = await session.run(f);
    if (r > 0) times.push(now() - t0);
    for (const t of Object.values(out)) t.dispose?.();
  }
  await session.release();
  return { p50: median(times), min: Math.min(...times) };
};

/** Like timeModel, feeding only the inputs the model has (development aid). */
window.bench.timeModelFeeds = async (url, shapes, runs = 6) => {
  const { ort, session } = await plainSession(url);
  const feeds = {};
  for (const name of session.inputNames) {
    const dims = shapes[name];
    const n = dims.reduce((a, b) => a * b, 1);
    const d = new Float32Array(n);
    for (let i = 0; i < n; i++) d[i] = (Math.random() - 0.5);
    if (name === "point_labels") d.fill(1);
    if (name === "has_mask_input") d.fill(0);
    feeds[name] = [d, dims];
  }
  const times = [];
  for (let r = 0; r < runs + 1; r++) {
    const f = {};
    for (const [name, [d, dims]] of Object.entries(feeds)) f[name] = new ort.Tensor("float32", d.slice(), dims);
    const t0 = now();
    const out = await session.run(f);
    if (r > 0) times.push(now() - t0);
    for (const t of Object.values(out)) t.dispose?.();
  }
  await session.release();
  return { p50: median(times), min: Math.min(...times) };
};
