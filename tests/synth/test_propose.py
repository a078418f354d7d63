"""Box proposals: inside the image, on visible floor, beneath equipment, realistic sizes."""

from __future__ import annotations

import numpy as np
import pytest

from synspill.boxes import iou
from synspill.synth.base import SceneSpec
from synspill.synth.procedural import ProceduralSceneBackend
from synspill.synth.propose import default_layout, propose_boxes, propose_dataset


def _check(boxes, w, h, classes=None):
    for (x1, y1, x2, y2), c in boxes:
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert classes is None or c in classes
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert iou(boxes[i][0], boxes[j][0]) <= 0.1


@pytest.mark.parametrize("seed", range(5))
def test_boxes_on_rendered_scenes(seed):
    w = h = 512
    _, lay = ProceduralSceneBackend().render(SceneSpec(seed=seed, scene_type="", width=w, height=h))
    boxes = propose_boxes(w, h, lay, np.random.default_rng(seed), 4, [1, 2, 3])
    assert boxes
    _check(boxes, w, h, {1, 2, 3})
    for (_, _, _, y2), _ in boxes:
        assert y2 > lay["horizon"]  # never in the sky / on the ceiling


def test_without_layout_uses_lower_part():
    w, h = 640, 480
    boxes = propose_boxes(w, h, None, np.random.default_rng(0), 30)
    _check(boxes, w, h)
    assert len(boxes) >= 10
    assert all(y1 >= 0.45 * h for (_, y1, _, _), _ in boxes)
    # nearer the camera (lower in the image) -> larger, as on a real floor
    many = [b for s in range(60) for b, _ in propose_boxes(w, h, None, np.random.default_rng(s), 2, [2])]
    yc = np.array([(b[1] + b[3]) / 2 for b in many])
    ws = np.array([b[2] - b[0] for b in many])
    from scipy.stats import spearmanr

    assert spearmanr(yc, ws).statistic > 0.2  # sizes also vary by spill, so a rank trend, not a law


def test_beneath_equipment_and_visible_floor_only():
    w = h = 400
    lay = default_layout(w, h)
    lay["equipment"] = [{"kind": "valve", "box": [180, 150, 220, 200], "drip": [200, 300]}]
    grid = [["0"] * 32 for _ in range(32)]
    for r in range(20, 32):  # floor visible only in the lower-left quarter and around the drip point
        for c in range(0, 16):
            grid[r][c] = "1"
        for c in range(13, 22):
            grid[r][c] = "1"
    lay["floor_grid"] = ["".join(r) for r in grid]
    near = 0
    for s in range(20):
        for (x1, y1, x2, y2), _ in propose_boxes(w, h, lay, np.random.default_rng(s), 2, [1]):
            cx = (x1 + x2) / 2
            # mostly on the visible floor (the rectangle x < 22/32 w, y > 20/32 h), measured geometrically
            vis = max(0.0, min(x2, 22 / 32 * w) - x1) * max(0.0, y2 - max(y1, 20 / 32 * h))
            assert vis >= 0.5 * (x2 - x1) * (y2 - y1)
            near += abs(cx - 200) < 30 and y1 >= 290
    assert near >= 5  # many oil proposals sit where the valve drips


def test_rust_streaks_start_on_equipment():
    w = h = 400
    lay = default_layout(w, h)
    lay["equipment"] = [{"kind": "flange", "box": [100, 100, 160, 140], "drip": [130, 300]}]
    tall = 0
    for s in range(30):
        for (x1, y1, x2, y2), _ in propose_boxes(w, h, lay, np.random.default_rng(s), 1, [6]):
            if y1 < 250:  # not a floor box (those start near the drip point, y ~ 300)
                assert 100 <= y1 <= 140 and (y2 - y1) >= (x2 - x1)
                tall += 1
    assert tall >= 5


def test_propose_dataset_marks_auto():
    from synspill.coco.dataset import CocoDataset, ImageRecord

    ds = CocoDataset(images=[ImageRecord(i, f"{i}.jpg", 320, 240) for i in range(1, 6)])
    a = propose_dataset(ds, (2, 2), [4], seed=1)
    b = propose_dataset(ds, (2, 2), [4], seed=1)
    a.validate()
    assert a.to_dict()["annotations"] == b.to_dict()["annotations"]
    assert all(x.extra == {"auto": True} and x.category_id == 4 for x in a.annotations)
    assert len({x.image_id for x in a.annotations}) == 5


def _scene_layouts(n, size=192):
    be = ProceduralSceneBackend()
    return [be.render(SceneSpec(seed=s, scene_type="", width=size, height=size))[1] for s in range(n)]


def test_min_size_is_respected_and_raises_the_floor():
    lays = _scene_layouts(12)
    sides = {0.012: [], 0.1: []}
    for frac in sides:
        for k, lay in enumerate(lays):
            for (x1, y1, x2, y2), _ in propose_boxes(192, 192, lay, np.random.default_rng(k), 4, scale=6.0, min_size=frac):
                sides[frac].append(min(x2 - x1, y2 - y1))
    assert min(sides[0.1]) >= 0.1 * 192 - 0.1  # rounding to 0.1 px
    assert min(sides[0.012]) < 0.1 * 192  # the default keeps small spills


def test_classes_are_balanced_even_when_some_rarely_fit():
    # at a large spill scale big classes (water, up to 3.5 m) often overflow the image; drawing the
    # class once per box (not per attempt) keeps them from being crowded out by small ones (rust)
    lays = _scene_layouts(100)
    counts = np.zeros(9)
    for k, lay in enumerate(lays):
        for _, c in propose_boxes(192, 192, lay, np.random.default_rng(k), 3, scale=6.0, min_size=0.08):
            counts[c] += 1
    share = counts[1:] / counts.sum()
    assert share.max() / share.min() < 2.5, share  # drawn per attempt: 4.5


def _side(box, w, h):
    x1, y1, x2, y2 = box
    return float(np.sqrt((x2 - x1) * (y2 - y1) / (w * h)))


@pytest.mark.parametrize("scene_type", ["retail", "office", "warehouse", ""])
def test_close_up_first_spill_is_large_and_off_changes_nothing(scene_type):
    from synspill.synth.room import CLOSE_UP_SIDE

    w = h = 192
    sides, normal = [], []
    for seed in range(12):
        _, lay = ProceduralSceneBackend().render(SceneSpec(seed=seed, scene_type=scene_type, width=w, height=h))
        # off: no random draw, so exactly the boxes proposals had before the option existed
        assert propose_boxes(w, h, lay, np.random.default_rng(seed), 3, None, 2.0, 0.08, 0.0) == \
            propose_boxes(w, h, lay, np.random.default_rng(seed), 3, None, 2.0, 0.08)
        near = propose_boxes(w, h, lay, np.random.default_rng(seed), 3, None, 2.0, 0.08, 1.0)
        _check(near, w, h)
        if near:
            sides.append(_side(near[0][0], w, h))
        normal += [_side(b, w, h) for b, _ in propose_boxes(w, h, lay, np.random.default_rng(seed), 3, None, 2.0, 0.08)]
    assert len(sides) >= 9
    # a perspective footprint clipped to its surface can fall short of the drawn target, never exceed 0.99
    assert np.median(sides) >= 0.8 * CLOSE_UP_SIDE[0] and max(sides) <= 0.99
    assert np.median(sides) > 1.5 * np.median(normal)


def test_close_up_share_and_range_check():
    w = h = 192
    lay = default_layout(w, h)
    firsts = [propose_boxes(w, h, lay, np.random.default_rng(s), 1, None, 1.0, 0.05, 0.5)[0][0] for s in range(200)]
    share = np.mean([_side(b, w, h) >= 0.3 for b in firsts])
    assert 0.35 <= share <= 0.65  # about half are close-ups; life-size spills on CCTV floors are never this big
    from synspill.errors import UsageError
    from synspill.synth.propose import check_options

    with pytest.raises(UsageError, match="--close-up 1.5 must be within 0-1"):
        check_options(close_up=1.5)
