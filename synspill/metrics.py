"""Detection metrics: IoU, the paper's hit rate over IoU thresholds, and COCO mAP.

NumPy only (never torch). Everything is computed in one pass over all images:

1. ground truth and predictions are grouped by ``(image, category)`` with sorted arrays;
2. the IoU of every prediction/ground-truth pair that shares a group is computed in one
   vectorised batch (with exactly pycocotools' ``bbIou`` arithmetic, so values are
   bit-identical);
3. greedy one-to-one matching runs for *all* IoU thresholds at once -- the COCO ones
   (0.50:0.95) and the hit-rate ones -- stepping through predictions by their rank within
   their group, every group in parallel;
4. the same matches give mAP (COCO ``accumulate``), hit rate, precision and false
   positives per image.

Matching rule (shared by every metric here, identical to pycocotools ``evaluateImg``):
predictions of one image and class are visited in descending score (ties: the order of the
results file); each takes the still-free ground-truth box of its class with the highest
IoU >= t (ties in IoU: the later box in the annotation file). Crowd boxes (``iscrowd=1``)
are "ignore" regions: they are not counted as ground truth, may absorb any number of
predictions, and a prediction absorbed by one is neither a hit nor a false positive. A
prediction only falls back to a crowd box when no regular box is free at IoU >= t.

Boxes are COCO ``[x, y, w, h]`` in absolute pixels unless a name says ``xyxy``; the box
arithmetic (IoU, conversions) is in :mod:`synspill.boxes`.

Differences from pycocotools (deliberate, documented in ``docs/eval.md``): predictions
without a score are accepted (score 1.0, file order kept) and counted in
:attr:`EvalMetrics.n_unscored`; hit rate, precision and false positives use *all*
predictions (no ``maxDets`` cap), while mAP uses COCO's 100 per image and class.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from synspill.boxes import paired_iou_xywh, xyxy_to_xywh
from synspill.errors import DatasetError, UsageError

log = logging.getLogger(__name__)

#: pycocotools' IoU thresholds 0.50:0.05:0.95, built exactly as ``Params.setDetParams``.
COCO_IOU_THRESHOLDS: np.ndarray = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
#: pycocotools' 101 recall points 0:0.01:1.
COCO_RECALL_THRESHOLDS: np.ndarray = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True)
#: The paper's hit-rate thresholds 0.5, 0.6, ..., 0.9.
HIT_IOU_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
#: The same, as ``--iou`` and study files write it (the default everywhere).
DEFAULT_IOU = "0.5:0.9:0.1"
#: The one category of class-agnostic evaluation ("is there a spill here", whatever its class).
AGNOSTIC_ID = 1
AGNOSTIC_NAME = "any spill"
#: pycocotools' area range "all" (boxes outside it are ignored).
AREA_ALL: tuple[float, float] = (0.0, 1e5**2)


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------
@dataclass
class GroundTruth:
    """Ground truth as columnar arrays (one row per annotation).

    Attributes:
        image_ids: ``(I,)`` sorted unique ids of *all* evaluated images (also the empty ones).
        category_ids: ``(K,)`` sorted category ids of the dataset.
        category_names: Category id -> name.
        image_id: ``(G,)`` int64 image of each box.
        category_id: ``(G,)`` int64.
        xywh: ``(G, 4)`` float64 COCO boxes, absolute pixels.
        iscrowd: ``(G,)`` bool crowd / ignore regions.
        area: ``(G,)`` float64 COCO ``area`` (``w*h`` where the file has none).
        ann_id: ``(G,)`` int64 annotation ids.
        source: Where it came from (for error messages).
    """

    image_ids: np.ndarray
    category_ids: np.ndarray
    category_names: dict[int, str]
    image_id: np.ndarray
    category_id: np.ndarray
    xywh: np.ndarray
    iscrowd: np.ndarray
    area: np.ndarray
    ann_id: np.ndarray
    source: str = "<ground truth>"

    @classmethod
    def from_dataset(cls, ds: Any, source: str | None = None) -> GroundTruth:
        """From a :class:`synspill.coco.dataset.CocoDataset`."""
        anns = ds.annotations
        n = len(anns)
        xywh = np.array([a.bbox for a in anns], dtype=np.float64).reshape(n, 4)
        area = np.array([a.area if a.area is not None else a.bbox[2] * a.bbox[3] for a in anns], dtype=np.float64)
        return cls(
            image_ids=np.unique(np.array([im.id for im in ds.images], dtype=np.int64)),
            category_ids=np.unique(np.array([c.id for c in ds.categories], dtype=np.int64)),
            category_names={c.id: c.name for c in ds.categories},
            image_id=np.array([a.image_id for a in anns], dtype=np.int64),
            category_id=np.array([a.category_id for a in anns], dtype=np.int64),
            xywh=xywh,
            iscrowd=np.array([bool(a.iscrowd) for a in anns], dtype=bool),
            area=area,
            ann_id=np.array([a.id for a in anns], dtype=np.int64),
            source=source or "<ground truth>",
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "<ground truth>") -> GroundTruth:
        """From a COCO JSON object (``images``, ``annotations``, ``categories``), unvalidated."""
        anns = d["annotations"]
        n = len(anns)
        xywh = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(n, 4)
        area = np.array([a.get("area", b[2] * b[3]) for a, b in zip(anns, xywh.tolist(), strict=True)], dtype=np.float64)
        return cls(
            image_ids=np.unique(np.array([im["id"] for im in d["images"]], dtype=np.int64)),
            category_ids=np.unique(np.array([c["id"] for c in d["categories"]], dtype=np.int64)),
            category_names={int(c["id"]): str(c.get("name", c["id"])) for c in d["categories"]},
            image_id=np.array([a["image_id"] for a in anns], dtype=np.int64),
            category_id=np.array([a["category_id"] for a in anns], dtype=np.int64),
            xywh=xywh,
            iscrowd=np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
            area=area,
            ann_id=np.array([a.get("id", i + 1) for i, a in enumerate(anns)], dtype=np.int64),
            source=source,
        )

    def __len__(self) -> int:
        return len(self.image_id)

    def agnostic(self) -> GroundTruth:
        """A copy with every box in one class, :data:`AGNOSTIC_ID` ("any spill")."""
        return replace(self, category_ids=np.array([AGNOSTIC_ID], np.int64), category_names={AGNOSTIC_ID: AGNOSTIC_NAME},
                       category_id=np.full_like(self.category_id, AGNOSTIC_ID))


@dataclass
class Predictions:
    """Predictions as columnar arrays (one row per detection, in file order).

    Attributes:
        image_id: ``(N,)`` int64.
        category_id: ``(N,)`` int64.
        xywh: ``(N, 4)`` float64 COCO boxes, absolute pixels.
        score: ``(N,)`` float64 confidences; NaN where the model gave none (VLM output).
        source: Where they came from (for error messages and reports).
    """

    image_id: np.ndarray
    category_id: np.ndarray
    xywh: np.ndarray
    score: np.ndarray
    source: str = "<predictions>"

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]], source: str = "<predictions>") -> Predictions:
        """From COCO results records ``{image_id, category_id, bbox: [x,y,w,h], score?}``.

        A missing or ``null`` score becomes NaN (an *unscored* prediction).
        """
        n = len(records)
        try:
            xywh = np.array([r["bbox"] for r in records], dtype=np.float64).reshape(n, 4)
        except (ValueError, TypeError):
            for i, r in enumerate(records):
                b = r.get("bbox")
                if not (isinstance(b, list | tuple) and len(b) == 4):
                    raise DatasetError(f"{source}: record #{i} has bbox {b!r}; it must be 4 numbers [x, y, w, h]") from None
            raise
        return cls(
            image_id=np.array([r["image_id"] for r in records], dtype=np.int64),
            category_id=np.array([r["category_id"] for r in records], dtype=np.int64),
            xywh=xywh,
            score=np.array([r.get("score", np.nan) for r in records], dtype=np.float64) if n else np.zeros(0),
            source=source,
        )

    @classmethod
    def from_detections(cls, dets: Mapping[int, Any], source: str = "<predictions>") -> Predictions:
        """From ``{image_id: Detections}`` (``xyxy`` absolute, NaN score = none)."""
        ids, cats, boxes, scores = [], [], [], []
        for image_id, d in dets.items():
            ids.append(np.full(len(d), int(image_id), dtype=np.int64))
            cats.append(np.asarray(d.class_id, dtype=np.int64))
            boxes.append(xyxy_to_xywh(d.xyxy))
            scores.append(np.asarray(d.score, dtype=np.float64))
        if not ids:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0), source)
        return cls(np.concatenate(ids), np.concatenate(cats), np.concatenate(boxes), np.concatenate(scores), source)

    def __len__(self) -> int:
        return len(self.image_id)

    def agnostic(self) -> Predictions:
        """A copy with every prediction in the one class of :meth:`GroundTruth.agnostic`."""
        return replace(self, category_id=np.full_like(self.category_id, AGNOSTIC_ID))

    @property
    def n_unscored(self) -> int:
        """How many predictions have no score."""
        return int(np.isnan(self.score).sum())


# ---------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------
@dataclass
class EvalMetrics:
    """Everything :func:`evaluate` measures for one prediction set.

    Per-class arrays are indexed like :attr:`category_ids`; threshold arrays like
    :attr:`iou_thresholds` (the hit-rate thresholds). NaN means "undefined" (a class
    without ground truth has no hit rate; no predictions give no precision).

    Attributes:
        iou_thresholds: ``(T,)`` hit-rate IoU thresholds.
        category_ids: ``(K,)`` evaluated categories.
        category_names: ``(K,)`` their names.
        n_images: Evaluated images (with or without boxes).
        n_gt: ``(K,)`` regular (non-crowd) ground-truth boxes per class.
        n_pred: ``(K,)`` predictions per class (score >= ``min_score``).
        hits: ``(K, T)`` ground-truth boxes hit.
        tp: ``(K, T)`` predictions matched to a regular box.
        fp: ``(K, T)`` predictions matched to nothing (crowd-absorbed ones excluded).
        hit_rate: ``(T,)`` hit rate averaged over classes with ground truth (the paper's).
        hit_rate_micro: ``(T,)`` all hits / all boxes.
        hit_rate_per_class: ``(K, T)``.
        precision: ``(T,)`` TP / (TP + FP) over all classes.
        precision_per_class: ``(K, T)``.
        fp_per_image: ``(T,)`` false positives per image, all classes.
        map50: COCO AP at IoU 0.5 (bbox, area all, maxDets 100), averaged over classes.
        map50_95: COCO AP averaged over IoU 0.50:0.95 and classes.
        ap50: ``(K,)`` per-class AP at 0.5 (NaN without ground truth).
        ap50_95: ``(K,)`` per-class AP 0.50:0.95.
        coco_precision: ``(10, 101, K)`` COCO interpolated precision (-1 = no ground truth).
        pr_recall: ``(101,)`` recall points of :attr:`coco_precision`.
        n_unscored: Predictions without a score (ranked as 1.0 in file order).
        min_score: Score threshold applied to hit rate / precision / FP (not to mAP).
        max_dets: COCO ``maxDets`` used for mAP.
        warnings: Things a reader of the numbers must know.
    """

    iou_thresholds: np.ndarray
    category_ids: np.ndarray
    category_names: list[str]
    n_images: int
    n_gt: np.ndarray
    n_pred: np.ndarray
    hits: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    hit_rate: np.ndarray
    hit_rate_micro: np.ndarray
    hit_rate_per_class: np.ndarray
    precision: np.ndarray
    precision_per_class: np.ndarray
    fp_per_image: np.ndarray
    map50: float
    map50_95: float
    ap50: np.ndarray
    ap50_95: np.ndarray
    coco_precision: np.ndarray
    pr_recall: np.ndarray
    n_unscored: int
    n_pred_total: int
    min_score: float
    max_dets: int
    warnings: list[str] = field(default_factory=list)

    @property
    def unscored(self) -> bool:
        """True when some predictions have no score (mAP then ranks them in file order)."""
        return self.n_unscored > 0

    def pr_curve(self, iou: float = 0.5, category_id: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """COCO interpolated precision-recall curve at a COCO IoU threshold.

        Args:
            iou: One of 0.50, 0.55, ..., 0.95.
            category_id: A class, or None for the mean over classes with ground truth.

        Returns:
            ``(recall, precision)``, both ``(101,)``; precision NaN where undefined.
        """
        t = int(np.argmin(np.abs(COCO_IOU_THRESHOLDS - iou)))
        if abs(COCO_IOU_THRESHOLDS[t] - iou) > 1e-9:
            raise UsageError(f"PR curves exist at the COCO IoU thresholds 0.50:0.05:0.95, not {iou}")
        p = self.coco_precision[t]  # (R, K)
        if category_id is not None:
            k = int(np.flatnonzero(self.category_ids == category_id)[0])
            col = p[:, k]
            return self.pr_recall.copy(), np.where(col > -1, col, np.nan)
        valid = (p > -1).all(axis=0)
        prec = p[:, valid].mean(axis=1) if valid.any() else np.full(len(self.pr_recall), np.nan)
        return self.pr_recall.copy(), prec

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers (NaN -> None)."""
        thr = [_r(t) for t in self.iou_thresholds]
        per_class = []
        for k, (cid, name) in enumerate(zip(self.category_ids.tolist(), self.category_names, strict=True)):
            per_class.append({
                "category_id": cid, "name": name, "n_gt": int(self.n_gt[k]), "n_pred": int(self.n_pred[k]),
                "hit_rate": _num_list(self.hit_rate_per_class[k]), "hits": self.hits[k].astype(int).tolist(),
                "precision": _num_list(self.precision_per_class[k]), "fp": self.fp[k].astype(int).tolist(),
                "ap50": _num(self.ap50[k]), "ap50_95": _num(self.ap50_95[k]),
            })
        return {
            "iou_thresholds": thr,
            "n_images": self.n_images, "n_gt": int(self.n_gt.sum()), "n_pred": self.n_pred_total,
            "n_unscored": self.n_unscored, "unscored": self.unscored,
            "min_score": self.min_score, "max_dets": self.max_dets,
            "hit_rate": _num_list(self.hit_rate), "hit_rate_micro": _num_list(self.hit_rate_micro),
            "precision": _num_list(self.precision), "fp_per_image": _num_list(self.fp_per_image),
            "tp": self.tp.sum(axis=0).astype(int).tolist(), "fp": self.fp.sum(axis=0).astype(int).tolist(),
            "map50": _num(self.map50), "map50_95": _num(self.map50_95),
            "per_class": per_class,
            "pr_curve_iou50": {"recall": _num_list(self.pr_recall), "precision": _num_list(self.pr_curve(0.5)[1])},
            "warnings": list(self.warnings),
        }


def _r(x: float) -> float:
    return float(round(float(x), 10))


def _num(x: float) -> float | None:
    x = float(x)
    return None if np.isnan(x) else x


def _num_list(a: np.ndarray) -> list[float | None]:
    return [_num(v) for v in np.asarray(a, dtype=np.float64).tolist()]


# ---------------------------------------------------------------------------------------
# Core
# ---------------------------------------------------------------------------------------
def parse_iou_thresholds(spec: str | float | Iterable[float]) -> tuple[float, ...]:
    """Parse IoU thresholds: ``0.5``, ``"0.5,0.75"``, ``"0.5:0.9:0.1"`` (inclusive) or a list.

    Values are rounded to 10 decimals (so ``0.5:0.9:0.1`` gives exactly 0.7, 0.8, 0.9),
    de-duplicated and sorted.

    Raises:
        UsageError: Not numbers, a value outside (0, 1], or a bad range.
    """
    if isinstance(spec, int | float):
        vals = [float(spec)]
    elif isinstance(spec, str):
        s = spec.strip()
        if not s:
            raise UsageError("--iou is empty; give a threshold (0.5), a list (0.5,0.75) or a range start:stop:step (0.5:0.9:0.1)")
        if ":" in s:
            parts = s.split(":")
            if len(parts) != 3:
                raise UsageError(f"--iou {spec!r}: a range is start:stop:step, e.g. 0.5:0.9:0.1")
            try:
                a, b, step = (float(p) for p in parts)
            except ValueError:
                raise UsageError(f"--iou {spec!r}: start, stop and step must be numbers, e.g. 0.5:0.9:0.1") from None
            if not (step > 0) or not np.isfinite(step):
                raise UsageError(f"--iou {spec!r}: step must be positive, e.g. 0.5:0.9:0.1")
            if b < a:
                raise UsageError(f"--iou {spec!r}: stop {b} is below start {a}; write start:stop:step, e.g. 0.5:0.9:0.1")
            n = int(np.floor((b - a) / step + 1e-9)) + 1
            if n > 1000:
                raise UsageError(f"--iou {spec!r} gives {n} thresholds; use a larger step")
            vals = [a + i * step for i in range(n)]
        else:
            try:
                vals = [float(p) for p in s.replace(" ", ",").split(",") if p]
            except ValueError:
                raise UsageError(f"--iou {spec!r}: not a number or list of numbers; e.g. 0.5 or 0.5,0.75 or 0.5:0.9:0.1") from None
    else:
        try:
            vals = [float(v) for v in spec]
        except (TypeError, ValueError):
            raise UsageError(f"IoU thresholds {spec!r} are not numbers") from None
    vals = sorted({round(v, 10) for v in vals})
    if not vals:
        raise UsageError("no IoU thresholds given; e.g. 0.5:0.9:0.1")
    bad = [v for v in vals if not (0.0 < v <= 1.0) or not np.isfinite(v)]
    if bad:
        raise UsageError(f"IoU threshold {bad[0]} is outside (0, 1]; use values like 0.5:0.9:0.1")
    return tuple(vals)


def _group_starts(keys: np.ndarray) -> np.ndarray:
    """For sorted ``keys``, the index where each element's run of equal keys starts."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.empty(n, dtype=bool)
    first[0] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    return np.maximum.accumulate(np.where(first, np.arange(n), 0))


def _match(
    d_group: np.ndarray, d_xywh: np.ndarray, d_rank: np.ndarray,
    g_group: np.ndarray, g_xywh: np.ndarray, g_crowd: np.ndarray, g_ignore: np.ndarray,
    thresholds: np.ndarray,
) -> np.ndarray:
    """Greedy COCO matching for every threshold at once.

    Predictions must be sorted by (group, score desc, file order) and ground truth by
    (group, ignore, file order), i.e. the order in which pycocotools visits them.

    Returns:
        ``(T, N)`` int64: index of the matched ground-truth row, or -1.
    """
    n_d, n_t = len(d_group), len(thresholds)
    match = np.full((n_t, n_d), -1, dtype=np.int64)
    if n_d == 0 or len(g_group) == 0:
        return match
    lo = np.searchsorted(g_group, d_group, side="left")
    hi = np.searchsorted(g_group, d_group, side="right")
    n_g = hi - lo
    n_pairs = int(n_g.sum())
    if n_pairs == 0:
        return match
    pair_d = np.repeat(np.arange(n_d), n_g)
    offsets = np.cumsum(n_g) - n_g
    pair_g = np.repeat(lo - offsets, n_g) + np.arange(n_pairs)
    iou = paired_iou_xywh(d_xywh[pair_d], g_xywh[pair_g], g_crowd[pair_g])
    thr = np.minimum(thresholds, 1 - 1e-10)[:, None]  # pycocotools: iou = min([t, 1-1e-10])
    # Pairs below the lowest threshold can never match: drop them (most pairs in busy images).
    keep = iou >= thr.min()
    if not keep.any():
        return match
    pair_d, pair_g, iou = pair_d[keep], pair_g[keep], iou[keep]
    n_pairs = len(pair_d)

    # Visit predictions rank by rank (rank 0 of every group, then rank 1, ...); one
    # prediction per group per step, so groups never compete within a step.
    pair_rank = d_rank[pair_d]
    order = np.argsort(pair_rank, kind="stable")
    pair_d, pair_g, iou, pair_rank = pair_d[order], pair_g[order], iou[order], pair_rank[order]
    new_seg = np.empty(n_pairs, dtype=bool)
    new_seg[0] = True
    np.not_equal(pair_d[1:], pair_d[:-1], out=new_seg[1:])
    seg_id = np.cumsum(new_seg) - 1
    bounds = np.searchsorted(pair_rank, np.arange(int(pair_rank[-1]) + 2), side="left")

    taken = np.zeros((n_t, len(g_group)), dtype=bool)
    pair_crowd = g_crowd[pair_g]
    pair_real = ~g_ignore[pair_g]
    for r in range(len(bounds) - 1):
        a, b = int(bounds[r]), int(bounds[r + 1])
        if a == b:
            continue
        pg = pair_g[a:b]
        piou = iou[a:b]
        starts = np.flatnonzero(new_seg[a:b])
        seg = seg_id[a:b] - seg_id[a]
        elig = (piou >= thr) & (~taken[:, pg] | pair_crowd[a:b])
        real = elig & pair_real[a:b]
        any_real = np.logical_or.reduceat(real, starts, axis=1)
        use = np.where(any_real[:, seg], real, elig)
        val = np.where(use, piou, -1.0)
        best = np.maximum.reduceat(val, starts, axis=1)
        pos = np.where(use & (val == best[:, seg]), np.arange(b - a), -1)
        last = np.maximum.reduceat(pos, starts, axis=1)  # ties in IoU: the later ground truth
        t_idx, s_idx = np.nonzero(last >= 0)
        chosen = pg[last[t_idx, s_idx]]
        taken[t_idx, chosen] = True
        match[t_idx, pair_d[a + starts[s_idx]]] = chosen
    return match


def evaluate(
    gt: GroundTruth,
    pred: Predictions,
    iou_thresholds: Sequence[float] | str = HIT_IOU_THRESHOLDS,
    classes: Sequence[int] | None = None,
    max_dets: int = 100,
    min_score: float = 0.0,
) -> EvalMetrics:
    """Hit rate over IoU thresholds, precision, FP/image and COCO mAP in one pass.

    Args:
        gt: Ground truth (every image in ``gt.image_ids`` is evaluated, empty ones too).
        pred: Predictions; every ``image_id`` must be a ground-truth image and every
            ``category_id`` a ground-truth category.
        iou_thresholds: Hit-rate thresholds (any in (0, 1]; parsed like ``--iou``).
        classes: Evaluate only these category ids (others are dropped from both sides).
        max_dets: COCO ``maxDets`` for mAP (per image and class, as pycocotools).
        min_score: Predictions below this score are left out of hit rate, precision and
            FP/image (mAP always uses all of them). Unscored predictions always count.

    Returns:
        :class:`EvalMetrics`; mAP@50 and mAP@50:95 equal pycocotools' ``stats[1]`` and
        ``stats[0]`` (COCOeval bbox, area all, maxDets 100).

    Raises:
        DatasetError: A prediction refers to an unknown image or category (names the record).
        UsageError: Bad thresholds or class filter.
    """
    hit_thr = np.array(parse_iou_thresholds(iou_thresholds), dtype=np.float64)
    d_img, cat_ids = _check_predictions(gt, pred, classes)
    g = _GtRows.of(gt, cat_ids)
    d = _PredRows.of(pred, d_img, cat_ids)

    # match once for the union of COCO and hit-rate thresholds
    all_thr = np.unique(np.concatenate([COCO_IOU_THRESHOLDS, hit_thr]))
    coco_ti = np.searchsorted(all_thr, COCO_IOU_THRESHOLDS)
    hit_ti = np.searchsorted(all_thr, hit_thr)
    match = _match(d.grp, d.xywh, d.rank, g.grp, g.xywh, g.crowd, g.ignore, all_thr)
    matched = match >= 0
    m_ig = np.zeros_like(matched)
    m_ig[matched] = g.ignore[match[matched]]
    d_ignored = m_ig | (~matched & d.out_of_range[None, :])  # neither TP nor FP

    counted = (d.score >= min_score) | d.unscored if min_score > 0 else np.ones(len(d.score), bool)
    n_gt = np.bincount(g.k[~g.ignore], minlength=len(cat_ids)).astype(np.int64)
    counts = _hit_counts(matched[hit_ti], m_ig[hit_ti], d_ignored[hit_ti], d.k, counted, n_gt, len(gt.image_ids))
    coco_prec, ap50, ap = _coco_accumulate(
        matched[coco_ti], d_ignored[coco_ti], match[coco_ti], g.annid, d.rank < max_dets,
        d.k, d.img, d.file, d.score, n_gt, len(cat_ids),
    )
    s = coco_prec[coco_prec > -1]
    s50 = coco_prec[0][coco_prec[0] > -1]
    return EvalMetrics(
        iou_thresholds=hit_thr, category_ids=cat_ids.copy(),
        category_names=[gt.category_names.get(int(c), str(int(c))) for c in cat_ids], n_images=len(gt.image_ids),
        n_gt=n_gt, n_pred=np.bincount(d.k[counted], minlength=len(cat_ids)).astype(np.int64), **counts,
        map50=float(np.mean(s50)) if s50.size else float("nan"), map50_95=float(np.mean(s)) if s.size else float("nan"),
        ap50=ap50, ap50_95=ap, coco_precision=coco_prec, pr_recall=COCO_RECALL_THRESHOLDS.copy(),
        n_unscored=d.n_unscored, n_pred_total=int(counted.sum()), min_score=float(min_score), max_dets=int(max_dets),
        warnings=_warnings(d.n_unscored, len(d.score), g.annid, n_gt),
    )


def _check_predictions(gt: GroundTruth, pred: Predictions, classes: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Every prediction's image index into ``gt.image_ids``, and the evaluated category ids.

    Raises:
        DatasetError: A prediction of an unknown image or category (names the record).
        UsageError: A class filter naming a category the ground truth does not have.
    """
    img_ids = gt.image_ids
    n_img = len(img_ids)
    d_img = np.searchsorted(img_ids, pred.image_id)
    if n_img:
        bad = (d_img >= n_img) | (img_ids[np.minimum(d_img, n_img - 1)] != pred.image_id)
    else:
        bad = np.ones(len(pred), dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{pred.source}: record #{i} has image_id {int(pred.image_id[i])}, which is not in the ground truth {gt.source}; predict on the same COCO file you evaluate against")
    cat_ids = gt.category_ids
    unknown = ~np.isin(pred.category_id, cat_ids)
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise DatasetError(f"{pred.source}: record #{i} has category_id {int(pred.category_id[i])}, which is not a ground-truth category {cat_ids.tolist()}")
    if classes is not None:
        cls = np.unique(np.asarray(list(classes), dtype=np.int64))
        missing = cls[~np.isin(cls, cat_ids)]
        if len(missing):
            raise UsageError(f"class id {int(missing[0])} is not a category of {gt.source}; use some of {cat_ids.tolist()}")
        cat_ids = cls
    return d_img, cat_ids


@dataclass
class _GtRows:
    """Ground truth of the evaluated classes in pycocotools' visiting order: (group, ignore, file order).

    A *group* is one (image, class) pair: ``image index * n_classes + class index``.
    """

    grp: np.ndarray
    k: np.ndarray  # class index into the evaluated category ids
    crowd: np.ndarray
    ignore: np.ndarray  # crowd or outside COCO's area range: neither counted nor missed
    xywh: np.ndarray
    annid: np.ndarray

    @classmethod
    def of(cls, gt: GroundTruth, cat_ids: np.ndarray) -> _GtRows:
        keep = np.isin(gt.category_id, cat_ids)
        file_order = np.flatnonzero(keep)
        k = np.searchsorted(cat_ids, gt.category_id[keep])
        area, crowd = gt.area[keep], gt.iscrowd[keep]
        ignore = crowd | (area < AREA_ALL[0]) | (area > AREA_ALL[1])
        grp = np.searchsorted(gt.image_ids, gt.image_id[keep]) * len(cat_ids) + k
        order = np.lexsort((file_order, ignore, grp))
        return cls(grp[order], k[order], crowd[order], ignore[order], gt.xywh[keep][order], gt.ann_id[keep][order])


@dataclass
class _PredRows:
    """Predictions of the evaluated classes in pycocotools' visiting order: (group, score desc, file order).

    Unscored predictions count as score 1.0 (file order kept); ``rank`` is a prediction's
    position within its group.
    """

    grp: np.ndarray
    k: np.ndarray
    img: np.ndarray  # image index
    file: np.ndarray  # row in the results file
    score: np.ndarray
    unscored: np.ndarray
    xywh: np.ndarray
    rank: np.ndarray
    out_of_range: np.ndarray  # outside COCO's area range: unmatched ones are not false positives
    n_unscored: int

    @classmethod
    def of(cls, pred: Predictions, d_img: np.ndarray, cat_ids: np.ndarray) -> _PredRows:
        keep = np.isin(pred.category_id, cat_ids)
        file_order = np.flatnonzero(keep)
        score = pred.score[keep]
        unscored = np.isnan(score)
        score = np.where(unscored, 1.0, score)
        img = d_img[keep]
        k = np.searchsorted(cat_ids, pred.category_id[keep])
        grp = img * len(cat_ids) + k
        order = np.lexsort((file_order, -score, grp))
        grp = grp[order]
        xywh = pred.xywh[keep][order]
        area = xywh[:, 2] * xywh[:, 3]
        return cls(grp, k[order], img[order], file_order[order], score[order], unscored[order], xywh,
                   np.arange(len(grp)) - _group_starts(grp), (area < AREA_ALL[0]) | (area > AREA_ALL[1]),
                   int(unscored.sum()))


def _hit_counts(matched: np.ndarray, m_ig: np.ndarray, d_ignored: np.ndarray, d_k: np.ndarray, counted: np.ndarray,
                n_gt: np.ndarray, n_img: int) -> dict[str, np.ndarray]:
    """Hits, TP, FP, hit rate, precision and FP/image per class and hit-rate threshold.

    Args:
        matched, m_ig, d_ignored: ``(T, N)`` per threshold and prediction: matched, matched to
            an ignored box, neither TP nor FP.
        d_k: ``(N,)`` class index of each prediction.
        counted: ``(N,)`` predictions at or above ``min_score``.
        n_gt: ``(K,)`` regular ground-truth boxes per class.
        n_img: Evaluated images.
    """
    n_cat, n_thr = len(n_gt), matched.shape[0]
    hits = np.zeros((n_cat, n_thr), dtype=np.int64)
    tp = np.zeros((n_cat, n_thr), dtype=np.int64)
    fp = np.zeros((n_cat, n_thr), dtype=np.int64)
    for j in range(n_thr):
        is_tp = matched[j] & ~m_ig[j] & counted
        is_fp = ~matched[j] & ~d_ignored[j] & counted
        tp[:, j] = np.bincount(d_k[is_tp], minlength=n_cat)
        fp[:, j] = np.bincount(d_k[is_fp], minlength=n_cat)
        # one-to-one: each real GT is matched at most once, so hits == TP per class
        hits[:, j] = tp[:, j]
    with np.errstate(divide="ignore", invalid="ignore"):
        hr_pc = np.where(n_gt[:, None] > 0, hits / np.maximum(n_gt, 1)[:, None], np.nan)
        has_gt = n_gt > 0
        hit_rate = hr_pc[has_gt].mean(axis=0) if has_gt.any() else np.full(n_thr, np.nan)
        hit_micro = hits.sum(0) / n_gt.sum() if n_gt.sum() else np.full(n_thr, np.nan)
        denom = tp + fp
        prec_pc = np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)
        tot = denom.sum(0)
        precision = np.where(tot > 0, tp.sum(0) / np.maximum(tot, 1), np.nan)
    fp_img = fp.sum(0) / n_img if n_img else np.full(n_thr, np.nan)
    return {"hits": hits, "tp": tp, "fp": fp, "hit_rate": hit_rate, "hit_rate_micro": np.asarray(hit_micro, dtype=np.float64),
            "hit_rate_per_class": hr_pc, "precision": precision, "precision_per_class": prec_pc,
            "fp_per_image": np.asarray(fp_img, dtype=np.float64)}


def _warnings(n_unscored: int, n_pred: int, g_annid: np.ndarray, n_gt: np.ndarray) -> list[str]:
    """What a reader of the numbers must know."""
    out = []
    if n_unscored:
        out.append(f"{n_unscored} of {n_pred} predictions have no score: ranked as score 1.0 in file order, "
                   "so mAP reflects a single operating point")
    if (g_annid == 0).any():
        out.append("the ground truth has an annotation with id 0: like pycocotools, mAP counts a prediction matched "
                   "to it as a false positive (hit rate does not); renumber annotation ids from 1")
    if not n_gt.sum():
        out.append("the ground truth has no (non-crowd) boxes in the evaluated classes; hit rate and mAP are undefined")
    return out


def _coco_accumulate(
    matched: np.ndarray, ignored: np.ndarray, match: np.ndarray, g_annid: np.ndarray, in_top: np.ndarray,
    d_k: np.ndarray, d_img: np.ndarray, d_file: np.ndarray, score: np.ndarray, n_gt: np.ndarray, n_cat: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pycocotools ``accumulate`` for area "all" and one ``maxDets``.

    Returns:
        ``(precision (T, R, K), ap50 (K,), ap50_95 (K,))``; precision -1 for classes without
        ground truth, per-class APs NaN there.
    """
    n_t, n_r = matched.shape[0], len(COCO_RECALL_THRESHOLDS)
    prec = -np.ones((n_t, n_r, n_cat))
    # pycocotools stores the matched GT's *id* in dtm and tests it for truth: a match to
    # annotation id 0 therefore counts as unmatched there. Reproduce it for identical numbers.
    dtm = matched.copy()
    if len(g_annid) and (g_annid == 0).any():
        dtm &= ~((match >= 0) & (g_annid[np.maximum(match, 0)] == 0))
    # Concatenate images in id order, predictions by score desc (file order on ties), then a
    # stable sort by score: equivalent to one lexsort on (class, -score, image, file order).
    sel = np.flatnonzero(in_top)
    order = sel[np.lexsort((d_file[sel], d_img[sel], -score[sel], d_k[sel]))]
    k_sorted = d_k[order]
    bounds = np.searchsorted(k_sorted, np.arange(n_cat + 1), side="left")
    eps = np.spacing(1)
    for k in range(n_cat):
        npig = int(n_gt[k])
        if npig == 0:
            continue
        idx = order[bounds[k]:bounds[k + 1]]
        if len(idx) == 0:
            prec[:, :, k] = 0.0
            continue
        m, ig = dtm[:, idx], ignored[:, idx]
        tps = m & ~ig
        fps = ~m & ~ig
        tp_sum = np.cumsum(tps, axis=1).astype(np.float64)
        fp_sum = np.cumsum(fps, axis=1).astype(np.float64)
        rc = tp_sum / npig
        pr = tp_sum / (fp_sum + tp_sum + eps)
        pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision envelope
        nd = pr.shape[1]
        for t in range(n_t):
            inds = np.searchsorted(rc[t], COCO_RECALL_THRESHOLDS, side="left")
            ok = inds < nd
            prec[t, ok, k] = pr[t, inds[ok]]
            prec[t, ~ok, k] = 0.0
    has = n_gt > 0
    ap50 = np.where(has, prec[0].mean(axis=0), np.nan)
    ap = np.where(has, prec.mean(axis=(0, 1)), np.nan)
    return prec, ap50, ap
