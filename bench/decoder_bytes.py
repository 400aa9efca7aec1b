"""The decoder's bytes on the wire and the time from page open to "decoder ready", per weight storage.

    python bench/decoder_bytes.py [--checkpoint PATH] [--repeats 2] [--json]
    python bench/decoder_bytes.py --app-url http://127.0.0.1:7860   # the running app's own page

For each storage of the fast decoder (float32, float16, int8: mobilesam.export.store_weights), in
headless Chromium over an emulated network (bench/_common.py NETWORK: 20 Mbit/s down, 5 up, 60 ms
RTT, Network.emulateNetworkConditions), a page that loads the decoder exactly as the app page does
(web/decoder.js MaskModel: the fetch of the decoder while the decoder worker starts onnxruntime-web
from its content-addressed URL), served by the app's own routes (bench/_common.py BenchServer):

- fresh: a new profile (empty HTTP cache), page open -> decoder ready (the "msam-decoder-ready"
  performance mark: session created), bytes on the wire (decoder, all);
- returning: the same profile again (browser restarted): the same figures; with the decoder and the
  runtime cached for a year (immutable) nothing should cross the wire for them.

Ratios are against float32 measured in the same run. Chromium asks 127.0.0.1 (a secure context)
for Brotli, as it asks an HTTPS site; the gzip size is printed beside it.
With --app-url the running app's page ("/") is measured instead, for its own decoder only (fresh and
returning), which includes Gradio's page load beside it.
"""
from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import (NETWORK, BenchServer, chromium_profile, emit, machine, open_emulated,
                     standin_or_given)

STORAGES = ("float32", "float16", "int8")


def parse_args(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="vit_t checkpoint (default: the seed-0 stand-in)")
    parser.add_argument("--model-type", default="vit_t")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "mobilesam" / "bench")
    parser.add_argument("--repeats", type=int, default=2, help="fresh + returning visits per storage")
    parser.add_argument("--app-url", help="measure this running app's page instead of the bench page")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def decoder_files(checkpoint: Path, model_type: str, cache_dir: Path) -> dict:
    from mobilesam.onnx_cache import cached_decoder

    return {w: cached_decoder(checkpoint, model_type, cache_dir, variant="fast", weights=w) for w in STORAGES}


def compressed_sizes(path: Path) -> dict:
    from mobilesam_app.server import _compressed_copies

    copies = _compressed_copies(path.read_bytes())
    return {"raw": path.stat().st_size, **{coding: len(data) for coding, data in copies.items()}}


def visit(profile: Path, url: str, decoder_part: str, ready_js: str, timeout_ms: int = 120_000) -> dict:
    """One page open in the browser profile `profile` over the emulated network."""
    errors: list = []
    with chromium_profile(profile) as context:
        page, log = open_emulated(context, url, errors)
        page.wait_for_function(ready_js, timeout=timeout_ms)
        result = page.evaluate(ready_js)
        page.wait_for_timeout(300)  # the last loadingFinished events
        decoder = log.matching(decoder_part)
    if isinstance(result, dict) and result.get("error"):
        raise RuntimeError(result["error"])
    runtime = log.matching("/web/ort/")
    return {"ready_ms": result["readyMs"], "fetch_ms": result.get("fetchMs"), "create_ms": result.get("createMs"),
            "decoder_wire_bytes": sum(r["bytes"] for r in decoder),
            "runtime_wire_bytes": sum(r["bytes"] for r in runtime),
            "decoder_from_cache": bool(decoder) and all(r["cached"] for r in decoder),
            "decoder_requests": len(decoder), "all_wire_bytes": log.wire_bytes(), "errors": errors[:3]}


# the bench page: loadResult is a promise; poll a copy the page keeps once it is settled
BENCH_SETTLE = """() => { if (!window.__settled && window.loadResult) window.loadResult.then((r) => { window.__settled = r; });
  return window.__settled || null; }"""
APP_READY = """() => { const m = performance.getEntriesByName("msam-decoder-ready")[0];
  return m ? {readyMs: m.startTime} : null; }"""


def measure(url: str, decoder_part: str, ready_js: str, repeats: int) -> dict:
    fresh, returning = [], []
    for _ in range(repeats):
        folder = Path(tempfile.mkdtemp(prefix="msam-profile-"))
        try:
            fresh.append(visit(folder, url, decoder_part, ready_js))
            returning.append(visit(folder, url, decoder_part, ready_js))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return {"fresh": summarise(fresh), "returning": summarise(returning)}


def summarise(runs: list) -> dict:
    def med(key):
        values = [r[key] for r in runs if r.get(key) is not None]
        return statistics.median(values) if values else None

    return {"ready_ms": med("ready_ms"), "fetch_ms": med("fetch_ms"), "create_ms": med("create_ms"),
            "ready_ms_all": [round(r["ready_ms"]) for r in runs],
            "runtime_wire_bytes": max(r["runtime_wire_bytes"] for r in runs),
            "decoder_wire_bytes": max(r["decoder_wire_bytes"] for r in runs),
            "decoder_from_cache": all(r["decoder_from_cache"] for r in runs),
            "all_wire_bytes": max(r["all_wire_bytes"] for r in runs),
            "errors": sum((r["errors"] for r in runs), [])}


def main(argv=None) -> None:
    args = parse_args(argv)
    results = {"machine": machine(), "network": NETWORK, "repeats": args.repeats}
    lines = [f"host: {results['machine']['cpu']} ({results['machine']['cpus']} CPUs, load "
             f"{results['machine']['loadavg']}); network {NETWORK['down_mbps']:g} Mbit/s down, "
             f"{NETWORK['up_mbps']:g} up, {NETWORK['rtt_ms']:g} ms RTT"]
    if args.app_url:
        results["app"] = measure(args.app_url.rstrip("/") + "/", "/msam/models/", APP_READY, args.repeats)
        for kind in ("fresh", "returning"):
            r = results["app"][kind]
            lines.append(f"app page {kind:9s}: decoder ready {r['ready_ms']:7.0f} ms  decoder on the wire "
                         f"{r['decoder_wire_bytes'] / 1e6:6.2f} MB  all {r['all_wire_bytes'] / 1e6:6.2f} MB  "
                         f"from cache {r['decoder_from_cache']}")
        emit(results, args.json, lines)
        return

    checkpoint = standin_or_given(args.checkpoint)
    t0 = time.perf_counter()
    files = decoder_files(checkpoint, args.model_type, args.cache_dir)
    results["export_s"] = round(time.perf_counter() - t0, 1)
    from mobilesam_app import server as app_server

    with BenchServer() as srv:
        srv.models.update({p.name: p for p in files.values()})
        for path in files.values():
            app_server.MODEL_FILES.entry(path)
        app_server.MODEL_FILES.wait_compressed(300)  # as a long-running app serves them
        ort_base = app_server.ort_base_url()
        for storage, path in files.items():
            url = (f"{srv.url}/bench/decoder-load.html?decoder={app_server.decoder_url(path)}&ort={ort_base}")
            results[storage] = {"bytes": compressed_sizes(path),
                                **measure(url, "/msam/models/", BENCH_SETTLE, args.repeats)}
    base = results["float32"]
    lines.append(f"{'storage':8s} {'file MB':>8s} {'gzip MB':>8s} {'br MB':>7s} {'wire MB':>8s} "
                 f"{'fresh ms':>9s} {'(fetch':>7s} {'create)':>8s} {'x f32':>6s} {'return ms':>10s} {'x f32':>6s} "
                 f"{'wire MB':>8s}  cached")
    for storage in STORAGES:
        r = results[storage]
        b = r["bytes"]
        fresh, ret = r["fresh"], r["returning"]
        lines.append(
            f"{storage:8s} {b['raw'] / 1e6:8.2f} {b['gzip'] / 1e6:8.2f} {b.get('br', float('nan')) / 1e6:7.2f} "
            f"{fresh['decoder_wire_bytes'] / 1e6:8.2f} {fresh['ready_ms']:9.0f} {fresh['fetch_ms']:7.0f} "
            f"{fresh['create_ms']:8.0f} {fresh['ready_ms'] / base['fresh']['ready_ms']:6.2f} {ret['ready_ms']:10.0f} "
            f"{ret['ready_ms'] / base['returning']['ready_ms']:6.2f} {ret['decoder_wire_bytes'] / 1e6:8.3f}  "
            f"{ret['decoder_from_cache']}")
        lines.append(f"{'':8s} onnxruntime-web on the wire: fresh {fresh['runtime_wire_bytes'] / 1e6:.2f} MB, "
                     f"returning {ret['runtime_wire_bytes'] / 1e6:.3f} MB")
        for kind in ("fresh", "returning"):
            if r[kind]["errors"]:
                lines.append(f"  {kind} page errors: {r[kind]['errors']}")
    lines.append("fresh/return ms: page open -> decoder session ready (median of "
                 f"{args.repeats}; fetch: decoder fetched, create: its session made); wire MB: the decoder's "
                 "bytes transferred (Chromium asks 127.0.0.1 for Brotli)")
    emit(results, args.json, lines)


if __name__ == "__main__":
    sys.exit(main())
