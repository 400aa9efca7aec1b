"""The fast browser decoder (mobilesam/accel/fast_decoder.py, export variant "fast"): same outputs as
the official decoder, in PyTorch and exported to ONNX (onnxruntime CPU), against the goldens.

Correctness only: nothing here is timed (bench/browser_decoder.py measures the speed).
"""
import os
import re

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from conftest import (DECODER_INPUT_IOU_SLACK, DECODER_INPUT_LOGIT_SLACK, DECODER_INPUT_MIN_MASK_IOU,  # noqa: E402
                      ROOT, golden_index, load_golden_prompt)
from mobilesam.accel.fast_decoder import (CACHE_NAMES, FAST_CACHE_SUFFIX, FastDecoder, FastImagePart,  # noqa: E402
                                         FastPromptPart, cache_shapes, run_fast_decoder)
from mobilesam.export import decoder_dummy_inputs, decoder_module, export_decoder  # noqa: E402
from mobilesam.onnx_cache import cached_decoder, cached_decoder_name  # noqa: E402
from support import chosen, fast_decoder_golden_runs, golden_images, mask_iou, upsample_like_sam, web_inputs  # noqa: E402

LOGIT_ATOL = 1e-3  # the goldens' bound for low-res logits
IOU_ATOL = 1e-4
MIN_MASK_IOU = 0.999
# Fed the repository's rounded golden embedding (conftest), the decoder is held to these against the
# goldens; the bounds above hold it to the PyTorch decoder on identical inputs.
GOLDEN_FED_LOGIT_ATOL = LOGIT_ATOL + DECODER_INPUT_LOGIT_SLACK
GOLDEN_FED_IOU_ATOL = IOU_ATOL + DECODER_INPUT_IOU_SLACK
GOLDEN_FED_MIN_MASK_IOU = min(MIN_MASK_IOU, DECODER_INPUT_MIN_MASK_IOU)


def _random_inputs(num_points: int, has_mask: float, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    coords = torch.rand(1, num_points, 2, generator=gen) * 1024
    labels = torch.randint(-1, 4, (1, num_points), generator=gen).float()
    return {"image_embeddings": torch.randn(1, 256, 64, 64, generator=gen),
            "point_coords": coords, "point_labels": labels,
            "mask_input": torch.randn(1, 1, 256, 256, generator=gen) * 3,
            "has_mask_input": torch.tensor([has_mask])}


@pytest.mark.parametrize("num_points,has_mask", [(1, 0.0), (2, 0.0), (3, 1.0), (7, 0.0), (12, 1.0), (4, 0.5)])
def test_pytorch_fast_decoder_equals_the_decoder(vit_t_model, num_points, has_mask):
    """The rearranged algebra is the same function: all four masks and scores, any point count, with
    and without (and with a blended) mask input."""
    inputs = _random_inputs(num_points, has_mask, seed=num_points)
    with torch.no_grad():
        want_iou, want_masks = decoder_module(vit_t_model, "browser")(**inputs)
        got_iou, got_masks = FastDecoder(vit_t_model).eval()(**inputs)
    assert got_masks.shape == (1, 4, 256, 256) and got_iou.shape == (1, 4)
    np.testing.assert_allclose(got_masks.numpy(), want_masks.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got_iou.numpy(), want_iou.numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("with_mask", [False, True])
def test_pytorch_batch_equals_the_decoder_prompt_by_prompt(vit_t_model, with_mask):
    """B prompts in one run give, row by row, what the official decoder gives for each prompt alone:
    boxes, points with padding, mixed labels (with a mask prompt: the same mask for every row)."""
    gen = torch.Generator().manual_seed(3)
    emb = torch.randn(1, 256, 64, 64, generator=gen)
    coords = torch.rand(5, 3, 2, generator=gen) * 1024
    labels = torch.tensor([[2.0, 3.0, 1.0], [1.0, 0.0, -1.0], [1.0, 1.0, -1.0], [0.0, 2.0, 3.0], [1.0, -1.0, -1.0]])
    mask = (torch.randn(1, 1, 256, 256, generator=gen) * 3, torch.tensor([1.0 if with_mask else 0.0]))
    reference = decoder_module(vit_t_model, "browser")
    with torch.no_grad():
        cache = FastImagePart(vit_t_model).eval()(emb)
        got_iou, got_masks = FastPromptPart(vit_t_model, with_mask=with_mask).eval()(emb, *cache, coords, labels, *mask)
        assert got_iou.shape == (5, 4) and got_masks.shape == (5, 4, 256, 256)
        for b in range(5):
            want_iou, want_masks = reference(emb, coords[b:b + 1], labels[b:b + 1], *mask)
            np.testing.assert_allclose(got_masks[b:b + 1].numpy(), want_masks.numpy(), atol=1e-4, rtol=0)
            np.testing.assert_allclose(got_iou[b:b + 1].numpy(), want_iou.numpy(), atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def fast_exports(tmp_path_factory, vit_t_model, vit_b_model) -> dict:
    out = tmp_path_factory.mktemp("fast_decoder")
    return {"vit_t": export_decoder(vit_t_model, out / "vit_t_fast.onnx", variant="fast"),
            "vit_b": export_decoder(vit_b_model, out / "vit_b_fast.onnx", variant="fast")}


def _session(path):
    return ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])


def _assert_golden(iou: np.ndarray, low_res: np.ndarray, golden: dict, prompt: dict, height: int, width: int,
                   label: str) -> None:
    """One decoded row (iou [4], low_res [4,256,256]) against the golden of its prompt set."""
    sel = chosen(prompt)
    golden["low_res"].assert_close(low_res[sel], GOLDEN_FED_LOGIT_ATOL, err_msg=label)
    np.testing.assert_allclose(iou[sel], golden["iou_predictions"], atol=GOLDEN_FED_IOU_ATOL, rtol=0, err_msg=label)
    masks = upsample_like_sam(low_res[None], height, width)[0, sel] > 0
    for ours, theirs in zip(masks, golden["masks"]):
        assert mask_iou(ours, theirs) >= GOLDEN_FED_MIN_MASK_IOU, label


@pytest.mark.parametrize("model_type", ["vit_t", "vit_b"])
def test_exported_fast_decoder_matches_goldens(fast_exports, model_type):
    """Fed as the web page feeds it (first run: the image cache; then one run per prompt set), the
    exported fast decoder gives the goldens' low-res logits, scores and masks."""
    checked = 0
    runs = fast_decoder_golden_runs(_session(fast_exports[model_type]), model_type)
    for key, prompt, golden, iou, low_res, height, width in runs:
        label = f"{model_type} {key} {prompt['name']}"
        assert iou.shape == (1, 4) and low_res.shape == (1, 4, 256, 256), label
        _assert_golden(iou[0], low_res[0], golden, prompt, height, width, label)
        checked += 1
    assert checked == sum(len(e["prompts"]) for e in golden_index(model_type)["images"].values())


@pytest.mark.parametrize("model_type", ["vit_t", "vit_b"])
def test_exported_fast_decoder_decodes_golden_prompts_in_one_batch(fast_exports, model_type):
    """The golden prompts without a mask input, those of one image and one point count decoded in one
    run (point_coords [B,N,2], as the page decodes a pasted list of boxes): each row is the goldens'."""
    sess = _session(fast_exports[model_type])
    batched = 0
    for key, prompts, embedding, height, width in golden_images(model_type):
        groups = {}
        for prompt in prompts:
            feeds = web_inputs(prompt, {}, height, width, embedding) if not prompt.get("mask_from") else None
            if feeds is not None and not feeds["has_mask_input"].any():
                groups.setdefault(feeds["point_coords"].shape[1], []).append((prompt, feeds))
        cache = None
        for group in groups.values():
            feeds = dict(group[0][1])
            del feeds["orig_im_size"]
            feeds["point_coords"] = np.concatenate([f["point_coords"] for _, f in group])
            feeds["point_labels"] = np.concatenate([f["point_labels"] for _, f in group])
            if cache is None:
                _, _, cache = run_fast_decoder(sess, feeds)
            iou, low_res, _ = run_fast_decoder(sess, feeds, cache)
            assert iou.shape == (len(group), 4) and low_res.shape == (len(group), 4, 256, 256)
            for row, (prompt, _) in enumerate(group):
                _assert_golden(iou[row], low_res[row], load_golden_prompt(model_type, key, prompt["name"]), prompt,
                               height, width, f"{model_type} {key} {prompt['name']} (row {row} of {len(group)})")
            batched += len(group) if len(group) > 1 else 0
    assert batched >= 4  # the goldens hold several prompts of one length per image


def test_fast_decoder_interface(fast_exports):
    """One self-contained file: the browser variant's inputs plus the cache inputs; empty cache tensors
    make the per-image run (cache out, no masks), a full cache makes a prompt run (masks, no cache)."""
    path = fast_exports["vit_t"]
    model = onnx.load(os.fspath(path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["mobilesam.variant"] == "fast"
    assert meta["mobilesam.cache_inputs"] == ",".join(CACHE_NAMES)
    sess = _session(path)
    inputs = [i.name for i in sess.get_inputs()]
    assert inputs == ["image_embeddings", *CACHE_NAMES, "point_coords", "point_labels", "mask_input",
                      "has_mask_input"]
    outputs = [o.name for o in sess.get_outputs()]
    assert outputs == ["iou_predictions", "low_res_masks", *(n + FAST_CACHE_SUFFIX for n in CACHE_NAMES)]

    feeds = {k: v.numpy() for k, v in decoder_dummy_inputs(_StubSam(), "fast", num_points=3).items()}
    empty = {name: np.zeros(shape, np.float32) for name, shape in cache_shapes(0).items()}
    first = dict(zip(outputs, sess.run(None, {**feeds, **empty})))
    assert first["iou_predictions"].size == 0 and first["low_res_masks"].size == 0
    for name, shape in cache_shapes().items():
        assert first[name + FAST_CACHE_SUFFIX].shape == shape
    cache = {name: first[name + FAST_CACHE_SUFFIX] for name in CACHE_NAMES}
    second = dict(zip(outputs, sess.run(None, {**feeds, **cache})))
    assert second["iou_predictions"].shape == (1, 4) and second["low_res_masks"].shape == (1, 4, 256, 256)
    for name in CACHE_NAMES:
        assert second[name + FAST_CACHE_SUFFIX].size == 0


def _op_types(graph) -> set:
    """(domain, op_type) of every node, subgraphs (the If branches) included."""
    ops = set()
    for node in graph.node:
        ops.add((node.domain, node.op_type))
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                ops |= _op_types(attr.g)
    return ops


def test_fast_decoder_is_saved_optimized(fast_exports, vit_t_model, tmp_path):
    """The file holds onnxruntime's fused graph (so the browser does not optimise it at every page
    load); an export with optimize=False holds the plain exported ops instead."""
    meta = {p.key: p.value for p in onnx.load(os.fspath(fast_exports["vit_t"])).metadata_props}
    assert meta["mobilesam.optimized"].startswith("onnxruntime ")
    ops = _op_types(onnx.load(os.fspath(fast_exports["vit_t"])).graph)
    assert ("com.microsoft", "FusedMatMul") in ops and ("", "Erf") not in ops
    from mobilesam.export import export_fast_decoder

    plain = export_fast_decoder(vit_t_model, tmp_path / "plain.onnx", optimize=False, verify=False)
    plain_model = onnx.load(os.fspath(plain))
    assert {p.key: p.value for p in plain_model.metadata_props}["mobilesam.optimized"] == "no"
    plain_ops = _op_types(plain_model.graph)
    assert ("", "Erf") in plain_ops and not any(domain == "com.microsoft" for domain, _ in plain_ops)


class _StubSam:
    """Just what decoder_dummy_inputs reads."""

    class prompt_encoder:  # noqa: N801
        embed_dim = 256
        image_embedding_size = (64, 64)


def test_cached_fast_decoder(tmp_path, vit_t_checkpoint, vit_t_model):
    path = cached_decoder(vit_t_checkpoint, "vit_t", tmp_path, variant="fast", sam=vit_t_model)
    digest = path.name.split("-")[2]
    assert path.name == cached_decoder_name(digest, "vit_t", "fast")
    assert "-fast-decoder-" in path.name and path.with_name(path.name + ".sha256").is_file()
    mtime = path.stat().st_mtime_ns
    assert cached_decoder(vit_t_checkpoint, "vit_t", tmp_path, variant="fast", sam=vit_t_model) == path
    assert path.stat().st_mtime_ns == mtime  # reused, not exported again


@pytest.mark.parametrize("option", ["return_single_mask", "use_stability_score", "return_extra_metrics",
                                    "gelu_approximate"])
def test_fast_variant_rejects_official_options(tmp_path, vit_t_model, option):
    with pytest.raises(ValueError, match="fast decoder"):
        export_decoder(vit_t_model, tmp_path / "x.onnx", variant="fast", **{option: True})


def test_web_decoder_knows_the_cache_layout():
    """web/decoder-core.js feeds the cache by name and shape; keep it in step with the exporter."""
    source = (ROOT / "web" / "decoder-core.js").read_text()
    names = re.search(r"export const CACHE_NAMES = \[([^\]]*)\]", source).group(1)
    assert [n.strip().strip('"') for n in names.split(",")] == list(CACHE_NAMES)
    dims = re.search(r"return name === \"cache_up\" \? \[tokens, 256\] : \[8, tokens, 16\];", source)
    assert dims is not None
    assert cache_shapes(7) == {"cache_t2i_k": (8, 7, 16), "cache_t2i_v": (8, 7, 16), "cache_i2t_q": (8, 7, 16),
                               "cache_up": (7, 256)}


def test_cli_exports_the_fast_variant(tmp_path, vit_t_checkpoint, vit_t_model):
    """`python onnx/export.py --variant fast` writes the app's decoder; it equals the PyTorch decoder."""
    from support import run_export_cli as run_cli

    out = tmp_path / "fast.onnx"
    run_cli("--model-type", "vit_t", "--checkpoint", str(vit_t_checkpoint), "--output", str(out), "--variant", "fast")
    assert {p.key: p.value for p in onnx.load(os.fspath(out)).metadata_props}["mobilesam.variant"] == "fast"
    inputs = _random_inputs(4, 0.0, seed=11)
    iou, low_res, _ = run_fast_decoder(_session(out), {k: v.numpy() for k, v in inputs.items()})
    with torch.no_grad():
        want_iou, want_masks = decoder_module(vit_t_model, "browser")(**inputs)
    np.testing.assert_allclose(low_res, want_masks.numpy(), atol=LOGIT_ATOL, rtol=0)
    np.testing.assert_allclose(iou, want_iou.numpy(), atol=IOU_ATOL, rtol=0)


@pytest.mark.parametrize("flag", ["--return-single-mask", "--gelu-approximate", "--use-stability-score"])
def test_cli_refuses_official_options_with_the_fast_variant(tmp_path, vit_t_checkpoint, flag):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "onnx/export.py", "--checkpoint", str(vit_t_checkpoint), "--output",
                             str(tmp_path / "x.onnx"), "--variant", "fast", flag], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 2
    assert f"{flag} do not apply to --variant fast" in result.stderr
    assert not (tmp_path / "x.onnx").exists()
