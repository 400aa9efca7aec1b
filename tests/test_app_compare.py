"""Compare mode's server side without a running app: memory checks, loading once, clear errors, numbers."""
import json
import threading
import time

import gradio as gr
import numpy as np
import pytest
import torch

from mobilesam_app import compare as cmp
from mobilesam_app.engine import Engine
from mobilesam_app.service import Service
from mobilesam_app.ui import PageEvents
from mobilesam_app.store import ImageStore

GIB = 2**30


def test_available_memory_reads_memavailable(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:    2097152 kB\n")
    assert cmp.available_memory(torch.device("cpu"), meminfo) == 2 * GIB
    meminfo.write_text("MemTotal: 1 kB\n")
    assert cmp.available_memory(torch.device("cpu"), meminfo) is None
    assert cmp.available_memory(torch.device("cpu"), tmp_path / "missing") is None


@pytest.mark.parametrize("model_type, size", [("vit_b", 375_042_383), ("vit_l", 1_249_524_607),
                                               ("vit_h", 2_564_550_879)])
def test_memory_check_refuses_models_that_do_not_fit(model_type, size):
    need = cmp.required_memory(model_type, size)
    assert need > 2 * size
    cmp.check_memory(model_type, size, available=need)  # fits: no error
    with pytest.raises(cmp.InsufficientMemoryError) as err:
        cmp.check_memory(model_type, size, available=need - 1)
    message = str(err.value)
    assert "Not enough memory" in message and cmp.label(model_type) in message and "GiB" in message
    assert "MobileSAM keeps working" in message
    if model_type != "vit_b":
        assert "smaller model" in message


def test_out_of_memory_errors_are_recognised():
    assert cmp.is_out_of_memory(MemoryError())
    assert cmp.is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                                             "can't allocate memory: you tried to allocate 4294967296 bytes"))
    assert cmp.is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not cmp.is_out_of_memory(RuntimeError("size mismatch for image_encoder.pos_embed"))
    assert not cmp.is_out_of_memory(ValueError("out of memory"))


@pytest.fixture
def store(tmp_path):
    return ImageStore(tmp_path / "images")


def make_models(store, model, tmp_path, build=None, **kwargs):
    decoder = tmp_path / "sam-decoder.onnx"
    decoder.write_bytes(b"onnx")
    kwargs.setdefault("resolve", lambda model_type, checkpoint: checkpoint)
    return cmp.SamModels(store, torch.device("cpu"), lambda ckpt, model_type, sam: decoder,
                         checkpoints={"vit_b": tmp_path / "sam_vit_b.pth"},
                         build=build or (lambda model_type, ckpt, device: model), **kwargs)


@pytest.fixture
def checkpoint_file(tmp_path):
    path = tmp_path / "sam_vit_b.pth"
    path.write_bytes(b"\0" * 1024)
    return path


def test_concurrent_requests_load_the_model_once(store, vit_t_model, tmp_path, checkpoint_file):
    builds = []

    def slow_build(model_type, ckpt, device):
        builds.append(model_type)
        time.sleep(0.5)  # long enough for every thread to arrive while loading
        return vit_t_model

    models = make_models(store, vit_t_model, tmp_path, build=slow_build)
    registered = []
    models.on_decoder = registered.append
    results, errors = [], []

    def worker():
        try:
            results.append(models.get("vit_b"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert builds == ["vit_b"] and models.load_count == 1
    assert len({id(r) for r in results}) == 1 and len(results) == 8
    assert registered == [tmp_path / "sam-decoder.onnx"]
    assert models.engine("vit_b") is results[0].engine
    assert models.engine("vit_l") is None


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("DefaultCPUAllocator: can't allocate memory")])
def test_running_out_of_memory_while_loading_is_a_clear_error_and_can_be_retried(store, vit_t_model, tmp_path,
                                                                                  checkpoint_file, error):
    calls = []

    def build(model_type, ckpt, device):
        calls.append(1)
        if len(calls) == 1:
            raise error
        return vit_t_model

    models = make_models(store, vit_t_model, tmp_path, build=build)
    with pytest.raises(cmp.InsufficientMemoryError, match="ran out of memory loading SAM ViT-B"):
        models.get("vit_b")
    assert models.loaded("vit_b") is None
    assert models.get("vit_b").engine.model is vit_t_model  # a later request tries again
    assert models.load_count == 1


def test_memory_is_checked_before_loading(store, vit_t_model, tmp_path, checkpoint_file, monkeypatch):
    built = []
    models = make_models(store, vit_t_model, tmp_path, build=lambda *a: built.append(a) or vit_t_model)
    monkeypatch.setattr(cmp, "available_memory", lambda device=None, meminfo=None: 1024)
    with pytest.raises(cmp.InsufficientMemoryError, match="Not enough memory to compare with SAM ViT-B"):
        models.get("vit_b")
    assert built == []


def test_memory_is_checked_before_downloading(store, vit_t_model, tmp_path, monkeypatch):
    """vit_h without a local file would be a 2.5 GB download: refused first when it cannot fit."""
    resolved = []
    models = make_models(store, vit_t_model, tmp_path, default_type="vit_b",
                         resolve=lambda model_type, checkpoint: resolved.append(model_type))
    monkeypatch.delenv("MOBILESAM_CHECKPOINT_VIT_H", raising=False)
    monkeypatch.setattr(cmp, "available_memory", lambda device=None, meminfo=None: 4 * GIB)
    with pytest.raises(cmp.InsufficientMemoryError, match="SAM ViT-H.*smaller model"):
        models.get("vit_h")
    assert resolved == []


def test_unavailable_weights_say_how_to_give_a_local_copy(store, vit_t_model, tmp_path, monkeypatch):
    from mobilesam.hub import CheckpointUnavailableError, get_pin

    def offline(model_type, checkpoint):
        raise CheckpointUnavailableError(get_pin(model_type), OSError("offline"))

    monkeypatch.delenv("MOBILESAM_CHECKPOINT_VIT_L", raising=False)
    monkeypatch.setattr(cmp, "available_memory", lambda device=None, meminfo=None: 64 * GIB)
    models = make_models(store, vit_t_model, tmp_path, resolve=offline)
    with pytest.raises(cmp.CompareError, match="--sam-checkpoint PATH --sam-model-type vit_l") as raised:
        models.get("vit_l")
    message = str(raised.value)
    assert "OSError: offline" in message and "MOBILESAM_CHECKPOINT_VIT_L=PATH" in message
    assert "--checkpoint PATH" not in message  # the app's MobileSAM flag would load the wrong model
    tries = []
    models._resolve = lambda model_type, checkpoint: tries.append(model_type) or offline(model_type, checkpoint)
    with pytest.raises(cmp.CompareError, match="tried again 5 minutes after"):  # no new ~25 s try
        models.get("vit_l")
    assert tries == []
    monkeypatch.setattr(cmp, "DOWNLOAD_RETRY_S", 0.0)
    with pytest.raises(cmp.CompareError, match="not available on this server"):
        models.get("vit_l")
    assert tries == ["vit_l"]
    with pytest.raises(cmp.CompareError, match="Unknown comparison model"):
        models.get("vit_t")


def test_startup_choices_leave_out_models_that_cannot_fit(monkeypatch):
    monkeypatch.setattr(cmp, "available_memory", lambda device=None, meminfo=None: 4 * GIB)
    assert cmp.startup_choices("vit_b") == ("vit_b",)
    assert cmp.startup_choices("vit_h") == ("vit_b", "vit_h")  # the one asked for is always offered
    monkeypatch.setattr(cmp, "available_memory", lambda device=None, meminfo=None: 64 * GIB)
    assert cmp.startup_choices("vit_b") == ("vit_b", "vit_l", "vit_h")


def test_handlers_turn_a_memory_shortage_into_a_gradio_error(store, vit_t_model, tmp_path, checkpoint_file,
                                                             monkeypatch):
    # (PyTorch encoder: no background ONNX export left running after the test)
    engine = Engine(vit_t_model, "vit_t", store, cache_bytes=8 * 2**20, encoder_backend="torch")
    service = Service(engine, {}, output_dir=tmp_path / "out", sam_models=make_models(store, vit_t_model, tmp_path))
    handlers = PageEvents(service)
    monkeypatch.setattr(cmp, "available_memory", lambda device=None, meminfo=None: 512 * 2**20)
    with pytest.raises(gr.Error, match="Not enough memory to compare with SAM ViT-B"):
        handlers.set_compare(True, "vit_b", None, progress=lambda *a, **k: None)
    info, on, status = handlers.set_compare(False, "vit_b", None, progress=lambda *a, **k: None)
    assert json.loads(info) is None and on is False and status == cmp.HELP
    with pytest.raises(gr.Error, match="already runs MobileSAM"):
        handlers.set_compare(True, "vit_t", None, progress=lambda *a, **k: None)
    assert service.embedding_bytes("vit_b", "0" * 32) is None  # not loaded: nothing served


def test_compare_summary_numbers_and_line():
    prompt = {"point_coords": np.array([[10.0, 20.0], [30.0, 40.0]]), "point_labels": np.array([1, 0]),
              "box": np.array([1.0, 2.0, 300.0, 400.0]), "multimask_output": False}
    a = {"label": "MobileSAM", "area": 1234, "score": 0.9, "encode_ms": 412.3}
    b = {"label": "SAM ViT-B", "area": 1000, "score": 0.95, "encode_ms": 5321.0}
    out = cmp.compare_summary(800, 600, prompt, a, b, 0.8)
    assert out["image"] == {"width": 800, "height": 600}
    assert out["prompts"] == {"points": [[10.0, 20.0, 1], [30.0, 40.0, 0]], "box": [1.0, 2.0, 300.0, 400.0],
                              "multimask": False}
    assert out["summary"] == ("800×600 image · 2 points (1 foreground, 1 background) + box · "
                              "MobileSAM 1,234 px (0.3%), score 0.900 · SAM ViT-B 1,000 px (0.2%), score 0.950 · "
                              "IoU 0.800 · encoder MobileSAM 412 ms, SAM ViT-B 5,321 ms (this server)")
    assert cmp.mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0
    assert cmp.mask_iou(np.eye(2, dtype=bool), np.ones((2, 2), bool)) == 0.5


def test_a_slow_weights_download_reports_its_time_and_the_hubs_retries(store, vit_t_model, tmp_path, monkeypatch):
    """Hub retries of an unreachable server take ~25 s: the progress says so instead of standing at 5%."""
    import logging

    from mobilesam.hub import CheckpointUnavailableError, get_pin

    def hub_retrying(model_type, checkpoint):
        hub_log = logging.getLogger(cmp.HUB_HTTP_LOGGER)
        for attempt in (1, 2):
            time.sleep(0.3)
            hub_log.warning(f"Retrying in 1s [Retry {attempt}/5].")
        time.sleep(0.3)
        raise CheckpointUnavailableError(get_pin(model_type), OSError("offline"))

    monkeypatch.delenv("MOBILESAM_CHECKPOINT_VIT_L", raising=False)
    monkeypatch.setattr(cmp, "available_memory", lambda device=None, meminfo=None: 64 * GIB)
    monkeypatch.setattr(cmp, "HEARTBEAT_S", 0.05)
    models = make_models(store, vit_t_model, tmp_path, resolve=hub_retrying)
    reports = []
    with pytest.raises(cmp.CompareError, match="OSError: offline"):
        models.get("vit_l", lambda fraction, desc: reports.append((fraction, desc)))
    descs = [d for _, d in reports]
    assert any("retrying (attempt 2 of 6)" in d for d in descs)
    assert any("retrying (attempt 3 of 6)" in d for d in descs)
    assert all(d.startswith("Downloading the SAM ViT-L weights") for d in descs)
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and 0.05 < fractions[-1] < 0.3
    assert not logging.getLogger(cmp.HUB_HTTP_LOGGER).handlers  # the listener goes with the download
