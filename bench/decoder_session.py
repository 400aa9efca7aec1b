"""Decoder session start in the browser: a fresh headless Chromium context (nothing cached) loads the
app's decoder code (web/decoder.js MaskModel) and the decoder, as the app's page does at start.

    python bench/decoder_session.py --checkpoint CKPT [--image truck.jpg] [--trials 3] [--json]

Per trial and decoder (the app's fast decoder; baseline: our official-interface export, fp32, 4
masks; the previous browser variant for reference):
MaskModel.load(url) from its call to a usable session: the decoder worker's start (onnxruntime-web
import, WebAssembly runtime: its 14.2 MB wasm fetched, compiled, 2 threads started) while the model
downloads (localhost), then InferenceSession.create (with no graph optimisation for a model saved
optimised; see web/decoder-core.js graphOptimizationLevel). Each part is reported. Then,
for the fast decoder, the per-image work when an embedding is set at once (its image cache, queued
behind at most one warm-up run). Medians are reported; `ours_s` is the fast decoder's load time,
`baseline_s` the official export's, `ratio` their ratio.

Then return visits (`return_visits`): the fast decoder loaded by `--visits` pages one after the
other in one browser profile kept on disk, as a returning visitor's browser: the runtime comes from
the HTTP cache, and the functions V8 optimised on earlier visits from its WebAssembly code cache
(each page stays open `--visit-pause` s, so that the cache is written).

Then the first decodes of a fresh page (`first_decodes_ms`): the page stays open 2.5 s without a
photo, then 8 point prompts are decoded one after the other, with the decoder's warm-up runs (the
app's default: they let V8 optimise the WebAssembly kernels before the first real prompt) and
without them (`warmUp: false`).
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (BenchServer, bench_parser, chromium, chromium_profile, emit, find_sample, machine,  # noqa: E402
                     median)
from _decoders import client_info, decoder_files, default_cache_dir, encode, load_model  # noqa: E402


def main(argv=None) -> int:
    parser = bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--visits", type=int, default=4, help="pages in one kept profile (the first is a first visit)")
    parser.add_argument("--visit-pause", type=float, default=4.0)
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from mobilesam_app.engine import EncodedImage
    from mobilesam_app.images import load_rgb_image
    from mobilesam_app.store import image_id_of

    checkpoint = Path(args.checkpoint)
    sam = load_model(checkpoint, args.model_type)
    files = decoder_files(checkpoint, args.model_type, args.cache_dir, sam=sam, variants=("fast", "browser", "official"))
    image = load_rgb_image(str(find_sample(args.image)))
    embedding, input_size = encode(sam, image)
    image_id = image_id_of(image)
    encoded = EncodedImage(image_id, image.shape[0], image.shape[1], input_size[0], input_size[1], embedding, 0.0)
    info = encoded.client_info(args.model_type)

    results = {"fast": [], "browser": [], "official": []}
    errors: list = []
    with BenchServer() as server:
        for path in files.values():
            server.models[path.name] = path
        server.embeddings[(args.model_type, image_id)] = encoded.embedding_f16_bytes()
        with chromium() as browser:
            for _ in range(args.trials):
                for variant in ("fast", "official", "browser"):
                    context = browser.new_context()  # no HTTP or code cache from earlier trials
                    page = context.new_page()
                    page.on("pageerror", lambda e: errors.append(str(e)))
                    page.goto(server.url + "/bench/decoder.html")
                    page.wait_for_function("() => window.bench && window.bench.ready === true", timeout=60_000)
                    spec = {"url": f"/msam/models/{files[variant].name}"}
                    if variant == "fast":
                        spec.update(embeddingUrl=info["embedding_url"],
                                    info=client_info(image_id, image.shape[0], image.shape[1], input_size,
                                                     info["embedding_url"], args.model_type))
                    results[variant].append(page.evaluate("(spec) => window.bench.sessionStart(spec)", spec))
                    context.close()

            first = {}
            for warm in (True, False):
                context = browser.new_context()
                page = context.new_page()
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(server.url + "/bench/decoder.html")
                page.wait_for_function("() => window.bench && window.bench.ready === true", timeout=60_000)
                spec = {"url": f"/msam/models/{files['fast'].name}", "embeddingUrl": info["embedding_url"],
                        "info": client_info(image_id, image.shape[0], image.shape[1], input_size,
                                            info["embedding_url"], args.model_type),
                        "idleMs": 2500, "decodes": 8, "warmUp": warm}
                r = page.evaluate("(spec) => window.bench.sessionStart(spec)", spec)
                first["with_warm_up" if warm else "without_warm_up"] = {
                    "decodes_ms": [round(v, 1) for v in r["decodes"]],
                    "warm_up_runs_ms": [round(v, 1) for v in (r["warmUp"] or {}).get("ms", [])]}
                context.close()

        visits = []
        with tempfile.TemporaryDirectory(prefix="mobilesam-profile-") as profile, chromium_profile(Path(profile)) as kept:
            for _ in range(args.visits):
                page = kept.new_page()
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(server.url + "/bench/decoder.html")
                page.wait_for_function("() => window.bench && window.bench.ready === true", timeout=60_000)
                r = page.evaluate("(spec) => window.bench.sessionStart(spec)", {"url": f"/msam/models/{files['fast'].name}"})
                visits.append({"load_s": round(r["totalMs"] / 1000, 3),
                               "runtime_start_s": round(sum(r["ort"]["startMs"].values()) / 1000, 3),
                               "session_s": round(r["timings"]["sessionMs"] / 1000, 3)})
                time.sleep(args.visit_pause)
                page.close()

    def med(variant, key):
        values = [r[key] if key != "createMs" else r["timings"]["createMs"] for r in results[variant]]
        return round(median(values) / 1000, 3)

    def med_t(variant, key):
        return round(median([r["timings"][key] for r in results[variant]]) / 1000, 3)

    def med_start(variant):  # onnxruntime-web import + WebAssembly runtime start (fetch, compile, threads)
        return round(median([sum(r["ort"]["startMs"].values()) for r in results[variant]]) / 1000, 3)

    def parts(variant):
        first_result = results[variant][0]["timings"]
        return {"load_s": med(variant, "totalMs"), "runtime_start_s": med_start(variant),
                "fetch_s": med_t(variant, "fetchMs"), "session_s": med_t(variant, "sessionMs"),
                "graph_optimization": first_result.get("optimizationLevel"), "bytes": first_result["bytes"]}

    out = {
        "benchmark": "decoder_session", "trials": args.trials,
        "baseline": "official-interface export (fp32, 4 masks) loaded the same way",
        "baseline_s": med("official", "totalMs"), "ours_s": med("fast", "totalMs"),
        "ratio": round(med("fast", "totalMs") / med("official", "totalMs"), 4), "target_s": 0.5,
        "fast": {**parts("fast"),
                 "per_image_cache_s": round(median([r["prepareMs"] for r in results["fast"]]) / 1000, 3)},
        "browser_variant": parts("browser"), "official": parts("official"),
        "return_visits": {"visits": visits,
                          "later_load_s": round(median([v["load_s"] for v in visits[1:]]), 3) if len(visits) > 1 else None},
        "first_decodes_ms": first,
        "ort": results["fast"][0]["ort"], "page_errors": errors[:5], "machine": machine(),
    }
    f, b, o = out["fast"], out["browser_variant"], out["official"]

    def row(name, p):
        return (f"  {name:<17} load {p['load_s']:.3f} s: runtime start {p['runtime_start_s']:.3f} s, model fetch "
                f"{p['fetch_s']:.3f} s ({p['bytes'] / 1e6:.1f} MB, meanwhile), then session {p['session_s']:.3f} s "
                f"(graph optimisation {p['graph_optimization']})")

    lines = [
        f"decoder session start in a fresh headless Chromium context, median of {args.trials} "
        f"(onnxruntime-web {out['ort'].get('version')}, {out['ort'].get('threads')} threads, in a worker: {out['ort'].get('worker')})",
        row("fast decoder:", f) + f"; per-image cache {f['per_image_cache_s']:.3f} s",
        row("browser variant:", b),
        row("official export:", o),
        f"  ours {out['ours_s']:.3f} s, baseline official export {out['baseline_s']:.3f} s; ratio {out['ratio']:.3f}; "
        f"target <= 0.5 s; load {out['machine']['loadavg']}",
        "  one kept browser profile, visit after visit (load s, runtime start s): "
        + ", ".join(f"{v['load_s']:.3f} ({v['runtime_start_s']:.3f})" for v in visits)
        + (f"; return visits median {out['return_visits']['later_load_s']:.3f} s" if len(visits) > 1 else ""),
        "  first 8 decodes of a fresh page (open 2.5 s before the photo), fast decoder, ms:",
    ]
    for key, value in first.items():
        lines.append(f"    {key.replace('_', ' ')}: {[round(v) for v in value['decodes_ms']]}"
                     + (f" (warm-up runs {[round(v) for v in value['warm_up_runs_ms']]})" if value["warm_up_runs_ms"] else ""))
    emit(out, args.json, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
