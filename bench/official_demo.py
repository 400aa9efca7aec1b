"""The baseline of bench/first_visit.py: what the official SAM web demo ships, served for a benchmark.

    python bench/official_demo.py --checkpoint CKPT --port PORT [--cache-dir DIR]

Benchmark-only (never part of the app): a small page (bench/web/official_demo.html / .js) that
works as segment-anything's web demo does, with this project's server encoder behind it:

- the decoder is the official-interface export with return_single_mask (mobilesam.export
  export_decoder variant "official"), quantized with the official recipe (quantize_decoder), run
  by onnxruntime-web (the app's own copy, /web/ort/, loaded by web/decoder.js loadOrt);
- the full photo is uploaded (POST /official/encode) and encoded by the app's Engine (the same
  encoder as the app); the embedding comes back as a float32 .npy (4 MiB), as the demo loads it;
- a click runs the decoder with orig_im_size (masks at the photo's full size, in the graph) and
  draws the mask at full size; clicks made before the page is ready are kept and answered then.

Prints "serving URL" once it serves.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_WEB, ROOT  # noqa: E402,F401  (ROOT puts the repository on sys.path)
from _decoders import decoder_files  # noqa: E402


def quantized_official_decoder(checkpoint: Path, cache_dir: Path, sam) -> Path:
    """The official web demo's decoder: official interface, single mask, uint8-quantized (cached)."""
    from mobilesam.export import quantize_decoder
    from mobilesam.onnx_cache import cached_file

    single = decoder_files(checkpoint, "vit_t", cache_dir, sam=sam, variants=("official_single",))["official_single"]
    return cached_file(cache_dir, single.name.replace(".onnx", "-quantized.onnx"),
                       lambda tmp: quantize_decoder(single, tmp))


def npy_bytes(embedding: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(embedding, dtype="<f4"))
    return buf.getvalue()


def make_app(service, decoder: Path):
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    from mobilesam_app import server as app_server
    from mobilesam_app.images import ImageLoadError, load_rgb_image

    def page_file(name: str, media: str):
        return lambda request: FileResponse(BENCH_WEB / name, media_type=media, headers={"Cache-Control": "no-cache"})

    def model(request):  # a static file, as the demo's host serves it
        return FileResponse(decoder, media_type="application/octet-stream", headers={"Cache-Control": "no-cache"})

    async def encode(request):
        data = await request.body()
        try:
            image = await run_in_threadpool(load_rgb_image, data)
        except ImageLoadError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        encoded = await run_in_threadpool(service.engine.encode, image)
        return Response(npy_bytes(encoded.embedding), media_type="application/octet-stream",
                        headers={"X-Image-Size": f"{encoded.height}x{encoded.width}"})

    routes = app_server.make_routes(lambda: {}, lambda *a: None, lambda image_id: None)
    routes += [Route("/", page_file("official_demo.html", "text/html")),
               Route("/official/demo.js", page_file("official_demo.js", "text/javascript")),
               Route("/official/decoder.onnx", model),
               Route("/official/encode", encode, methods=["POST"])]
    return Starlette(routes=routes, middleware=app_server.middleware())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "mobilesam" / "bench-official-demo")
    args = parser.parse_args(argv)
    import uvicorn

    from mobilesam_app import server as app_server
    from mobilesam_app.startup import AppConfig, prepare

    service = prepare(AppConfig(checkpoint=str(args.checkpoint), cache_dir=args.cache_dir))
    decoder = quantized_official_decoder(args.checkpoint, args.cache_dir / "official", service.engine.model)
    app = make_app(service, decoder)
    warm = np.zeros((768, 1024, 3), np.uint8)
    service.engine.encode(warm)  # the encoder's first run, before any page
    app_server.ORT_FILES.wait_compressed(120)
    print(f"serving http://127.0.0.1:{args.port}/ decoder {decoder.name} ({decoder.stat().st_size} bytes)", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
