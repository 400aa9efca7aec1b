"""MobileSAM demo: the server encodes each image once; the browser decodes every prompt.

    python app.py [--checkpoint PATH] [--model-type vit_t] [--device auto|cpu|cuda]
                  [--host 0.0.0.0] [--port 7860] [--share]
"""
import argparse
import json
import logging
import sys
from pathlib import Path

import gradio as gr

from mobilesam.demo import server
from mobilesam.demo.handlers import Handlers, raw_image_input
from mobilesam.demo.startup import DEFAULT_CACHE_DIR, AppConfig, prepare
from mobilesam.hub import CheckpointUnavailableError

EXAMPLES_DIR = Path(__file__).parent / "examples"
EXAMPLES = sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg"))
SET_IMAGE_JS = "(info) => { window.msam && window.msam.setImage(info); return []; }"
INTRO = """# MobileSAM: Segment Anything in your browser
Choose a photo. The server computes its embedding once with MobileSAM's 5M-parameter TinyViT encoder;
after that every click, box and hover is decoded **in your browser** with no server round trip.
**Click**: foreground point · **Right-click / Shift-click**: background point · **Drag**: box ·
**Hover**: live preview · **Ctrl+Z**: undo · **Esc**: clear."""


def build_demo(handlers: Handlers) -> gr.Blocks:
    with gr.Blocks(title="MobileSAM", delete_cache=(3600, 3600)) as demo:
        session_image = gr.State(None)
        client_info = gr.Textbox(visible=False, elem_id="msam-info")
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                image_input = raw_image_input(label="Image: upload, drop or paste", sources=["upload", "clipboard"],
                                              height=280, elem_id="msam-upload")
                gr.Examples(EXAMPLES, inputs=[image_input], label="Examples (Apache-2.0, see examples/README.md)")
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

        image_input.change(handlers.encode_upload, [image_input], [client_info, session_image],
                           concurrency_limit=4, show_progress="full", api_name=False
                           ).then(None, [client_info], None, js=SET_IMAGE_JS)
        demo.load(handlers.restore_from_link, None, [client_info, session_image], api_name=False
                  ).then(None, [client_info], None, js=SET_IMAGE_JS)
        everything_button.click(handlers.segment_everything_ui, [session_image, grid],
                                [everything_image, everything_file, everything_summary],
                                concurrency_limit=1, api_name=False)

        with gr.Column(visible=False):  # API-only endpoints for gradio_client
            api_image = gr.File(label="image")
            api_prompts = gr.Textbox(label="prompts")
            api_points_per_side = gr.Number(value=16, label="points_per_side")
            api_mask = gr.File(label="mask")
            api_scores = gr.Textbox(label="scores")
            api_annotations = gr.File(label="annotations")
            gr.Button(visible=False).click(handlers.segment_api, [api_image, api_prompts], [api_mask, api_scores],
                                           api_name="segment", concurrency_limit=4)
            gr.Button(visible=False).click(handlers.segment_everything_api, [api_image, api_points_per_side],
                                           [api_annotations], api_name="segment_everything", concurrency_limit=1)
    return demo


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="local checkpoint (default: download the official weights)")
    parser.add_argument("--model-type", default="vit_t", choices=["vit_t", "vit_b", "vit_l", "vit_h"])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="create a public Gradio share link")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    config = AppConfig(model_type=args.model_type, checkpoint=args.checkpoint, device=args.device,
                       cache_dir=args.cache_dir)
    try:
        handlers = prepare(config)
    except CheckpointUnavailableError as exc:
        sys.exit(f"error: {exc}\nStart with --checkpoint PATH to use a local copy.")
    demo = build_demo(handlers)
    routes = server.make_routes(lambda: handlers.decoder_files, handlers.embedding_bytes,
                                handlers.engine.store.path_of)
    decoder_name = next(iter(handlers.decoder_files))
    head = server.page_head({"ortBase": server.ort_base_url(), "decoderUrl": f"/msam/models/{decoder_name}",
                             "crossOriginIsolated": True, "model": args.model_type})
    demo.queue(max_size=64, default_concurrency_limit=4).launch(
        server_name=args.host, server_port=args.port, share=args.share, head=head, ssr_mode=False,
        max_file_size="50mb", show_error=True,
        app_kwargs={"routes": routes, "middleware": server.middleware()})


if __name__ == "__main__":
    main()
