"""What the tests and the benchmarks share: the repository's paths, the official goldens
(tests/data/golden, compact copies) and sample photos, mask IoU, a running app process on a free
port, and headless Chromium (the system one, through Playwright; never `playwright install`).

Benchmarks import it too (bench/_common.py puts tests/ on sys.path); it imports nothing from bench/.
"""
import contextlib
import json
import lzma
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

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

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, proc, timeout: float = 300.0) -> None:
    import time
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with code {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the app did not serve {url} within {timeout} s")


@contextlib.contextmanager
def running_app(args, cache: Path, tmp: Optional[Path] = None):
    """Run `app.py` with `args` on a free port, its cache in `cache`; yields the base URL. With `tmp`,
    that is the app's temporary folder (TMPDIR), so `cache` lies outside both the app's temporary
    folder and its working directory, as the default ~/.cache/mobilesam does (Gradio serves only
    files from those two and from the folders the app allows)."""
    import os

    port = free_port()
    log_path = cache / "app.log"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), *map(str, args), "--host", "127.0.0.1",
             "--port", str(port), "--cache-dir", str(cache)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/", proc)
        yield url
    except Exception:
        print(log_path.read_text()[-5000:])
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


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
