// Times single-operator ONNX models in onnxruntime-web (Node, WebAssembly, 1 thread) for
// bench/decoder_ops.py: node ops.mjs SPEC.json  ->  one JSON line {name: median ms}. Models of the
// same group run interleaved, one group after the other.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const ort = await import(path.join(here, "../../web/node_modules/onnxruntime-web/dist/ort.node.min.mjs"));
ort.env.wasm.numThreads = 1;

const spec = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));

function randomData(type, n) {
  if (type === "uint8") return Uint8Array.from({ length: n }, () => Math.floor(Math.random() * 256));
  return Float32Array.from({ length: n }, () => Math.random() - 0.5);
}

const sessions = {};
const feeds = {};
for (const model of spec.models) {
  sessions[model.name] = await ort.InferenceSession.create(fs.readFileSync(model.path));
  feeds[model.name] = Object.fromEntries(model.inputs.map(([name, type, dims]) =>
    [name, [type, randomData(type, dims.reduce((a, b) => a * b, 1)), dims]]));
}
const times = Object.fromEntries(spec.models.map((m) => [m.name, []]));
for (const group of new Set(spec.models.map((m) => m.group))) {
  const models = spec.models.filter((m) => m.group === group);
  for (let round = 0; round <= spec.rounds; round++) {  // interleaved within a group; round 0 warms up
    for (const model of models) {
      const inputs = Object.fromEntries(Object.entries(feeds[model.name]).map(
        ([name, [type, data, dims]]) => [name, new ort.Tensor(type, data, dims)]));
      const t0 = performance.now();
      await sessions[model.name].run(inputs);
      if (round > 0) times[model.name].push(performance.now() - t0);
    }
  }
}
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
console.log(JSON.stringify(Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]))));
