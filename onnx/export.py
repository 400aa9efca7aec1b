"""Export MobileSAM / SAM to ONNX, like segment-anything's scripts/export_onnx_model.py.

    python onnx/export.py --model-type vit_t --checkpoint mobile_sam.pt --output sam_decoder.onnx \
        [--return-single-mask] [--quantize-out sam_decoder_quant.onnx] [--opset 17] \
        [--use-stability-score] [--gelu-approximate] [--return-extra-metrics] [--variant official|browser|fast]
        [--weights float32|float16|int8]   (fast variant only)
    python onnx/export.py --model-type vit_t --checkpoint mobile_sam.pt --output image_encoder.onnx --encoder

Without --checkpoint the official weights are resolved (and downloaded, verified) by
mobilesam.hub.resolve_checkpoint. The work is done by mobilesam.export.
"""
import argparse
import logging
import sys
import time
from pathlib import Path

# Run as `python onnx/export.py` from anywhere: make the repository's `mobilesam` importable. (This
# folder has no __init__.py on purpose: an `onnx` package here would shadow the onnx library.)
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODEL_TYPES = ("vit_t", "vit_b", "vit_l", "vit_h")
# = mobilesam.export's DEFAULT_OPSET and MIN_OPSET (tests/test_onnx_export.py checks), repeated here so
# that --help and the argument checks answer before the slow import of torch.
DEFAULT_OPSET = 17
MIN_OPSET = 11


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export the SAM prompt encoder + mask decoder (or, with --encoder, the image encoder) "
                    "to one self-contained ONNX file.")
    parser.add_argument("--model-type", default="vit_t", choices=MODEL_TYPES + ("default",),
                        help="model of the checkpoint (default: vit_t, MobileSAM; the name 'default' is "
                             "vit_h, as in segment_anything's sam_model_registry)")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint path; default: the official weights via mobilesam.hub")
    parser.add_argument("--output", required=True, help="the ONNX file to write")
    parser.add_argument("--variant", default="official", choices=("official", "browser", "fast"),
                        help="official: segment-anything's interface (masks at orig_im_size); browser: no "
                             "orig_im_size, outputs iou_predictions [1,4] and low_res_masks [1,4,256,256]; "
                             "fast: the browser variant's outputs with a per-image cache (what the app "
                             "serves; see the README)")
    parser.add_argument("--weights", default="float32", choices=("float32", "float16", "int8"),
                        help="fast variant: store the weights as float32, float16 or per-channel int8 (the "
                             "computation stays float32; see docs/onnx.md)")
    parser.add_argument("--return-single-mask", action="store_true",
                        help="official variant: return only the best mask (the official selection rule)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset (default {DEFAULT_OPSET}, minimum {MIN_OPSET})")
    parser.add_argument("--quantize-out", default=None,
                        help="also write a dynamically uint8-quantized copy of the decoder here")
    parser.add_argument("--gelu-approximate", action="store_true",
                        help="use the tanh approximation of GELU (for runtimes without a fast erf)")
    parser.add_argument("--use-stability-score", action="store_true",
                        help="replace the predicted IoUs by the masks' stability scores")
    parser.add_argument("--return-extra-metrics", action="store_true",
                        help="official variant: also output stability_scores and areas of the upscaled masks")
    parser.add_argument("--encoder", action="store_true",
                        help="export the image encoder instead: input image [1,3,1024,1024] (normalised, "
                             "padded) -> image_embeddings [1,256,64,64]")
    parser.add_argument("--exporter", default="auto", choices=("auto", "torchscript", "dynamo"),
                        help="torch.onnx exporter (default auto: TorchScript, see mobilesam/export.py)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.opset < MIN_OPSET:
        parser.error(f"--opset {args.opset} is too old: the export needs opset {MIN_OPSET} or newer")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("mobilesam").setLevel(logging.INFO)
    if args.encoder:
        bad = [flag for flag, on in [("--return-single-mask", args.return_single_mask),
                                     ("--quantize-out", args.quantize_out is not None),
                                     ("--gelu-approximate", args.gelu_approximate),
                                     ("--use-stability-score", args.use_stability_score),
                                     ("--return-extra-metrics", args.return_extra_metrics),
                                     ("--variant browser", args.variant != "official")] if on]
        if bad:
            parser.error(f"{', '.join(bad)} apply to the decoder, not to --encoder")
    if args.variant == "browser" and (args.return_single_mask or args.return_extra_metrics):
        parser.error("--variant browser always returns all four low-res masks; "
                     "--return-single-mask and --return-extra-metrics need --variant official")
    if args.weights != "float32" and args.variant != "fast":
        parser.error("--weights applies to --variant fast only")
    if args.variant == "fast":
        bad = [flag for flag, on in [("--return-single-mask", args.return_single_mask),
                                     ("--return-extra-metrics", args.return_extra_metrics),
                                     ("--use-stability-score", args.use_stability_score),
                                     ("--gelu-approximate", args.gelu_approximate),
                                     ("--quantize-out", args.quantize_out is not None),
                                     ("--exporter dynamo", args.exporter == "dynamo")] if on]
        if bad:
            parser.error(f"{', '.join(bad)} do not apply to --variant fast (float32, TorchScript, "
                         f"the browser variant's interface)")

    from mobilesam.build_sam import CheckpointError, canonical_model_type
    from mobilesam.export import export_decoder, export_encoder, quantize_decoder
    from mobilesam.hub import load_model_from

    model_type = canonical_model_type(args.model_type)  # "default" is vit_h, as in segment_anything

    if args.checkpoint is None:
        from mobilesam.hub import resolve_checkpoint  # lazy: needs huggingface_hub, may download

        try:
            checkpoint = resolve_checkpoint(model_type)
        except Exception as exc:  # offline, checksum mismatch, ...: a message, not a traceback
            print(f"error: {exc}", file=sys.stderr)
            return 1
    else:
        checkpoint = Path(args.checkpoint)
    print(f"Loading {model_type} from {checkpoint}...")
    try:
        sam = load_model_from(checkpoint, model_type, "cpu")
    except (CheckpointError, FileNotFoundError) as exc:  # wrong model type, damaged file, ...: a message
        print(f"error: {exc}", file=sys.stderr)
        return 1

    start = time.perf_counter()
    if args.encoder:
        print(f"Exporting the image encoder to {args.output}...")
        export_encoder(sam, args.output, opset=args.opset, exporter=args.exporter)
    else:
        print(f"Exporting the {args.variant} decoder to {args.output}...")
        options = {"weights": args.weights} if args.variant == "fast" else dict(
            return_single_mask=args.return_single_mask, gelu_approximate=args.gelu_approximate,
            use_stability_score=args.use_stability_score, return_extra_metrics=args.return_extra_metrics,
            exporter=args.exporter)
        export_decoder(sam, args.output, variant=args.variant, opset=args.opset, **options)
        if args.quantize_out is not None:
            print(f"Quantizing the decoder to {args.quantize_out}...")
            quantize_decoder(args.output, args.quantize_out)
    print(f"Done in {time.perf_counter() - start:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
