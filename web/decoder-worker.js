// Module worker hosting the decoder engine (web/decoder-core.js). Messages {id, op, args} get
// {id, ok, result} or {id, ok: false, error}; mask outputs come back as transferred buffers.

import { DecoderEngine, errorText } from "./decoder-core.js";

const engine = new DecoderEngine();

const ops = {
  start: (config) => engine.start(config),
  load: (model, bytes) => engine.load(model, bytes),
  setEmbedding: (model, f32) => engine.setEmbedding(model, f32),
  decode: (model, prompt) => engine.decode(model, prompt),
  decodeBatch: (model, prompts, maxBatch) => engine.decodeBatch(model, prompts, maxBatch),
  warmUp: (model, runs) => engine.warmUp(model, runs),
  release: (model) => engine.release(model),
};

self.onmessage = async (event) => {
  const { id, op, args } = event.data || {};
  try {
    if (!Object.hasOwn(ops, op)) throw new Error(`unknown decoder worker call ${op}`);
    const result = await ops[op](...(args || []));
    const transfer = (Array.isArray(result) ? result : [result])
      .filter((r) => r && r.lowRes instanceof Float32Array).map((r) => r.lowRes.buffer);
    self.postMessage({ id, ok: true, result }, transfer);
  } catch (e) {
    self.postMessage({ id, ok: false, error: errorText(e) });
  }
};
