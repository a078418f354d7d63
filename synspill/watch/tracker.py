"""Associating detections of one spill over time (NumPy only).

Spills are stationary and grow, so association is by place, not by motion: a detection
continues a track when its box overlaps the track's (IoU >= ``iou``), mostly lies inside
it or contains it (intersection over the smaller box >= 0.6), or its centre is within
``centre`` x the larger box's side length. Matching is class-agnostic (models flicker
between e.g. ``oil-spill`` and ``floor-stain`` on one patch); a track's class is the one
with the highest summed confidence. Extra detections that fall on an already matched
track in the same sample (a spill split in two boxes) are merged into it.

A track is *confirmed* when it was seen in ``k`` of its last ``n`` samples; an
unconfirmed track is dropped after ``n - k + 1`` consecutive misses (it can no longer
reach ``k`` sooner than a fresh one). Confirmed tracks are closed by the caller
(:class:`~synspill.watch.alerts.EventEngine`) after a time unseen.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from synspill.boxes import as_boxes, box_area, intersection_xyxy, iou_xyxy


def pair_stats(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU, intersection-over-smaller and normalised centre distance of all box pairs.

    Args:
        a: ``(N, 4)`` absolute ``xyxy``.
        b: ``(M, 4)`` absolute ``xyxy``.

    Returns:
        Three ``(N, M)`` arrays: IoU, intersection / min(area), and centre distance
        divided by the larger box's mean side ``sqrt(max(area))``.
    """
    a, b = as_boxes(a), as_boxes(b)
    aa, ab = box_area(a)[:, None], box_area(b)[None, :]
    ios = intersection_xyxy(a, b) / np.maximum(np.minimum(aa, ab), 1e-9)
    ca = (a[:, None, :2] + a[:, None, 2:]) / 2
    cb = (b[None, :, :2] + b[None, :, 2:]) / 2
    dist = np.linalg.norm(ca - cb, axis=-1) / np.maximum(np.sqrt(np.maximum(aa, ab)), 1e-9)
    return iou_xyxy(a, b), ios, dist


@dataclass
class Track:
    """One spill followed over samples. ``box`` is absolute ``xyxy`` (latest sighting)."""

    id: int
    box: np.ndarray
    first_seen: float
    last_seen: float
    hits: deque
    last_conf: float
    max_conf: float
    class_votes: dict[int, float] = field(default_factory=dict)
    history: deque = field(default_factory=deque)  # (t, area) of sightings
    confirmed: bool = False
    hit_now: bool = False
    misses: int = 0
    growth_window: float = 60.0

    @property
    def class_id(self) -> int:
        return max(self.class_votes.items(), key=lambda kv: (kv[1], -kv[0]))[0]

    @property
    def area(self) -> float:
        return float(box_area(self.box))

    def growth_per_min(self) -> float:
        """Relative area change per minute over the growth window (1.0 = doubling/min).

        Uses the sightings of the last ``growth_window`` seconds; 0 with less than 1 s
        of history.
        """
        if len(self.history) < 2:
            return 0.0
        t0, a0 = self.history[0]
        t1, a1 = self.history[-1]
        if t1 - t0 < 1.0 or a0 <= 0:
            return 0.0
        return float((a1 - a0) / a0 / ((t1 - t0) / 60.0))


class SpillTracker:
    """Greedy place-based association with k-of-n confirmation.

    Args:
        k, n: Confirmation rule (seen in ``k`` of the last ``n`` samples).
        iou: IoU that associates a detection with a track.
        centre: Centre distance (in units of the larger box's side) that associates.
        contain: Intersection over the smaller box that associates.
        growth_window: Seconds of (time, area) history kept for the growth rate.
    """

    def __init__(self, k: int = 3, n: int = 5, iou: float = 0.3, centre: float = 0.5,
                 contain: float = 0.6, growth_window: float = 60.0) -> None:
        self.k, self.n = k, n
        self.iou, self.centre, self.contain = iou, centre, contain
        self.growth_window = growth_window
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, xyxy: np.ndarray, score: np.ndarray, class_id: np.ndarray, t: float) -> list[Track]:
        """Associate one sample's detections (already thresholded) with the tracks.

        Args:
            xyxy: ``(N, 4)`` absolute ``xyxy``.
            score: ``(N,)`` confidences.
            class_id: ``(N,)`` taxonomy ids.
            t: Sample time (seconds).

        Returns:
            The tracks after the update (``hit_now`` tells which were seen).
        """
        xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        score = np.asarray(score, np.float32).reshape(-1)
        class_id = np.asarray(class_id, np.int64).reshape(-1)
        for tr in self.tracks:
            tr.hit_now = False
        assigned: dict[int, list[int]] = {}  # track index -> detection indices
        unmatched = list(range(len(xyxy)))
        if self.tracks and len(xyxy):
            tb = np.stack([tr.box for tr in self.tracks])
            iou, ios, dist = pair_stats(tb, xyxy)
            ok = (iou >= self.iou) | (ios >= self.contain) | (dist <= self.centre)
            sim = np.where(ok, np.maximum(iou, 0.5 * ios) - 0.01 * dist, -np.inf)
            # confirmed tracks first: a real spill keeps its detection over a new candidate
            sim = sim + np.array([[1.0 if tr.confirmed else 0.0] for tr in self.tracks]) * np.isfinite(sim)
            used_t: set[int] = set()
            used_d: set[int] = set()
            for flat in np.argsort(-sim, axis=None, kind="stable"):
                ti, di = np.unravel_index(flat, sim.shape)
                if not np.isfinite(sim[ti, di]):
                    break
                if ti in used_t or di in used_d:
                    continue
                used_t.add(int(ti))
                used_d.add(int(di))
                assigned[int(ti)] = [int(di)]
            # leftovers lying on a matched track are parts of the same spill
            for di in range(len(xyxy)):
                if di in used_d:
                    continue
                cands = [ti for ti in assigned if ok[ti, di]]
                if cands:
                    best = max(cands, key=lambda ti: sim[ti, di])
                    assigned[best].append(di)
                    used_d.add(di)
            unmatched = [d for d in range(len(xyxy)) if d not in used_d]
        for ti, dets in assigned.items():
            self._hit(self.tracks[ti], xyxy[dets], score[dets], class_id[dets], t)
        for ti, tr in enumerate(self.tracks):
            if ti not in assigned:
                tr.hits.append(False)
                tr.misses += 1
        self.tracks = [tr for tr in self.tracks if tr.confirmed or tr.misses < self.n - self.k + 1]
        for di in unmatched:
            tr = Track(id=self._next_id, box=xyxy[di].copy(), first_seen=t, last_seen=t,
                       hits=deque(maxlen=self.n), last_conf=float(score[di]), max_conf=float(score[di]),
                       growth_window=self.growth_window)
            self._next_id += 1
            self._hit(tr, xyxy[di:di + 1], score[di:di + 1], class_id[di:di + 1], t)
            self.tracks.append(tr)
        return self.tracks

    def _hit(self, tr: Track, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, t: float) -> None:
        box = boxes[0].copy() if len(boxes) == 1 else np.array(
            [boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()], np.float32)
        tr.box = box
        tr.last_seen = t
        tr.last_conf = float(scores.max())
        tr.max_conf = max(tr.max_conf, tr.last_conf)
        for c, s in zip(classes.tolist(), scores.tolist(), strict=True):
            tr.class_votes[int(c)] = tr.class_votes.get(int(c), 0.0) + float(s)
        tr.hits.append(True)
        tr.hit_now = True
        tr.misses = 0
        tr.history.append((t, float(box_area(box))))
        while tr.history and t - tr.history[0][0] > self.growth_window:
            tr.history.popleft()
        if not tr.confirmed and sum(tr.hits) >= self.k:
            tr.confirmed = True

    def drop(self, track_id: int) -> None:
        """Forget a track (its event was closed)."""
        self.tracks = [tr for tr in self.tracks if tr.id != track_id]
