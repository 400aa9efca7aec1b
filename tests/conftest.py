"""Fixtures: stand-in checkpoints built once per test session (tests/standin.py), the models, the
running app. Shared helpers (goldens, photos, mask IoU, app process, Chromium) are in support.py."""
import hashlib
import tempfile
from collections import OrderedDict
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
def vit_t_model(vit_t_checkpoint, _reference_embeddings):
    from mobilesam import sam_model_registry

    return _reference_embeddings.remember(sam_model_registry["vit_t"](checkpoint=str(vit_t_checkpoint)))


@pytest.fixture(scope="session")
def vit_b_model(vit_b_checkpoint, _reference_embeddings):
    from mobilesam import sam_model_registry

    return _reference_embeddings.remember(sam_model_registry["vit_b"](checkpoint=str(vit_b_checkpoint)))


class ReferenceEmbeddings:
    """The session's reference predictors encode each image once. Many tests compare the app with
    `SamPredictor` on the same photos (truck.jpg above all), and an eager ViT-B encode takes ~10 s
    on 2 CPU cores: `SamPredictor.set_torch_image` on the session's models (`remember`) keeps the embedding of
    each input it has encoded (by the input's bytes) and gives it back through `set_image_embedding`.
    The same input to the same unchanged model gives the same embedding, so no comparison changes;
    the encoders themselves are tested on their first call (the goldens) and in their own tests."""

    MAX_ENTRIES = 48  # 4 MiB each

    def __init__(self) -> None:
        self.models: set = set()
        self.embeddings: OrderedDict = OrderedDict()
        self.hits = self.misses = 0

    def remember(self, model):
        self.models.add(id(model))
        return model

    def wrap(self, set_torch_image):
        def memo_set_torch_image(predictor, transformed_image, original_image_size):
            if id(predictor.model) not in self.models:
                return set_torch_image(predictor, transformed_image, original_image_size)
            pixels = transformed_image.detach().cpu().contiguous().numpy()
            key = (id(predictor.model), pixels.shape, str(pixels.dtype), hashlib.sha256(pixels.tobytes()).hexdigest())
            if key in self.embeddings:
                self.hits += 1
                self.embeddings.move_to_end(key)
                predictor.set_image_embedding(self.embeddings[key], original_image_size)
                predictor.input_size = tuple(int(s) for s in transformed_image.shape[-2:])
                return None
            self.misses += 1
            set_torch_image(predictor, transformed_image, original_image_size)
            self.embeddings[key] = predictor.features
            while len(self.embeddings) > self.MAX_ENTRIES:
                self.embeddings.popitem(last=False)
            return None
        return memo_set_torch_image


@pytest.fixture(scope="session")
def _reference_embeddings():
    from mobilesam.predictor import SamPredictor

    memo = _MEMO[0] = ReferenceEmbeddings()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SamPredictor, "set_torch_image", memo.wrap(SamPredictor.set_torch_image))
        yield memo


_MEMO: list = [None]


def pytest_terminal_summary(terminalreporter):
    memo = _MEMO[0]
    if memo is not None:
        terminalreporter.write_line(f"reference embeddings: {memo.misses} encoded, {memo.hits} reused")


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


@pytest.fixture(autouse=True)
def _close_the_tests_pages(request):
    """Close the browser contexts (pages) a test opened when it ends. Every Gradio page keeps an
    animation-frame loop running while idle (Gradio's own, ~8 % of a 2-vCPU host's core per page), so pages
    left open until the module's end would slow the tests after them."""
    if "browser" not in request.fixturenames:
        yield
        return
    browser = request.getfixturevalue("browser")
    before = set(browser.contexts)  # a module's own page (opened by a wider fixture) stays
    yield
    for context in browser.contexts:
        if context not in before:
            context.close()


@pytest.fixture(scope="session")
def compare_app_url(vit_t_checkpoint, vit_b_checkpoint, tmp_path_factory):
    """The app with the vit_t stand-in and `--sam-checkpoint <vit_b stand-in>` on a free port (one per
    test session: loading SAM and encoding with it are the slow part of compare mode's tests)."""
    args = ["--checkpoint", vit_t_checkpoint, "--sam-checkpoint", vit_b_checkpoint, "--sam-model-type", "vit_b"]
    with running_app(args, tmp_path_factory.mktemp("compare-app-cache"), tmp=tmp_path_factory.mktemp("app-tmp")) as url:
        yield url
