"""Box arithmetic: IoU against hand-computed tables and pycocotools, conversions, tight boxes."""

from __future__ import annotations

import numpy as np
import pytest

from synspill.boxes import (
    box_area,
    intersection_xyxy,
    iou,
    iou_xywh,
    iou_xyxy,
    tight_box,
    xywh_to_xyxy,
    xyxy_to_xywh,
)

GT_BOX = [0, 0, 10, 10]
IOU_TABLE = [  # (prediction xywh, IoU with GT_BOX [0,0,10,10]) computed by hand
    ([0, 0, 10, 10], 1.0),          # identical
    ([5, 0, 10, 10], 50 / 150),      # half overlap: 50 / (100 + 100 - 50)
    ([0, 0, 5, 10], 0.5),            # inside, half the area: 50 / 100
    ([0, 0, 5, 5], 0.25),            # quarter inside
    ([2, 2, 6, 6], 0.36),            # centred inside: 36 / 100
    ([5, 5, 10, 10], 25 / 175),      # corner overlap
    ([-5, -5, 20, 20], 0.25),        # contains GT: 100 / 400
    ([10, 0, 10, 10], 0.0),          # touching edge
    ([20, 20, 5, 5], 0.0),           # disjoint
]


def test_iou_hand_computed_table():
    dt = np.array([b for b, _ in IOU_TABLE], dtype=float)
    want = np.array([v for _, v in IOU_TABLE])
    got = iou_xywh(dt, [GT_BOX])[:, 0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    got_xyxy = iou_xyxy(xywh_to_xyxy(dt), xywh_to_xyxy(np.array([GT_BOX])))[:, 0]
    np.testing.assert_allclose(got_xyxy, want, rtol=0, atol=1e-15)
    # symmetric for non-crowd boxes
    np.testing.assert_allclose(iou_xywh([GT_BOX], dt)[0], want, atol=1e-15)


def test_iou_crowd_uses_prediction_area():
    # a 5x5 prediction inside a 10x10 crowd region: intersection / prediction area = 1
    assert iou_xywh([[0, 0, 5, 5]], [GT_BOX], iscrowd=[1])[0, 0] == 1.0
    assert iou_xywh([[0, 0, 5, 5]], [GT_BOX], iscrowd=[0])[0, 0] == 0.25
    # half outside: 50 / 100 (prediction area), not 50 / 150
    assert iou_xywh([[5, 0, 10, 10]], [GT_BOX], iscrowd=[1])[0, 0] == 0.5


def test_iou_equals_pycocotools_bitwise():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(1)
    d = np.c_[rng.uniform(0, 50, (30, 2)), rng.uniform(1, 40, (30, 2))]
    g = np.c_[rng.uniform(0, 50, (20, 2)), rng.uniform(1, 40, (20, 2))]
    crowd = rng.random(20) < 0.3
    ref = mask_utils.iou(d.tolist(), g.tolist(), crowd.astype(np.uint8).tolist())
    assert np.array_equal(iou_xywh(d, g, crowd), ref)


def test_box_conversions_roundtrip_and_shapes():
    b = np.array([[1.5, 2.0, 3.0, 4.5]])
    assert xywh_to_xyxy(b).tolist() == [[1.5, 2.0, 4.5, 6.5]]
    assert np.allclose(xyxy_to_xywh(xywh_to_xyxy(b)), b)
    assert iou_xyxy(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)
    assert iou_xywh(np.zeros((2, 4)), np.zeros((0, 4))).shape == (2, 0)


XYXY_TABLE = [  # (a, b, IoU) in xyxy, computed by hand
    ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
    ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),
    ((0, 0, 10, 10), (5, 5, 15, 15), 25 / 175),
    ((0, 0, 4, 4), (1, 1, 3, 3), 4 / 16),        # contained
    ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),      # touching edge
    ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),     # disjoint
    ((0, 0, 0, 10), (0, 0, 10, 10), 0.0),        # zero width: no area, no overlap
    ((5, 5, 5, 5), (5, 5, 5, 5), 0.0),           # two points: union 0 -> 0, not NaN
    ((0.0, 0.0, 0.5, 0.5), (0.25, 0.0, 0.75, 0.5), 0.125 / 0.375),  # normalised units
]


@pytest.mark.parametrize(("a", "b", "want"), XYXY_TABLE)
def test_iou_xyxy_hand_computed(a, b, want):
    assert iou(a, b) == pytest.approx(want, abs=1e-15)
    assert iou(b, a) == pytest.approx(want, abs=1e-15)
    m = iou_xyxy([a, a], [b])
    assert m.shape == (2, 1) and m.dtype == np.float64


def test_intersection_and_area():
    a = np.array([[0, 0, 10, 10], [2, 2, 4, 8]])
    b = np.array([[5, 5, 20, 20]])
    assert intersection_xyxy(a, b).tolist() == [[25.0], [0.0]]
    assert box_area(a).tolist() == [100, 12]
    assert box_area(np.array([4, 4, 2, 8])) == 0  # inverted side counts as 0


def test_tight_box_is_exclusive_and_none_when_empty():
    m = np.zeros((8, 10), bool)
    m[2:5, 3:7] = True
    assert tight_box(m) == (3.0, 2.0, 7.0, 5.0)
    assert tight_box(np.zeros((4, 4), bool)) is None
