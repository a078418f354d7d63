"""Test helpers: a deterministic dark-blob "detector" and a video with a growing spill.

The predictor implements :class:`synspill.detections.Predictor` by thresholding: every
connected dark region (grey < ``thresh``) of at least ``min_area`` pixels is a spill
box; darker regions score higher. Good enough to drive the watch logic without a model.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from synspill.detections import Detections


class DarkBlobPredictor:
    """Boxes around dark blobs (absolute ``xyxy``), class ``class_id``."""

    name = "dark-blobs"

    def __init__(self, thresh: int = 80, min_area: int = 30, class_id: int = 1, delay: float = 0.0) -> None:
        self.thresh, self.min_area, self.class_id, self.delay = thresh, min_area, class_id, delay
        self.calls = 0

    def predict(self, images: list[np.ndarray]) -> list[Detections]:
        out = []
        for img in images:
            self.calls += 1
            if self.delay:
                time.sleep(self.delay)
            grey = img.mean(axis=2)
            mask = (grey < self.thresh).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            boxes, scores = [], []
            for i in range(1, n):
                x, y, w, h, area = stats[i]
                if area < self.min_area:
                    continue
                region = grey[y:y + h, x:x + w][mask[y:y + h, x:x + w] > 0]
                boxes.append([x, y, x + w, y + h])
                scores.append(0.5 + 0.5 * (1.0 - float(region.mean()) / self.thresh))
            out.append(Detections(np.array(boxes, np.float32).reshape(-1, 4), np.full(len(boxes), self.class_id),
                                  np.array(scores, np.float32)))
        return out


def load(cfg) -> DarkBlobPredictor:
    """``py:tests.watch.blobs:load`` factory (delay per image from $SYNSPILL_TEST_DELAY)."""
    return DarkBlobPredictor(delay=float(os.environ.get("SYNSPILL_TEST_DELAY", "0")))


def spill_frame(i: int, fps: float, size: tuple[int, int] = (320, 240), appear: float = 2.0, grow_until: float = 9.0,
                r0: float = 6.0, r1: float = 60.0, noise_frames: tuple[int, ...] = (10,), gone_after: float | None = None,
                centre: tuple[int, int] = (200, 150)) -> np.ndarray:
    """Frame ``i`` (BGR): textured floor, a dark spill growing from ``r0`` to ``r1`` px
    radius between ``appear`` and ``grow_until`` seconds, and a dark square on the
    ``noise_frames`` only."""
    w, h = size
    rng = np.random.default_rng(0)
    img = (170 + rng.integers(-15, 16, (h, w, 1))).repeat(3, axis=2).astype(np.uint8)
    t = i / fps
    if t >= appear and (gone_after is None or t < gone_after):
        r = r0 + (r1 - r0) * min(1.0, (t - appear) / max(grow_until - appear, 1e-6))
        cv2.ellipse(img, centre, (int(r * 1.3), int(r)), 0, 0, 360, (25, 30, 35), -1)
    if i in noise_frames:
        cv2.rectangle(img, (30, 30), (60, 60), (20, 20, 20), -1)
    return img


def make_spill_video(path: Path, seconds: float = 12.0, fps: float = 10.0, **kw) -> Path:
    """Write an MJPEG ``.avi`` made of :func:`spill_frame` frames."""
    size = kw.get("size", (320, 240))
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert w.isOpened(), "cv2.VideoWriter cannot write MJPG .avi"
    for i in range(int(seconds * fps)):
        w.write(spill_frame(i, fps, **kw))
    w.release()
    return path
