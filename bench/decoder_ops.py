"""What reduced precision would buy the browser decoder: single operators timed in onnxruntime-web
(Node, WebAssembly SIMD, 1 thread), interleaved with their baseline, at the fast decoder's shapes.

    python bench/decoder_ops.py [--rounds 30] [--json]

- product: one of the fast decoder's products of the 4096 image tokens with the prompt rows
  (4096×256 by 256×16), float32 `MatMul` (baseline) against uint8 `MatMulInteger` with the small
  operand quantized in the graph (`DynamicQuantizeLinear`), once with the 4096×256 operand already
  uint8 (as a per-image cache could be) and once with it quantized per run too (as it must be where
  that operand depends on the prompt: layer 2's keys, the attention weights);
- GELU: the mask head's activation over 32×256×256 values, exact `Gelu` (baseline) against the
  tanh approximation `com.microsoft.FastGelu`.

No checkpoint is needed: the operators' speed does not depend on the values.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_WEB, emit, machine  # noqa: E402

TOKENS, CHANNELS, PROMPT_ROWS = 4096, 256, 16
GELU_SHAPE = [1, 32, 256, 256]


def build_models(folder: Path) -> list:
    """The single-operator models and their inputs ([name, type, dims])."""
    import onnx
    from onnx import TensorProto, helper

    def save(name, nodes, inputs, output_dims):
        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info(n, t, d) for n, t, d in inputs],
                                  [helper.make_tensor_value_info("Y", TensorProto.FLOAT, output_dims)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("com.microsoft", 1)])
        model.ir_version = 8
        onnx.save(model, folder / f"{name}.onnx")
        kinds = {TensorProto.FLOAT: "float32", TensorProto.UINT8: "uint8"}
        return {"name": name, "group": name.split("_")[0], "path": str(folder / f"{name}.onnx"),
                "inputs": [[n, kinds[t], d] for n, t, d in inputs]}

    f32, u8 = TensorProto.FLOAT, TensorProto.UINT8
    big, small, out = [TOKENS, CHANNELS], [CHANNELS, PROMPT_ROWS], [TOKENS, PROMPT_ROWS]
    quantize_small = helper.make_node("DynamicQuantizeLinear", ["B"], ["Bq", "Bs", "Bz"])
    int8_tail = [helper.make_node("MatMulInteger", ["Aq", "Bq", "Az", "Bz"], ["Yi"]),
                 helper.make_node("Cast", ["Yi"], ["Yf"], to=f32),
                 helper.make_node("Mul", ["Yf", "Bs"], ["Yb"]), helper.make_node("Mul", ["Yb", "As"], ["Y"])]
    return [
        save("product_f32", [helper.make_node("MatMul", ["A", "B"], ["Y"])], [("A", f32, big), ("B", f32, small)], out),
        save("product_u8_cached", [quantize_small, *int8_tail],
             [("Aq", u8, big), ("Az", u8, []), ("As", f32, []), ("B", f32, small)], out),
        save("product_u8_per_run", [helper.make_node("DynamicQuantizeLinear", ["A"], ["Aq", "As", "Az"]),
                                    quantize_small, *int8_tail], [("A", f32, big), ("B", f32, small)], out),
        save("gelu_exact", [helper.make_node("Gelu", ["X"], ["Y"], domain="com.microsoft")],
             [("X", f32, GELU_SHAPE)], GELU_SHAPE),
        save("gelu_tanh", [helper.make_node("FastGelu", ["X"], ["Y"], domain="com.microsoft")],
             [("X", f32, GELU_SHAPE)], GELU_SHAPE),
    ]


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mobilesam-ops-") as tmp:
        folder = Path(tmp)
        spec = folder / "spec.json"
        spec.write_text(json.dumps({"rounds": args.rounds, "models": build_models(folder)}))
        run = subprocess.run(["node", str(BENCH_WEB / "ops.mjs"), str(spec)], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"node failed:\n{run.stderr[-2000:]}")
    ms = {k: round(v, 3) for k, v in json.loads(run.stdout.strip().splitlines()[-1]).items()}
    out = {
        "benchmark": "decoder_ops", "rounds": args.rounds, "threads": 1, "median_ms": ms,
        "baseline_ms": ms["product_f32"], "ours_ms": ms["product_u8_cached"],
        "ratio": round(ms["product_u8_cached"] / ms["product_f32"], 4),
        "ratio_product_u8_per_run": round(ms["product_u8_per_run"] / ms["product_f32"], 4),
        "ratio_gelu_tanh": round(ms["gelu_tanh"] / ms["gelu_exact"], 4),
        "machine": machine(),
    }
    lines = [
        f"onnxruntime-web in Node, 1 thread, median of {args.rounds} interleaved runs:",
        f"  product {TOKENS}x{CHANNELS} by {CHANNELS}x{PROMPT_ROWS}: float32 {ms['product_f32']:.2f} ms; uint8 with the "
        f"large operand cached {ms['product_u8_cached']:.2f} ms (ratio {out['ratio']:.2f}); uint8 quantizing both per run "
        f"{ms['product_u8_per_run']:.2f} ms (ratio {out['ratio_product_u8_per_run']:.2f})",
        f"  GELU over {'x'.join(map(str, GELU_SHAPE))}: exact {ms['gelu_exact']:.2f} ms, tanh approximation "
        f"{ms['gelu_tanh']:.2f} ms (ratio {out['ratio_gelu_tanh']:.2f})",
        f"  load {out['machine']['loadavg']}",
    ]
    emit(out, args.json, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
