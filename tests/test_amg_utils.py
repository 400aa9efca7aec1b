"""Tests of mobilesam.utils.amg, mobilesam.utils.nms and mobilesam.utils.sa1b against
pycocotools, brute-force references and values worked out from the official formulas."""
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from pycocotools import mask as mask_utils

from mobilesam.utils.amg import (
    MaskData,
    area_from_rle,
    batch_iterator,
    batched_mask_to_box,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    build_point_grid,
    calculate_stability_score,
    coco_decode_rle_counts,
    coco_encode_rle,
    coco_rle_to_mask,
    generate_crop_boxes,
    is_box_near_crop_edge,
    largest_component_like_opencv,
    mask_to_rle_pytorch,
    remove_small_regions,
    rle_to_mask,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from mobilesam.utils.nms import batched_nms, box_iou, nms
from mobilesam.utils.sa1b import sa1b_json, to_coco_rle

# pycocotools' decode triggers a numpy 2 deprecation warning inside pycocotools itself.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

# --------------------------------------------------------------------------- #
# Strategies
# --------------------------------------------------------------------------- #


@st.composite
def masks(draw, max_side=40):
    """Bool H x W masks: empty, full, random noise at any density, or blocks."""
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    kind = draw(st.sampled_from(["empty", "full", "noise", "array", "block"]))
    if kind == "empty":
        return np.zeros((h, w), dtype=bool)
    if kind == "full":
        return np.ones((h, w), dtype=bool)
    if kind == "array":
        return draw(hnp.arrays(bool, (h, w)))
    if kind == "block":
        mask = np.zeros((h, w), dtype=bool)
        y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        y1, x1 = draw(st.integers(y0 + 1, h)), draw(st.integers(x0 + 1, w))
        mask[y0:y1, x0:x1] = True
        return mask
    seed = draw(st.integers(0, 2**32 - 1))
    density = draw(st.floats(0.0, 1.0))
    return np.random.default_rng(seed).random((h, w)) < density


def pycoco_string(mask: np.ndarray) -> str:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")


def our_coco_rle(mask: np.ndarray) -> dict:
    return coco_encode_rle(mask_to_rle_pytorch(torch.from_numpy(mask)[None])[0])


# --------------------------------------------------------------------------- #
# RLE
# --------------------------------------------------------------------------- #


@settings(max_examples=300, deadline=None)
@given(masks())
def test_coco_rle_matches_pycocotools(mask):
    ours = our_coco_rle(mask)
    assert ours["size"] == list(mask.shape)
    assert ours["counts"] == pycoco_string(mask)
    decoded = mask_utils.decode({"size": ours["size"], "counts": ours["counts"].encode("ascii")})
    np.testing.assert_array_equal(decoded.astype(bool), mask)
    np.testing.assert_array_equal(coco_rle_to_mask(ours), mask)


@settings(max_examples=200, deadline=None)
@given(masks())
def test_uncompressed_rle_round_trip(mask):
    rle = mask_to_rle_pytorch(torch.from_numpy(mask)[None])[0]
    assert rle["size"] == list(mask.shape)
    assert sum(rle["counts"]) == mask.size
    assert all(c > 0 for c in rle["counts"][1:]), "only the first run may be empty"
    assert (rle["counts"][0] == 0) == bool(mask.reshape(-1, order="F")[0])
    np.testing.assert_array_equal(rle_to_mask(rle), mask)
    assert area_from_rle(rle) == mask.sum()
    # pycocotools reads our uncompressed RLE the same way.
    from_py = mask_utils.frPyObjects(rle, *rle["size"])
    np.testing.assert_array_equal(mask_utils.decode(from_py).astype(bool), mask)


@pytest.mark.parametrize("shape", [(300, 200), (1, 5000), (5000, 1), (257, 511)])
def test_coco_rle_long_runs_and_negative_deltas(shape):
    """Large structured masks: runs need several characters, and run deltas go negative."""
    h, w = shape
    rng = np.random.default_rng(sum(shape))
    mask = np.zeros(shape, dtype=bool)
    for _ in range(6):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        mask[y0 : y0 + rng.integers(1, h + 1), x0 : x0 + rng.integers(1, w + 1)] ^= True
    ours = our_coco_rle(mask)
    assert ours["counts"] == pycoco_string(mask)
    assert coco_decode_rle_counts(ours["counts"]) == mask_to_rle_pytorch(torch.from_numpy(mask)[None])[0]["counts"]


def test_coco_rle_known_string():
    # Column-major pixels 0,0,1,1,1,0 -> runs [2, 3, 1] -> chars 48+2, 48+3, 48+1.
    mask = np.array([[0, 1, 1], [0, 1, 0]], dtype=bool)
    assert mask_to_rle_pytorch(torch.from_numpy(mask)[None])[0] == {"size": [2, 3], "counts": [2, 3, 1]}
    assert coco_encode_rle({"size": [2, 3], "counts": [2, 3, 1]})["counts"] == "231"
    # Runs [40, 1, 1, 38]. 40 = 0b1_01000: low 5 bits 8 plus "more" 0x20 -> chr(48 + 40) = "X",
    # then 1 -> "1". Then "1", "1". From the 4th run on, the delta to the run two before is
    # written: 38 - 1 = 37 = 0b1_00101 -> chr(48 + 5 + 32) = "U", then "1".
    assert coco_encode_rle({"size": [80, 1], "counts": [40, 1, 1, 38]})["counts"] == "X111U1"
    # Full 2x2 mask: runs [0, 4].
    assert mask_to_rle_pytorch(torch.ones(1, 2, 2, dtype=torch.bool))[0]["counts"] == [0, 4]


def test_mask_to_rle_batch_matches_single():
    rng = np.random.default_rng(0)
    batch = rng.random((5, 13, 17)) < 0.3
    batch[1] = False
    batch[2] = True
    rles = mask_to_rle_pytorch(torch.from_numpy(batch))
    for mask, rle in zip(batch, rles):
        assert rle == mask_to_rle_pytorch(torch.from_numpy(mask)[None])[0]
        np.testing.assert_array_equal(rle_to_mask(rle), mask)


def test_rle_to_mask_rejects_wrong_total():
    with pytest.raises(ValueError, match="sum"):
        rle_to_mask({"size": [2, 3], "counts": [1, 2]})


# --------------------------------------------------------------------------- #
# NMS
# --------------------------------------------------------------------------- #


def reference_batched_nms(boxes, scores, idxs, thr):
    """Brute force: stable sort by score, greedy keep, float32 IoU like torchvision."""
    boxes = np.asarray(boxes, dtype=np.float32)
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # sorted() is stable
    kept = []
    for i in order:
        suppressed = False
        for k in kept:
            if idxs[k] != idxs[i]:
                continue
            xx0, yy0 = max(boxes[k, 0], boxes[i, 0]), max(boxes[k, 1], boxes[i, 1])
            xx1, yy1 = min(boxes[k, 2], boxes[i, 2]), min(boxes[k, 3], boxes[i, 3])
            inter = np.float32(max(np.float32(0), xx1 - xx0)) * np.float32(max(np.float32(0), yy1 - yy0))
            area_k = (boxes[k, 2] - boxes[k, 0]) * (boxes[k, 3] - boxes[k, 1])
            area_i = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
            with np.errstate(invalid="ignore", divide="ignore"):
                iou = np.float32(inter) / np.float32(area_k + area_i - inter)
            if float(iou) > thr:
                suppressed = True
                break
        if not suppressed:
            kept.append(i)
    return kept


@st.composite
def box_sets(draw):
    n = draw(st.integers(0, 30))
    coords = draw(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 25), st.integers(0, 25)),
                           min_size=n, max_size=n))
    boxes = [[x, y, x + w, y + h] for x, y, w, h in coords]
    # Few distinct score values, so that ties happen.
    scores = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    idxs = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    thr = draw(st.sampled_from([0.0, 0.3, 0.5, 0.7, 0.9, 1.0]))
    return boxes, [float(s) for s in scores], idxs, thr


@settings(max_examples=300, deadline=None)
@given(box_sets())
def test_batched_nms_matches_brute_force(case):
    boxes, scores, idxs, thr = case
    keep = batched_nms(
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(scores, dtype=torch.float32),
        torch.tensor(idxs, dtype=torch.int64),
        thr,
    )
    assert keep.dtype == torch.int64
    assert keep.tolist() == reference_batched_nms(boxes, scores, idxs, thr)


def test_nms_removes_duplicates_and_keeps_best():
    boxes = torch.tensor(
        [[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=torch.float32
    )
    scores = torch.tensor([0.5, 0.9, 0.8, 0.1, 0.9])
    # Index 1 wins the tie with index 4 (stable order); 0, 2 and 4 overlap it.
    assert nms(boxes, scores, 0.7).tolist() == [1, 3]
    # Different categories never suppress each other; output sorted by score.
    idxs = torch.tensor([0, 0, 1, 0, 2])
    assert batched_nms(boxes, scores, idxs, 0.7).tolist() == [1, 4, 2, 3]
    # The threshold is strict: an IoU of exactly 0.5 is not above 0.5.
    half = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5]], dtype=torch.float32)
    assert nms(half, torch.tensor([1.0, 0.5]), 0.5).tolist() == [0, 1]
    assert nms(half, torch.tensor([1.0, 0.5]), 0.49).tolist() == [0]
    # The float32 IoU is compared with the threshold in float64, like torchvision's
    # C++ kernel: 81/100 in float32 is 0.81000000238..., which is above 0.81.
    assert nms(boxes[[1, 2]], scores[[1, 2]], 0.81).tolist() == [0]
    assert nms(boxes[[1, 2]], scores[[1, 2]], 0.8100001).tolist() == [0, 1]


def test_nms_empty_and_degenerate_boxes():
    empty = batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.int64
    # Zero-area boxes have IoU 0/0 = NaN with each other: never suppressed (as torchvision).
    zero = torch.tensor([[5, 5, 5, 5], [5, 5, 5, 5]], dtype=torch.float32)
    assert nms(zero, torch.tensor([1.0, 0.5]), 0.0).tolist() == [0, 1]


def test_box_iou_values():
    a = torch.tensor([[0, 0, 10, 10]], dtype=torch.float32)
    b = torch.tensor([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], dtype=torch.float32)
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1.0, 50 / 150, 0.0]]))


# --------------------------------------------------------------------------- #
# Boxes
# --------------------------------------------------------------------------- #


def reference_box(mask: np.ndarray) -> list:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0, 0, 0, 0]
    return [xs.min(), ys.min(), xs.max(), ys.max()]


@settings(max_examples=150, deadline=None)
@given(masks(max_side=20))
def test_batched_mask_to_box_matches_brute_force(mask):
    box = batched_mask_to_box(torch.from_numpy(mask))
    assert box.dtype == torch.int64
    assert box.tolist() == [int(v) for v in reference_box(mask)]


def test_batched_mask_to_box_batch_shapes():
    rng = np.random.default_rng(1)
    batch = rng.random((2, 3, 11, 8)) < 0.1
    batch[0, 1] = False
    boxes = batched_mask_to_box(torch.from_numpy(batch))
    assert boxes.shape == (2, 3, 4)
    for i in range(2):
        for j in range(3):
            assert boxes[i, j].tolist() == [int(v) for v in reference_box(batch[i, j])]
    assert boxes[0, 1].tolist() == [0, 0, 0, 0]
    assert batched_mask_to_box(torch.zeros(0, 5, 5, dtype=torch.bool)).shape == (0, 4)


def test_box_xyxy_to_xywh_copies():
    box = [3, 4, 10, 20]
    assert box_xyxy_to_xywh(box) == [3, 4, 7, 16]
    assert box == [3, 4, 10, 20]
    assert box_xyxy_to_xywh(torch.tensor([1, 1, 2, 5])).tolist() == [1, 1, 1, 4]


def test_is_box_near_crop_edge():
    crop = [100, 50, 300, 250]  # an inner crop of a 400 x 300 (w x h) image
    image = [0, 0, 400, 300]
    boxes = torch.tensor(
        [
            [50, 50, 100, 100],  # well inside the crop
            [150, 50, 199, 100],  # right edge at crop x1 - 1 (crop coordinates)
            [0, 60, 30, 90],  # left edge at the crop's left edge (x=100 in the image)
            [30, 180, 60, 199],  # bottom edge near the crop's bottom (y=249 in the image)
        ]
    )
    assert is_box_near_crop_edge(boxes, crop, image).tolist() == [False, True, True, True]
    # A crop edge that is also an image edge does not count.
    corner_crop = [0, 0, 200, 150]
    boxes = torch.tensor([[0, 0, 50, 50], [50, 50, 199, 100]])
    assert is_box_near_crop_edge(boxes, corner_crop, image).tolist() == [False, True]
    assert is_box_near_crop_edge(boxes, image, image).tolist() == [False, False]


# --------------------------------------------------------------------------- #
# Stability score
# --------------------------------------------------------------------------- #


def test_stability_score_known_values():
    logits = torch.tensor([[[-2.0, -0.5, 0.5, 2.0], [3.0, -3.0, 0.99, -0.99]]])  # (1, 2, 4)
    # > +1: {2.0, 3.0} = 2 pixels; > -1: {-0.5, 0.5, 2.0, 3.0, 0.99, -0.99} = 6 pixels.
    score = calculate_stability_score(logits, 0.0, 1.0)
    assert score.shape == (1,)
    assert score.item() == pytest.approx(2 / 6)
    # A shifted threshold: > 1.5: {2, 3}; > -0.5: {0.5, 2, 3, 0.99} (strict).
    assert calculate_stability_score(logits, 0.5, 1.0).item() == pytest.approx(2 / 4)


def test_stability_score_matches_numpy():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 3, size=(2, 3, 20, 30)).astype(np.float32)
    score = calculate_stability_score(torch.from_numpy(logits), 0.0, 1.0)
    assert score.shape == (2, 3)
    expected = (logits > 1).sum(axis=(-1, -2)) / (logits > -1).sum(axis=(-1, -2))
    np.testing.assert_allclose(score.numpy(), expected, rtol=1e-6)


# --------------------------------------------------------------------------- #
# Point grids and crops
# --------------------------------------------------------------------------- #


def test_build_point_grid():
    np.testing.assert_array_equal(build_point_grid(1), [[0.5, 0.5]])
    grid = build_point_grid(4)
    assert grid.shape == (16, 2)
    side = [0.125, 0.375, 0.625, 0.875]
    np.testing.assert_allclose(grid[:4], [[x, 0.125] for x in side])  # x varies fastest
    np.testing.assert_allclose(grid[::4, 1], side)
    np.testing.assert_allclose(grid[::4, 0], 0.125)


def test_build_all_layer_point_grids():
    grids = build_all_layer_point_grids(32, 2, 2)
    assert [len(g) for g in grids] == [32 * 32, 16 * 16, 8 * 8]
    np.testing.assert_array_equal(grids[1], build_point_grid(16))
    assert [len(g) for g in build_all_layer_point_grids(10, 2, 1)] == [100, 100, 100]
    assert [len(g) for g in build_all_layer_point_grids(10, 1, 3)] == [100, 9]  # int(10 / 3)


def test_crop_boxes_truck_one_layer():
    """The official formula for a 1800 x 1200 image, crop_n_layers=1, ratio 512/1500:
    overlap int(0.3413 * 1200) = 409; crops 1105 x 805 at x0 in {0, 696}, y0 in {0, 396}."""
    boxes, layers = generate_crop_boxes((1200, 1800), 1, 512 / 1500)
    assert boxes == [
        [0, 0, 1800, 1200],
        [0, 0, 1105, 805],
        [0, 396, 1105, 1200],
        [696, 0, 1800, 805],
        [696, 396, 1800, 1200],
    ]
    assert layers == [0, 1, 1, 1, 1]


def test_crop_boxes_two_layers_cover_image():
    h, w = 534, 800
    boxes, layers = generate_crop_boxes((h, w), 2, 512 / 1500)
    assert layers == [0] + [1] * 4 + [2] * 16
    assert generate_crop_boxes((h, w), 0, 0.5) == ([[0, 0, w, h]], [0])
    for layer in (1, 2):
        covered = np.zeros((h, w), dtype=int)
        for box, lay in zip(boxes, layers):
            if lay == layer:
                x0, y0, x1, y1 = box
                assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
                covered[y0:y1, x0:x1] += 1
        assert covered.min() >= 1  # every pixel is in some crop
    # Layer 2 of the 2-layer run: overlap int(0.3413 * 534 * 0.5) = 91,
    # crop_w = ceil((91 * 3 + 800) / 4) = 269, crop_h = ceil((91 * 3 + 534) / 4) = 202.
    assert boxes[5] == [0, 0, 269, 202]
    assert boxes[6] == [0, 111, 269, 313]


def test_uncrop():
    crop = [10, 20, 40, 35]
    boxes = torch.tensor([[0, 0, 5, 5], [1, 2, 3, 4]])
    assert uncrop_boxes_xyxy(boxes, crop).tolist() == [[10, 20, 15, 25], [11, 22, 13, 24]]
    assert uncrop_boxes_xyxy(boxes[None], crop).shape == (1, 2, 4)
    points = torch.tensor([[1.5, 2.5]], dtype=torch.float64)
    assert uncrop_points(points, crop).tolist() == [[11.5, 22.5]]
    masks = torch.zeros(2, 15, 30, dtype=torch.bool)
    masks[0, 0, 0] = True
    masks[1, -1, -1] = True
    full = uncrop_masks(masks, crop, orig_h=50, orig_w=60)
    assert full.shape == (2, 50, 60)
    assert torch.nonzero(full[0]).tolist() == [[20, 10]]
    assert torch.nonzero(full[1]).tolist() == [[34, 39]]
    whole = [0, 0, 30, 15]
    assert uncrop_masks(masks, whole, 15, 30) is masks


# --------------------------------------------------------------------------- #
# Small regions
# --------------------------------------------------------------------------- #


def parse(rows: str) -> np.ndarray:
    return np.array([[c == "#" for c in row] for row in rows.split()], dtype=bool)


def test_remove_small_holes():
    mask = parse(
        """
        ########
        #..#####
        #..#####
        ########
        #####.##
        ########
        """
    )
    filled, changed = remove_small_regions(mask, 5, "holes")
    assert changed
    assert filled.all()
    # A hole of area 4 is not smaller than 4; the 1-pixel hole is.
    filled, changed = remove_small_regions(mask, 4, "holes")
    expected = mask.copy()
    expected[4, 5] = True
    np.testing.assert_array_equal(filled, expected)
    # Nothing smaller than 1: unchanged, and the same object back.
    same, changed = remove_small_regions(mask, 1, "holes")
    assert not changed and same is mask


def test_holes_are_eight_connected_to_the_outside():
    # The inner background pixel touches the outside only diagonally: with
    # 8-connectivity it is part of the (large) outside, not a hole.
    mask = parse(
        """
        ......
        .###..
        .#.#..
        .##...
        ......
        """
    )
    out, changed = remove_small_regions(mask, 3, "holes")
    assert not changed and out is mask
    closed = mask.copy()
    closed[3, 3] = True  # now the pixel is enclosed
    out, changed = remove_small_regions(closed, 3, "holes")
    assert changed and out[2, 2] and out.sum() == closed.sum() + 1


def test_small_outside_background_is_filled_too():
    # As in the official code, the background around the mask is a region too.
    mask = np.ones((6, 6), dtype=bool)
    mask[0, :2] = False
    out, changed = remove_small_regions(mask, 3, "holes")
    assert changed and out.all()


def test_remove_small_islands():
    mask = parse(
        """
        ####.....#
        ####......
        ####...#..
        ####....#.
        ..........
        """
    )
    # Islands: the 16-pixel block, a single pixel, a diagonal pair (8-connected).
    out, changed = remove_small_regions(mask, 3, "islands")
    assert changed
    expected = np.zeros_like(mask)
    expected[:4, :4] = True
    np.testing.assert_array_equal(out, expected)
    out, changed = remove_small_regions(mask, 2, "islands")
    expected[2, 7] = expected[3, 8] = True
    np.testing.assert_array_equal(out, expected)
    same, changed = remove_small_regions(mask, 1, "islands")
    assert not changed and same is mask


def test_all_small_islands_keep_the_largest():
    mask = parse(
        """
        ##....#
        ##.....
        .......
        ###....
        """
    )
    out, changed = remove_small_regions(mask, 100, "islands")
    assert changed
    expected = np.zeros_like(mask)
    expected[:2, :2] = True
    np.testing.assert_array_equal(out, expected)


def test_largest_component_ties_go_to_the_first_in_opencv_block_order():
    # Labels in raster order (as scipy numbers them). cv2.connectedComponents(m, 8) numbers by first
    # 2×2 block in block-raster order (block row r // 2, then block column c // 2): 2, 1, 4, 3.
    regions = np.array([[0, 0, 0, 0, 1, 0],
                        [2, 0, 0, 0, 0, 0],
                        [0, 0, 0, 0, 0, 3],
                        [0, 4, 0, 0, 0, 3]])
    assert largest_component_like_opencv(regions, np.array([1, 1, 2, 1])) == 3  # no tie
    assert largest_component_like_opencv(regions, np.array([1, 1, 2, 2])) == 4  # block (1, 0) before (1, 2)
    regions[3, 5] = 0
    assert largest_component_like_opencv(regions, np.array([1, 1, 1, 1])) == 2  # block (0, 0) first


@pytest.mark.parametrize("rows, kept", [
    # The brief's example: raster order would keep (0, 6); OpenCV's block order keeps (1, 1).
    (".......#.\n.#.......", [[1, 1]]),
    ("......#.\n.#......", [[1, 1]]),
    ("...#.\n#....", [[1, 0]]),                  # (1, 0) is in block column 0, (0, 3) in block column 1
    (".....##\n##.....", [[1, 0], [1, 1]]),      # equally large 2-pixel islands
    ("...#.\n.....\n#....", [[0, 3]]),          # odd sizes; block row 0 before block row 1
    (".#......#\n.........", [[0, 1]]),          # same row: both orders agree
])
def test_tied_small_islands_keep_the_first_in_opencv_order(rows, kept):
    """If every island is small, the largest is kept; among equally large ones, the official code keeps
    cv2's label 1 (np.argmax of the sizes), the first in OpenCV's block order, not in raster order."""
    mask = np.array([[c == "#" for c in row] for row in rows.split("\n")], dtype=bool)
    out, changed = remove_small_regions(mask, 5, "islands")
    assert changed
    assert np.argwhere(out).tolist() == kept


def test_remove_small_regions_edge_cases():
    empty = np.zeros((4, 4), dtype=bool)
    out, changed = remove_small_regions(empty, 10, "islands")
    assert not changed and not out.any()
    full = np.ones((4, 4), dtype=bool)
    out, changed = remove_small_regions(full, 10, "holes")
    assert not changed and out.all()
    with pytest.raises(ValueError, match="mode"):
        remove_small_regions(full, 10, "blobs")


# --------------------------------------------------------------------------- #
# MaskData and batches
# --------------------------------------------------------------------------- #


def test_mask_data_filter_and_cat():
    data = MaskData(
        t=torch.arange(4),
        a=np.arange(4) * 10,
        rles=["r0", "r1", "r2", "r3"],
    )
    data.filter(torch.tensor([True, False, True, True]))
    assert data["t"].tolist() == [0, 2, 3]
    assert data["a"].tolist() == [0, 20, 30]
    assert data["rles"] == ["r0", "r2", "r3"]
    data.filter(torch.tensor([2, 0]))
    assert data["t"].tolist() == [3, 0]
    assert data["a"].tolist() == [30, 0]
    assert data["rles"] == ["r3", "r0"]

    more = MaskData(t=torch.tensor([7]), a=np.array([70]), rles=["r7"])
    data.cat(more)
    assert data["t"].tolist() == [3, 0, 7]
    assert data["a"].tolist() == [30, 0, 70]
    assert data["rles"] == ["r3", "r0", "r7"]

    empty = MaskData()
    empty.cat(more)
    empty["t"][0] = 99  # a copy: `more` is unchanged
    assert more["t"].tolist() == [7]

    data.to_numpy()
    assert isinstance(data["t"], np.ndarray)
    del data["t"]
    assert "t" not in data
    with pytest.raises(TypeError):
        data["x"] = 5
    with pytest.raises(TypeError):
        MaskData(x="not a column")


def test_batch_iterator():
    a = list(range(7))
    b = np.arange(7) * 2
    batches = list(batch_iterator(3, a, b))
    assert [x for x, _ in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    np.testing.assert_array_equal(batches[2][1], [12])
    assert list(batch_iterator(3, [])) == []
    with pytest.raises(ValueError):
        list(batch_iterator(2, [1, 2], [1]))
    with pytest.raises(ValueError):
        list(batch_iterator(0, [1]))


# --------------------------------------------------------------------------- #
# SA-1B JSON
# --------------------------------------------------------------------------- #


def test_sa1b_json_from_any_output_mode():
    rng = np.random.default_rng(3)
    masks_ = [rng.random((9, 14)) < 0.4 for _ in range(3)]
    uncompressed = mask_to_rle_pytorch(torch.from_numpy(masks_[1])[None])[0]
    segmentations = [masks_[0], uncompressed, our_coco_rle(masks_[2])]
    records = [
        {
            "segmentation": seg,
            "area": int(m.sum()),
            "bbox": [np.int64(1), 2, 3, 4],
            "predicted_iou": np.float32(0.5),
            "point_coords": [[1.5, 2.0]],
            "stability_score": torch.tensor(0.25),
            "crop_box": [0, 0, 14, 9],
        }
        for seg, m in zip(segmentations, masks_)
    ]
    doc = sa1b_json(records, (9, 14), file_name="x.jpg", image_id=7)
    doc = json.loads(json.dumps(doc))  # plain JSON types only
    assert doc["image"] == {"image_id": 7, "width": 14, "height": 9, "file_name": "x.jpg"}
    assert [a["id"] for a in doc["annotations"]] == [0, 1, 2]
    for ann, m in zip(doc["annotations"], masks_):
        seg = ann["segmentation"]
        np.testing.assert_array_equal(mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}), m)
        assert ann["area"] == int(m.sum())
        assert ann["bbox"] == [1, 2, 3, 4]
        assert ann["predicted_iou"] == 0.5 and ann["stability_score"] == 0.25
        assert ann["point_coords"] == [[1.5, 2.0]]
    with pytest.raises(ValueError, match="size"):
        sa1b_json(records, (10, 14))


def test_to_coco_rle_accepts_bytes_counts():
    mask = np.eye(5, dtype=bool)
    py = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert to_coco_rle(py) == {"size": [5, 5], "counts": py["counts"].decode()}
    assert to_coco_rle(mask) == to_coco_rle(py)
