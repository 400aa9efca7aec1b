"""Export SAM's mask decoder (with the prompt encoder) and the image encoder to ONNX.

Exporter choice
---------------
torch 2.13 defaults to the dynamo (``torch.export``) exporter. On this model it fails or misbehaves:
it cannot export the official decoder (the best-mask pick multiplies by the symbolic point count
``point_coords.shape[1]``, and ``orig_im_size`` drives the size of a resize, which is data-dependent),
it emits opset 18 whatever ``opset_version`` asks for, it writes external data unless told not to,
and its output carries ``value_info`` that makes ``onnxruntime.quantization.quantize_dynamic``'s shape
inference fail. The TorchScript exporter (``torch.onnx.export(..., dynamo=False)``), which the
official ``scripts/export_onnx_model.py`` uses, is still shipped in torch 2.13 (deprecated, not
removed): it exports every variant at the requested opset, keeps the point count dynamic, writes one
self-contained file below 2 GB and quantizes cleanly. So ``exporter="auto"`` uses it; if it is gone
(a future torch) or fails, the browser decoder and the image encoder, which need neither a symbolic
point count nor a data-dependent size, fall back to the dynamo exporter (``external_data=False``,
``value_info`` stripped before quantization). Every export is verified to be a single file.
"""
from __future__ import annotations

import copy
import hashlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn

from .accel.fast_decoder import FAST_CACHE_SUFFIX, run_fast_decoder
from .utils.onnx import (BROWSER_INPUT_NAMES, BROWSER_OUTPUT_NAMES, DECODER_EXTRA_OUTPUT_NAMES,
                         DECODER_INPUT_NAMES, DECODER_OUTPUT_NAMES, SamOnnxLowResModel, SamOnnxModel)

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

# Bump when the exported graphs change (names, semantics, exporter settings): it is part of the
# cache file names of `mobilesam.onnx_cache`, so stale cached exports are never served.
# 2: the "fast" variant (a per-image cache and a rearranged per-prompt graph, see `export_fast_decoder`).
# 3: the fast variant is saved with onnxruntime's graph optimisations already applied.
# 4: the fast variant computes its positional encoding at load (not a stored 4 MB table) and may store
#    its weights as float16 or int8 (`store_weights`).
# 5: the fast variant decodes a batch of prompts without a mask prompt in one run.
EXPORT_FORMAT_VERSION = 5
VARIANTS = ("official", "browser", "fast")
# How the fast decoder's weights are stored in the file (the computation is float32 in every case).
WEIGHT_STORAGE = ("float32", "float16", "int8")
# Weights with fewer values than this stay float32 (biases, LayerNorm parameters: a few KB in all).
MIN_COMPACT_VALUES = 4096
EXPORTERS = ("auto", "torchscript", "dynamo")
DEFAULT_OPSET = 17
MIN_OPSET = 11
# protobuf cannot hold a model of 2 GiB or more in one file (ViT-H's encoder is about 2.5 GB).
MAX_SINGLE_FILE_BYTES = 2 ** 31 - 64 * 2 ** 20


class ExportError(RuntimeError):
    """An export failed, or its result is not a valid self-contained ONNX model."""


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def check_self_contained(path: PathLike) -> None:
    """Raise ExportError unless `path` is a loadable ONNX model whose tensors are all stored inside it."""
    import onnx

    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:
        raise ExportError(f"{path} is not a readable ONNX model: {exc}") from exc

    def external(tensors) -> bool:
        return any(t.data_location == onnx.TensorProto.EXTERNAL for t in tensors)

    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        if external(graph.initializer) or external(s.values for s in graph.sparse_initializer):
            raise ExportError(f"{path} stores weights in external data files; expected one self-contained file")
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t") and external([attr.t]):
                    raise ExportError(f"{path} has a constant stored in an external data file")
                external_list = [t for t in attr.tensors]
                if external(external_list):
                    raise ExportError(f"{path} has a constant stored in an external data file")
                if attr.HasField("g"):
                    graphs.append(attr.g)
                graphs.extend(attr.graphs)


def _decoder_copy(sam: nn.Module, gelu_approximate: bool) -> nn.Module:
    """A CPU float32 copy of the prompt encoder and mask decoder (a few MB), so an export never
    touches the caller's model (which may be serving requests, on any device)."""

    class _ImageEncoderStub(nn.Module):
        def __init__(self, img_size: int) -> None:
            super().__init__()
            self.img_size = img_size

    class _DecoderOnlySam(nn.Module):
        mask_threshold = float(getattr(sam, "mask_threshold", 0.0))

        def __init__(self) -> None:
            super().__init__()
            self.image_encoder = _ImageEncoderStub(int(sam.image_encoder.img_size))
            self.prompt_encoder = copy.deepcopy(sam.prompt_encoder).cpu().float()
            self.mask_decoder = copy.deepcopy(sam.mask_decoder).cpu().float()

    model = _DecoderOnlySam().eval()
    if gelu_approximate:
        for module in model.modules():
            if isinstance(module, nn.GELU):
                module.approximate = "tanh"
    return model


def decoder_module(sam: nn.Module, variant: str = "official", *, return_single_mask: bool = False,
                   use_stability_score: bool = False, return_extra_metrics: bool = False,
                   gelu_approximate: bool = False) -> nn.Module:
    """The eager PyTorch module that `export_decoder` exports (useful to compare against)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown decoder variant {variant!r}; expected one of {VARIANTS}")
    model = _decoder_copy(sam, gelu_approximate)
    if variant == "fast":
        _check_fast_options(return_single_mask=return_single_mask, use_stability_score=use_stability_score,
                            return_extra_metrics=return_extra_metrics, gelu_approximate=gelu_approximate)
        from .accel.fast_decoder import FastDecoder

        return FastDecoder(model).eval()
    if variant == "browser":
        if return_single_mask or return_extra_metrics:
            raise ValueError("the browser variant always returns the four low-res masks and their scores; "
                             "return_single_mask and return_extra_metrics apply to the official variant only")
        return SamOnnxLowResModel(model, use_stability_score=use_stability_score).eval()
    return SamOnnxModel(model, return_single_mask=return_single_mask, use_stability_score=use_stability_score,
                        return_extra_metrics=return_extra_metrics).eval()


def decoder_dummy_inputs(sam: nn.Module, variant: str = "official", num_points: int = 5,
                         seed: int = 0) -> Dict[str, torch.Tensor]:
    """Example inputs of the exported decoder (as the official export script makes them)."""
    gen = torch.Generator().manual_seed(seed)
    embed_dim = sam.prompt_encoder.embed_dim
    embed_size = tuple(sam.prompt_encoder.image_embedding_size)
    mask_input_size = [4 * x for x in embed_size]
    inputs = {
        "image_embeddings": torch.randn(1, embed_dim, *embed_size, generator=gen),
        "point_coords": torch.randint(0, 1024, (1, num_points, 2), generator=gen).to(torch.float32),
        "point_labels": torch.randint(0, 4, (1, num_points), generator=gen).to(torch.float32),
        "mask_input": torch.randn(1, 1, *mask_input_size, generator=gen),
        "has_mask_input": torch.tensor([1.0]),
        "orig_im_size": torch.tensor([1500.0, 2250.0]),
    }
    if variant in ("browser", "fast"):
        del inputs["orig_im_size"]
    return inputs


def _torchscript_export(module: nn.Module, args: tuple, path: Path, opset: int, input_names: Sequence[str],
                        output_names: Sequence[str], dynamic_axes: Optional[dict]) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        torch.onnx.export(module, args, os.fspath(path), dynamo=False, export_params=True, verbose=False,
                          opset_version=opset, do_constant_folding=True, input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=dynamic_axes)


def _dynamo_export(module: nn.Module, args: tuple, path: Path, opset: int, input_names: Sequence[str],
                   output_names: Sequence[str], dynamic_axes: Optional[dict]) -> None:
    dynamic_shapes = None
    if dynamic_axes:
        dims = {}
        dynamic_shapes = {}
        for name in input_names:
            axes = dynamic_axes.get(name)
            if axes:
                dynamic_shapes[name] = {axis: dims.setdefault(label, torch.export.Dim(label, min=1))
                                        for axis, label in axes.items()}
            else:
                dynamic_shapes[name] = None
    if opset < 18:  # the dynamo exporter emits opset 18 at least; its down-conversion fails on this model
        logger.info("the dynamo exporter writes opset 18, not the requested %d", opset)
        opset = 18
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        program = torch.onnx.export(module, args, dynamo=True, external_data=False, opset_version=opset,
                                    input_names=list(input_names), output_names=list(output_names),
                                    dynamic_shapes=dynamic_shapes, verbose=False)
    program.save(os.fspath(path), external_data=False)


def _run_exporter(exporter: str, fallback_ok: bool, module: nn.Module, args: tuple, path: Path, opset: int,
                  input_names: Sequence[str], output_names: Sequence[str], dynamic_axes: Optional[dict]) -> str:
    """Export with the chosen exporter into `path`; returns the exporter that was used."""
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; expected one of {EXPORTERS}")
    if exporter == "dynamo":
        if not fallback_ok:
            raise ValueError("the official decoder cannot be exported with the dynamo exporter (symbolic point "
                             "count, data-dependent output size); use exporter='torchscript'")
        _dynamo_export(module, args, path, opset, input_names, output_names, dynamic_axes)
        return "dynamo"
    try:
        _torchscript_export(module, args, path, opset, input_names, output_names, dynamic_axes)
        return "torchscript"
    except Exception as exc:
        if exporter == "torchscript" or not fallback_ok:
            raise
        logger.warning("TorchScript ONNX export failed (%s: %s); retrying with the dynamo exporter",
                       type(exc).__name__, exc)
        for leftover in path.parent.iterdir():
            leftover.unlink()
        _dynamo_export(module, args, path, opset, input_names, output_names, dynamic_axes)
        return "dynamo"


def _finish(tmp_dir: Path, tmp_file: Path, output: Path, output_dims: Dict[str, list],
            metadata: Dict[str, str]) -> None:
    """Check the export is one file, name its output dims, add metadata, then move it into place."""
    import onnx

    extra = sorted(p.name for p in tmp_dir.iterdir() if p != tmp_file)
    if extra:
        raise ExportError(f"the exporter wrote external data files {extra}; the model is too large for one "
                          f"self-contained ONNX file")
    check_self_contained(tmp_file)
    model = onnx.load(os.fspath(tmp_file))
    for out in model.graph.output:
        dims = output_dims.get(out.name)
        if dims is None or not out.type.HasField("tensor_type"):
            continue
        shape = out.type.tensor_type.shape
        del shape.dim[:]
        for d in dims:
            dim = shape.dim.add()
            if isinstance(d, int):
                dim.dim_value = d
            else:
                dim.dim_param = d
    del model.metadata_props[:]
    for key, value in metadata.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, str(value)
    onnx.checker.check_model(model)
    final = tmp_dir / "final.onnx"
    onnx.save(model, os.fspath(final))
    check_self_contained(final)
    os.replace(final, output)


def _temp_dir_next_to(output: Path):
    output.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=f".{output.name}.", dir=output.parent)


# --------------------------------------------------------------------------- #
# Decoder
# --------------------------------------------------------------------------- #


def export_decoder(sam: nn.Module, output_path: PathLike, *, variant: str = "official",
                   return_single_mask: bool = False, opset: int = DEFAULT_OPSET, gelu_approximate: bool = False,
                   use_stability_score: bool = False, return_extra_metrics: bool = False,
                   exporter: str = "auto", verify: bool = True, weights: str = "float32") -> Path:
    """Export the prompt encoder + mask decoder of `sam` to one self-contained ONNX file.

    variant="official": the interface of segment-anything's export script (inputs `image_embeddings`,
    `point_coords`, `point_labels`, `mask_input`, `has_mask_input`, `orig_im_size`; outputs `masks`,
    `iou_predictions`, `low_res_masks`; with `return_extra_metrics` also `stability_scores` and
    `areas`, in the order masks, iou_predictions, stability_scores, areas, low_res_masks).
    variant="browser": no `orig_im_size`; outputs `iou_predictions` [1,4] and `low_res_masks` [1,4,256,256].
    variant="fast": the browser variant's outputs from a rearranged graph with a per-image cache
    (see `export_fast_decoder`; the official-variant options do not apply; `weights` chooses how its
    weights are stored: float32, float16 or int8, see `store_weights`).
    The point count N is dynamic. The file is written atomically; with `verify` it is run in
    onnxruntime on example inputs (N=5 and N=1) and compared with PyTorch. Returns the path.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old; the decoder needs opset >= {MIN_OPSET}")
    if variant == "fast":
        _check_fast_options(return_single_mask=return_single_mask, use_stability_score=use_stability_score,
                            return_extra_metrics=return_extra_metrics, gelu_approximate=gelu_approximate)
        if exporter == "dynamo":
            raise ValueError("the fast decoder is exported with the TorchScript exporter only")
        return export_fast_decoder(sam, output_path, opset=opset, verify=verify, weights=weights)
    if weights != "float32":
        raise ValueError(f"weights={weights!r} applies to the fast variant only; the {variant} variant stores float32")
    output = Path(output_path)
    module = decoder_module(sam, variant, return_single_mask=return_single_mask,
                            use_stability_score=use_stability_score, return_extra_metrics=return_extra_metrics,
                            gelu_approximate=gelu_approximate)
    dummy = decoder_dummy_inputs(sam, variant)
    if variant == "browser":
        input_names, output_names = BROWSER_INPUT_NAMES, BROWSER_OUTPUT_NAMES
        output_dims = {"iou_predictions": [1, 4], "low_res_masks": [1, 4, 256, 256]}
    else:
        input_names = DECODER_INPUT_NAMES
        output_names = DECODER_EXTRA_OUTPUT_NAMES if return_extra_metrics else DECODER_OUTPUT_NAMES
        c = 1 if return_single_mask else 4
        output_dims = {"masks": [1, c, "height", "width"], "iou_predictions": [1, c],
                       "low_res_masks": [1, c, 256, 256], "stability_scores": [1, c], "areas": [1, c]}
    dynamic_axes = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}
    with _temp_dir_next_to(output) as tmp:
        tmp_dir = Path(tmp)
        tmp_file = tmp_dir / "model.onnx"
        used = _run_exporter(exporter, variant == "browser", module, tuple(dummy.values()), tmp_file, opset,
                             input_names, output_names, dynamic_axes)
        metadata = {"mobilesam.kind": "decoder", "mobilesam.variant": variant,
                    "mobilesam.export_format_version": EXPORT_FORMAT_VERSION,
                    "mobilesam.return_single_mask": int(return_single_mask),
                    "mobilesam.use_stability_score": int(use_stability_score),
                    "mobilesam.return_extra_metrics": int(return_extra_metrics),
                    "mobilesam.gelu_approximate": int(gelu_approximate), "mobilesam.exporter": used}
        if verify:
            _verify_decoder(tmp_file, module, sam, variant)
        _finish(tmp_dir, tmp_file, output, output_dims, metadata)
    logger.info("exported the %s decoder to %s (%s exporter)", variant, output, used)
    return output


def _verify_decoder(path: Path, module: nn.Module, sam: nn.Module, variant: str) -> None:
    """Run the exported decoder in onnxruntime and compare its low-res logits with PyTorch's."""
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - onnxruntime is a runtime requirement
        logger.warning("onnxruntime is not installed; the exported decoder was not verified")
        return
    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    for num_points in (5, 1):
        inputs = decoder_dummy_inputs(sam, variant, num_points=num_points, seed=num_points)
        got = dict(zip(names, session.run(None, {k: v.numpy() for k, v in inputs.items()})))
        with torch.no_grad():
            want = dict(zip(names, (t.numpy() for t in module(**inputs))))
        err = float(np.abs(got["low_res_masks"] - want["low_res_masks"]).max())
        if err > 1e-2:
            raise ExportError(f"the exported decoder differs from PyTorch by {err:.3g} in low_res_masks "
                              f"(N={num_points})")


# --------------------------------------------------------------------------- #
# The fast decoder: a per-image cache and a rearranged per-prompt graph in one file
# --------------------------------------------------------------------------- #



def _check_fast_options(**options: bool) -> None:
    used = [name for name, on in options.items() if on]
    if used:
        raise ValueError(f"the fast decoder has the browser variant's interface only; {', '.join(used)} "
                         f"apply to the official (or browser) variant")


def fast_decoder_cache_names() -> tuple:
    """The fast decoder's image-cache inputs; each comes out of the preparing run as `<name>_out`."""
    from .accel.fast_decoder import CACHE_NAMES

    return CACHE_NAMES


def _prefixed_graph(model, prefix: str, keep: Sequence[str]):
    """The nodes, initializers and outputs of `model.graph` with every name prefixed except `keep`
    (the graph inputs, which become references to the outer graph's inputs)."""
    import onnx

    graph = model.graph
    keep = set(keep)

    def rename(name: str) -> str:
        return name if (not name or name in keep) else prefix + name

    nodes = []
    for node in graph.node:
        for attr in node.attribute:
            if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise ExportError("unexpected control flow in an exported decoder part")
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.name = prefix + (node.name or node.op_type)
        del new.input[:]
        del new.output[:]
        new.input.extend(rename(n) for n in node.input)
        new.output.extend(rename(n) for n in node.output)
        nodes.append(new)
    inits = []
    for init in graph.initializer:
        new = onnx.TensorProto()
        new.CopyFrom(init)
        new.name = rename(init.name)
        inits.append(new)
    outputs = [rename(o.name) for o in graph.output]
    return nodes, inits, outputs


def _dedupe_initializers(nodes_lists, inits):
    """Drop initializers equal to an earlier one (both parts hold the positional encoding)."""
    from onnx import numpy_helper

    seen: Dict[tuple, str] = {}
    alias: Dict[str, str] = {}
    kept = []
    for init in inits:
        key = (init.data_type, tuple(init.dims), hashlib.sha256(numpy_helper.to_array(init).tobytes()).hexdigest())
        if key in seen:
            alias[init.name] = seen[key]
        else:
            seen[key] = init.name
            kept.append(init)
    for nodes in nodes_lists:
        for node in nodes:
            for i, name in enumerate(node.input):
                if name in alias:
                    node.input[i] = alias[name]
    return kept


def _compose_fast(image_model, prompt_mask_model, prompt_plain_model, cache_names: Sequence[str]):
    """One model of three parts. `If` the cache inputs are empty, the image part runs and its outputs
    come out as `<cache>_out` (iou_predictions / low_res_masks empty); otherwise a prompt part runs on
    the given cache (the `<cache>_out` outputs empty): the plain one when has_mask_input is 0, else
    the one with the mask prompt's terms. Weights live in the outer graph, shared by the branches."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    prompt_inputs = [i.name for i in prompt_mask_model.graph.input]
    img_nodes, img_inits, img_outs = _prefixed_graph(image_model, "image/", ["image_embeddings"])
    mask_nodes, mask_inits, mask_outs = _prefixed_graph(prompt_mask_model, "mask/", prompt_inputs)
    plain_nodes, plain_inits, plain_outs = _prefixed_graph(prompt_plain_model, "plain/", prompt_inputs)
    inits = _dedupe_initializers([img_nodes, mask_nodes, plain_nodes], img_inits + mask_inits + plain_inits)

    def empty(name: str, shape: Sequence[int]):
        value = numpy_helper.from_array(np.zeros(shape, np.float32), name + "_value")
        return helper.make_node("Constant", [], [name], name=name, value=value)

    def vi(name):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)

    from .accel.fast_decoder import cache_shapes as fast_cache_shapes

    empty_shapes = {"iou_predictions": (1, 0), "low_res_masks": (1, 0, 256, 256)}
    cache_shapes = fast_cache_shapes(0)
    out_names = ["iou_predictions", "low_res_masks"] + [n + FAST_CACHE_SUFFIX for n in cache_names]

    then_nodes = img_nodes + [empty("prepare/" + k, v) for k, v in empty_shapes.items()]
    then_outputs = ["prepare/iou_predictions", "prepare/low_res_masks"] + img_outs
    prepare_graph = helper.make_graph(then_nodes, "prepare_image_cache", [], [vi(n) for n in then_outputs])

    plain_graph = helper.make_graph(plain_nodes, "decode_without_mask", [], [vi(n) for n in plain_outs])
    mask_graph = helper.make_graph(mask_nodes, "decode_with_mask", [], [vi(n) for n in mask_outs])
    zero_f = numpy_helper.from_array(np.array(0, np.float32), "decode/zero_value")
    decode_nodes = [
        helper.make_node("Constant", [], ["decode/zero"], name="decode/zero", value=zero_f),
        helper.make_node("Equal", ["has_mask_input", "decode/zero"], ["decode/no_mask"], name="decode/no_mask"),
        helper.make_node("If", ["decode/no_mask"], ["decode/iou_predictions", "decode/low_res_masks"],
                         name="decode/if_mask", then_branch=plain_graph, else_branch=mask_graph),
    ] + [empty("decode/" + k, cache_shapes[k]) for k in cache_names]
    decode_outputs = ["decode/iou_predictions", "decode/low_res_masks"] + ["decode/" + k for k in cache_names]
    decode_graph = helper.make_graph(decode_nodes, "decode_prompt", [], [vi(n) for n in decode_outputs])

    zero = numpy_helper.from_array(np.array(0, np.int64), "fast/zero")
    token_axis = numpy_helper.from_array(np.array(list(cache_shapes[cache_names[0]]).index(0), np.int64),
                                         "fast/token_axis")
    nodes = [
        helper.make_node("Shape", [cache_names[0]], ["fast/cache_shape"], name="fast/cache_shape"),
        helper.make_node("Gather", ["fast/cache_shape", "fast/token_axis"], ["fast/cache_tokens"],
                         name="fast/tokens", axis=0),
        helper.make_node("Equal", ["fast/cache_tokens", "fast/zero"], ["fast/prepare"], name="fast/prepare"),
        helper.make_node("If", ["fast/prepare"], out_names, name="fast/if", then_branch=prepare_graph,
                         else_branch=decode_graph),
    ]
    f = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("image_embeddings", f, [1, 256, 64, 64])]
    for name in cache_names:
        inputs.append(helper.make_tensor_value_info(name, f, [d or "cache_tokens" for d in cache_shapes[name]]))
    inputs += [helper.make_tensor_value_info("point_coords", f, ["batch", "num_points", 2]),
               helper.make_tensor_value_info("point_labels", f, ["batch", "num_points"]),
               helper.make_tensor_value_info("mask_input", f, [1, 1, 256, 256]),
               helper.make_tensor_value_info("has_mask_input", f, [1])]
    outputs = [helper.make_tensor_value_info("iou_predictions", f, ["batch", "masks"]),
               helper.make_tensor_value_info("low_res_masks", f, ["batch", "masks", 256, 256])]
    for name in cache_names:
        outputs.append(helper.make_tensor_value_info(name + FAST_CACHE_SUFFIX, f,
                                                     [d or "cache_tokens_out" for d in cache_shapes[name]]))
    graph = helper.make_graph(nodes, "mobilesam_fast_decoder", inputs, outputs,
                              initializer=inits + [zero, token_axis])
    model = helper.make_model(graph, opset_imports=list(prompt_mask_model.opset_import),
                              producer_name="mobilesam", producer_version=str(EXPORT_FORMAT_VERSION))
    model.ir_version = prompt_mask_model.ir_version
    onnx.checker.check_model(model)
    return model


def optimize_offline(path: PathLike) -> str:
    """Rewrite the ONNX file at `path` with onnxruntime's graph optimisations applied (level
    "extended": constant folding, redundant node removal, and the fusions onnxruntime-web would make
    itself: GELU, MatMul+Add -> Gemm, MatMul+Transpose/Scale -> FusedMatMul, Gemm+activation). The
    computation is the same (float32, fused kernels); what changes is that a browser session no longer
    spends the optimiser's time on every page load (`bench/decoder_session.py`). Level "all" is not
    used: its layout transforms (NCHWc) are specific to this machine's CPU. Returns a description
    for the model's metadata."""
    import onnxruntime

    path = Path(path)
    optimized = path.with_name(path.stem + ".optimized.onnx")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = os.fspath(optimized)
    options.log_severity_level = 3
    onnxruntime.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
    os.replace(optimized, path)
    return f"onnxruntime {onnxruntime.__version__} ORT_ENABLE_EXTENDED"


def export_fast_decoder(sam: nn.Module, output_path: PathLike, *, opset: int = DEFAULT_OPSET,
                        verify: bool = True, optimize: bool = True, weights: str = "float32") -> Path:
    """Export the "fast" browser decoder (mobilesam.accel.fast_decoder) to one self-contained ONNX file.

    Inputs: the browser variant's (`image_embeddings`, `point_coords`, `point_labels`, `mask_input`,
    `has_mask_input`) plus the image cache `cache_t2i_k`, `cache_t2i_v`, `cache_i2t_q` [8,T,16] and
    `cache_up` [T,256]. Run it once per image with T = 0 (empty cache tensors, any valid prompt): it then
    outputs the cache as `cache_*_out` (T = 4096) and empty `iou_predictions` / `low_res_masks`. Every
    later run with that cache decodes a prompt: `iou_predictions` [1,4], `low_res_masks` [1,4,256,256],
    as the browser variant (and the cache outputs are empty). Without a mask prompt (has_mask_input 0)
    it decodes B prompts of N points each at once (point_coords [B,N,2], point_labels [B,N]:
    `iou_predictions` [B,4], `low_res_masks` [B,4,256,256], row b what prompt b alone gives); a mask
    prompt is one prompt a run. The computation is float32 throughout; the
    prompt graph agrees with the eager decoder to float rounding. With `optimize` the file is saved with
    onnxruntime's graph optimisations applied (`optimize_offline`). The positional encoding of the
    64×64 grid is computed when the model loads (`store_weights`), and `weights` ("float32", "float16",
    "int8") chooses how the weights are stored. With `verify`, onnxruntime's outputs (of the file as
    saved) are compared with PyTorch's (N=5 and N=1, with and without a mask input).
    """
    import onnx

    from .accel.fast_decoder import CACHE_NAMES, FastImagePart, FastPromptPart

    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old; the decoder needs opset >= {MIN_OPSET}")
    if weights not in WEIGHT_STORAGE:
        raise ValueError(f"unknown weight storage {weights!r}; expected one of {WEIGHT_STORAGE}")
    output = Path(output_path)
    model = _decoder_copy(sam, gelu_approximate=False)
    image_part = FastImagePart(model).eval()
    # (mask prompt: one prompt a run; without one: a batch axis, e.g. a list of boxes in one run)
    prompt_parts = {"mask": FastPromptPart(model, with_mask=True).eval(),
                    "plain": FastPromptPart(model, with_mask=False).eval()}
    dummy = decoder_dummy_inputs(sam, "fast")
    prompt_names = ["image_embeddings", *CACHE_NAMES, "point_coords", "point_labels", "mask_input",
                    "has_mask_input"]
    with _temp_dir_next_to(output) as tmp, torch.no_grad():
        tmp_dir = Path(tmp)
        cache = image_part(dummy["image_embeddings"])
        image_file = tmp_dir / "image.onnx"
        _torchscript_export(image_part, (dummy["image_embeddings"],), image_file, opset, ["image_embeddings"],
                            list(CACHE_NAMES), None)
        parts = [onnx.load(os.fspath(image_file))]
        image_file.unlink()
        for name, part in prompt_parts.items():
            batch = 2 if name == "plain" else 1  # traced with two prompts, so that nothing fixes the batch at 1
            prompt_args = (dummy["image_embeddings"], *cache, dummy["point_coords"].expand(batch, -1, -1),
                           dummy["point_labels"].expand(batch, -1), dummy["mask_input"], dummy["has_mask_input"])
            axes = {0: "batch", 1: "num_points"} if batch > 1 else {1: "num_points"}
            part_file = tmp_dir / f"prompt_{name}.onnx"
            _torchscript_export(part, prompt_args, part_file, opset, prompt_names,
                                ["iou_predictions", "low_res_masks"], {"point_coords": axes, "point_labels": axes})
            parts.append(onnx.load(os.fspath(part_file)))
            part_file.unlink()
        composed = _compose_fast(*parts, CACHE_NAMES)
        tmp_file = tmp_dir / "model.onnx"
        onnx.save(composed, os.fspath(tmp_file))
        optimized = optimize_offline(tmp_file) if optimize else "no"
        stored = onnx.load(os.fspath(tmp_file))
        store_weights(stored, model, weights)
        onnx.save(stored, os.fspath(tmp_file))
        if verify:
            _verify_fast(tmp_file, sam, weights)
        metadata = {"mobilesam.kind": "decoder", "mobilesam.variant": "fast",
                    "mobilesam.export_format_version": EXPORT_FORMAT_VERSION,
                    "mobilesam.cache_inputs": ",".join(CACHE_NAMES), "mobilesam.exporter": "torchscript",
                    "mobilesam.optimized": optimized, "mobilesam.weights": weights,
                    # the constants computed at load (positional encoding, float32 weights) are folded by
                    # onnxruntime's basic level; the rest of the graph is optimised already (or not at all)
                    "mobilesam.load_optimization": "basic" if optimize else "all"}
        _finish(tmp_dir, tmp_file, output, {}, metadata)
    logger.info("exported the fast decoder to %s (%s weights)", output, weights)
    return output


# --------------------------------------------------------------------------- weight storage


def _dense_pe_nodes(name: str, sam: nn.Module) -> tuple:
    """Nodes and initializers that compute the positional encoding of the 64×64 grid, token-major
    [4096, 256], as `PromptEncoder.get_dense_pe` does: grid [4096,2] @ G [2,128] · 2π, then [sin, cos].
    From 33 KB of inputs instead of a 4 MB table; onnxruntime folds it into a constant when the model
    loads (the equal of the stored table to float rounding, ~1e-6)."""
    from onnx import helper, numpy_helper

    from .accel.fast_decoder import TOKENS

    side = int(round(TOKENS ** 0.5))
    grid = torch.ones(side, side)
    y = (grid.cumsum(0) - 0.5) / side
    x = (grid.cumsum(1) - 0.5) / side
    coords = 2 * torch.stack([x, y], -1).reshape(-1, 2) - 1  # [4096, 2] in [-1, 1], as _pe_encoding has it
    gaussian = sam.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.detach().float().cpu()
    inits = [numpy_helper.from_array(coords.numpy().astype(np.float32), name + "/grid"),
             numpy_helper.from_array(gaussian.numpy(), name + "/gaussian"),
             numpy_helper.from_array(np.array(2 * np.pi, np.float32), name + "/two_pi")]
    nodes = [helper.make_node("MatMul", [name + "/grid", name + "/gaussian"], [name + "/proj"], name=name + "/proj"),
             helper.make_node("Mul", [name + "/proj", name + "/two_pi"], [name + "/angle"], name=name + "/angle"),
             helper.make_node("Sin", [name + "/angle"], [name + "/sin"], name=name + "/sin"),
             helper.make_node("Cos", [name + "/angle"], [name + "/cos"], name=name + "/cos"),
             helper.make_node("Concat", [name + "/sin", name + "/cos"], [name], name=name + "/concat", axis=-1)]
    return nodes, inits


def quantize_int8_per_channel(weight: np.ndarray) -> tuple:
    """Symmetric per-channel int8 of a float32 tensor: (q int8, scale float32 broadcastable to q) with
    weight ≈ q · scale. The channel axis is the one whose per-channel scales give the smallest squared
    error (the output axis of a matrix, whichever way round the graph holds it)."""
    best = None
    for axis in range(weight.ndim):
        others = tuple(a for a in range(weight.ndim) if a != axis)
        scale = np.abs(weight).max(axis=others, keepdims=True) / 127.0
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        q = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
        err = float(np.square(q.astype(np.float32) * scale - weight).mean())
        if best is None or err < best[0]:
            best = (err, q, scale)
    return best[1], best[2]


def _stored_as(init, weights: str) -> tuple:
    """(initializers, nodes) that store the float32 initializer `init` as `weights` and give it back
    under its own name as float32: Cast (float16), or Cast then Mul by the per-channel scales (int8;
    the same float32 values DequantizeLinear would give, in ops onnxruntime's constant folding folds)."""
    from onnx import TensorProto, helper, numpy_helper

    array = numpy_helper.to_array(init)
    name = init.name
    if weights == "float16":
        half = array.astype(np.float16)
        if not np.isfinite(half).all():  # beyond float16's range: keep it exact
            return [init], []
        return ([numpy_helper.from_array(half, name + "/float16")],
                [helper.make_node("Cast", [name + "/float16"], [name], name=name + "/cast", to=TensorProto.FLOAT)])
    q, scale = quantize_int8_per_channel(array)
    return ([numpy_helper.from_array(q, name + "/int8"), numpy_helper.from_array(scale, name + "/scale")],
            [helper.make_node("Cast", [name + "/int8"], [name + "/int8_float"], name=name + "/cast",
                              to=TensorProto.FLOAT),
             helper.make_node("Mul", [name + "/int8_float", name + "/scale"], [name], name=name + "/dequantize")])


def store_weights(model, sam: nn.Module, weights: str = "float32") -> None:
    """Rewrite the fast decoder `model` (an onnx ModelProto, changed in place) for a smaller file:

    - the positional encoding table (a [4096,256] float32 initializer, 4 MB, the one stored weight that
      is a function of a [2,128] one) becomes its computation (`_dense_pe_nodes`);
    - with `weights` "float16" or "int8", every float32 initializer of the outer graph with at least
      MIN_COMPACT_VALUES values is stored as float16, or as per-channel symmetric int8 with float32
      scales (`quantize_int8_per_channel`), followed by the nodes that turn it back into float32.

    The graph computes in float32 as before. All new nodes depend on initializers only, so onnxruntime's
    constant folding (its "basic" optimisation level) turns them into float32 constants when a session
    is created, and every run is the float32 graph's.
    """
    from onnx import TensorProto, numpy_helper

    from .accel.fast_decoder import _dense_pe

    if weights not in WEIGHT_STORAGE:
        raise ValueError(f"unknown weight storage {weights!r}; expected one of {WEIGHT_STORAGE}")
    pe = _dense_pe(sam).numpy()
    graph = model.graph
    inits, nodes, found_pe = [], [], False
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and tuple(init.dims) == pe.shape and \
                np.array_equal(numpy_helper.to_array(init), pe):
            pe_nodes, pe_inits = _dense_pe_nodes(init.name, sam)
            nodes += pe_nodes
            inits += pe_inits
            found_pe = True
        elif weights != "float32" and init.data_type == TensorProto.FLOAT and \
                int(np.prod(init.dims)) >= MIN_COMPACT_VALUES:
            more_inits, more_nodes = _stored_as(init, weights)
            inits += more_inits
            nodes += more_nodes
        else:
            inits.append(init)
    if not found_pe:
        raise ExportError("the fast decoder graph holds no positional encoding table to replace")
    all_nodes = nodes + list(graph.node)
    del graph.initializer[:]
    graph.initializer.extend(inits)
    del graph.node[:]
    graph.node.extend(all_nodes)


# How far a fast decoder's logits may be from PyTorch's in `_verify_fast`, per weight storage: a check
# that the graph is whole (the fidelity of the compact ones is measured on real prompts by the tests).
VERIFY_ATOL = {"float32": 1e-2, "float16": 0.1, "int8": 1.0}


def _verify_fast(path: Path, sam: nn.Module, weights: str = "float32") -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    reference = decoder_module(sam, "browser")
    cache = None
    for num_points, has_mask in ((5, 1.0), (1, 0.0), (3, 0.0), (2, 0.5)):
        inputs = decoder_dummy_inputs(sam, "browser", num_points=num_points, seed=num_points)
        inputs["has_mask_input"] = torch.tensor([has_mask])
        feeds = {k: v.numpy() for k, v in inputs.items()}
        if cache is None:
            _, _, cache = run_fast_decoder(session, feeds)
            feeds_img = feeds["image_embeddings"]
        feeds["image_embeddings"] = feeds_img
        inputs["image_embeddings"] = torch.from_numpy(feeds_img)
        iou, low_res, _ = run_fast_decoder(session, feeds, cache)
        with torch.no_grad():
            want_iou, want_masks = reference(**inputs)
        _check_fast_outputs(iou, low_res, want_iou, want_masks, weights, f"N={num_points}")
    # a batch of three prompts without a mask prompt: each row as that prompt alone
    rows = [decoder_dummy_inputs(sam, "browser", num_points=3, seed=10 + i) for i in range(3)]
    feeds = {"point_coords": np.concatenate([r["point_coords"].numpy() for r in rows]),
             "point_labels": np.concatenate([r["point_labels"].numpy() for r in rows]),
             "mask_input": rows[0]["mask_input"].numpy(), "has_mask_input": np.zeros(1, np.float32),
             "image_embeddings": feeds_img}
    iou, low_res, _ = run_fast_decoder(session, feeds, cache)
    with torch.no_grad():
        want = [reference(torch.from_numpy(feeds_img), r["point_coords"], r["point_labels"], r["mask_input"],
                          torch.zeros(1)) for r in rows]
    _check_fast_outputs(iou, low_res, torch.cat([w[0] for w in want]), torch.cat([w[1] for w in want]), weights,
                        "a batch of 3")


def _check_fast_outputs(iou, low_res, want_iou, want_masks, weights: str, what: str) -> None:
    err = max(float(np.abs(low_res - want_masks.numpy()).max()), float(np.abs(iou - want_iou.numpy()).max()))
    if low_res.shape != tuple(want_masks.shape) or not err <= VERIFY_ATOL[weights]:
        raise ExportError(f"the exported fast decoder ({weights} weights) differs from PyTorch by {err:.3g} ({what})")


def _drop_quantizer_advice(record: logging.LogRecord) -> bool:
    """Drop onnxruntime.quantization's root-logger advice to run its pre-processing (not needed here)."""
    return "consider to run pre-processing" not in record.getMessage()


def quantize_decoder(in_path: PathLike, out_path: PathLike) -> Path:
    """Dynamic uint8 weight quantization, the official recipe (`quantize_dynamic`, QuantType.QUInt8,
    per_channel=False, reduce_range=False). Written atomically; returns `out_path`."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = Path(out_path)
    with _temp_dir_next_to(out) as tmp:
        tmp_dir = Path(tmp)
        src = tmp_dir / "input.onnx"
        model = onnx.load(os.fspath(in_path))
        # Stale or exporter-specific value_info (dynamo) breaks the quantizer's shape inference.
        del model.graph.value_info[:]
        onnx.save(model, os.fspath(src))
        quantized = tmp_dir / "quantized.onnx"
        root = logging.getLogger()
        root.addFilter(_drop_quantizer_advice)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_dynamic(model_input=os.fspath(src), model_output=os.fspath(quantized), per_channel=False,
                                 reduce_range=False, weight_type=QuantType.QUInt8)
        finally:
            root.removeFilter(_drop_quantizer_advice)
        src.unlink()
        qmodel = onnx.load(os.fspath(quantized))
        prop = qmodel.metadata_props.add()
        prop.key, prop.value = "mobilesam.quantized", "QUInt8 dynamic"
        quantized.unlink()
        tmp_file = tmp_dir / "model.onnx"
        onnx.save(qmodel, os.fspath(tmp_file))
        leftovers = [p for p in tmp_dir.iterdir() if p != tmp_file]
        for p in leftovers:  # the quantizer's own temporaries, if any
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        _finish(tmp_dir, tmp_file, out, {}, {p.key: p.value for p in qmodel.metadata_props})
    return out


# --------------------------------------------------------------------------- #
# Image encoder
# --------------------------------------------------------------------------- #


def export_encoder(sam: nn.Module, output_path: PathLike, opset: int = DEFAULT_OPSET, *, exporter: str = "auto",
                   verify: bool = False) -> Path:
    """Export `sam.image_encoder`: input `image` [1,3,1024,1024] f32 (normalised and padded, as
    `Sam.preprocess` returns it) -> output `image_embeddings` [1,256,64,64]. One self-contained file,
    so ViT-H (about 2.5 GB of weights, over protobuf's 2 GB limit) cannot be exported.
    With `verify`, onnxruntime's output on a random image is compared with PyTorch's (1e-3)."""
    encoder = sam.image_encoder
    param_bytes = sum(p.numel() * 4 for p in encoder.parameters()) + sum(b.numel() * 4 for b in encoder.buffers())
    if param_bytes > MAX_SINGLE_FILE_BYTES:
        raise ExportError(f"the image encoder has {param_bytes / 2 ** 30:.2f} GiB of float32 weights, more than "
                          f"one self-contained ONNX file can hold (2 GiB protobuf limit)")
    output = Path(output_path)
    size = int(encoder.img_size)
    param = next(encoder.parameters())
    image = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(param.device, param.dtype)
    was_training = encoder.training
    encoder.eval()
    try:
        with _temp_dir_next_to(output) as tmp, torch.no_grad():
            tmp_dir = Path(tmp)
            tmp_file = tmp_dir / "model.onnx"
            used = _run_exporter(exporter, True, encoder, (image,), tmp_file, opset, ["image"],
                                 ["image_embeddings"], None)
            if verify:
                import onnxruntime

                session = onnxruntime.InferenceSession(os.fspath(tmp_file), providers=["CPUExecutionProvider"])
                got = session.run(None, {"image": image.float().cpu().numpy()})[0]
                want = encoder(image).float().cpu().numpy()
                err = float(np.abs(got - want).max())
                if err > 1e-3:
                    raise ExportError(f"the exported image encoder differs from PyTorch by {err:.3g}")
            metadata = {"mobilesam.kind": "image_encoder", "mobilesam.exporter": used,
                        "mobilesam.export_format_version": EXPORT_FORMAT_VERSION}
            _finish(tmp_dir, tmp_file, output, {"image_embeddings": [1, 256, 64, 64]}, metadata)
    finally:
        encoder.train(was_training)
    logger.info("exported the image encoder to %s (%s exporter)", output, used)
    return output
