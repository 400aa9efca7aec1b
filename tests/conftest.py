"""Fixtures: stand-in checkpoints built once per test session (tests/standin.py), the models, the
running app. Shared helpers (goldens, photos, mask IoU, app process, Chromium) are in support.py."""
import tempfile
from pathlib import Path

import pytest

from standin import build_standin_checkpoint
from support import (DECODER_INPUT_IOU_SLACK, DECODER_INPUT_LOGIT_SLACK, DECODER_INPUT_MIN_MASK_IOU,  # noqa: F401
                     GOLDEN, ROOT, SAMPLES, GoldenArray, free_port, golden_index, golden_mask_ious,
                     golden_prompt_kwargs, load_golden_embedding, load_golden_prompt, load_sample, mask_iou,
                     running_app, wait_for_http)
from support import chromium

# (the names above are re-exported for tests that still import them from conftest)


def pytest_collection_modifyitems(items):
    """Tests that use a real browser (the `browser` fixture) are marked `browser`: --quick skips them."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


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


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (support.chromium) for one test module; tests open their own pages."""
    with chromium() as b:
        yield b


@pytest.fixture(scope="session")
def compare_app_url(vit_t_checkpoint, vit_b_checkpoint, tmp_path_factory):
    """The app with the vit_t stand-in and `--sam-checkpoint <vit_b stand-in>` on a free port (one per
    test session: loading SAM and encoding with it are the slow part of compare mode's tests)."""
    args = ["--checkpoint", vit_t_checkpoint, "--sam-checkpoint", vit_b_checkpoint, "--sam-model-type", "vit_b"]
    with running_app(args, tmp_path_factory.mktemp("compare-app-cache"), tmp=tmp_path_factory.mktemp("app-tmp")) as url:
        yield url
