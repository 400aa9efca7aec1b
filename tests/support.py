"""What the tests and the benchmarks share: the repository's paths, the official goldens
(tests/data/golden, compact copies) and sample photos, mask IoU, a running app process on a free
port, and headless Chromium (the system one, through Playwright; never `playwright install`).

Benchmarks import it too (bench/_common.py puts tests/ on sys.path); it imports nothing from bench/.
"""
import atexit
import base64
import contextlib
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, Optional, Sequence
from urllib.parse import urlparse

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden"  # compact copies: read them with the loaders below
SAMPLES = ROOT / "examples"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks of one shape (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


# ---- goldens and photos ------------------------------------------------------------------

def load_sample(name: str) -> np.ndarray:
    """A sample photo as uint8 H×W×3 RGB, loaded the way the goldens were made."""
    return np.array(Image.open(SAMPLES / name).convert("RGB"))


def golden_index(model_type: str) -> dict:
    with open(GOLDEN / model_type / "index.json") as f:
        return json.load(f)


@dataclass(frozen=True)
class GoldenArray:
    """A golden float32 array as tests/data/golden keeps it (see its README): `approx` is the whole
    array rounded to a multiple of a power of two (|approx - official| <= `rounding`), and the official
    values are exact at every `stride`-th element of the flattened array (`exact`)."""

    approx: np.ndarray
    rounding: float
    stride: int
    exact: np.ndarray

    @property
    def shape(self) -> tuple:
        return self.approx.shape

    def assert_close(self, actual, atol: float, err_msg: str = "") -> None:
        """`actual` is within `atol` of the official array: exactly so on the exact subsample, and
        within `atol` + the rounding of the compact copy everywhere."""
        actual = np.asarray(actual)
        assert actual.shape == self.approx.shape, (actual.shape, self.approx.shape, err_msg)
        np.testing.assert_allclose(actual.reshape(-1)[:: self.stride], self.exact, atol=atol, rtol=0,
                                   err_msg=f"{err_msg} (exact subsample)")
        np.testing.assert_allclose(actual, self.approx, atol=atol + self.rounding, rtol=0,
                                   err_msg=f"{err_msg} (whole array, compact copy)")


def _unxz(blob: np.ndarray, dtype) -> np.ndarray:
    return np.frombuffer(lzma.decompress(blob.tobytes()), np.dtype(dtype).newbyteorder("<"))


def _golden_array(data, name: str) -> GoldenArray:
    residual = _unxz(data[f"{name}_residual_xz"], np.int16).astype(np.int64)
    step, period = float(data[f"{name}_step"]), int(data[f"{name}_period"])
    shape = tuple(int(n) for n in data[f"{name}_shape"])
    *lead, h, w = shape
    q = residual.reshape(*lead, h // period, period, w // period, period).cumsum(axis=-4).cumsum(axis=-2)
    return GoldenArray(approx=(q.reshape(shape) * step).astype(np.float32), rounding=step / 2,
                       stride=int(data[f"{name}_sample_stride"]), exact=data[f"{name}_sample"])


# A decoder fed `load_golden_embedding(...).approx` instead of the official embedding (each value off
# by up to its rounding, 2**-6) moves its outputs off the goldens by up to these amounts (measured with
# the official-equivalent PyTorch decoder on every golden prompt set: low-res logits 0.024, scores 2.6e-4,
# mask IoU down to 0.992). Tests that feed the golden embedding to a decoder add them to their bounds;
# the decoders are held to the tight bounds against PyTorch on identical inputs elsewhere.
DECODER_INPUT_LOGIT_SLACK = 0.03
DECODER_INPUT_IOU_SLACK = 5e-4
DECODER_INPUT_MIN_MASK_IOU = 0.99


def load_golden_embedding(model_type: str, image_key: str) -> GoldenArray:
    """The official 1×256×64×64 embedding of a golden image (`.approx` to feed a decoder,
    `.assert_close` to compare with one)."""
    with np.load(GOLDEN / model_type / f"{image_key}_embedding.npz") as data:
        return _golden_array(data, "embedding")


def load_golden_prompt(model_type: str, image_key: str, prompt_name: str) -> dict:
    """Golden outputs of one prompt set: `masks` (exact, bool N×H×W), `iou_predictions` (exact
    float32), `low_res_masks` (the N×256×256 logits, as `GoldenArray.approx`) and `low_res` (the
    GoldenArray, to compare logits with)."""
    with np.load(GOLDEN / model_type / f"{image_key}_{prompt_name}.npz") as data:
        shape = tuple(int(n) for n in data["mask_shape"])
        packed = _unxz(data["masks_xz"], np.uint8).reshape(tuple(int(n) for n in data["masks_packed_shape"]))
        masks = np.unpackbits(packed, axis=-1)[..., : shape[-1]].astype(bool).reshape(shape)
        low_res = _golden_array(data, "low_res_masks")
        return {"masks": masks, "mask_shape": data["mask_shape"], "iou_predictions": data["iou_predictions"],
                "low_res_masks": low_res.approx, "low_res": low_res}


def golden_prompt_kwargs(prompt: dict, previous: dict) -> dict:
    """SamPredictor.predict arguments of a golden prompt set; `previous` maps earlier prompt names to
    their (low-res logits, scores), whose best logits a refinement takes as its mask input."""
    kwargs = {"multimask_output": prompt["multimask_output"]}
    if "point_coords" in prompt:
        kwargs["point_coords"] = np.array(prompt["point_coords"], dtype=np.float32)
        kwargs["point_labels"] = np.array(prompt["point_labels"])
    if "box" in prompt:
        kwargs["box"] = np.array(prompt["box"], dtype=np.float32)
    if "mask_from" in prompt:
        logits, scores = previous[prompt["mask_from"]]
        kwargs["mask_input"] = logits[np.argmax(scores)][None]
    return kwargs


def golden_mask_ious(model, embedding: np.ndarray, model_type: str, key: str) -> list:
    """IoU of each mask SamPredictor makes from `embedding` with the golden prompt sets of image `key`
    against the golden (official float32) masks; a refinement takes the golden earlier prompt's best
    low-res logits as its mask input, as the goldens were made."""
    import torch

    from mobilesam import SamPredictor

    entry = golden_index(model_type)["images"][key]
    predictor = SamPredictor(model)
    predictor.set_image_embedding(torch.from_numpy(np.asarray(embedding, np.float32)), (entry["height"], entry["width"]))
    ious, previous = [], {}
    for prompt in entry["prompts"]:
        golden = load_golden_prompt(model_type, key, prompt["name"])
        previous[prompt["name"]] = (golden["low_res_masks"], golden["iou_predictions"])
        masks, _, _ = predictor.predict(**golden_prompt_kwargs(prompt, previous))
        ious += [mask_iou(a, b) for a, b in zip(masks, golden["masks"])]
    return ious


# ---- the running app ---------------------------------------------------------------------

def api_client(url: str, download_dir: Optional[Path] = None):
    """A gradio_client Client of the app at `url`, its downloads in `download_dir`. Over plain HTTP it
    skips the TLS set-up gradio_client otherwise does for every request it sends (it loads the CA
    bundle each time: ~130 ms of CPU per call, measured, on the same cores as the app here)."""
    from gradio_client import Client

    kwargs = {} if download_dir is None else {"download_files": str(download_dir)}
    return Client(url, verbose=False, analytics_enabled=False, ssl_verify=not url.startswith("http://"), **kwargs)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, proc: Optional[subprocess.Popen] = None, timeout: float = 300.0) -> None:
    """Wait until `url` answers; fail early if `proc` (the server) exits first."""
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the app exited with code {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the app did not serve {url} within {timeout} s")


_ONNX_SEEDS: dict = {}


def onnx_seed(checkpoint: Path) -> Path:
    """A folder holding the ONNX exports an app started with `checkpoint` (vit_t) makes at start-up (the
    browser's fast decoder with the default weight storage, the onnxruntime encoder and the server's
    float32 fast decoder), made once per test session: apps started on a fresh cache folder get a copy instead of exporting again (the
    exports themselves are tested in test_onnx_export.py, test_fast_decoder.py, test_accel_encoder.py)."""
    checkpoint = Path(checkpoint).resolve()
    if checkpoint not in _ONNX_SEEDS:
        from mobilesam.hub import load_model_from
        from mobilesam.onnx_cache import cached_decoder, cached_encoder, cached_fast_decoder
        from mobilesam_app.startup import AppConfig

        folder = Path(tempfile.mkdtemp(prefix="mobilesam-test-onnx-"))
        atexit.register(shutil.rmtree, folder, True)  # (ignore_errors) 30 MB a session otherwise left behind
        model = load_model_from(checkpoint, "vit_t", "cpu")
        cached_decoder(checkpoint, "vit_t", folder, variant="fast", weights=AppConfig.decoder_weights, sam=model)
        cached_encoder(model, "vit_t", folder)
        cached_fast_decoder(model, "vit_t", folder)  # the server's own prompts (mobilesam_app/prompt_decoder.py)
        _ONNX_SEEDS[checkpoint] = folder
    return _ONNX_SEEDS[checkpoint]


def copy_of_onnx_seed(checkpoint: Path, folder: Path) -> Path:
    """`folder` (made if missing) holding a copy of the session's ONNX exports for `checkpoint`
    (`onnx_seed`), for tests that use an export rather than test it."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in onnx_seed(checkpoint).iterdir():
        shutil.copy2(path, folder / path.name)
    return folder


def _checkpoint_in(args) -> Optional[Path]:
    args = [str(a) for a in args]
    return Path(args[args.index("--checkpoint") + 1]) if "--checkpoint" in args[:-1] else None


def _model_type_in(args) -> str:
    args = [str(a) for a in args]
    return args[args.index("--model-type") + 1] if "--model-type" in args[:-1] else "vit_t"


class AppProcess:
    """`python app.py` on a free local port with `--cache-dir cache_dir` (and `--checkpoint checkpoint`
    when given) and `extra_args`, its output in `log_path`; stop() ends it. With `tmp`, that is the
    app's temporary folder (TMPDIR), so the cache lies outside both the app's temporary folder and
    its working directory, as the default ~/.cache/mobilesam does (Gradio serves only files from those
    two and from the folders the app allows). With a vit_t checkpoint, a fresh cache folder gets a
    copy of the session's ONNX exports (`onnx_seed`) named in `seed_onnx` ("decoder", "encoder")."""

    def __init__(self, checkpoint: Optional[Path], cache_dir: Path, extra_args=(), port: Optional[int] = None,
                 startup_timeout: float = 300.0, tmp: Optional[Path] = None,
                 log_name: Optional[str] = None, seed_onnx: Sequence[str] = ("decoder", "encoder")) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        model_checkpoint = checkpoint if checkpoint is not None else _checkpoint_in(extra_args)
        if seed_onnx and model_checkpoint is not None and _model_type_in(extra_args) == "vit_t":
            self._copy_exports(onnx_seed(model_checkpoint), seed_onnx)
        self.log_path = self.cache_dir / (log_name or f"app-{self.port}.log")
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
        if tmp is not None:
            env["TMPDIR"] = str(tmp)
        checkpoint_args = [] if checkpoint is None else ["--checkpoint", str(checkpoint)]
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "app.py"), *checkpoint_args, "--host", "127.0.0.1",
                 "--port", str(self.port), "--cache-dir", str(self.cache_dir), *map(str, extra_args)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_http(self.url + "/", self.proc, startup_timeout)
        except Exception:
            print(self.log_tail())
            self.stop()
            raise

    def _copy_exports(self, seed: Path, kinds: Sequence[str]) -> None:
        target = self.cache_dir / "onnx"
        target.mkdir(parents=True, exist_ok=True)
        for path in seed.iterdir():
            wanted = any(f"-{kind}-" in path.name for kind in kinds)  # "-decoder-", "-encoder-" (+ .sha256)
            if wanted and path.is_file() and not (target / path.name).exists():
                shutil.copy2(path, target / path.name)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 5000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


@contextlib.contextmanager
def running_app(args, cache: Path, tmp: Optional[Path] = None):
    """`app.py` with `args` (e.g. ["--checkpoint", path]) on a free port, its cache in `cache` and its
    log in `cache/app.log`; yields the base URL (see AppProcess for `tmp`)."""
    with AppProcess(None, cache, args, tmp=tmp, log_name="app.log") as app:
        try:
            yield app.url
        except Exception:
            print(app.log_tail())
            raise


def find_listening_pid(port: int) -> Optional[int]:
    """Pid of the local process listening on TCP `port` (from /proc; None if not found or not visible)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] == "0A":  # 0A: LISTEN
                        inodes.add(parts[9])
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    return int(pid)
        except OSError:
            continue
    return None


def proc_memory_mb(pid: int) -> dict:
    """VmRSS and VmHWM (peak RSS) of `pid` in MiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


# ---- a page of another origin that frames the app, as the Hub shows a Space ------------------

class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class HubLikeParent:
    """A page on another origin (127.0.0.1 vs localhost, another port), served without COOP/COEP,
    that shows `app_url` in an iframe as the Hub shows a Space."""

    def __init__(self, app_url: str) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="mobilesam-hub-"))
        (self.folder / "index.html").write_text(
            "<!doctype html><title>Hub-like page</title><h1>A Space</h1>"
            f'<iframe id="space" src="{app_url}/" width="1360" height="1400" '
            'allow="clipboard-write; cross-origin-isolated" style="border:0"></iframe>')
        port = free_port()
        handler = partial(_QuietHandler, directory=str(self.folder))
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.url = f"http://localhost:{port}/index.html"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def app_frame(page, app_url: str, timeout=120_000):
    """The app's frame inside the parent page, once window.msam is there."""
    page.wait_for_function(
        "(u) => { const f = document.getElementById('space'); return !!f; }", arg=app_url, timeout=timeout)
    frame = next(f for f in page.frames if f.url.startswith(app_url))
    frame.wait_for_function("() => window.msam && typeof window.msam.getState === 'function'", timeout=timeout)
    return frame


def load_photo(frame, photo: Path, image_id: str, timeout=180_000) -> None:
    frame.locator("#msam-upload input[type=file]").first.set_input_files(str(photo))
    frame.wait_for_function("(id) => { const s = window.msam.getState(); return s.ready && s.imageId === id; }",
                            arg=image_id, timeout=timeout)



# ---- headless Chromium ---------------------------------------------------------------------

@contextlib.contextmanager
def chromium(headless: bool = True) -> Iterator[object]:
    """Headless Chromium (the system one) through Playwright: yields a Browser."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=headless)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def chromium_profile(folder: Path, headless: bool = True) -> Iterator[object]:
    """Headless Chromium with an on-disk profile in `folder`: a browser context that keeps its HTTP cache
    and V8's code caches (JavaScript and WebAssembly) between pages, as a returning visitor's browser does."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(folder), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                       headless=headless)
        try:
            yield context
        finally:
            context.close()


# ---- ONNX export: the command, and exported decoders fed as the official web demo feeds them ----

IMG_SIZE = 1024


def run_export_cli(*args: str) -> subprocess.CompletedProcess:
    """`python onnx/export.py ARGS` from the repository; it must succeed."""
    result = subprocess.run([sys.executable, "onnx/export.py", *args], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"CLI failed:\n{result.stdout}\n{result.stderr}"
    return result


def _transform():
    from mobilesam.utils.transforms import ResizeLongestSide

    return ResizeLongestSide(IMG_SIZE)


def web_inputs(prompt: dict, previous: dict, height: int, width: int, embedding: np.ndarray) -> dict:
    """Decoder inputs as the official web demo builds them from a golden prompt set."""
    from mobilesam.utils.onnx import web_prompt_inputs

    coords, labels = web_prompt_inputs(prompt.get("point_coords"), prompt.get("point_labels"), prompt.get("box"),
                                       (height, width))
    if "mask_from" in prompt:
        earlier = previous[prompt["mask_from"]]
        mask_input = earlier["low_res_masks"][np.argmax(earlier["iou_predictions"])][None, None]
        has_mask = np.ones(1)
    else:
        mask_input = np.zeros((1, 1, 256, 256))
        has_mask = np.zeros(1)
    return {
        "image_embeddings": embedding.astype(np.float32),
        "point_coords": coords,
        "point_labels": labels,
        "mask_input": mask_input.astype(np.float32),
        "has_mask_input": has_mask.astype(np.float32),
        "orig_im_size": np.array([height, width], dtype=np.float32),
    }


def upsample_like_sam(low_res: np.ndarray, height: int, width: int) -> np.ndarray:
    """`Sam.postprocess_masks` in torch: 256 -> 1024 bilinear, crop the padding, -> original size."""
    import torch
    import torch.nn.functional as F

    input_h, input_w = _transform().get_preprocess_shape(height, width, IMG_SIZE)
    masks = F.interpolate(torch.from_numpy(low_res), (IMG_SIZE, IMG_SIZE), mode="bilinear", align_corners=False)
    masks = masks[..., :input_h, :input_w]
    return F.interpolate(masks, (height, width), mode="bilinear", align_corners=False).numpy()


def chosen(prompt: dict) -> slice:
    """Which of the four decoder outputs a golden prompt set holds."""
    return slice(1, 4) if prompt["multimask_output"] else slice(0, 1)


def golden_images(model_type: str):
    """(image key, its prompt sets, its golden embedding as the repository holds it, height, width)."""
    for key, entry in golden_index(model_type)["images"].items():
        yield key, entry["prompts"], load_golden_embedding(model_type, key).approx, entry["height"], entry["width"]


def fast_decoder_golden_runs(session, model_type: str):
    """Every golden prompt set of `model_type` decoded by a fast decoder `session` (onnxruntime) as the
    page feeds it (the image cache once per image, a refinement fed its predecessor's golden logits):
    yields (image key, prompt set, its golden, iou [1,4], low_res [1,4,256,256], height, width)."""
    from mobilesam.accel.fast_decoder import run_fast_decoder

    for key, prompts, embedding, height, width in golden_images(model_type):
        previous, cache = {}, None
        for prompt in prompts:
            golden = load_golden_prompt(model_type, key, prompt["name"])
            feeds = web_inputs(prompt, previous, height, width, embedding)
            del feeds["orig_im_size"]
            previous[prompt["name"]] = golden
            if cache is None:
                _, _, cache = run_fast_decoder(session, feeds)
            iou, low_res, _ = run_fast_decoder(session, feeds, cache)
            yield key, prompt, golden, iou, low_res, height, width


# ---- the app's page in Chromium --------------------------------------------------------------

SHOTS = ROOT / "test-output" / "e2e"
SLOW_MS = 600_000  # loading SAM and encoding with it on a shared CPU


class Page:
    """A page of the app with helpers that speak in image pixel coordinates."""

    def __init__(self, browser, url):
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        self.origin = "{0.scheme}://{0.netloc}".format(urlparse(url))
        self.requests = []
        self.errors = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url)
        self.page.wait_for_function("() => window.msam && typeof window.msam.getState === 'function'", timeout=60_000)

    def shot(self, name):
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def readme_shot(self):
        """Write the README's screenshot to $MOBILESAM_SCREENSHOT, if set: the page at 1000 px wide, PNG."""
        path = os.environ.get("MOBILESAM_SCREENSHOT")
        if not path:
            return
        before = self.page.viewport_size
        self.page.set_viewport_size({"width": 1000, "height": 760})
        self.page.wait_for_timeout(500)  # let the layout and the canvas settle at the new width
        self.page.screenshot(path=path, scale="css", type="png", clip={"x": 0, "y": 0, "width": 1000, "height": 760})
        # 256 colours keep the file small (well under 300 KB) for the README.
        Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
        self.page.set_viewport_size(before)
        self.page.wait_for_timeout(500)

    def upload(self, path):
        self.page.locator("#msam-upload input[type=file], input[type=file]").first.set_input_files(str(path))

    def wait_image(self, image, timeout=120_000):
        """Wait until the browser holds the embedding of `image` (ids are content hashes)."""
        from mobilesam_app.store import image_id_of

        self.page.wait_for_function(
            "(id) => { const s = window.msam.getState(); return s.ready && s.imageId === id; }",
            arg=image_id_of(image), timeout=timeout)

    def state(self):
        return self.page.evaluate("() => window.msam.getState()")

    def idle(self):
        self.page.evaluate("() => window.msam.whenIdle()")

    def canvas_point(self, x, y, size):
        box = self.page.locator("#msam-root canvas").first.bounding_box()
        h, w = size
        return box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h

    def click(self, x, y, size, modifier=None, **kwargs):
        cx, cy = self.canvas_point(x, y, size)
        self.page.mouse.move(cx, cy)
        if modifier:
            self.page.keyboard.down(modifier)
        self.page.mouse.click(cx, cy, **kwargs)
        if modifier:
            self.page.keyboard.up(modifier)
        self.idle()

    def drag(self, x0, y0, x1, y1, size):
        a, b = self.canvas_point(x0, y0, size), self.canvas_point(x1, y1, size)
        self.page.mouse.move(*a)
        self.page.mouse.down()
        self.page.mouse.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, steps=4)
        self.page.mouse.move(*b, steps=4)
        self.page.mouse.up()
        self.idle()

    def mask(self):
        bits = self.page.evaluate("() => window.msam.getMaskBitsBase64()")
        assert bits is not None, "no mask in the browser"
        return mask_from_bits(bits)

    def segment_everything(self, points_per_side):
        """Open the segment-everything panel, run it with this grid; the locator of its result picture."""
        self.page.get_by_text("Segment everything (server").click()
        slider = self.page.locator("input[type=number]").last
        slider.fill(str(points_per_side))
        slider.press("Enter")
        self.page.get_by_role("button", name="Segment everything", exact=True).click()
        self.page.get_by_text("masks in").first.wait_for(timeout=120_000)
        picture = self.page.locator("[data-testid=accordion-content] img").first
        picture.wait_for(timeout=30_000)
        return picture

    def server_requests_since(self, start):
        return [u for u in self.requests[start:] if u.startswith(self.origin)]


def torch_mask(predictor, state):
    """The PyTorch predictor's mask for the browser's prompts, chosen as the browser's auto mode does."""
    kwargs = {}
    if state["points"]:
        kwargs["point_coords"] = np.array([[p["x"], p["y"]] for p in state["points"]], dtype=np.float64)
        kwargs["point_labels"] = np.array([p["label"] for p in state["points"]])
    if state["box"]:
        b = state["box"]
        kwargs["box"] = np.array([b["x0"], b["y0"], b["x1"], b["y1"]], dtype=np.float64)
    multimask = len(state["points"]) == 1 and not state["box"]
    masks, scores, _ = predictor.predict(multimask_output=multimask, **kwargs)
    return masks[int(np.argmax(scores))]


def page_with_photo(browser, app_url, name):
    """A fresh page of the app with sample `name` uploaded and ready: (page, image, (height, width))."""
    image = load_sample(name)
    page = Page(browser, app_url)
    page.upload(SAMPLES / name)
    page.wait_image(image)
    return page, image, image.shape[:2]


def share_link(page, timeout_s: float = 120.0) -> Optional[str]:
    """The page's share link once it is offered (`msam.getShareLink()` is a Promise of null until the
    original photo is stored), asked again every 0.2 s; None if it did not come within `timeout_s`.
    (Not `wait_for_function`: it takes the Promise itself as a truthy answer.)"""
    page = getattr(page, "page", page)
    return page.evaluate("""async (ms) => {
        for (const end = performance.now() + ms; ;) {
            const link = await window.msam.getShareLink();
            if (link || performance.now() > end) return link || null;
            await new Promise((r) => setTimeout(r, 200));
        }
    }""", timeout_s * 1000)


def mask_from_bits(bits: dict) -> np.ndarray:
    """The H×W bool mask of the page's base64 mask bits ({width, height, data}, web/exports.js)."""
    data = np.frombuffer(base64.b64decode(bits["data"]), dtype=np.uint8)
    return data.reshape(bits["height"], bits["width"]).astype(bool)


def object_masks(page) -> dict:
    """{object id: H×W bool mask} of the objects with prompts, from `page` (a Page, or a Playwright page)."""
    page = getattr(page, "page", page)
    return {bits["id"]: mask_from_bits(bits) for bits in page.evaluate("() => window.msam.getObjectMasksBase64()")}


class ComparePage(Page):
    def shot(self, name):
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def wait_compare(self, timeout=SLOW_MS):
        self.page.wait_for_function(
            "() => { const s = window.msam.getState(); return s.compare && s.compare.ready; }", timeout=timeout)
        self.idle()

    def compare_mask(self):
        bits = self.page.evaluate("() => window.msam.getCompareMaskBitsBase64()")
        assert bits is not None, "no comparison mask in the browser"
        return mask_from_bits(bits)

    def sam_canvas_point(self, x, y, size):
        box = self.page.locator("#msam-root .msam-pane-b canvas").bounding_box()
        h, w = size
        return box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h
