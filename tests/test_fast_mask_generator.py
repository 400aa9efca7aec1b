"""Segment everything, faster: filtering by predicted IoU before upsampling gives the same records
as the official order, and the fast backend (onnxruntime encoder + fast decoder) the same records up
to float rounding. Correctness only (bench/segment_everything.py measures the speed)."""
import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from conftest import load_sample, mask_iou  # noqa: E402
from mobilesam.accel.encoder import ImageEncoder  # noqa: E402
from mobilesam.accel.mask_generator import FastSamAutomaticMaskGenerator  # noqa: E402
from mobilesam.automatic_mask_generator import SamAutomaticMaskGenerator  # noqa: E402
from mobilesam.utils.amg import rle_to_mask  # noqa: E402

# Thresholds that let the stand-in (untrained) weights' masks through, so there are records to compare.
SETTINGS = dict(points_per_side=6, points_per_batch=32, pred_iou_thresh=0.35, stability_score_thresh=0.0, box_nms_thresh=1.0,
                output_mode="uncompressed_rle")


@pytest.fixture(scope="module")
def image():
    return np.ascontiguousarray(load_sample("truck.jpg")[::4, ::4])  # 450×300: quick


@pytest.fixture(scope="module")
def onnx_dir(vit_t_checkpoint, tmp_path_factory):
    """A copy of the session's onnxruntime encoder export (support.onnx_seed; the export itself is
    tested in test_onnx_export.py and test_accel_encoder.py): these tests compare the records, not the export."""
    from support import copy_of_onnx_seed

    return copy_of_onnx_seed(vit_t_checkpoint, tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="module")
def torch_records(vit_t_model, image):
    return SamAutomaticMaskGenerator(vit_t_model, **SETTINGS).generate(image)


def test_low_res_filtering_gives_the_official_records(vit_t_model, image, torch_records):
    official = SamAutomaticMaskGenerator(vit_t_model, **SETTINGS)
    official.upsample_all_first = True
    expected = official.generate(image)
    assert len(torch_records) >= 3  # the comparison is not vacuous
    assert torch_records == expected  # every field, bit for bit


def test_low_res_filtering_with_crops_and_small_regions(vit_t_model, image):
    # Every mask of the four crops touches its crop's inner edge on the stand-in weights and is dropped
    # there (after the same filtering), and the crops' NMS would keep one record: with it off and no IoU
    # threshold the full-image crop keeps a dozen, which the small-region clean-up then changes.
    settings = dict(SETTINGS, points_per_side=2, crop_n_layers=1, crop_nms_thresh=1.0, pred_iou_thresh=0.0,
                    min_mask_region_area=20)
    ours = SamAutomaticMaskGenerator(vit_t_model, **settings).generate(image)
    official = SamAutomaticMaskGenerator(vit_t_model, **settings)
    official.upsample_all_first = True
    assert len(ours) >= 5  # the comparison is not vacuous
    assert ours == official.generate(image)


def test_fast_generator_gives_the_same_records(vit_t_model, image, torch_records, onnx_dir):
    encoder = ImageEncoder(vit_t_model, "vit_t", backend="onnxruntime", cache_dir=onnx_dir, background=False)
    fast = FastSamAutomaticMaskGenerator(vit_t_model, image_encoder=encoder, cache_dir=onnx_dir,
                                         **SETTINGS).generate(image)
    assert len(fast) == len(torch_records)
    for ours, theirs in zip(fast, torch_records):
        assert ours["point_coords"] == theirs["point_coords"]
        assert ours["crop_box"] == theirs["crop_box"]
        assert abs(ours["predicted_iou"] - theirs["predicted_iou"]) < 1e-4
        assert abs(ours["stability_score"] - theirs["stability_score"]) < 1e-3
        assert np.abs(np.array(ours["bbox"]) - np.array(theirs["bbox"])).max() <= 1
        assert mask_iou(rle_to_mask(ours["segmentation"]), rle_to_mask(theirs["segmentation"])) >= 0.99


def test_the_official_generator_takes_no_backend_arguments(vit_t_model):
    # the library's generator is segment_anything's: the accelerated one is a class of its own
    with pytest.raises(TypeError, match="backend"):
        SamAutomaticMaskGenerator(vit_t_model, backend="fast")


def test_engine_segment_everything_uses_the_fast_backend(vit_t_model, image, tmp_path, torch_records, onnx_dir):
    from mobilesam_app.engine import Engine
    from mobilesam_app.store import ImageStore

    engine = Engine(vit_t_model, "vit_t", ImageStore(tmp_path / "images"), encoder_backend="onnxruntime",
                    onnx_dir=onnx_dir)
    records = engine.segment_everything(image, **SETTINGS)
    assert len(records) == len(torch_records)
    for ours, theirs in zip(records, torch_records):
        assert mask_iou(rle_to_mask(ours["segmentation"]), rle_to_mask(theirs["segmentation"])) >= 0.99
