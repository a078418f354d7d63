"""Metrics: hand-made hit-rate cases, mAP against pycocotools on random data."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest

from synspill.errors import DatasetError, UsageError
from synspill.metrics import (
    COCO_IOU_THRESHOLDS,
    GroundTruth,
    Predictions,
    evaluate,
    parse_iou_thresholds,
)

# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def coco(images, anns, n_cat=3):
    """A COCO dict from ``images`` (ids) and ``anns`` = [(image_id, cat, [x,y,w,h], iscrowd?)]."""
    out = []
    for i, a in enumerate(anns):
        img, cat, box = a[:3]
        crowd = a[3] if len(a) > 3 else 0
        out.append({"id": i + 1, "image_id": img, "category_id": cat, "bbox": list(box),
                    "area": float(box[2] * box[3]), "iscrowd": crowd})
    return {
        "images": [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100} for i in images],
        "annotations": out,
        "categories": [{"id": c, "name": f"c{c}"} for c in range(1, n_cat + 1)],
    }


def preds(rows):
    """Results records from [(image_id, cat, [x,y,w,h], score or None)]."""
    out = []
    for img, cat, box, *rest in rows:
        r = {"image_id": img, "category_id": cat, "bbox": list(box)}
        if rest and rest[0] is not None:
            r["score"] = rest[0]
        out.append(r)
    return out


def run(gt, res, **kw):
    return evaluate(GroundTruth.from_dict(gt), Predictions.from_records(res), **kw)


def random_dataset(seed, n_img=40, n_cat=5, crowd=0.0, int_boxes=True, id0=False, crowded_image=False):
    """Random GT + predictions with ties (rounded scores, integer boxes), empty images,
    images without predictions, wrong-class and duplicate predictions."""
    rng = np.random.default_rng(seed)
    ids = (rng.permutation(n_img) + 1) * 3  # non-contiguous, unsorted
    images = [{"id": int(i), "file_name": f"{i}.png", "width": 200, "height": 150} for i in ids]
    cats = [{"id": c, "name": f"c{c}"} for c in range(1, n_cat + 1)]
    anns, res = [], []
    aid = 0 if id0 else 1

    def box():
        w, h = rng.integers(5, 80, 2)
        x, y = rng.integers(0, 200 - w), rng.integers(0, 150 - h)
        if int_boxes:
            return [int(x), int(y), int(w), int(h)]
        return [float(x) + rng.random(), float(y) + rng.random(), float(w) + rng.random(), float(h)]

    for im in images:
        gts = []
        for _ in range(0 if rng.random() < 0.2 else rng.integers(1, 8)):
            b, c = box(), int(rng.integers(1, n_cat + 1))
            anns.append({"id": aid, "image_id": im["id"], "category_id": c, "bbox": b,
                         "area": float(b[2] * b[3]), "iscrowd": int(rng.random() < crowd)})
            aid += 1
            gts.append((b, c))
        if rng.random() < 0.2:
            continue  # an image without predictions
        for b, c in gts:
            for _ in range(rng.integers(0, 3)):
                j = rng.integers(-6, 7, 4) if int_boxes else rng.normal(0, 4, 4)
                bb = [b[0] + j[0], b[1] + j[1], max(1, b[2] + j[2]), max(1, b[3] + j[3])]
                bb = [int(v) for v in bb] if int_boxes else [float(v) for v in bb]
                cc = c if rng.random() < 0.85 else int(rng.integers(1, n_cat + 1))
                res.append({"image_id": im["id"], "category_id": cc, "bbox": bb, "score": float(np.round(rng.random(), 2))})
        for _ in range(rng.integers(0, 6)):
            res.append({"image_id": im["id"], "category_id": int(rng.integers(1, n_cat + 1)), "bbox": box(),
                        "score": float(np.round(rng.random(), 1))})
    if crowded_image:  # > maxDets predictions for one image and class
        im = images[0]["id"]
        anns.append({"id": aid, "image_id": im, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500.0, "iscrowd": 0})
        for _ in range(150):
            j = rng.integers(-8, 9, 4)
            res.append({"image_id": im, "category_id": 1, "bbox": [int(10 + j[0]), int(10 + j[1]), int(50 + j[2]), int(50 + j[3])],
                        "score": float(np.round(rng.random(), 2))})
    return {"images": images, "annotations": anns, "categories": cats}, res


def pycoco_eval(gt, res, iou_thrs=None, max_dets=None, cat_ids=None, summarize=True):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO()
        g.dataset = copy.deepcopy(gt)
        g.createIndex()
        d = g.loadRes(copy.deepcopy(res))
        e = COCOeval(g, d, "bbox")
        if iou_thrs is not None:
            e.params.iouThrs = np.asarray(iou_thrs, dtype=np.float64)
        if max_dets is not None:
            e.params.maxDets = max_dets
        if cat_ids is not None:
            e.params.catIds = cat_ids
        e.evaluate()
        e.accumulate()
        if summarize:
            e.summarize()
    return e


# ---------------------------------------------------------------------------------------
# hit rate: hand-made cases
# ---------------------------------------------------------------------------------------
def test_class_mismatch_is_not_a_hit_but_a_false_positive():
    gt = coco([1], [(1, 1, [10, 10, 20, 20])])
    m = run(gt, preds([(1, 2, [10, 10, 20, 20], 0.9)]), iou_thresholds=0.5)
    assert m.hit_rate[0] == 0.0
    assert m.fp.sum() == 1 and m.tp.sum() == 0
    assert m.precision[0] == 0.0 and m.fp_per_image[0] == 1.0
    # class 2 has no ground truth: no hit rate of its own, not part of the average
    assert np.isnan(m.hit_rate_per_class[1, 0])


def test_one_to_one_matching():
    # two predictions on one box: one hit, one false positive
    gt = coco([1], [(1, 1, [10, 10, 20, 20])])
    m = run(gt, preds([(1, 1, [10, 10, 20, 20], 0.9), (1, 1, [11, 10, 20, 20], 0.8)]), iou_thresholds=0.5)
    assert m.hits[0, 0] == 1 and m.fp[0, 0] == 1 and m.precision[0] == 0.5
    # one prediction overlapping two boxes: it hits only one of them
    gt = coco([1], [(1, 1, [0, 0, 10, 10]), (1, 1, [2, 0, 10, 10])])
    m = run(gt, preds([(1, 1, [1, 0, 10, 10], 0.9)]), iou_thresholds=0.5)
    assert m.hits[0, 0] == 1 and m.hit_rate[0] == 0.5


def test_threshold_edge_is_inclusive():
    gt = coco([1], [(1, 1, [0, 0, 10, 10])])
    m = run(gt, preds([(1, 1, [0, 0, 5, 10], 0.9)]), iou_thresholds="0.5:0.9:0.1")  # IoU exactly 0.5
    assert m.hit_rate.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    m = run(gt, preds([(1, 1, [0, 0, 6, 10], 0.9)]), iou_thresholds="0.5:0.9:0.1")  # IoU exactly 0.6
    assert m.hit_rate.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    m = run(gt, preds([(1, 1, [0, 0, 9, 10], 0.9)]), iou_thresholds="0.5:0.9:0.1")  # IoU exactly 0.9
    assert m.hit_rate.tolist() == [1.0, 1.0, 1.0, 1.0, 1.0]


def test_greedy_by_score_not_optimal_assignment():
    # p1 (0.9) overlaps A (IoU 0.6) and B (0.8) -> takes B; p2 (0.8) overlaps only B -> nothing left
    gt = coco([1], [(1, 1, [0, 0, 10, 10]), (1, 1, [20, 0, 10, 10])])
    a_b = [(1, 1, [4, 0, 6, 10], 0.9)]  # IoU with A = 0.6, with B = 0
    assert run(gt, preds(a_b), iou_thresholds=0.5).hits[0, 0] == 1
    gt = coco([1], [(1, 1, [0, 0, 10, 10]), (1, 1, [0, 0, 10, 8])])  # A; B inside A (IoU 0.8)
    p1 = (1, 1, [0, 0, 10, 9], 0.9)  # IoU A = 0.9, B = 80/90
    p2 = (1, 1, [0, 0, 10, 10], 0.8)  # IoU A = 1.0, B = 0.8
    m = run(gt, preds([p2, p1]), iou_thresholds=0.85)
    # p1 ranks first (score), takes A (0.9 > 0.889); p2 then finds B at 0.8 < 0.85: one hit.
    assert m.hits[0, 0] == 1
    # at 0.75 p2 still gets B: both hit
    assert run(gt, preds([p2, p1]), iou_thresholds=0.75).hits[0, 0] == 2


def test_iou_tie_goes_to_the_later_box_like_pycocotools():
    gt = coco([1], [(1, 1, [0, 0, 10, 10]), (1, 1, [10, 0, 10, 10])])
    res = preds([(1, 1, [5, 0, 10, 10], 0.9),   # IoU 1/3 with both boxes: takes the later one
                 (1, 1, [0, 0, 10, 10], 0.8)])  # then the first box is still free
    m = run(gt, res, iou_thresholds=0.3)
    assert m.hits[0, 0] == 2
    e = pycoco_eval(gt, res, iou_thrs=[0.3], max_dets=[100], summarize=False)
    assert e.eval["recall"][0, 0, 0, 0] == 1.0


def test_class_average_and_micro():
    gt = coco([1, 2], [(1, 1, [0, 0, 10, 10]), (2, 2, [0, 0, 10, 10]), (2, 2, [20, 20, 10, 10]),
                       (2, 2, [40, 40, 10, 10])])
    m = run(gt, preds([(1, 1, [0, 0, 10, 10], 0.5)]), iou_thresholds=0.5)
    assert m.hit_rate_per_class[:2, 0].tolist() == [1.0, 0.0]
    assert m.hit_rate[0] == 0.5  # mean over classes with ground truth (class 3 has none)
    assert m.hit_rate_micro[0] == 0.25
    assert m.n_gt.tolist() == [1, 3, 0]
    assert m.fp_per_image[0] == 0.0 and m.precision[0] == 1.0


def test_crowd_regions_are_ignored():
    gt = coco([1], [(1, 1, [0, 0, 50, 50], 1), (1, 1, [60, 60, 10, 10])])
    res = preds([(1, 1, [5, 5, 10, 10], 0.9), (1, 1, [20, 20, 10, 10], 0.8), (1, 1, [60, 60, 10, 10], 0.7)])
    m = run(gt, res, iou_thresholds=0.5)
    assert m.n_gt[0] == 1           # the crowd box is not ground truth
    assert m.hits[0, 0] == 1
    assert m.fp[0, 0] == 0          # both predictions inside the crowd region are absorbed
    assert m.precision[0] == 1.0


def test_min_score_applies_to_hit_rate_not_map():
    gt = coco([1], [(1, 1, [0, 0, 10, 10]), (1, 1, [50, 50, 10, 10])])
    res = preds([(1, 1, [0, 0, 10, 10], 0.9), (1, 1, [50, 50, 10, 10], 0.2), (1, 1, [80, 80, 5, 5], 0.1)])
    all_ = run(gt, res, iou_thresholds=0.5)
    cut = run(gt, res, iou_thresholds=0.5, min_score=0.5)
    assert all_.hits[0, 0] == 2 and cut.hits[0, 0] == 1
    assert all_.fp[0, 0] == 1 and cut.fp[0, 0] == 0 and cut.n_pred_total == 1
    assert cut.map50 == all_.map50 == 1.0


def test_unscored_predictions_keep_file_order():
    gt = coco([1], [(1, 1, [0, 0, 10, 10])])
    res = preds([(1, 1, [0, 0, 6, 10]), (1, 1, [0, 0, 10, 10])])  # no scores: IoU 0.6, then IoU 1.0
    m = run(gt, res, iou_thresholds=[0.5, 0.7])
    assert m.n_unscored == 2 and m.unscored
    assert m.hits[0].tolist() == [1, 1] and m.fp[0].tolist() == [1, 1]
    # at IoU 0.7 the first (file order) prediction is a false positive ranked before the hit
    t07 = int(np.flatnonzero(np.isclose(COCO_IOU_THRESHOLDS, 0.7))[0])
    assert np.allclose(m.coco_precision[t07, :, 0], 0.5)
    assert np.allclose(run(gt, res[::-1]).coco_precision[t07, :, 0], 1.0)
    assert any("no score" in w for w in m.warnings)
    # identical to pycocotools when every score is 1.0 (its stable sort keeps file order)
    scored = [dict(r, score=1.0) for r in res]
    e = pycoco_eval(gt, scored)
    assert abs(m.map50_95 - e.stats[0]) < 1e-12 and abs(m.map50 - e.stats[1]) < 1e-12


def test_empty_predictions_and_empty_images():
    gt = coco([1, 2, 3], [(1, 1, [0, 0, 10, 10])])
    m = run(gt, [], iou_thresholds="0.5:0.9:0.1")
    assert m.hit_rate.tolist() == [0.0] * 5
    assert m.map50 == 0.0 and m.map50_95 == 0.0
    assert np.isnan(m.precision).all() and m.fp_per_image.tolist() == [0.0] * 5
    m = run(gt, preds([(3, 2, [0, 0, 10, 10], 0.4)]), iou_thresholds=0.5)  # FP on an empty image
    assert m.fp_per_image[0] == pytest.approx(1 / 3)


def test_class_filter_drops_both_sides():
    gt = coco([1], [(1, 1, [0, 0, 10, 10]), (1, 2, [50, 50, 10, 10])])
    res = preds([(1, 1, [0, 0, 10, 10], 0.9), (1, 2, [80, 80, 5, 5], 0.9)])
    m = run(gt, res, iou_thresholds=0.5, classes=[1])
    assert m.category_ids.tolist() == [1] and m.hit_rate[0] == 1.0 and m.fp.sum() == 0
    with pytest.raises(UsageError, match="class id 7"):
        run(gt, res, classes=[7])


def test_unknown_image_or_category_names_the_record():
    gt = coco([1], [(1, 1, [0, 0, 10, 10])])
    with pytest.raises(DatasetError, match=r"record #1 has image_id 99"):
        run(gt, preds([(1, 1, [0, 0, 1, 1], 0.5), (99, 1, [0, 0, 1, 1], 0.5)]))
    with pytest.raises(DatasetError, match=r"record #0 has category_id 9"):
        run(gt, preds([(1, 9, [0, 0, 1, 1], 0.5)]))


@pytest.mark.parametrize(("spec", "want"), [
    ("0.5", (0.5,)),
    (0.75, (0.75,)),
    ("0.5,0.75", (0.5, 0.75)),
    ("0.75 0.5", (0.5, 0.75)),
    ("0.5:0.9:0.1", (0.5, 0.6, 0.7, 0.8, 0.9)),
    ("0.5:0.95:0.05", tuple(round(float(t), 10) for t in COCO_IOU_THRESHOLDS)),
    ("0.5:0.5:0.1", (0.5,)),
    ([0.9, 0.5, 0.5], (0.5, 0.9)),
])
def test_parse_iou_thresholds(spec, want):
    assert parse_iou_thresholds(spec) == want


@pytest.mark.parametrize(("spec", "msg"), [
    ("", "empty"), ("abc", "not a number"), ("0.5:0.9", "start:stop:step"), ("0.5:0.9:0", "step must be positive"),
    ("0.9:0.5:0.1", "below start"), ("1.5", "outside"), ("0", "outside"), ("0.5:x:0.1", "must be numbers"),
    ("nan", "outside"),
])
def test_parse_iou_thresholds_errors(spec, msg):
    with pytest.raises(UsageError, match=msg):
        parse_iou_thresholds(spec)


# ---------------------------------------------------------------------------------------
# against pycocotools
# ---------------------------------------------------------------------------------------
CASES = [
    dict(seed=0),
    dict(seed=1, int_boxes=False),
    dict(seed=2, crowd=0.15),
    dict(seed=3, n_cat=1),
    dict(seed=4, n_cat=20, n_img=60),
    dict(seed=5, n_cat=80, n_img=80, int_boxes=False, crowd=0.05),
    dict(seed=6, id0=True),
    dict(seed=7, crowded_image=True),
    dict(seed=8, crowd=0.3, crowded_image=True, n_cat=3),
]


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_map_equals_pycocotools(case):
    gt, res = random_dataset(**case)
    e = pycoco_eval(gt, res)
    m = run(gt, res)
    assert abs(m.map50_95 - e.stats[0]) < 1e-9
    assert abs(m.map50 - e.stats[1]) < 1e-9
    # the whole interpolated precision table (T, R, K) for area "all", maxDets 100
    assert np.array_equal(m.coco_precision, e.eval["precision"][:, :, :, 0, 2])


def test_map_with_class_filter_equals_pycocotools():
    gt, res = random_dataset(11, n_cat=6)
    e = pycoco_eval(gt, res, cat_ids=[2, 5])
    m = run(gt, res, classes=[2, 5])
    assert abs(m.map50_95 - e.stats[0]) < 1e-9 and abs(m.map50 - e.stats[1]) < 1e-9


@pytest.mark.parametrize("seed", [0, 2, 7])
def test_hit_rate_equals_pycocotools_recall_without_det_cap(seed):
    # Per-class hit rate is COCO recall at IoU t with no maxDets cap: an independent reference.
    gt, res = random_dataset(seed, crowd=0.1 if seed == 2 else 0.0, crowded_image=seed == 7)
    thr = [0.5, 0.6, 0.7, 0.8, 0.9]
    e = pycoco_eval(gt, res, iou_thrs=thr, max_dets=[10_000], summarize=False)
    ref = e.eval["recall"][:, :, 0, 0].T  # (K, T); -1 for classes without ground truth
    m = run(gt, res, iou_thresholds=thr)
    got = np.where(np.isnan(m.hit_rate_per_class), -1, m.hit_rate_per_class)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    valid = ref[:, 0] > -1
    np.testing.assert_allclose(m.hit_rate, ref[valid].mean(axis=0), atol=1e-12)


def test_from_dataset_matches_from_dict(tiny_coco):
    import json

    from synspill.coco.dataset import load_coco

    g1 = GroundTruth.from_dataset(load_coco(tiny_coco))
    g2 = GroundTruth.from_dict(json.loads(tiny_coco.read_text()))
    for f in ("image_ids", "category_ids", "image_id", "category_id", "xywh", "iscrowd", "area", "ann_id"):
        assert np.array_equal(getattr(g1, f), getattr(g2, f)), f


def test_predictions_from_detections():
    from synspill.detections import Detections

    d = Detections(np.array([[10, 20, 30, 60]]), np.array([2]), np.array([np.nan]))
    p = Predictions.from_detections({7: d, 8: Detections.empty()})
    assert p.xywh.tolist() == [[10, 20, 20, 40]] and p.image_id.tolist() == [7] and p.n_unscored == 1
