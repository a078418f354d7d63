"""Bootstrap confidence intervals: each draw is scored exactly as pycocotools scores the
same images written out as a data set of their own."""

from __future__ import annotations

import numpy as np
import pytest

from synspill.bootstrap import bootstrap, interval, resample
from synspill.errors import UsageError
from synspill.metrics import GroundTruth, Predictions, evaluate
from tests.test_metrics import pycoco_eval, random_dataset


def duplicated(gt: dict, res: list[dict], picks: np.ndarray) -> tuple[dict, list[dict]]:
    """The drawn images as a COCO dict + results, built by hand: pick j -> image 100 + j."""
    ids = sorted(im["id"] for im in gt["images"])
    images, anns, out = [], [], []
    for j, p in enumerate(picks.tolist()):
        new = 100 + j
        images.append({"id": new, "file_name": f"{new}.png", "width": 200, "height": 150})
        anns += [{**a, "id": len(anns) + 1 + k, "image_id": new}
                 for k, a in enumerate(a for a in gt["annotations"] if a["image_id"] == ids[p])]
        out += [{**r, "image_id": new} for r in res if r["image_id"] == ids[p]]
    return {"images": images, "annotations": anns, "categories": gt["categories"]}, out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_draw_equals_pycocotools_on_the_drawn_images(seed):
    gt, res = random_dataset(seed, n_img=15, n_cat=3)
    g, d = GroundTruth.from_dict(gt), Predictions.from_records(res)
    rng = np.random.default_rng(seed)
    for _ in range(4):
        picks = rng.integers(0, 15, 15)  # repeats and left-out images
        rg, rd = resample(g, d, picks)
        ours = evaluate(rg, rd, iou_thresholds=(0.5,))
        ref_gt, ref_res = duplicated(gt, res, picks)
        e = pycoco_eval(ref_gt, ref_res)
        assert ours.map50 == pytest.approx(e.stats[1], abs=1e-12)
        assert ours.n_images == len(picks)
        assert int(ours.n_gt.sum()) == sum(not a["iscrowd"] for a in ref_gt["annotations"])


def test_identity_draw_is_the_original_evaluation():
    gt, res = random_dataset(5, n_img=12)
    g, d = GroundTruth.from_dict(gt), Predictions.from_records(res)
    full = evaluate(g, d, iou_thresholds=(0.5,))
    again = evaluate(*resample(g, d, np.arange(12)), iou_thresholds=(0.5,))
    assert again.map50 == pytest.approx(full.map50, abs=1e-12)
    assert again.hit_rate[0] == pytest.approx(full.hit_rate[0])


def test_draws_are_seeded_and_perfect_predictions_have_no_spread():
    gt, res = random_dataset(3, n_img=10, n_cat=2)
    g, d = GroundTruth.from_dict(gt), Predictions.from_records(res)
    a, b = bootstrap(g, d, n_boot=20, seed=7), bootstrap(g, d, n_boot=20, seed=7)
    assert np.array_equal(a["map50"], b["map50"], equal_nan=True)
    assert not np.array_equal(a["map50"], bootstrap(g, d, n_boot=20, seed=8)["map50"], equal_nan=True)
    assert np.nanstd(a["map50"]) > 0  # the draws do differ
    perfect = [{"image_id": x["image_id"], "category_id": x["category_id"], "bbox": x["bbox"], "score": 0.9}
               for x in gt["annotations"] if not x["iscrowd"]]
    p = bootstrap(g, Predictions.from_records(perfect), n_boot=30, seed=0)
    ci = interval(p["map50"])
    assert (ci.low, ci.high) == (pytest.approx(1.0), pytest.approx(1.0))
    assert interval(p["hit_rate"]).low == pytest.approx(1.0)


def test_interval_is_the_percentile_interval_without_empty_draws():
    draws = np.array([np.nan, *np.arange(101) / 100.0])  # 0.00 .. 1.00 and one draw with no box
    ci = interval(draws, level=0.9)
    assert (ci.low, ci.high, ci.n_boot) == (pytest.approx(0.05), pytest.approx(0.95), 101)
    assert str(interval(draws)) == "[0.03, 0.97]"  # 2.5th / 97.5th percentiles, rounded
    assert np.isnan(interval(np.array([np.nan])).low)
    with pytest.raises(UsageError, match="between 0 and 1"):
        interval(draws, level=95)
    with pytest.raises(UsageError, match="at least 1"):
        bootstrap(GroundTruth.from_dict(random_dataset(0, n_img=3)[0]), Predictions.from_records([]), n_boot=0)
