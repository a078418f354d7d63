"""Box formats, conversions and overlap: the one place box arithmetic lives (NumPy only).

Two formats, both in absolute pixels unless a caller says otherwise (any consistent unit
works, e.g. normalised 0-1 on both sides):

- ``xyxy``: ``(x1, y1, x2, y2)``, corners; ``x2 = x1 + w`` (the right edge is exclusive
  for pixel masks, see :func:`tight_box`). Detections, the tracker and the synthesis
  backends use it.
- ``xywh``: COCO ``(x, y, w, h)``, top-left corner and size. Annotation and results files
  use it.

Batched functions take ``(N, 4)`` array-likes (a single box is reshaped to ``(1, 4)``) and
return ``float64`` arrays. There are two IoU implementations on purpose:
:func:`iou_xyxy` is the general one (degenerate boxes have zero area);
:func:`iou_xywh` / :func:`paired_iou_xywh` repeat pycocotools' ``bbIou`` operation by
operation, so that mAP is bit-identical to pycocotools (and support crowd boxes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def as_boxes(boxes: Any) -> np.ndarray:
    """``boxes`` as a ``(N, 4)`` float64 array (a single box becomes ``(1, 4)``)."""
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def xywh_to_xyxy(boxes: Any) -> np.ndarray:
    """Convert ``(N, 4)`` COCO ``x, y, w, h`` boxes to ``x1, y1, x2, y2`` (same units)."""
    b = as_boxes(boxes)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def xyxy_to_xywh(boxes: Any) -> np.ndarray:
    """Convert ``(N, 4)`` ``x1, y1, x2, y2`` boxes to COCO ``x, y, w, h`` (same units)."""
    b = as_boxes(boxes)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Areas of ``(..., 4)`` ``xyxy`` boxes; an inverted side counts as 0.

    Returns:
        An array of shape ``boxes.shape[:-1]`` (the input's dtype).
    """
    b = np.asarray(boxes)
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def intersection_xyxy(a: Any, b: Any) -> np.ndarray:
    """Intersection areas of every pair of ``xyxy`` boxes.

    Args:
        a: ``(N, 4)`` boxes ``x1, y1, x2, y2``.
        b: ``(M, 4)`` boxes, same convention.

    Returns:
        ``(N, M)`` float64 areas (0 where boxes do not overlap).
    """
    a, b = as_boxes(a), as_boxes(b)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    return wh[..., 0] * wh[..., 1]


def iou_xyxy(a: Any, b: Any) -> np.ndarray:
    """IoU matrix of ``x1, y1, x2, y2`` boxes.

    Args:
        a: ``(N, 4)`` boxes ``x1, y1, x2, y2`` (any consistent units).
        b: ``(M, 4)`` boxes, same convention.

    Returns:
        ``(N, M)`` float64 IoUs in [0, 1]; 0 for non-overlapping or degenerate boxes.
    """
    a, b = as_boxes(a), as_boxes(b)
    inter = intersection_xyxy(a, b)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two single ``xyxy`` boxes (see :func:`iou_xyxy`)."""
    return float(iou_xyxy(a, b)[0, 0])


def paired_iou_xywh(d: np.ndarray, g: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
    """IoU of matching rows ``d[i]`` / ``g[i]`` of COCO ``xywh`` boxes, exactly as pycocotools.

    The arithmetic is pycocotools' ``bbIou`` operation by operation, so results are
    bit-identical; for crowd ground truth the union is the prediction's own area.

    Args:
        d: ``(P, 4)`` float64 predictions ``x, y, w, h``.
        g: ``(P, 4)`` float64 ground truth, paired row by row with ``d``.
        crowd: ``(P,)`` bool; where true the union is ``d``'s area (COCO crowd rule).

    Returns:
        ``(P,)`` float64 IoUs in [0, 1].
    """
    w = np.minimum(d[:, 2] + d[:, 0], g[:, 2] + g[:, 0]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 3] + d[:, 1], g[:, 3] + g[:, 1]) - np.maximum(d[:, 1], g[:, 1])
    da = d[:, 2] * d[:, 3]
    ga = g[:, 2] * g[:, 3]
    inter = w * h
    union = (da + ga) - inter
    if crowd is not None:
        union = np.where(crowd, da, union)
    ok = (w > 0) & (h > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)


def iou_xywh(dt: Any, gt: Any, iscrowd: Any = None) -> np.ndarray:
    """IoU matrix of COCO ``xywh`` boxes, exactly as ``pycocotools.mask.iou``.

    Args:
        dt: ``(N, 4)`` predictions ``x, y, w, h`` (absolute or normalised, same as ``gt``).
        gt: ``(M, 4)`` ground truth ``x, y, w, h``.
        iscrowd: ``(M,)`` bools; where true the union is the prediction's area (COCO crowd rule).

    Returns:
        ``(N, M)`` float64 IoUs in [0, 1]; 0 where boxes do not overlap.
    """
    d, g = as_boxes(dt), as_boxes(gt)
    n, m = len(d), len(g)
    crowd = None if iscrowd is None else np.broadcast_to(np.asarray(iscrowd, dtype=bool).reshape(1, -1), (n, m)).reshape(-1)
    return paired_iou_xywh(np.repeat(d, m, axis=0), np.tile(g, (n, 1)), crowd).reshape(n, m)


def tight_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """The tight ``xyxy`` pixel box around the True pixels of a ``(H, W)`` bool mask.

    ``x2``/``y2`` are exclusive (one past the last True column/row), so ``x2 - x1`` is the
    width in pixels. None when the mask is empty.
    """
    ys = np.flatnonzero(mask.any(axis=1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(mask.any(axis=0))
    return float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1)
