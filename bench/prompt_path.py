"""Where a lone prompt request on an already-encoded image spends its time.

    python bench/prompt_path.py --checkpoint PATH [--image examples/truck.jpg] [--repeat 10] [--cache-dir DIR]

Starts app.py on a free port and times `segment` requests (gradio_client, the same file each time,
so the image is encoded once) end to end; then times the handler's parts in this process with the
same weights: reading the file and hashing its pixels (skipped by the server when it has seen the
file), the decoder with the full-size postprocessing (SamPredictor.predict) and writing the mask
PNG. The rest of the end-to-end time is Gradio's: the upload, the queue's messages, the output
file's copy into its cache and the client's download of it.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.load import AppProcess  # noqa: E402
from support import api_client  # noqa: E402  (tests/support.py, on the path bench.load sets)


def median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(float(np.median(times)), 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "truck.jpg")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--cache-dir", type=Path, help="the app's --cache-dir (reuse one whose encoder export is done: "
                                                        "a fresh one exports it in the background meanwhile)")
    args = parser.parse_args(argv)

    from gradio_client import handle_file

    from mobilesam.hub import load_model_from
    from mobilesam_app.api import save_mask_png
    from mobilesam_app.engine import Engine
    from mobilesam_app.images import load_rgb_image
    from mobilesam_app.prompts import parse_prompts
    from mobilesam_app.store import ImageStore, image_id_of

    work = Path(tempfile.mkdtemp(prefix="mobilesam-prompt-path-"))
    image = load_rgb_image(args.image)
    h, w = image.shape[:2]
    prompts = json.dumps({"points": [[w // 2, h // 2, 1]]})
    with AppProcess(args.checkpoint, args.cache_dir or work / "cache") as app:
        client = api_client(app.url, work)
        end_to_end = median_ms(lambda: client.predict(handle_file(str(args.image)), prompts, api_name="/segment"),
                               args.repeat)
        client.close()
    model = load_model_from(args.checkpoint, "vit_t", "cpu")
    engine = Engine(model, "vit_t", ImageStore(work / "images"), onnx_dir=args.cache_dir and args.cache_dir / "onnx")
    engine.prompts.wait_ready(600)
    encoded = engine.encode(image)
    prompt = parse_prompts(prompts, encoded.original_size)
    mask, _, _ = engine.best_mask(encoded, **prompt)
    parts = {
        "read_file_and_hash_pixels_ms (skipped for a file seen before)":
            median_ms(lambda: image_id_of(load_rgb_image(args.image)), args.repeat),
        f"decode_and_postprocess_ms ({engine.prompts.backend})": median_ms(lambda: engine.best_mask(encoded, **prompt),
                                                                          args.repeat),
        "mask_png_ms": median_ms(lambda: save_mask_png(mask, work / "mask.png"), args.repeat),
    }
    handler = sum(v for k, v in parts.items() if "skipped" not in k)
    print(json.dumps({"image": args.image.name, "size": [w, h], "end_to_end_ms": end_to_end, **parts,
                      "gradio_and_transport_ms": round(end_to_end - handler, 1)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
