"""Confidence intervals for detection metrics on small test sets (bootstrap over images).

A real-photo check on a few dozen photos moves by several points when one photo changes.
:func:`bootstrap` says by how much: it draws the evaluated images with replacement
(``n_boot`` times, seeded), scores each draw with :func:`synspill.metrics.evaluate` (so the
same matching and the same COCO mAP as everywhere else), and :func:`interval` reads a
percentile interval off the draws. Images are the unit of resampling because COCO matches
predictions to boxes within an image: a drawn image brings all its boxes and predictions,
and an image drawn twice counts twice (Efron and Tibshirani 1993, ch. 13; the percentile
interval).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from synspill.errors import UsageError
from synspill.metrics import GroundTruth, Predictions, evaluate


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval.

    Attributes:
        low: Lower bound.
        high: Upper bound.
        level: Coverage (0.95: the 2.5th and 97.5th percentiles of the draws).
        n_boot: Draws it was read from.
    """

    low: float
    high: float
    level: float
    n_boot: int

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "level": self.level, "n_boot": self.n_boot}

    def __str__(self) -> str:
        return f"[{self.low:.2f}, {self.high:.2f}]"


def resample(gt: GroundTruth, pred: Predictions, picks: np.ndarray,
             rows: tuple[list[np.ndarray], list[np.ndarray]] | None = None) -> tuple[GroundTruth, Predictions]:
    """The data set made of images ``gt.image_ids[picks]`` (repeats allowed).

    The ``j``-th pick becomes image id ``j``, with copies of its boxes and predictions in
    their original order (ties in score keep the results file's order within an image).

    Args:
        gt: Ground truth.
        pred: Predictions on ``gt``'s images.
        picks: ``(n,)`` indices into ``gt.image_ids``.
        rows: :func:`image_rows` of ``(gt, pred)``, when drawing many times.

    Returns:
        ``(gt, pred)`` of the draw.
    """
    g_by, d_by = rows or image_rows(gt, pred)
    picks = np.asarray(picks, dtype=np.int64).tolist()
    gi = np.concatenate([g_by[p] for p in picks]) if picks else np.zeros(0, np.int64)
    di = np.concatenate([d_by[p] for p in picks]) if picks else np.zeros(0, np.int64)
    new_ids = np.arange(len(picks), dtype=np.int64)
    g = GroundTruth(
        image_ids=new_ids, category_ids=gt.category_ids, category_names=gt.category_names,
        image_id=np.repeat(new_ids, [len(g_by[p]) for p in picks]), category_id=gt.category_id[gi],
        xywh=gt.xywh[gi], iscrowd=gt.iscrowd[gi], area=gt.area[gi], ann_id=np.arange(1, len(gi) + 1, dtype=np.int64),
        source=gt.source,
    )
    d = Predictions(image_id=np.repeat(new_ids, [len(d_by[p]) for p in picks]), category_id=pred.category_id[di],
                    xywh=pred.xywh[di], score=pred.score[di], source=pred.source)
    return g, d


def image_rows(gt: GroundTruth, pred: Predictions) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Row indices of each image's boxes and predictions (in file order), indexed like ``gt.image_ids``."""
    def by_image(image_id: np.ndarray) -> list[np.ndarray]:
        pos = np.searchsorted(gt.image_ids, image_id)
        order = np.argsort(pos, kind="stable")
        bounds = np.searchsorted(pos[order], np.arange(len(gt.image_ids) + 1))
        return [order[bounds[i]:bounds[i + 1]] for i in range(len(gt.image_ids))]

    return by_image(gt.image_id), by_image(pred.image_id)


def bootstrap(gt: GroundTruth, pred: Predictions, n_boot: int = 1000, seed: int = 0, iou: float = 0.5,
              min_score: float = 0.0, max_dets: int = 100, classes: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """mAP@50 and hit rate at ``iou`` on ``n_boot`` draws of the images with replacement.

    Args:
        gt: Ground truth.
        pred: Predictions.
        n_boot: Draws.
        seed: Seed of the draws (the same seed gives the same draws).
        iou: IoU threshold of the hit rate.
        min_score: Score floor of the hit rate (mAP uses every prediction).
        max_dets: COCO ``maxDets`` of mAP.
        classes: Evaluate only these category ids (as :func:`synspill.metrics.evaluate`).

    Returns:
        ``{"map50": (n_boot,), "hit_rate": (n_boot,)}``; NaN where a draw has no box.

    Raises:
        UsageError: ``n_boot`` below 1 or no images.
    """
    if n_boot < 1:
        raise UsageError(f"--bootstrap {n_boot}: give at least 1 draw (1000 is usual)")
    n = len(gt.image_ids)
    if n == 0:
        raise UsageError(f"{gt.source}: no images to bootstrap")
    rng = np.random.default_rng(seed)
    rows = image_rows(gt, pred)
    maps = np.full(n_boot, np.nan)
    hits = np.full(n_boot, np.nan)
    for b in range(n_boot):
        g, d = resample(gt, pred, rng.integers(0, n, n), rows)
        m = evaluate(g, d, iou_thresholds=(iou,), classes=classes, max_dets=max_dets, min_score=min_score)
        maps[b] = m.map50
        hits[b] = m.hit_rate[0]
    return {"map50": maps, "hit_rate": hits}


def interval(draws: np.ndarray, level: float = 0.95) -> Interval:
    """The percentile interval of ``draws`` (NaN draws, with no box, are left out).

    Raises:
        UsageError: ``level`` outside (0, 1).
    """
    if not 0.0 < level < 1.0:
        raise UsageError(f"confidence level {level} must be between 0 and 1 (0.95 is usual)")
    ok = np.asarray(draws, dtype=np.float64)
    ok = ok[~np.isnan(ok)]
    if not ok.size:
        return Interval(float("nan"), float("nan"), level, 0)
    lo, hi = np.quantile(ok, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(lo), float(hi), level, int(ok.size))
