"""The real-photo check: how well a model trained on synthetic data finds spills in real photos.

synspill ships the valid and test splits of a small CC BY 4.0 set of real wet-floor photos
(``synspill/assets/wet-floor``, 32 photos; see its ``SOURCE.md``). They are never trained
on. :func:`real_photo_check` predicts on them and scores class-agnostically (a puddle
found under any spill class counts: the set has one class and a deployment alerts on any
spill), with class-agnostic NMS so that one spill is one box, and reports mAP@50 and hit
rate at IoU 0.5 with the sample size and a 95 % bootstrap interval over photos
(:mod:`synspill.bootstrap`: how far the score could move on other photos like these).

Synthetic test splits say how well a model learnt the renderer; this says something about
cameras. It is a small set of web photos: read it with its sample size, and judge a
model on your own cameras' pictures (``synspill eval --agnostic``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The shipped real sets: name -> folder (YOLO layout) inside the package.
SETS = ("wet-floor-valid", "wet-floor-test")
LABEL_MAP = {"wet-floor": "water-leak"}


@dataclass
class RealScore:
    """One real set's class-agnostic scores.

    Attributes:
        name: Set name.
        map50: mAP@50 (COCO, class-agnostic).
        hit_rate50: Share of ground-truth boxes hit by a prediction with IoU >= 0.5 (scores >= ``min_score``).
        precision50: Precision at IoU 0.5 among predictions scoring >= ``min_score``.
        n_images: Photos.
        n_boxes: Ground-truth boxes.
        min_score: Score floor of hit rate and precision (mAP uses every prediction).
        map50_ci: 95 % percentile bootstrap interval of mAP@50 over photos, ``[low, high]``.
        hit_rate50_ci: The same for the hit rate.
    """

    name: str
    map50: float
    hit_rate50: float
    precision50: float
    n_images: int
    n_boxes: int
    min_score: float
    map50_ci: tuple[float, float] | None = None
    hit_rate50_ci: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def asset_dir(name: str) -> Path:
    """Folder of a shipped real set (``images/`` + ``labels/``)."""
    split = name.rsplit("-", 1)[-1]
    return Path(str(resources.files("synspill") / "assets" / "wet-floor" / split))


def real_set(name: str, cache: Path | None = None) -> Path:
    """COCO file of a shipped real set (imported once from its YOLO labels, then cached).

    Raises:
        DatasetError: The set is not shipped with this installation.
    """
    from synspill.coco.dataset import save_coco
    from synspill.coco.export import cache_dir
    from synspill.coco.importers import import_annotations
    from synspill.errors import DatasetError

    if name not in SETS:
        raise DatasetError(f"real set {name!r} is not one of {', '.join(SETS)}")
    src = asset_dir(name)
    if not (src / "labels").is_dir():
        raise DatasetError(f"{src}: the real-photo set is missing from this installation; reinstall synspill")
    import hashlib

    digest = hashlib.sha256()
    for p in sorted((src / "labels").glob("*.txt")):
        digest.update(p.name.encode() + p.read_bytes())
    out = (cache or cache_dir()) / "real" / f"{name}-{digest.hexdigest()[:12]}.json"
    if not out.is_file():
        res = import_annotations([src / "labels"], fmt="yolo", images=src / "images", label_map=LABEL_MAP)
        if not res.dataset.annotations:
            raise DatasetError(f"{src}: no boxes imported from the real-photo set; reinstall synspill")
        out.parent.mkdir(parents=True, exist_ok=True)
        save_coco(res.dataset, out)
    return out


def real_photo_check(model: str, out_dir: str | Path, device: str = "auto", imgsz: int | None = None,
                     sets: tuple[str, ...] = SETS, min_score: float = 0.25, n_boot: int = 1000,
                     on_item: Callable[..., None] | None = None) -> list[RealScore]:
    """Predict with ``model`` on the shipped real photos and score it class-agnostically.

    Args:
        model: A run folder or weights (anything ``synspill predict --model`` takes).
        out_dir: Where prediction files go (``<set>.preds.json``).
        device: Inference device.
        imgsz: Inference size (default: the run's training size).
        sets: Which real sets.
        min_score: Score floor for hit rate and precision (the deployed threshold).
        n_boot: Bootstrap draws of the 95 % intervals (0: none).
        on_item: Progress callback, once per photo.

    Returns:
        One :class:`RealScore` per set.
    """
    from synspill.evaluation import evaluate_files
    from synspill.inference import predict_to_results
    from synspill.predictors import PredictorConfig, load_predictor

    predictor = load_predictor(PredictorConfig(model=str(model), device=device, conf=0.001, imgsz=imgsz,
                                               options={"agnostic_nms": True}))
    out = Path(out_dir)
    scores = []
    for name in sets:
        gt = real_set(name)
        pred = out / f"{name}.preds.json"
        predict_to_results(predictor, gt, pred, batch=8, model=str(model), on_item=on_item)
        rep = evaluate_files(gt, [pred], iou_thresholds="0.5", min_score=min_score, agnostic=True, n_boot=n_boot)
        m, ci = rep.results[0].metrics, rep.results[0].ci
        map_ci, hit_ci = ((ci[k].low, ci[k].high) if k in ci else None for k in ("map50", "hit_rate"))
        scores.append(RealScore(name, float(m.map50), float(m.hit_rate[0]), float(m.precision[0]), rep.n_images,
                                rep.n_gt, min_score, map_ci, hit_ci))
    return scores
