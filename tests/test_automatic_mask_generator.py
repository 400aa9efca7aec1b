"""Tests of SamAutomaticMaskGenerator.

Two kinds:

* with `DiskPredictor`, a stand-in for SamPredictor whose masks are known discs
  around each prompt point, so every step of the pipeline (point grids, crops,
  filters, NMS within and across crops, uncropping, small-region removal,
  output modes, progress) can be checked against exact expectations;
* with the seed-0 vit_t stand-in model on a real photo (masks meaningless as
  pictures), checking the records' format and consistency end to end.
"""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from conftest import load_sample
from mobilesam.automatic_mask_generator import SamAutomaticMaskGenerator, validate_generator_args
from mobilesam.utils.amg import (
    MaskData,
    batched_nms,
    build_point_grid,
    generate_crop_boxes,
    mask_to_rle_pytorch,
    rle_to_mask,
)
from mobilesam.utils.nms import box_iou
from mobilesam.utils.transforms import ResizeLongestSide

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


# --------------------------------------------------------------------------- #
# A predictor with known masks
# --------------------------------------------------------------------------- #


class DiskPredictor:
    """Stands in for SamPredictor: the three masks of a point prompt are discs of
    `radii` around it (logit = radius - distance to the pixel), with predicted
    IoUs `ious`. Optionally every mask also gets a one-pixel speck at the
    crop's (0, 0) pixel, an island for min_mask_region_area to remove."""

    def __init__(self, radii=(4.0, 9.0, 20.0), ious=(0.80, 0.95, 0.90), speck=False, blank=False):
        self.radii = torch.tensor(radii, dtype=torch.float32)
        self.ious = torch.tensor(ious, dtype=torch.float32)
        self.speck = speck
        self.blank = blank
        self.transform = ResizeLongestSide(1024)
        self.model = SimpleNamespace(mask_threshold=0.0)
        self.device = torch.device("cpu")
        self.images = []  # every image given to set_image
        self.size = None

    def set_image(self, image, image_format="RGB"):
        self.images.append(image.copy())
        self.size = image.shape[:2]

    def reset_image(self):
        self.size = None

    def logits(self, point_coords: torch.Tensor) -> torch.Tensor:
        """(B, 1, 2) points in the 1024 frame -> (B, 3, h, w) logits on the current crop."""
        h, w = self.size
        new_h, new_w = self.transform.get_preprocess_shape(h, w, 1024)
        xy = point_coords[:, 0, :].double() / torch.tensor([new_w / w, new_h / h], dtype=torch.float64)
        ys = torch.arange(h, dtype=torch.float64)[None, :, None]
        xs = torch.arange(w, dtype=torch.float64)[None, None, :]
        dist = torch.sqrt((xs - xy[:, 0, None, None]) ** 2 + (ys - xy[:, 1, None, None]) ** 2)
        logits = (self.radii[None, :, None, None] - dist[:, None].float()).clone()
        if self.speck:
            logits[..., 0, 0] = 5.0
        if self.blank:
            logits[:] = -5.0
        return logits

    def predict_torch(self, point_coords, point_labels, boxes=None, mask_input=None,
                      multimask_output=True, return_logits=False):
        assert self.size is not None, "set_image first"
        assert multimask_output and return_logits
        assert point_coords.shape[1:] == (1, 2) and point_labels.tolist() == [[1]] * len(point_labels)
        logits = self.logits(point_coords)
        return logits, self.ious.expand(len(point_coords), 3).clone(), None

    def expected_logits(self, point_xy, crop_box, image_size):
        """What the generator should have seen for a point (x, y) of the whole image."""
        x0, y0, x1, y1 = crop_box
        self.size = (y1 - y0, x1 - x0)
        crop_xy = np.array([[point_xy[0] - x0, point_xy[1] - y0]])
        transformed = self.transform.apply_coords(crop_xy, self.size)
        logits = self.logits(torch.as_tensor(transformed, dtype=torch.float)[:, None, :])[0]
        full = torch.full((3, *image_size), -100.0)
        full[:, y0:y1, x0:x1] = logits
        self.size = None
        return full  # (3, H, W)


@pytest.fixture(scope="module")
def noise_image():
    return np.random.default_rng(0).integers(0, 256, size=(200, 300, 3), dtype=np.uint8)


def make_generator(model, predictor, **kwargs):
    generator = SamAutomaticMaskGenerator(model, **kwargs)
    generator.predictor = predictor
    return generator


def xywh_to_xyxy(box):
    return [box[0], box[1], box[0] + box[2], box[1] + box[3]]


def tight_box_xywh(mask):
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0, 0, 0, 0]
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())]


def max_pairwise_iou(records):
    if len(records) < 2:
        return 0.0
    boxes = torch.tensor([xywh_to_xyxy(r["bbox"]) for r in records], dtype=torch.float32)
    iou = box_iou(boxes, boxes).nan_to_num(0.0)
    iou.fill_diagonal_(0.0)
    return float(iou.max())


# --------------------------------------------------------------------------- #
# Pipeline with known masks
# --------------------------------------------------------------------------- #


def test_disk_masks_through_crops(vit_t_model, noise_image):
    image = noise_image
    h, w = image.shape[:2]
    predictor = DiskPredictor()
    calls = []
    generator = make_generator(
        vit_t_model, predictor, points_per_side=4, points_per_batch=5, pred_iou_thresh=0.85,
        stability_score_thresh=0.5, crop_n_layers=1,
    )
    records = generator.generate(image, progress=lambda done, total: calls.append((done, total)))

    crop_boxes, _ = generate_crop_boxes((h, w), 1, 512 / 1500)
    # Each crop was embedded, in order, as the exact sub-image.
    assert len(predictor.images) == len(crop_boxes)
    for crop, seen in zip(crop_boxes, predictor.images):
        x0, y0, x1, y1 = crop
        np.testing.assert_array_equal(seen, image[y0:y1, x0:x1])
    # Progress: 16 points in batches of 5 -> 4 batches per crop, 5 crops.
    assert calls == [(i, 20) for i in range(21)]

    assert len(records) > 5
    crop_xywh = {tuple([x0, y0, x1 - x0, y1 - y0]) for x0, y0, x1, y1 in crop_boxes}
    radius_of_iou = {0.95: 9.0, 0.90: 20.0}  # the radius-4 discs (IoU 0.80) are filtered out
    for r in records:
        mask = r["segmentation"]
        assert mask.shape == (h, w) and mask.dtype == bool
        assert tuple(r["crop_box"]) in crop_xywh
        crop = xywh_to_xyxy(r["crop_box"])
        (px, py), = r["point_coords"]
        assert crop[0] <= px < crop[2] and crop[1] <= py < crop[3]
        # The mask is the disc of the matching radius around the point, cut to the crop.
        radius_index = [9.0, 20.0].index(radius_of_iou[round(r["predicted_iou"], 2)]) + 1
        logits = predictor.expected_logits((px, py), crop, (h, w))[radius_index]
        np.testing.assert_array_equal(mask, (logits > 0).numpy())
        assert r["area"] == int(mask.sum()) > 0
        assert r["bbox"] == tight_box_xywh(mask)
        expected_stability = float((logits > 1).sum() / (logits > -1).sum())
        assert r["stability_score"] == pytest.approx(expected_stability, rel=1e-6)
        assert r["stability_score"] >= 0.5
        # Masks cut by an inner crop edge are dropped (20 px tolerance).
        x0, y0, x1, y1 = xywh_to_xyxy(r["bbox"])
        for value, edge, image_edge in ((x0, crop[0], 0), (y0, crop[1], 0), (x1, crop[2], w), (y1, crop[3], h)):
            assert abs(value - edge) > 20 or edge == image_edge
    assert max_pairwise_iou(records) <= 0.7


def test_crop_nms_prefers_the_smaller_crop(vit_t_model, noise_image):
    h, w = noise_image.shape[:2]
    crop_boxes, _ = generate_crop_boxes((h, w), 1, 512 / 1500)
    small = crop_boxes[1]  # the top-left crop of layer 1
    point = np.array([70.0, 60.0])
    grids = [
        (point / [w, h])[None],
        ((point - small[:2]) / [small[2] - small[0], small[3] - small[1]])[None],
    ]
    generator = make_generator(
        vit_t_model, DiskPredictor(), points_per_side=None, point_grids=grids, crop_n_layers=1,
        pred_iou_thresh=0.0, stability_score_thresh=0.0,
    )
    records = generator.generate(noise_image)
    at_point = [r for r in records if np.allclose(r["point_coords"][0], point)]
    # Three discs at the point, made both on the whole image and on the small
    # crop: only the small crop's survive.
    assert len(at_point) == 3
    assert all(r["crop_box"] == [small[0], small[1], small[2] - small[0], small[3] - small[1]] for r in at_point)
    assert sorted(r["area"] for r in at_point) == sorted(
        int((DiskPredictor().expected_logits(point, small, (h, w))[i] > 0).sum()) for i in range(3)
    )


def test_box_nms_within_crop_keeps_highest_iou(vit_t_model, noise_image):
    # Discs of radius 9 and 10 around the same point overlap with box IoU > 0.7;
    # the one with the higher predicted IoU (radius 10) wins.
    predictor = DiskPredictor(radii=(9.0, 10.0, 30.0), ious=(0.5, 0.9, 0.7))
    generator = make_generator(
        vit_t_model, predictor, points_per_side=None, point_grids=[np.array([[0.5, 0.5]])],
        pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.7,
    )
    records = generator.generate(noise_image)
    assert [round(r["predicted_iou"], 2) for r in records] == [0.9, 0.7]  # sorted by decreasing IoU
    # Disc of radius 10 around (150, 100): pixels at distance < 10, x and y in 141..159.
    assert records[0]["bbox"] == [141, 91, 18, 18]
    generator.box_nms_thresh = 1.0
    assert len(generator.generate(noise_image)) == 3


def test_filters(vit_t_model, noise_image):
    grid = [np.array([[0.5, 0.5]])]
    kwargs = dict(points_per_side=None, point_grids=grid, box_nms_thresh=1.0)
    # Predicted IoU: strictly above the threshold.
    ious = lambda **kw: sorted(round(r["predicted_iou"], 2) for r in make_generator(  # noqa: E731
        vit_t_model, DiskPredictor(), **kwargs, **kw).generate(noise_image))
    assert ious(pred_iou_thresh=0.0, stability_score_thresh=0.0) == [0.8, 0.9, 0.95]
    assert ious(pred_iou_thresh=0.9, stability_score_thresh=0.0) == [0.95]
    # Stability: the radius-4 disc loses most to a +-1 threshold; radius 20 little.
    scores = {
        round(r["predicted_iou"], 2): r["stability_score"]
        for r in make_generator(vit_t_model, DiskPredictor(), **kwargs, pred_iou_thresh=0.0,
                                stability_score_thresh=0.0).generate(noise_image)
    }
    assert scores[0.8] < scores[0.95] < scores[0.9]
    cut = (scores[0.8] + scores[0.95]) / 2
    assert ious(pred_iou_thresh=0.0, stability_score_thresh=cut) == [0.9, 0.95]
    # The stability threshold is inclusive (>=), unlike the predicted IoU one (>).
    assert ious(pred_iou_thresh=0.0, stability_score_thresh=scores[0.95]) == [0.9, 0.95]
    assert ious(pred_iou_thresh=0.95, stability_score_thresh=0.0) == []
    # A larger offset lowers every stability score.
    wide = make_generator(vit_t_model, DiskPredictor(), **kwargs, pred_iou_thresh=0.0,
                          stability_score_thresh=0.0, stability_score_offset=2.0).generate(noise_image)
    assert all(r["stability_score"] < scores[round(r["predicted_iou"], 2)] for r in wide)


def test_output_modes_agree(vit_t_model, noise_image):
    kwargs = dict(points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0, crop_n_layers=1)
    outputs = {
        mode: make_generator(vit_t_model, DiskPredictor(), output_mode=mode, **kwargs).generate(noise_image)
        for mode in ("binary_mask", "uncompressed_rle", "coco_rle")
    }
    binary = outputs["binary_mask"]
    assert len(binary) > 3
    for b, u, c in zip(binary, outputs["uncompressed_rle"], outputs["coco_rle"]):
        assert isinstance(u["segmentation"]["counts"], list) and isinstance(c["segmentation"]["counts"], str)
        np.testing.assert_array_equal(rle_to_mask(u["segmentation"]), b["segmentation"])
        decoded = mask_utils.decode({"size": c["segmentation"]["size"], "counts": c["segmentation"]["counts"].encode()})
        np.testing.assert_array_equal(decoded.astype(bool), b["segmentation"])
        for key in ("area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"):
            assert b[key] == u[key] == c[key]


def test_min_mask_region_area_removes_islands(vit_t_model, noise_image):
    h, w = noise_image.shape[:2]
    kwargs = dict(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    speckled = make_generator(vit_t_model, DiskPredictor(speck=True), **kwargs).generate(noise_image)
    assert speckled and all(r["segmentation"][0, 0] and r["bbox"][:2] == [0, 0] for r in speckled)

    cleaned = make_generator(vit_t_model, DiskPredictor(speck=True), min_mask_region_area=5, **kwargs)
    records = cleaned.generate(noise_image)
    assert len(records) == len(speckled)
    for r in records:
        logits = DiskPredictor().expected_logits(r["point_coords"][0], [0, 0, w, h], (h, w))
        discs = [(logits[i] > 0).numpy() for i in range(3)]
        # The speck is gone; the mask is a plain disc, with its box and area recomputed.
        assert any(np.array_equal(r["segmentation"], d) for d in discs)
        assert r["bbox"] == tight_box_xywh(r["segmentation"])
        assert r["area"] == int(r["segmentation"].sum())


def test_postprocess_small_regions_prefers_unchanged_masks():
    h, w = 30, 40
    holey = np.zeros((h, w), dtype=bool)
    holey[5:20, 5:20] = True
    holey[10, 10] = False  # a one-pixel hole
    solid = holey.copy()
    solid[10, 10] = True  # the same mask, already without the hole
    islanded = np.zeros((h, w), dtype=bool)
    islanded[22:28, 25:38] = True
    islanded[2, 35] = True  # a one-pixel island far above
    masks = [holey, solid, islanded]
    rles = mask_to_rle_pytorch(torch.from_numpy(np.stack(masks)))
    data = MaskData(
        rles=rles,
        boxes=np.array([[5, 5, 19, 19], [5, 5, 19, 19], [25, 2, 37, 27]]),
        iou_preds=np.array([0.99, 0.5, 0.7], dtype=np.float32),
    )
    out = SamAutomaticMaskGenerator.postprocess_small_regions(data, min_area=4, nms_thresh=0.7)
    # The holey mask becomes a duplicate of the solid one, which never changed: it wins.
    assert out["iou_preds"].tolist() == pytest.approx([0.5, 0.7])
    np.testing.assert_array_equal(rle_to_mask(out["rles"][0]), solid)
    expected_island_free = islanded.copy()
    expected_island_free[2, 35] = False
    np.testing.assert_array_equal(rle_to_mask(out["rles"][1]), expected_island_free)
    assert out["boxes"].tolist() == [[5, 5, 19, 19], [25, 22, 37, 27]]


def test_no_masks_gives_empty_list(vit_t_model, noise_image):
    for layers in (0, 1):
        generator = make_generator(vit_t_model, DiskPredictor(blank=True), points_per_side=2,
                                   pred_iou_thresh=0.0, stability_score_thresh=0.5, crop_n_layers=layers,
                                   min_mask_region_area=10)
        assert generator.generate(noise_image) == []


def test_empty_masks_pass_disabled_stability_filter(vit_t_model, noise_image):
    """As in the official code: an empty mask has stability 0/0 = NaN, which only the
    (enabled) stability filter removes; empty boxes never suppress each other in NMS."""
    generator = make_generator(vit_t_model, DiskPredictor(blank=True), points_per_side=2,
                               pred_iou_thresh=0.0, stability_score_thresh=0.0)
    records = generator.generate(noise_image)
    assert len(records) == 12
    assert all(r["area"] == 0 and r["bbox"] == [0, 0, 0, 0] and np.isnan(r["stability_score"]) for r in records)


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(points_per_side=None), "Exactly one of points_per_side or point_grids"),
        (dict(points_per_side=8, point_grids=[build_point_grid(2)]), "Exactly one"),
        (dict(output_mode="png"), "output_mode"),
        (dict(points_per_batch=0), "points_per_batch"),
        (dict(points_per_side=0), "points_per_side"),
        (dict(points_per_side=2.5), "points_per_side"),
        (dict(crop_n_layers=-1), "crop_n_layers"),
        (dict(points_per_side=3, crop_n_layers=2, crop_n_points_downscale_factor=2), "no points"),
        (dict(points_per_side=None, point_grids=[build_point_grid(2)], crop_n_layers=1), "one grid per crop layer"),
        (dict(points_per_side=None, point_grids=[np.array([[0.5, 1.5]])]), r"\[0, 1\]"),
        (dict(points_per_side=None, point_grids=[np.zeros((3, 3))]), r"\(N, 2\)"),
        (dict(box_nms_thresh=1.5), "box_nms_thresh"),
        (dict(min_mask_region_area=-1), "min_mask_region_area"),
        (dict(crop_overlap_ratio=1.0), "crop_overlap_ratio"),
        (dict(stability_score_offset=-1.0), "stability_score_offset"),
        (dict(point_per_side=4), "point_per_side"),
    ],
)
def test_invalid_settings(vit_t_model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        validate_generator_args(**kwargs)
    if "point_per_side" not in kwargs:
        with pytest.raises(ValueError, match=message):
            SamAutomaticMaskGenerator(vit_t_model, **kwargs)


def test_valid_settings_pass_validation():
    validate_generator_args()
    validate_generator_args(points_per_side=None, point_grids=[build_point_grid(3), build_point_grid(2)],
                            crop_n_layers=1, output_mode="coco_rle", min_mask_region_area=100)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((10, 10, 3), dtype=np.float32), "uint8"),
        (np.zeros((10, 10), dtype=np.uint8), "H×W×3"),
        (np.zeros((10, 10, 4), dtype=np.uint8), "H×W×3"),
        (np.zeros((0, 10, 3), dtype=np.uint8), "empty"),
        ([[[0, 0, 0]]], "numpy array"),
    ],
)
def test_invalid_image(vit_t_model, image, message):
    generator = make_generator(vit_t_model, DiskPredictor(), points_per_side=2)
    with pytest.raises(ValueError, match=message):
        generator.generate(image)
    assert generator.predictor.images == []


# --------------------------------------------------------------------------- #
# The real model on a real photo
# --------------------------------------------------------------------------- #

REAL_SETTINGS = dict(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0)


@pytest.fixture(scope="module")
def photo():
    return load_sample("groceries.jpg")


@pytest.fixture(scope="module")
def real_all(vit_t_model, photo):
    """Every mask of a 2 x 2 grid (no NMS can drop any: box IoU never exceeds 1)."""
    return SamAutomaticMaskGenerator(vit_t_model, box_nms_thresh=1.0, **REAL_SETTINGS).generate(photo)


def check_record_format(record, image_shape):
    h, w = image_shape
    assert set(record) == {"segmentation", "area", "bbox", "predicted_iou", "point_coords",
                           "stability_score", "crop_box"}
    assert isinstance(record["area"], int)
    assert len(record["bbox"]) == 4 and all(isinstance(v, int) for v in record["bbox"])
    assert isinstance(record["predicted_iou"], float) and isinstance(record["stability_score"], float)
    assert len(record["point_coords"]) == 1 and len(record["point_coords"][0]) == 2
    assert all(isinstance(v, float) for v in record["point_coords"][0])
    assert record["crop_box"] == [0, 0, w, h]


def test_real_model_records(real_all, photo):
    h, w = photo.shape[:2]
    assert len(real_all) == 12  # 4 points x 3 masks, nothing filtered
    grid = {tuple(p) for p in build_point_grid(2) * [w, h]}
    points = [tuple(r["point_coords"][0]) for r in real_all]
    assert set(points) == grid and all(points.count(p) == 3 for p in grid)
    ious = [r["predicted_iou"] for r in real_all]
    assert ious == sorted(ious, reverse=True)  # NMS order: decreasing predicted IoU
    for r in real_all:
        check_record_format(r, (h, w))
        mask = r["segmentation"]
        assert mask.shape == (h, w) and mask.dtype == bool
        assert r["area"] == int(mask.sum())
        assert r["bbox"] == tight_box_xywh(mask)
        assert 0.0 <= r["stability_score"] <= 1.0 or np.isnan(r["stability_score"])


def test_real_model_nms_and_coco_rle(vit_t_model, photo, real_all):
    """Default NMS, COCO RLE output: exactly the masks NMS keeps of all masks, decodable
    by pycocotools."""
    generator = SamAutomaticMaskGenerator(vit_t_model, box_nms_thresh=0.7, output_mode="coco_rle", **REAL_SETTINGS)
    records = generator.generate(photo)
    assert max_pairwise_iou(records) <= 0.7
    boxes = torch.tensor([xywh_to_xyxy(r["bbox"]) for r in real_all], dtype=torch.float32)
    scores = torch.tensor([r["predicted_iou"] for r in real_all])
    keep = batched_nms(boxes, scores, torch.zeros(len(boxes)), 0.7).tolist()
    assert len(records) == len(keep)
    for c, k in zip(records, keep):
        b = real_all[k]
        seg = c["segmentation"]
        assert seg["size"] == list(photo.shape[:2]) and isinstance(seg["counts"], str)
        coco = {"size": seg["size"], "counts": seg["counts"].encode()}
        np.testing.assert_array_equal(mask_utils.decode(coco).astype(bool), b["segmentation"])
        assert int(mask_utils.area(coco)) == c["area"] == b["area"]
        assert c["bbox"] == b["bbox"] and c["point_coords"] == b["point_coords"]
        assert c["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=1e-6)
        assert c["crop_box"] == b["crop_box"]
