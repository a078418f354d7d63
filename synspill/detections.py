"""What every model returns, and the COCO results format that ``eval`` reads.

Every predictor (YOLO, RF-DETR, the VLM) returns one :class:`Detections` per image, in
absolute ``xyxy`` pixels of the *original* image and taxonomy category ids (1-8), so
``predict``, ``eval`` and ``watch`` treat every model the same. NumPy only.

A results file ``preds.json`` has a sidecar ``preds.meta.json`` (:func:`sidecar_path`):
what made it (model, backend, parse drops ...), written after the results, so a sidecar
marks a finished file. Files written before this name settled have ``preds.json.meta.json``;
:func:`find_sidecar` still finds those.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from synspill.errors import DatasetError
from synspill.io import write_json


@dataclass
class Detections:
    """Boxes found in one image.

    Attributes:
        xyxy: ``(N, 4)`` float32, absolute pixel ``x1, y1, x2, y2`` in the original image.
        class_id: ``(N,)`` int64 taxonomy category ids (1-8).
        score: ``(N,)`` float32 confidences in [0, 1]; NaN where a model gives none.
        meta: Per-image extras (e.g. the VLM's raw answer and parse-drop counts).
    """

    xyxy: np.ndarray
    class_id: np.ndarray
    score: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        self.score = np.asarray(self.score, dtype=np.float32).reshape(-1)
        if not (len(self.xyxy) == len(self.class_id) == len(self.score)):
            raise ValueError(f"Detections: {len(self.xyxy)} boxes, {len(self.class_id)} classes, {len(self.score)} scores")

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0))

    def __len__(self) -> int:
        return len(self.xyxy)

    def filter(self, keep: np.ndarray) -> Detections:
        """A copy with only the rows where ``keep`` (bool mask or indices) holds."""
        return Detections(self.xyxy[keep], self.class_id[keep], self.score[keep], dict(self.meta))

    def to_results(self, image_id: int) -> list[dict[str, Any]]:
        """COCO results records (``bbox`` as ``xywh`` absolute); NaN scores are omitted."""
        out = []
        for (x1, y1, x2, y2), c, s in zip(self.xyxy.tolist(), self.class_id.tolist(), self.score.tolist(), strict=True):
            r: dict[str, Any] = {"image_id": int(image_id), "category_id": int(c),
                                 "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]}
            if not math.isnan(s):
                r["score"] = round(float(s), 5)
            out.append(r)
        return out


@runtime_checkable
class Predictor(Protocol):
    """Anything that turns RGB images into :class:`Detections` (YOLO, RF-DETR, VLM)."""

    name: str

    def predict(self, images: list[np.ndarray]) -> list[Detections]:
        """Detect spills.

        Args:
            images: RGB ``uint8`` arrays ``(H, W, 3)``, any sizes.

        Returns:
            One :class:`Detections` per image, original-image ``xyxy`` coordinates.
        """
        ...


def write_results(path: str | Path, records: list[dict[str, Any]]) -> Path:
    """Write COCO results records to ``path`` atomically."""
    write_json(path, records)
    return Path(path)


def sidecar_path(results: str | Path) -> Path:
    """Where the sidecar of a results file goes: ``preds.json`` -> ``preds.meta.json``."""
    p = Path(results)
    return p.with_name(p.stem + ".meta.json")


def write_sidecar(results: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``meta`` as the sidecar of ``results`` (atomically); returns its path."""
    path = sidecar_path(results)
    write_json(path, meta, indent=2)
    return path


def find_sidecar(results: str | Path) -> Path | None:
    """The sidecar of a results file: ``preds.meta.json``, else the older ``preds.json.meta.json``."""
    p = Path(results)
    for cand in (sidecar_path(p), p.with_name(p.name + ".meta.json")):
        if cand.is_file() and cand != p:
            return cand
    return None


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """Read a sidecar; it must be a JSON object.

    Raises:
        DatasetError: Malformed JSON or not an object (names the file).
    """
    from synspill.coco.dataset import read_json

    d = read_json(path, "prediction metadata")
    if not isinstance(d, dict):
        raise DatasetError(f"{path}: top level is {type(d).__name__}; a prediction .meta.json is a JSON object, e.g. {{\"model\": ...}}")
    return d


def read_results(path: str | Path, image_ids: set[int] | None = None, category_ids: set[int] | None = None) -> list[dict[str, Any]]:
    """Read and validate a COCO results file (a JSON list of detections).

    Each record needs ``image_id``, ``category_id`` and ``bbox`` (``xywh`` absolute, four
    numbers, not booleans); ``score`` is optional (VLM output often has none) and must be
    a number in [0, 1] when present. A bad score makes the file unusable (it would rank
    every other prediction wrongly); bad box *values* are for :func:`screen_results`.

    Args:
        path: The results JSON.
        image_ids: If given, every ``image_id`` must be one of these (the ground truth's).
        category_ids: If given, every ``category_id`` must be one of these.

    Raises:
        DatasetError: Naming the file, the record index and the fix.
    """
    from synspill.coco.dataset import read_json

    data = read_json(path, "results")
    if isinstance(data, dict) and "annotations" in data:
        raise DatasetError(f"{path}: this is a COCO dataset, not a results file; pass a JSON list of {{image_id, category_id, bbox, score}}")
    if not isinstance(data, list):
        raise DatasetError(f"{path}: top level is {type(data).__name__}; a COCO results file is a JSON list of detections")
    for i, r in enumerate(data):
        if not isinstance(r, dict):
            raise DatasetError(f"{path}: record #{i} is {type(r).__name__}, expected an object with image_id, category_id, bbox")
        for k in ("image_id", "category_id", "bbox"):
            if k not in r:
                raise DatasetError(f"{path}: record #{i} has no '{k}'; each detection needs image_id, category_id, bbox [x,y,w,h]")
        b = r["bbox"]
        if not isinstance(b, list) or len(b) != 4 or not all(_is_number(v) for v in b):
            raise DatasetError(f"{path}: record #{i} has bbox {b!r}; it must be 4 numbers [x, y, w, h]")
        s = r.get("score")
        if s is not None and not (_is_number(s) and 0.0 <= s <= 1.0):
            raise DatasetError(f"{path}: record #{i} has score {s!r}; scores must be numbers in [0, 1] (true/false and "
                               "strings are not scores); fix the file or leave the score out")
        if image_ids is not None and r["image_id"] not in image_ids:
            raise DatasetError(f"{path}: record #{i} has image_id {r['image_id']!r}, which is not in the ground truth; predict on the same COCO file you evaluate against")
        if category_ids is not None and r["category_id"] not in category_ids:
            raise DatasetError(f"{path}: record #{i} has category_id {r['category_id']!r}, which is not a ground-truth category {sorted(category_ids)}")
    return data


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


#: Why :func:`screen_results` drops a prediction (the keys of its counts).
DROP_NONFINITE = "non-finite coordinates"
DROP_SIZE = "non-positive width or height"
DROP_OUTSIDE = "entirely outside the image"


def screen_results(records: list[dict[str, Any]], image_sizes: Mapping[int, tuple[int, int]],
                   path: str | Path = "<predictions>") -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Leave out predictions whose box cannot be a detection, and count them per reason.

    The ground truth's boxes must have a positive size and lie in their image; a prediction
    that breaks the same rules is not evaluated (it would silently vanish from some metrics
    and not from others). Dropped: a NaN/inf coordinate (:data:`DROP_NONFINITE`), a width or
    height <= 0 (:data:`DROP_SIZE`), a box with no pixel inside its image
    (:data:`DROP_OUTSIDE`). A box that sticks out of its image is kept (detectors do that).

    Args:
        records: Records from :func:`read_results` (``bbox`` is ``xywh`` absolute pixels).
        image_sizes: ``{image_id: (width, height)}`` of the ground truth.
        path: The results file, for the error message.

    Returns:
        ``(kept records, {reason: count})``.

    Raises:
        DatasetError: Every record of a non-empty file is dropped (the file is unusable).
    """
    kept: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    for r in records:
        x, y, w, h = (float(v) for v in r["bbox"])
        size = image_sizes.get(r["image_id"])
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            dropped[DROP_NONFINITE] += 1
        elif w <= 0 or h <= 0:
            dropped[DROP_SIZE] += 1
        elif size is not None and (x >= size[0] or y >= size[1] or x + w <= 0 or y + h <= 0):
            dropped[DROP_OUTSIDE] += 1
        else:
            kept.append(r)
    if records and not kept:
        raise DatasetError(f"{path}: no usable prediction: {len(records)} of {len(records)} dropped ({_counts(dropped)}); "
                           "predictions are COCO [x, y, w, h] boxes in absolute pixels of the ground-truth images -- "
                           "check the box format (xyxy? normalised?) of whatever wrote the file")
    return kept, dict(dropped.most_common())


def _counts(c: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in c.items())
