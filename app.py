"""MobileSAM demo: the server encodes each image once; the browser decodes every prompt.

    python app.py [--checkpoint PATH] [--model-type vit_t] [--device auto|cpu|cuda]
                  [--host 0.0.0.0] [--port 7860] [--share] [--cache-dir DIR]
                  [--embedding-cache-mb 256] [--image-store-mb 512] [--store-dir DIR]
                  [--encode-queue 12]
                  [--sam-checkpoint PATH] [--sam-model-type vit_b|vit_l|vit_h]
                  [--decoder-weights float16|float32|int8]
"""
import argparse
import json
import logging
import sys
from pathlib import Path

import gradio as gr

from mobilesam_app import compare, server
from mobilesam_app.api import ApiEndpoints
from mobilesam_app.service import Service
from mobilesam_app.ui import PageEvents, raw_image_input
from mobilesam_app.startup import DEFAULT_CACHE_DIR, AppConfig, prepare
from mobilesam_app.thumbnails import example_thumbnails
from mobilesam.hub import CheckpointUnavailableError

EXAMPLES_DIR = Path(__file__).parent / "examples"
EXAMPLES = sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg"))
SET_IMAGE_JS = "(info) => { window.msam && window.msam.setImage(info); return []; }"
# a share link's image, restored as the page opens: the page drops it if the user chose an image meanwhile
LINK_IMAGE_JS = "(info) => { window.msam && window.msam.setImage(info, null, {fromLink: true}); return []; }"
# events about "the image": the one the page shows (its id replaces the last input), which a late
# link restore may have made differ from the session's last encoded image
PAGE_IMAGE_ID = "(((s) => (s && s.imageId) || null)(window.msam && window.msam.getState && window.msam.getState()))"
COMPARE_FAILED_JS = """(model, status) => {
  const c = window.msam && window.msam.getState && window.msam.getState().compare;
  return c ? [true, c.model, status] : [false, model, %s];
}""" % json.dumps(compare.HELP)
INTRO = """# MobileSAM: Segment Anything in your browser
Choose a photo. The server computes its embedding once with MobileSAM's 5M-parameter TinyViT encoder;
after that every point, box and preview is decoded **in your browser** with no server round trip."""
# the page shows one of these, by device (web/style.css: #msam-help-touch on touch screens)
HELP_MOUSE = """**Click**: foreground point · **Right-click / Shift-click**: background point · **Drag**: box ·
**Hover**: live preview · **Ctrl+Z**: undo · **Esc**: clear · **New object** / **Alt-click** a mask: several objects."""
HELP_TOUCH = """**Tap**: add a point (the **+/−** button: foreground or background) · **Drag with one finger**: box ·
**New object** and the object list: several objects."""


def build_demo(service: Service, thumbnails=None) -> gr.Blocks:
    page, api = PageEvents(service), ApiEndpoints(service)
    with gr.Blocks(title="MobileSAM", delete_cache=(3600, 3600)) as demo:
        session_image = gr.State(None)
        client_info = gr.Textbox(visible=False, elem_id="msam-info")
        # the share link's image has its own: the load event must never overwrite an upload's info
        # between that event's end and its `.then` (the page then lost the photo just chosen)
        link_info = gr.Textbox(visible=False, elem_id="msam-link-info")
        page_image = gr.Textbox(visible=False)  # the id of the image the page shows (set by PAGE_IMAGE_ID)
        gr.Markdown(INTRO)
        gr.Markdown(HELP_MOUSE, elem_id="msam-help-mouse")
        gr.Markdown(HELP_TOUCH, elem_id="msam-help-touch")
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                image_input = raw_image_input(label="Image: upload, drop or paste", sources=["upload", "clipboard"],
                                              height=280, elem_id="msam-upload")
                compare_on, compare_model, compare_status = compare_controls(service)
                # small thumbnails on the page; a click puts the full photo in the upload box
                examples = gr.Dataset(components=[gr.Image(visible=False)], type="index",
                                      samples=[[t] for t in (thumbnails or EXAMPLES)],
                                      label="Examples (Apache-2.0, see examples/README.md)", elem_id="msam-examples")
            with gr.Column(scale=3):
                gr.HTML('<div id="msam-root"></div>', elem_id="msam-canvas", padding=False)
        with gr.Accordion("Segment everything (server, automatic mask generator)", open=False):
            with gr.Row():
                grid = gr.Slider(4, 32, value=16, step=1, label="Points per side (grid density)")
                everything_button = gr.Button("Segment everything", variant="primary")
            everything_summary = gr.Markdown()
            with gr.Row():
                everything_image = gr.Image(label="All masks", type="numpy", interactive=False)
                everything_file = gr.File(label="SA-1B annotations (JSON)")

        examples.click(lambda i: EXAMPLES[i], examples, image_input, api_name=False, show_progress="hidden")
        uploaded = image_input.change(page.encode_upload, [image_input, compare_on, compare_model],
                                      [client_info, session_image, compare_on, compare_status,
                                       everything_image, everything_file, everything_summary],
                                      concurrency_limit=4, show_progress="full", show_progress_on=[compare_status],
                                      api_name=False)
        uploaded.then(None, [client_info], None, js=SET_IMAGE_JS)
        # a refused file leaves the upload box (the photo being worked on stays: see encode_upload)
        uploaded.failure(None, None, image_input, js="() => null", api_name=False)
        demo.load(page.restore_from_link, None, [link_info, session_image, compare_on, compare_model,
                                                     compare_status],
                  show_progress_on=[compare_status], api_name=False
                  ).then(None, [link_info], None, js=LINK_IMAGE_JS)
        # the user's changes only (.input / .select), not the events' updates of these components
        for listener in (compare_on.input, compare_model.select):
            switched = listener(page.set_compare, [compare_on, compare_model, session_image, page_image],
                                [client_info, compare_on, compare_status], concurrency_limit=2,
                                js=f"(on, model, id) => [on, model, id, {PAGE_IMAGE_ID}]",
                                show_progress="full", show_progress_on=[compare_status], api_name=False)
            switched.success(None, [client_info], None, js=SET_IMAGE_JS)
            # (the error is shown; the controls go back to what the page still compares with, if anything)
            switched.failure(None, [compare_model, compare_status], [compare_on, compare_model, compare_status],
                             js=COMPARE_FAILED_JS)
        everything_button.click(page.segment_everything_ui, [session_image, grid, page_image],
                                [everything_image, everything_file, everything_summary],
                                js=f"(id, grid) => [id, grid, {PAGE_IMAGE_ID}]", concurrency_limit=1, api_name=False)

        with gr.Column(visible=False):  # API-only endpoints for gradio_client
            api_image = gr.File(label="image")
            api_prompts = gr.Textbox(label="prompts")
            api_points_per_side = gr.Number(value=16, label="points_per_side")
            api_mask = gr.File(label="mask")
            api_scores = gr.Textbox(label="scores")
            api_annotations = gr.File(label="annotations")
            api_sam_mask = gr.File(label="sam_mask")
            api_summary = gr.Textbox(label="summary")
            # 24 at once: encodes are bounded by the engine's queue (MAX_QUEUED_ENCODES, 12), so prompts on
            # images already encoded always find a free slot instead of waiting behind other people's encodes
            gr.Button(visible=False).click(api.segment_api, [api_image, api_prompts], [api_mask, api_scores],
                                           api_name="segment", concurrency_limit=24, concurrency_id="segment")
            api_objects = gr.Textbox(label="objects")
            gr.Button(visible=False).click(api.segment_objects_api, [api_image, api_objects],
                                           [api_annotations, api_summary], api_name="segment_objects",
                                           concurrency_limit=4)
            gr.Button(visible=False).click(api.segment_everything_api, [api_image, api_points_per_side],
                                           [api_annotations], api_name="segment_everything", concurrency_limit=1)
            gr.Button(visible=False).click(api.compare_api, [api_image, api_prompts],
                                           [api_mask, api_sam_mask, api_summary], api_name="compare",
                                           concurrency_limit=2)
    return demo


def compare_controls(service: Service):
    """Compare mode's switch, model choice and status line (where loading progress shows)."""
    sam_models = service.sam_models
    choices = sam_models.choices if sam_models is not None else compare.SAM_TYPES
    default = sam_models.default_type if sam_models is not None else "vit_b"
    with gr.Group(elem_id="msam-compare-controls"):
        compare_on = gr.Checkbox(False, label="Compare with the original SAM",
                                 interactive=sam_models is not None, elem_id="msam-compare-toggle")
        compare_model = gr.Dropdown([(model_choice_label(t), t) for t in choices], value=default,
                                    label="SAM model", interactive=sam_models is not None, filterable=False,
                                    elem_id="msam-compare-model")
    # what compare mode does, or what it compares now; loading progress shows over it
    compare_status = gr.Markdown(compare.HELP, min_height=72, elem_id="msam-compare-status")
    return compare_on, compare_model, compare_status


def model_choice_label(model_type: str) -> str:
    from mobilesam.hub import get_pin

    return f"{compare.label(model_type)} ({get_pin(model_type).size / 1e9:.2f} GB of weights)"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="local checkpoint (default: download the official weights)")
    parser.add_argument("--model-type", default="vit_t", choices=["vit_t", "vit_b", "vit_l", "vit_h"])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="create a public Gradio share link")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("--embedding-cache-mb", type=int, default=AppConfig.embedding_cache_mb,
                        help="memory for cached image embeddings (4 MiB each)")
    parser.add_argument("--image-store-mb", type=int, default=AppConfig.image_store_mb,
                        help="disk space for stored uploads (for shared links), in --store-dir")
    parser.add_argument("--encode-queue", type=int, default=AppConfig.encode_queue,
                        help="images waiting or being encoded at once; more get a 'busy, N ahead' message")
    parser.add_argument("--store-dir", type=Path,
                        help="where uploads are stored for share links; replicas may share it (default: "
                             "/data/mobilesam/images on a Space with persistent storage, else <cache-dir>/images)")
    parser.add_argument("--sam-checkpoint", type=Path,
                        help="compare mode: local checkpoint of the original SAM (default: download the official "
                             "weights on first use)")
    parser.add_argument("--sam-model-type", default=AppConfig.sam_model_type, choices=list(compare.SAM_TYPES),
                        help="compare mode: the SAM model offered first, and the one --sam-checkpoint holds")
    parser.add_argument("--decoder-weights", default=AppConfig.decoder_weights, choices=["float16", "float32", "int8"],
                        help="how the browser's decoder file stores its weights (it computes in float32): float16 "
                             "(8.5 MB, masks within 0.98 IoU of float32's), float32 (16.7 MB, exact) or int8 "
                             "(4.5 MB, masks noticeably off); see docs/onnx.md")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    config = AppConfig(model_type=args.model_type, checkpoint=args.checkpoint, device=args.device,
                       cache_dir=args.cache_dir, embedding_cache_mb=args.embedding_cache_mb,
                       image_store_mb=args.image_store_mb, sam_model_type=args.sam_model_type,
                       sam_checkpoint=args.sam_checkpoint, store_dir=args.store_dir,
                       encode_queue=args.encode_queue, decoder_weights=args.decoder_weights)
    if args.sam_checkpoint is not None and not args.sam_checkpoint.is_file():
        sys.exit(f"error: --sam-checkpoint {args.sam_checkpoint} is not a file")
    try:
        service = prepare(config)
    except CheckpointUnavailableError as exc:
        sys.exit(f"error: {exc}\nStart with --checkpoint PATH to use a local copy.")
    thumbs_dir = service.output_dir.parent / "thumbs"
    demo = build_demo(service, example_thumbnails(EXAMPLES, thumbs_dir))
    routes = server.make_routes(lambda: service.decoder_files, service.embedding_bytes,
                                service.engine.store.path_of, encode_resized=service.encode_resized,
                                ensure_stored=service.engine.store.ensure_durable, health=service.engine.health,
                                decode_prompt=service.decode_for_page)
    decoder_path = next(iter(service.decoder_files.values()))
    head = server.page_head({"ortBase": server.ort_base_url(), "decoderUrl": server.decoder_url(decoder_path),
                             "encodeUrl": "/msam/encode", "decodeUrl": "/msam/decode/",
                             "crossOriginIsolated": True, "model": args.model_type})
    demo.queue(max_size=64, default_concurrency_limit=4).launch(
        server_name=args.host, server_port=args.port, share=args.share, head=head, ssr_mode=False,
        max_file_size="50mb", show_error=True,
        # the API's mask / annotation files and the examples' thumbnails (under --cache-dir)
        allowed_paths=[str(service.output_dir), str(thumbs_dir)],
        app_kwargs={"routes": routes, "middleware": server.middleware(head, server.page_body())})


if __name__ == "__main__":
    main()
