"""Shared fixtures: stand-in checkpoints built once per test session from ../shared/golden."""
import json
import subprocess
import sys
from pathlib import Path

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
