// Unit tests of web/decoder-core.js onnxMetadata / graphOptimizationLevel: ModelProto bytes built
// here field by field (the Python tests check the same against models exported by onnx).
import { test } from "node:test";
import assert from "node:assert/strict";
import { batchCapable, batchRuns, graphOptimizationLevel, onnxMetadata } from "../decoder-core.js";

function varint(n) {
  const out = [];
  while (n >= 0x80) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

const text = (s) => [...new TextEncoder().encode(s)];
const field = (num, payload) => [...varint(num * 8 + 2), ...varint(payload.length), ...payload];
const entry = (key, value) => field(14, [...field(1, text(key)), ...field(2, text(value))]);

/** ir_version 8, producer "pytorch", a graph of `graphBytes` opaque bytes, opset 17, then `props`. */
function model(props, graphBytes = 300) {
  const graph = Array.from({ length: graphBytes }, (_, i) => (i * 37) & 0xff); // not valid protobuf: must be skipped
  const opset = field(8, [...field(1, []), 0x10, 17]);
  return new Uint8Array([0x08, 8, ...field(2, text("pytorch")), ...field(7, graph), ...opset,
    ...props.flatMap(([k, v]) => entry(k, v))]);
}

test("metadata_props after a large graph are read without parsing the graph", () => {
  const bytes = model([["mobilesam.variant", "fast"], ["mobilesam.optimized", "onnxruntime 1.31.1 ORT_ENABLE_EXTENDED"]],
    200_000);
  assert.deepEqual(onnxMetadata(bytes), {
    "mobilesam.variant": "fast", "mobilesam.optimized": "onnxruntime 1.31.1 ORT_ENABLE_EXTENDED" });
  assert.equal(graphOptimizationLevel(bytes), "disabled");
});

test("a model not optimised offline gets onnxruntime's full optimisation", () => {
  assert.equal(graphOptimizationLevel(model([["mobilesam.optimized", "no"]])), "all");
  assert.equal(graphOptimizationLevel(model([["mobilesam.variant", "official"]])), "all");
  assert.equal(graphOptimizationLevel(model([])), "all");
});

test("a model that names its load optimisation gets that level (constants folded at load)", () => {
  const optimized = ["mobilesam.optimized", "onnxruntime 1.31.1 ORT_ENABLE_EXTENDED"];
  assert.equal(graphOptimizationLevel(model([optimized, ["mobilesam.load_optimization", "basic"]])), "basic");
  assert.equal(graphOptimizationLevel(model([["mobilesam.load_optimization", "all"]])), "all");
  // an unknown level is ignored: the level follows from mobilesam.optimized as before
  assert.equal(graphOptimizationLevel(model([optimized, ["mobilesam.load_optimization", "fastest"]])), "disabled");
});

test("bytes that are not a model give no metadata", () => {
  assert.deepEqual(onnxMetadata(new Uint8Array([])), {});
  assert.deepEqual(onnxMetadata(new Uint8Array([0xff, 0xff, 0xff])), {}); // truncated varint
  const truncated = model([["mobilesam.optimized", "onnxruntime 1 ORT_ENABLE_EXTENDED"]]);
  assert.deepEqual(onnxMetadata(truncated.subarray(0, truncated.length - 5)), {});
  assert.equal(graphOptimizationLevel(new TextEncoder().encode("<html>not found</html>")), "all");
});

test("a fast decoder takes a batch from export format 5 on", () => {
  assert.equal(batchCapable(model([["mobilesam.variant", "fast"], ["mobilesam.export_format_version", "5"]])), true);
  assert.equal(batchCapable(model([["mobilesam.variant", "fast"], ["mobilesam.export_format_version", "4"]])), false);
  assert.equal(batchCapable(model([])), false);
});

test("batch runs: consecutive prompts of one length, at most maxBatch a run, in order", () => {
  const p = (n) => ({ n });
  assert.deepEqual(batchRuns([p(2), p(2), p(2), p(2), p(2)], 2), [[0, 2], [2, 4], [4, 5]]);
  assert.deepEqual(batchRuns([p(2), p(3), p(3), p(2)], 8), [[0, 1], [1, 3], [3, 4]]);
  assert.deepEqual(batchRuns([p(2), p(2)], 1), [[0, 1], [1, 2]]);
  assert.deepEqual(batchRuns([], 4), []);
});
