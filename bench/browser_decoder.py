"""Browser decode time per prompt: our fast decoder against the official-interface export, in one
headless Chromium session through the same onnxruntime-web.

    python bench/browser_decoder.py --checkpoint CKPT --image IMG [--rounds 5] [--json]

Baseline: our export with segment-anything's official interface (fp32; with orig_im_size, so the
masks come out resized to the original image size inside the graph, e.g. 1800×1200), in two forms:
all four masks (`official`) and `--return-single-mask` (`official_single`, what the official web
demo loads), run the way a page runs a model by itself (onnxruntime-web's worker proxy). Ours: the
app's decoder code (web/decoder.js MaskModel, in its decoder worker where the embedding and cache
stay) with the fast variant (fp32; the per-image cache is computed once when the embedding is set,
not per prompt; outputs low-res logits, the page upsamples only the mask it shows). The browser
variant (the previous default) is timed too. Every prompt set of the image (the golden prompts for truck.jpg) is decoded
each round, baseline and ours interleaved; times are wall-clock per decode call as the page sees it
(feeds, worker round trip, run), p50 over all prompts and rounds. `ratio` = ours / official_single.
"""
from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BenchServer, chromium, emit, find_sample, machine, open_bench_page  # noqa: E402
from _decoders import client_info, decoder_files, default_cache_dir, encode, image_prompts, load_model  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="vit_t checkpoint (mobile_sam.pt or a stand-in)")
    parser.add_argument("--image", default="truck.jpg", help="photo (path, or a name in examples/)")
    parser.add_argument("--model-type", default="vit_t")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds over all prompts (default 5)")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(), help="where decoder exports are kept")
    parser.add_argument("--threads", type=int, choices=(1, 2), default=2,
                        help="onnxruntime-web threads (2: cross-origin isolated, as the app; 1: without)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    from mobilesam_app.engine import EncodedImage
    from mobilesam_app.images import load_rgb_image
    from mobilesam_app.store import image_id_of

    checkpoint = Path(args.checkpoint)
    image = load_rgb_image(str(find_sample(args.image)))
    height, width = image.shape[:2]
    sam = load_model(checkpoint, args.model_type)
    files = decoder_files(checkpoint, args.model_type, args.cache_dir, sam=sam)
    embedding, input_size = encode(sam, image)
    image_id = image_id_of(image)
    encoded = EncodedImage(image_id, height, width, input_size[0], input_size[1], embedding, 0.0)
    prompts = image_prompts(Path(args.image).name, height, width)

    load_before = machine()
    with BenchServer() as server:
        for path in files.values():
            server.models[path.name] = path
        info = encoded.client_info(args.model_type)
        server.embeddings[(args.model_type, image_id)] = encoded.embedding_f16_bytes()
        spec = {"embeddingUrl": info["embedding_url"],
                "info": client_info(image_id, height, width, input_size, info["embedding_url"], args.model_type),
                "prompts": prompts, "rounds": args.rounds,
                "baselines": {"official_single": f"/msam/models/{files['official_single'].name}",
                              "official": f"/msam/models/{files['official'].name}",
                              "browser": f"/msam/models/{files['browser'].name}"},
                "oursUrl": f"/msam/models/{files['fast'].name}"}
        errors: list = []
        with chromium() as browser:
            page = open_bench_page(browser, server.url, errors, threads=args.threads)
            isolated = page.evaluate("() => window.crossOriginIsolated")
            result = page.evaluate("(spec) => window.bench.decode(spec)", spec)
            check = page.evaluate("(spec) => window.bench.outputs(spec)", spec)
    summary = result["summary"]
    from mobilesam_app import embedding_codec as codec

    served = codec.transcode(encoded.embedding_f16_bytes(), info["embedding_url"].rsplit(".", 1)[-1])
    page_embedding = codec.decode_u8(served) if served[:4] == codec.MAGIC else codec.decode_f16(served)
    max_err = _check_outputs(sam, page_embedding, input_size, (height, width), prompts, check)

    ours = summary["ours_wall"]["p50"]
    single = summary["official_single_wall"]["p50"]
    four = summary["official_wall"]["p50"]
    out = {
        "benchmark": "browser_decoder", "image": Path(args.image).name, "size": [width, height],
        "baseline": "official-interface export, return_single_mask, fp32, masks resized to the original size in "
                    "the graph (onnxruntime-web wasm, worker proxy)",
        "ours": "fast variant through web/decoder.js MaskModel (fp32, image cache computed once per image)",
        "baseline_p50_ms": round(single, 2), "ours_p50_ms": round(ours, 2), "ratio": round(ours / single, 4),
        "baseline_4mask_p50_ms": round(four, 2), "ratio_vs_4mask": round(ours / four, 4),
        "browser_variant_p50_ms": round(summary["browser_wall"]["p50"], 2),
        "run_only_p50_ms": {k[:-4]: round(v["p50"], 2) for k, v in summary.items() if k.endswith("_run")},
        "ours_prepare_ms": round(result["prepareMs"], 1), "baseline_graph_optimization": result["levels"],
        "decodes_per_variant": summary["ours_wall"]["n"], "prompts": [p["name"] for p in prompts],
        "threads": (result.get("ort") or {}).get("threads"), "cross_origin_isolated": isolated,
        "max_abs_logit_diff_vs_pytorch": max_err, "embedding_format": info["embedding_url"].rsplit(".", 1)[-1], "page_errors": errors[:5],
        "machine_before": load_before, "machine_after": machine(),
    }
    lines = [
        f"browser decode per prompt, {out['image']} {width}x{height}, p50 over {out['decodes_per_variant']} decodes "
        f"(onnxruntime-web {out['threads']} threads, cross-origin isolated: {isolated})",
        f"  baseline official export, single mask, resized in graph: {single:8.1f} ms",
        f"  baseline official export, 4 masks, resized in graph:     {four:8.1f} ms",
        f"  previous browser variant (low-res, no resize):           {out['browser_variant_p50_ms']:8.1f} ms",
        f"  ours (fast variant, MaskModel):                          {ours:8.1f} ms"
        f"   (per-image cache: {out['ours_prepare_ms']:.0f} ms once)",
        f"  ratio ours / baseline: {out['ratio']:.3f} (vs 4 masks: {out['ratio_vs_4mask']:.3f})",
        f"  ours vs PyTorch on the same (decoded) embedding, low-res logits max |diff|: {max_err:.2e}",
        f"  load average before/after: {load_before['loadavg']} / {out['machine_after']['loadavg']}",
    ]
    emit(out, args.json, lines)
    return 0


def _check_outputs(sam, embedding, input_size, size, prompts, outputs) -> float:
    """Max |low-res logit| difference of the browser's fast decoder against the PyTorch predictor."""
    import torch

    from mobilesam import SamPredictor

    predictor = SamPredictor(sam)
    predictor.set_image_embedding(torch.from_numpy(embedding), size)
    worst = 0.0
    prev = None
    for p, got in zip(prompts, outputs):
        low = np.frombuffer(base64.b64decode(got["lowRes"]), dtype=np.float32).reshape(4, 256, 256)
        kwargs = {}
        if p["points"]:
            kwargs["point_coords"] = np.array([[q["x"], q["y"]] for q in p["points"]])
            kwargs["point_labels"] = np.array([q["label"] for q in p["points"]])
        if p["box"]:
            b = p["box"]
            kwargs["box"] = np.array([b["x0"], b["y0"], b["x1"], b["y1"]])
        if p["refine"] and prev is not None:
            kwargs["mask_input"] = prev[None]
        multimask = len(p["points"]) == 1 and not p["box"]
        _, scores, logits = predictor.predict(multimask_output=multimask, **kwargs)
        ours = low[1:4] if multimask else low[0:1]
        worst = max(worst, float(np.abs(ours - logits).max()))
        best = int(np.argmax(scores))
        prev = logits[best]
    return worst


if __name__ == "__main__":
    sys.exit(main())
