"""Embedding bytes sent per image: what the app's page fetches against the official demo's float32
.npy, and what the smaller format does to the masks.

    python bench/embedding_bytes.py --checkpoint CKPT [--image truck.jpg] [--json]

Baseline: the official web demo's embedding file, a float32 .npy of 1×256×64×64 (4 MiB + header).
Ours: the bytes the app's embedding route sends for MobileSAM (the URL client_info gives: uint8 per
channel with a versioned header), fetched over HTTP from the app's routes. Quality: the PyTorch
decoder run on the decoded embedding of every golden image with the golden prompt sets, mask IoU
against the float32 embedding's masks (and float16 for reference).
"""
from __future__ import annotations

import io
import sys
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BenchServer, bench_parser, emit, find_sample, machine  # noqa: E402
from _decoders import encode, golden_mask_ious, load_model  # noqa: E402


def main(argv=None) -> int:
    parser = bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from mobilesam_app.engine import EncodedImage
    from mobilesam_app.images import load_rgb_image
    from mobilesam_app.store import image_id_of
    from mobilesam_app import embedding_codec as codec

    sam = load_model(Path(args.checkpoint), args.model_type)
    image = load_rgb_image(str(find_sample(args.image)))
    embedding, input_size = encode(sam, image)
    encoded = EncodedImage(image_id_of(image), image.shape[0], image.shape[1], input_size[0], input_size[1],
                           embedding, 0.0)
    npy = io.BytesIO()
    np.save(npy, embedding.astype(np.float32))
    baseline_bytes = len(npy.getvalue())
    url = encoded.client_info(args.model_type)["embedding_url"]
    with BenchServer() as server:
        server.embeddings[(args.model_type, encoded.image_id)] = encoded.embedding_f16_bytes()
        with urllib.request.urlopen(server.url + url) as r:
            served = r.read()
            dtype = r.headers.get("X-Embedding-Dtype")
    ours_bytes = len(served)
    decoded = codec.decode_u8(served) if served[:4] == codec.MAGIC else codec.decode_f16(served)
    out = {
        "benchmark": "embedding_bytes", "image": Path(args.image).name,
        "baseline": "float32 .npy (official web demo)", "ours": f"{url.rsplit('.', 1)[-1]} ({dtype}) as served",
        "baseline_bytes": baseline_bytes, "ours_bytes": ours_bytes, "ratio": round(ours_bytes / baseline_bytes, 4),
        "float16_bytes": codec.F16_BYTES, "target_bytes": 1_100_000,
        "max_abs_embedding_error": float(np.abs(decoded - embedding).max()),
        "golden_mask_iou_ours": golden_mask_ious(sam, lambda e, image: codec.decode_u8(codec.transcode(codec.encode_f16(e), "u8"))),
        "golden_mask_iou_float16": golden_mask_ious(sam, lambda e, image: codec.decode_f16(codec.encode_f16(e))),
        "machine": machine(),
    }
    lines = [
        f"embedding bytes per image ({out['image']})",
        f"  baseline float32 .npy:   {baseline_bytes:>9,} bytes",
        f"  float16 (previous app):  {codec.F16_BYTES:>9,} bytes",
        f"  ours, as served ({url.rsplit('.', 1)[-1]}):   {ours_bytes:>9,} bytes   ratio {out['ratio']:.3f} (target <= 1,100,000 bytes)",
        f"  masks on the goldens vs float32 embedding: uint8 IoU min {out['golden_mask_iou_ours']['min']} "
        f"mean {out['golden_mask_iou_ours']['mean']} ({out['golden_mask_iou_ours']['masks']} masks); "
        f"float16 min {out['golden_mask_iou_float16']['min']}",
    ]
    emit(out, args.json, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
