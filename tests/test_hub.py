"""Offline tests of mobilesam.hub: hf_hub_download is faked, nothing is downloaded."""
import hashlib
import re
import warnings
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import httpx2
import pytest
import torch
from huggingface_hub import errors as hf_errors

from mobilesam import hub
from mobilesam.utils.digest import sha256_of_file

GOOD = b"official checkpoint bytes " * 100


@pytest.fixture(autouse=True)
def no_checkpoint_env(monkeypatch):
    """Tests start without any MOBILESAM_CHECKPOINT* variable from the caller's shell."""
    for name in [hub.ENV_PREFIX] + [f"{hub.ENV_PREFIX}_{t.upper()}" for t in hub.PINS]:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def pin(monkeypatch):
    """The vit_t pin, repointed at the size and digest of GOOD."""
    fake = replace(hub.PINS["vit_t"], size=len(GOOD), sha256=hashlib.sha256(GOOD).hexdigest())
    monkeypatch.setitem(hub.PINS, "vit_t", fake)
    return fake


class FakeHub:
    """Stands in for hf_hub_download: serves `contents[i]` on the i-th call, records calls."""

    def __init__(self, tmp_path: Path, *contents: bytes):
        self.dir, self.contents, self.calls = tmp_path / "hf-cache", list(contents), []

    def __call__(self, *, repo_id, filename, repo_type, cache_dir=None, force_download=False):
        self.calls.append(dict(repo_id=repo_id, filename=filename, repo_type=repo_type,
                               cache_dir=cache_dir, force_download=force_download))
        path = self.dir / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.contents[len(self.calls) - 1])
        return str(path)


def install(monkeypatch, fake):
    monkeypatch.setattr(hub, "hf_hub_download", fake)
    return fake


def forbid_download(monkeypatch):
    def fail(**kwargs):
        raise AssertionError(f"unexpected download: {kwargs}")

    monkeypatch.setattr(hub, "hf_hub_download", fail)


# ---------------------------------------------------------------- pins


def test_real_pins_are_exact():
    expected = {
        "vit_t": ("dhkim2810/MobileSAM", "mobile_sam.pt", 40728226,
                  "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f"),
        "vit_b": ("ybelkada/segment-anything", "checkpoints/sam_vit_b_01ec64.pth", 375042383,
                  "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
        "vit_l": ("ybelkada/segment-anything", "checkpoints/sam_vit_l_0b3195.pth", 1249524607,
                  "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
        "vit_h": ("ybelkada/segment-anything", "checkpoints/sam_vit_h_4b8939.pth", 2564550879,
                  "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
    }
    assert set(hub.PINS) == set(expected)
    for model_type, (repo, filename, size, sha) in expected.items():
        p = hub.get_pin(model_type)
        assert (p.model_type, p.repo_id, p.filename, p.size, p.sha256, p.repo_type) == (
            model_type, repo, filename, size, sha, "model")
        assert re.fullmatch(r"[0-9a-f]{64}", p.sha256)
    assert hub.get_pin("default") is hub.PINS["vit_t"]


def test_pins_are_frozen():
    with pytest.raises(FrozenInstanceError):
        hub.PINS["vit_t"].size = 1


def test_unknown_model_type():
    with pytest.raises(ValueError, match="vit_x.*default.*vit_t"):
        hub.get_pin("vit_x")


def test_env_var_names():
    assert hub.env_vars("vit_t") == ["MOBILESAM_CHECKPOINT_VIT_T", "MOBILESAM_CHECKPOINT"]
    assert hub.env_vars("default") == hub.env_vars("vit_t")
    assert hub.env_vars("vit_h") == ["MOBILESAM_CHECKPOINT_VIT_H"]


# ---------------------------------------------------------------- hashing and verification


def test_file_sha256_streams(tmp_path):
    f = tmp_path / "blob"
    data = bytes(range(256)) * 41
    f.write_bytes(data)
    assert sha256_of_file(f, chunk=100) == hashlib.sha256(data).hexdigest()
    assert sha256_of_file(f) == hashlib.sha256(data).hexdigest()


def test_verify_accepts_match(tmp_path, pin):
    f = tmp_path / "ok.pt"
    f.write_bytes(GOOD)
    assert hub.verify_checkpoint(f, pin) == f


def test_verify_size_mismatch(tmp_path, pin):
    f = tmp_path / "short.pt"
    f.write_bytes(GOOD[:-1])
    with pytest.raises(hub.ChecksumError) as info:
        hub.verify_checkpoint(f, pin)
    msg = str(info.value)
    assert str(f) in msg and "mobile_sam.pt" in msg and "size" in msg
    assert f"expected {len(GOOD)} bytes, got {len(GOOD) - 1} bytes" in msg
    assert isinstance(info.value, ValueError)


def test_verify_digest_mismatch(tmp_path, pin):
    f = tmp_path / "flipped.pt"
    bad = b"X" + GOOD[1:]
    f.write_bytes(bad)
    with pytest.raises(hub.ChecksumError) as info:
        hub.verify_checkpoint(f, pin)
    msg = str(info.value)
    assert str(f) in msg and "sha256" in msg
    assert pin.sha256 in msg and hashlib.sha256(bad).hexdigest() in msg


# ---------------------------------------------------------------- download


def test_download_verified(tmp_path, monkeypatch, pin):
    fake = install(monkeypatch, FakeHub(tmp_path, GOOD))
    path = hub.download_checkpoint("vit_t", cache_dir=tmp_path / "c")
    assert path.read_bytes() == GOOD
    assert fake.calls == [dict(repo_id="dhkim2810/MobileSAM", filename="mobile_sam.pt",
                               repo_type="model", cache_dir=tmp_path / "c", force_download=False)]


def test_default_downloads_vit_t(tmp_path, monkeypatch, pin):
    fake = install(monkeypatch, FakeHub(tmp_path, GOOD))
    assert hub.download_checkpoint("default").read_bytes() == GOOD
    assert fake.calls[0]["filename"] == "mobile_sam.pt"


def test_corrupt_cache_redownloaded_once(tmp_path, monkeypatch, pin):
    fake = install(monkeypatch, FakeHub(tmp_path, GOOD[:10], GOOD))
    with pytest.warns(RuntimeWarning, match="downloading it again"):
        path = hub.download_checkpoint("vit_t")
    assert path.read_bytes() == GOOD
    assert [c["force_download"] for c in fake.calls] == [False, True]


def test_still_corrupt_after_redownload_raises(tmp_path, monkeypatch, pin):
    bad = b"Y" + GOOD[1:]
    fake = install(monkeypatch, FakeHub(tmp_path, bad, bad))
    with pytest.warns(RuntimeWarning), pytest.raises(hub.ChecksumError) as info:
        hub.download_checkpoint("vit_t")
    assert "re-download" in str(info.value) and pin.sha256 in str(info.value)
    assert [c["force_download"] for c in fake.calls] == [False, True]


def _http_error():
    request = httpx2.Request("GET", "https://huggingface.co/x")
    return hf_errors.HfHubHTTPError("503 Service Unavailable",
                                    response=httpx2.Response(503, request=request))


@pytest.mark.parametrize("make_error", [
    lambda: hf_errors.LocalEntryNotFoundError("cannot find the requested files in the local cache"),
    lambda: hf_errors.OfflineModeIsEnabled("HF_HUB_OFFLINE=1"),
    lambda: ConnectionError("Name or service not known"),
    lambda: httpx2.ConnectError("connection refused"),
    _http_error,
], ids=["local-entry", "offline-mode", "connection", "transport", "http"])
def test_offline_raises_unavailable(monkeypatch, make_error):
    error = make_error()

    def offline(**kwargs):
        raise error

    monkeypatch.setattr(hub, "hf_hub_download", offline)
    with pytest.raises(hub.CheckpointUnavailableError) as info:
        hub.download_checkpoint("vit_t")
    msg = str(info.value)
    for needle in ("mobile_sam.pt", "dhkim2810/MobileSAM", "--checkpoint", "checkpoint=",
                   "MOBILESAM_CHECKPOINT_VIT_T", "MOBILESAM_CHECKPOINT="):
        assert needle in msg
    assert isinstance(info.value, RuntimeError) and info.value.__cause__ is error


def test_offline_message_names_per_type_variable(monkeypatch):
    def offline(**kwargs):
        raise hf_errors.LocalEntryNotFoundError("offline")

    monkeypatch.setattr(hub, "hf_hub_download", offline)
    with pytest.raises(hub.CheckpointUnavailableError,
                       match=r"(?s)sam_vit_b_01ec64\.pth.*ybelkada/segment-anything.*"
                             r"--checkpoint PATH.*MOBILESAM_CHECKPOINT_VIT_B=PATH"):
        hub.resolve_checkpoint("vit_b")


# ---------------------------------------------------------------- resolve


def test_env_var_beats_download(tmp_path, monkeypatch, pin):
    forbid_download(monkeypatch)
    local = tmp_path / "mine.pt"
    local.write_bytes(b"a fine-tune, not the pin")
    monkeypatch.setenv("MOBILESAM_CHECKPOINT_VIT_T", str(local))
    assert hub.resolve_checkpoint("vit_t") == local
    assert hub.resolve_checkpoint("default") == local


def test_alias_env_var_and_precedence(tmp_path, monkeypatch, pin):
    forbid_download(monkeypatch)
    a, b, c = (tmp_path / f"{n}.pt" for n in "abc")
    for f in (a, b, c):
        f.write_bytes(b"x")
    monkeypatch.setenv("MOBILESAM_CHECKPOINT", str(a))
    assert hub.resolve_checkpoint("vit_t") == a
    monkeypatch.setenv("MOBILESAM_CHECKPOINT_VIT_T", str(b))
    assert hub.resolve_checkpoint("vit_t") == b
    assert hub.resolve_checkpoint("vit_t", checkpoint=c) == c


def test_alias_env_var_is_vit_t_only(tmp_path, monkeypatch):
    local = tmp_path / "t.pt"
    local.write_bytes(b"x")
    monkeypatch.setenv("MOBILESAM_CHECKPOINT", str(local))
    wanted = []

    def offline(**kwargs):
        wanted.append(kwargs["filename"])
        raise hf_errors.LocalEntryNotFoundError("offline")

    monkeypatch.setattr(hub, "hf_hub_download", offline)
    with pytest.raises(hub.CheckpointUnavailableError):
        hub.resolve_checkpoint("vit_b")
    assert wanted == ["checkpoints/sam_vit_b_01ec64.pth"]


def test_empty_env_var_is_unset(tmp_path, monkeypatch, pin):
    monkeypatch.setenv("MOBILESAM_CHECKPOINT_VIT_T", "")
    install(monkeypatch, FakeHub(tmp_path, GOOD))
    assert hub.resolve_checkpoint("vit_t").read_bytes() == GOOD


def test_missing_local_file(tmp_path, monkeypatch):
    forbid_download(monkeypatch)
    monkeypatch.setenv("MOBILESAM_CHECKPOINT_VIT_T", str(tmp_path / "nope.pt"))
    with pytest.raises(FileNotFoundError, match="MOBILESAM_CHECKPOINT_VIT_T.*nope.pt"):
        hub.resolve_checkpoint("vit_t")
    with pytest.raises(FileNotFoundError, match="checkpoint.*gone.pt"):
        hub.resolve_checkpoint("vit_t", checkpoint=tmp_path / "gone.pt")


def test_local_same_size_other_digest_warns(tmp_path, monkeypatch, pin):
    forbid_download(monkeypatch)
    local = tmp_path / "mobile_sam.pt"
    local.write_bytes(b"Z" + GOOD[1:])
    with pytest.warns(RuntimeWarning, match="may be corrupted"):
        assert hub.resolve_checkpoint("vit_t", checkpoint=str(local)) == local


def test_local_official_or_other_size_is_silent(tmp_path, monkeypatch, pin):
    forbid_download(monkeypatch)
    official, other = tmp_path / "official.pt", tmp_path / "other.pt"
    official.write_bytes(GOOD)
    other.write_bytes(b"Z" + GOOD)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hub.resolve_checkpoint("vit_t", checkpoint=official) == official
        assert hub.resolve_checkpoint("vit_t", checkpoint=other) == other


# ---------------------------------------------------------------- devices


def test_pick_device_auto(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert hub.pick_device() == torch.device("cpu")
    assert hub.pick_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert hub.pick_device(None) == torch.device("cuda")
    assert hub.pick_device("auto") == torch.device("cuda")


def test_pick_device_explicit(monkeypatch):
    assert hub.pick_device("cpu") == torch.device("cpu")
    assert hub.pick_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert hub.pick_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="only 2 CUDA"):
        hub.pick_device("cuda:2")


@pytest.mark.parametrize("bad", ["gpu", "", "cuda:x", "meta"])
def test_pick_device_rejects(bad):
    with pytest.raises(ValueError, match="device"):
        hub.pick_device(bad)


def test_pick_device_cuda_unavailable(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        hub.pick_device("cuda")


# ---------------------------------------------------------------- load_model


def test_load_model_from_env_var(monkeypatch, vit_t_checkpoint):
    forbid_download(monkeypatch)
    monkeypatch.setenv("MOBILESAM_CHECKPOINT", str(vit_t_checkpoint))
    model = hub.load_model("vit_t", device="cpu")
    assert not model.training
    assert not any(m.training for m in model.modules())
    assert {p.device for p in model.parameters()} == {torch.device("cpu")}


def test_load_model_default_is_the_hubs_default_mobilesam(monkeypatch, vit_t_checkpoint):
    """The hub's "default" is MobileSAM (vit_t), while sam_model_registry["default"] is vit_h as in
    segment_anything: load_model("default") must build what it downloads."""
    from mobilesam.modeling.tiny_vit import TinyViT

    forbid_download(monkeypatch)
    model = hub.load_model("default", device="cpu", checkpoint=vit_t_checkpoint)
    assert isinstance(model.image_encoder, TinyViT)


def test_load_model_bad_device_fails_before_download(monkeypatch):
    forbid_download(monkeypatch)
    with pytest.raises(ValueError, match="device"):
        hub.load_model("vit_t", device="gpu")
