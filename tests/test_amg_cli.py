"""Tests of the command line `python -m mobilesam.amg` with the seed-0 vit_t stand-in."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from conftest import ROOT, load_sample
from mobilesam import amg as cli

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

FAST = ["--points-per-side", "2", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
HEADER = ("id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,"
          "stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h").split(",")


@pytest.fixture(scope="module")
def small_photo():
    """groceries.jpg at a quarter of its size, uint8 H x W x 3."""
    image = Image.fromarray(load_sample("groceries.jpg"))
    return np.array(image.resize((200, 134), Image.BILINEAR))


@pytest.fixture
def input_dir(tmp_path, small_photo):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(small_photo).save(folder / "shop.png")
    # Stored landscape 200 x 134 with EXIF orientation 6 ("rotate 90° to view"): upright 134 x 200.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(small_photo).save(folder / "rotated.jpg", exif=exif, quality=95)
    (folder / "notes.txt").write_text("not an image, and not an image extension: ignored")
    return folder


@pytest.fixture
def fast_generate(monkeypatch):
    """Replace mask generation (slow on CPU) by one fixed square mask per image, in the
    generator's output mode, for tests of the command's file handling."""
    from mobilesam.automatic_mask_generator import SamAutomaticMaskGenerator
    from mobilesam.utils.amg import coco_encode_rle, mask_to_rle_pytorch

    def generate(self, image, progress=None):
        h, w = image.shape[:2]
        mask = np.zeros((h, w), dtype=bool)
        mask[10:20, 30:50] = True
        segmentation = mask
        if self.output_mode == "coco_rle":
            segmentation = coco_encode_rle(mask_to_rle_pytorch(torch.from_numpy(mask)[None])[0])
        return [{"segmentation": segmentation, "area": 200, "bbox": [30, 10, 19, 9], "predicted_iou": 0.9,
                 "point_coords": [[40.0, 15.0]], "stability_score": 0.8, "crop_box": [0, 0, w, h]}]

    monkeypatch.setattr(SamAutomaticMaskGenerator, "generate", generate)


@pytest.fixture
def session_model(monkeypatch, vit_t_model):
    """Skip loading the checkpoint again: the command gets the session's model."""
    calls = []

    def load_sam(model_type, checkpoint, device):
        calls.append((model_type, checkpoint, device))
        return vit_t_model

    monkeypatch.setattr(cli, "load_sam", load_sam)
    return calls


def read_metadata(folder: Path):
    with open(folder / "metadata.csv", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_png_folders_and_metadata(tmp_path, input_dir, vit_t_checkpoint, capsys):
    out = tmp_path / "out"
    code = cli.main(["--input", str(input_dir), "--output", str(out), "--checkpoint", str(vit_t_checkpoint),
                     "--device", "cpu", *FAST])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["rotated", "shop"]
    for name, (h, w) in (("shop", (134, 200)), ("rotated", (200, 134))):
        header, rows = read_metadata(out / name)
        assert header == HEADER
        assert rows, "the stand-in model with thresholds 0 always yields masks"
        pngs = sorted(p.name for p in (out / name).glob("*.png"))
        assert pngs == sorted(f"{i}.png" for i in range(len(rows)))
        for row in rows:
            values = dict(zip(header, row))
            mask_image = Image.open(out / name / f"{values['id']}.png")
            assert mask_image.mode == "L"
            pixels = np.array(mask_image)
            assert pixels.shape == (h, w)  # EXIF rotation applied before generation
            assert set(np.unique(pixels)) <= {0, 255}
            mask = pixels == 255
            assert int(values["area"]) == mask.sum()
            ys, xs = np.nonzero(mask)
            if len(xs):
                expected_box = [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
                assert [int(values[k]) for k in ("bbox_x0", "bbox_y0", "bbox_w", "bbox_h")] == expected_box
            assert [int(values[k]) for k in ("crop_box_x0", "crop_box_y0", "crop_box_w", "crop_box_h")] == [0, 0, w, h]
            px, py = float(values["point_input_x"]), float(values["point_input_y"])
            assert (px, py) in {(w / 4, h / 4), (3 * w / 4, h / 4), (w / 4, 3 * h / 4), (3 * w / 4, 3 * h / 4)}
            float(values["predicted_iou"]), float(values["stability_score"])  # numbers


def test_rle_json_via_python_m(tmp_path, input_dir, vit_t_checkpoint, small_photo):
    out = tmp_path / "out"
    (input_dir / "rotated.jpg").unlink()
    result = subprocess.run(
        [sys.executable, "-m", "mobilesam.amg", "--input", str(input_dir / "shop.png"), "--output", str(out),
         "--checkpoint", str(vit_t_checkpoint), "--device", "cpu", "--convert-to-rle", *FAST],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["shop.json"]
    doc = json.loads((out / "shop.json").read_text())
    assert doc["image"] == {"image_id": 0, "width": 200, "height": 134, "file_name": "shop.png"}
    assert len(doc["annotations"]) >= 1
    for i, ann in enumerate(doc["annotations"]):
        assert ann["id"] == i
        assert set(ann) == {"id", "segmentation", "area", "bbox", "predicted_iou", "point_coords",
                            "stability_score", "crop_box"}
        rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
        mask = mask_utils.decode(rle).astype(bool)
        assert mask.shape == (134, 200)
        assert ann["area"] == int(mask.sum())
        assert ann["crop_box"] == [0, 0, 200, 134]
        if ann["area"]:
            assert ann["bbox"] == list(mask_utils.toBbox(rle) - [0, 0, 1, 1])  # ours: inclusive width - 1


def test_unreadable_image_is_reported_and_others_processed(tmp_path, input_dir, session_model, fast_generate,
                                                          capsys):
    (input_dir / "broken.jpg").write_bytes(b"this is not a JPEG")
    out = tmp_path / "out"
    code = cli.main(["--input", str(input_dir), "--output", str(out), "--checkpoint", "ckpt.pt",
                     "--model-type", "vit_t", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 1
    assert "broken.jpg" in captured.err and "could not load" in captured.err
    # The images after the broken one ("rotated", "shop") were still processed.
    assert sorted(p.name for p in out.iterdir()) == ["rotated", "shop"]
    assert (out / "shop" / "metadata.csv").is_file()
    assert session_model == [("vit_t", "ckpt.pt", "cpu")]


def test_existing_outputs_need_overwrite(tmp_path, input_dir, session_model, fast_generate, capsys):
    (input_dir / "rotated.jpg").unlink()
    out = tmp_path / "out"
    stale = out / "shop" / "999.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    keep = out / "shop" / "my_notes.txt"
    keep.write_text("not ours")
    args = ["--input", str(input_dir), "--output", str(out), "--checkpoint", "ckpt.pt"]
    assert cli.main(args) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert stale.exists()
    assert cli.main([*args, "--overwrite"]) == 0
    assert not stale.exists() and keep.exists()  # only files the command writes are removed
    _, rows = read_metadata(out / "shop")
    assert sorted(p.name for p in (out / "shop").glob("*.png")) == ["0.png"] and len(rows) == 1
    # The same for JSON outputs.
    args = [*args, "--convert-to-rle"]
    assert cli.main(args) == 0
    assert cli.main(args) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main([*args, "--overwrite"]) == 0


def test_without_checkpoint_uses_hub(tmp_path, input_dir, vit_t_model, monkeypatch, fast_generate):
    import mobilesam.hub

    calls = []

    def fake_load_model(model_type, device=None, checkpoint=None):
        calls.append((model_type, device, checkpoint))
        return vit_t_model

    monkeypatch.setattr(mobilesam.hub, "load_model", fake_load_model)
    (input_dir / "rotated.jpg").unlink()
    code = cli.main(["--input", str(input_dir / "shop.png"), "--output", str(tmp_path / "o"), "--device", "cpu",
                     "--convert-to-rle"])
    assert code == 0
    assert calls == [("vit_t", "cpu", None)]
    doc = json.loads((tmp_path / "o" / "shop.json").read_text())
    seg = doc["annotations"][0]["segmentation"]
    mask = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
    assert mask.shape == (134, 200) and mask[10:20, 30:50].all() and mask.sum() == 200


def test_settings_flags_reach_the_generator():
    args = cli.build_parser().parse_args([
        "--input", "x", "--output", "y", "--points-per-side", "16", "--points-per-batch", "8",
        "--pred-iou-thresh", "0.5", "--stability-score-thresh", "0.6", "--stability-score-offset", "2",
        "--box-nms-thresh", "0.4", "--crop-n-layers", "1", "--crop-nms-thresh", "0.3",
        "--crop-overlap-ratio", "0.25", "--crop-n-points-downscale-factor", "2", "--min-mask-region-area", "50",
    ])
    assert cli.amg_kwargs(args) == dict(
        points_per_side=16, points_per_batch=8, pred_iou_thresh=0.5, stability_score_thresh=0.6,
        stability_score_offset=2.0, box_nms_thresh=0.4, crop_n_layers=1, crop_nms_thresh=0.3,
        crop_overlap_ratio=0.25, crop_n_points_downscale_factor=2, min_mask_region_area=50,
    )
    assert cli.amg_kwargs(cli.build_parser().parse_args(["--input", "x", "--output", "y"])) == {}


def test_bad_arguments(tmp_path, input_dir, capsys, monkeypatch):
    import mobilesam.hub

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model must not be loaded for bad arguments")

    monkeypatch.setattr(mobilesam.hub, "load_model", must_not_load)
    out = str(tmp_path / "o")
    assert cli.main(["--input", str(input_dir), "--output", out, "--crop-overlap-ratio", "2"]) == 2
    assert "crop_overlap_ratio" in capsys.readouterr().err
    assert cli.main(["--input", str(tmp_path / "missing"), "--output", out]) == 2
    assert "neither a file nor a folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["--input", str(empty), "--output", out]) == 2
    assert "no image files" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["--input", str(input_dir)])  # --output missing
    assert exc.value.code == 2


def test_unloadable_checkpoint(tmp_path, input_dir, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    code = cli.main(["--input", str(input_dir), "--output", str(tmp_path / "o"), "--checkpoint", str(bad)])
    assert code == 1
    assert "could not load the vit_t model" in capsys.readouterr().err
    code = cli.main(["--input", str(input_dir), "--output", str(tmp_path / "o"), "--checkpoint", str(bad),
                     "--model-type", "vit_q"])
    assert code == 1
    assert "vit_q" in capsys.readouterr().err


def test_output_names_disambiguate_same_stem():
    paths = [Path("a.jpg"), Path("a.png"), Path("b.jpg")]
    assert cli.output_names(paths) == ["a_jpg", "a_png", "b"]


def test_help_lists_all_settings():
    result = subprocess.run([sys.executable, "-m", "mobilesam.amg", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    for flag in ("--input", "--output", "--model-type", "--checkpoint", "--device", "--convert-to-rle",
                 "--points-per-side", "--points-per-batch", "--pred-iou-thresh", "--stability-score-thresh",
                 "--stability-score-offset", "--box-nms-thresh", "--crop-n-layers", "--crop-nms-thresh",
                 "--crop-overlap-ratio", "--crop-n-points-downscale-factor", "--min-mask-region-area"):
        assert flag in result.stdout
