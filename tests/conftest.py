"""Shared fixtures: stand-in checkpoints built once per test session from ../shared/golden."""
import contextlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GOLDEN = SHARED / "golden"
SAMPLES = SHARED / "samples"


def build_standin_checkpoint(model_type: str, out_dir: Path, seed: int = 0) -> Path:
    """Build the deterministic stand-in checkpoint of `model_type` with the official key layout."""
    out = Path(out_dir) / f"{model_type}_seed{seed}.pt"
    if not out.exists():
        subprocess.run(
            [sys.executable, str(GOLDEN / "make_checkpoint.py"), str(GOLDEN / f"{model_type}_keys.json"),
             str(out), "--seed", str(seed)],
            check=True,
        )
    return out


@pytest.fixture
def private_tempdir(tmp_path, monkeypatch) -> Path:
    """Point `tempfile` at a folder under the test's tmp_path, so fallbacks that export to a fresh
    temporary folder (an unwritable cache) are removed with the test's files instead of piling up
    (20 MB each) in the system's temporary folder."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="session")
def vit_t_checkpoint(checkpoint_dir) -> Path:
    return build_standin_checkpoint("vit_t", checkpoint_dir)


@pytest.fixture(scope="session")
def vit_b_checkpoint(checkpoint_dir) -> Path:
    return build_standin_checkpoint("vit_b", checkpoint_dir)


@pytest.fixture(scope="session")
def vit_t_model(vit_t_checkpoint):
    from mobilesam import sam_model_registry

    return sam_model_registry["vit_t"](checkpoint=str(vit_t_checkpoint))


@pytest.fixture(scope="session")
def vit_b_model(vit_b_checkpoint):
    from mobilesam import sam_model_registry

    return sam_model_registry["vit_b"](checkpoint=str(vit_b_checkpoint))


def load_sample(name: str) -> np.ndarray:
    """A sample photo as uint8 H×W×3 RGB, loaded the way the goldens were made."""
    return np.array(Image.open(SAMPLES / name).convert("RGB"))


def golden_index(model_type: str) -> dict:
    with open(GOLDEN / model_type / "index.json") as f:
        return json.load(f)


def load_golden_prompt(model_type: str, image_key: str, prompt_name: str) -> dict:
    """Golden outputs of one prompt set, masks unpacked to bool N×H×W."""
    data = np.load(GOLDEN / model_type / f"{image_key}_{prompt_name}.npz")
    out = {k: data[k] for k in data.files}
    shape = tuple(out["mask_shape"])
    out["masks"] = np.unpackbits(out["masks"], axis=-1)[..., : shape[-1]].astype(bool).reshape(shape)
    return out


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


@pytest.fixture(scope="session")
def app_cache(tmp_path_factory) -> Path:
    """The --cache-dir of the session's app (its log is app.log there)."""
    return tmp_path_factory.mktemp("app-cache")


@pytest.fixture(scope="session")
def app_url(vit_t_checkpoint, app_cache, tmp_path_factory):
    """The app started on a free port with the vit_t stand-in checkpoint; yields its base URL."""
    with running_app(["--checkpoint", vit_t_checkpoint], app_cache, tmp=tmp_path_factory.mktemp("app-tmp")) as url:
        yield url


@pytest.fixture(scope="session")
def predictor_vit_t(vit_t_model):
    from mobilesam import SamPredictor

    return SamPredictor(vit_t_model)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
