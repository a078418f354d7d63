"""The newest frame and detections of each camera, for the dashboard's grid.

The watch loop hands every processed sample to :meth:`LiveFrames.put`, which only keeps a
reference (no copy, no encoding: the loop pays nothing); the dashboard encodes a JPEG
with the detections drawn when a browser asks for it (:meth:`LiveFrames.jpeg`, cached per
sample). Every ``interval`` seconds per camera :meth:`LiveFrames.put` also reports that
the camera's status and frame should go to the event log (``cameras`` table, frame file
under ``<snapshots>/live/``), so ``synspill ui --db`` on another machine sees them; the
frame file is drawn, encoded and written by :class:`LiveFileWriter`'s thread, off the loop.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synspill.detections import Detections

log = logging.getLogger(__name__)


@dataclass
class LiveSample:
    """One camera's newest processed sample."""

    image: np.ndarray  # RGB uint8
    dets: Detections  # the sightings (at or above the camera's threshold)
    t: float
    seq: int
    jpeg: bytes | None = field(default=None, repr=False)


def draw(image: np.ndarray, dets: Detections, max_side: int = 960) -> np.ndarray:
    """BGR copy of an RGB frame with its detections drawn (downscaled to ``max_side``)."""
    import cv2

    from synspill import taxonomy

    img = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    h, w = img.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s < 1.0:
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    for (x1, y1, x2, y2), score, c in zip(dets.xyxy.tolist(), dets.score.tolist(), dets.class_id.tolist(), strict=True):
        label = taxonomy.BY_ID[c].name if c in taxonomy.BY_ID else str(c)
        p1, p2 = (round(x1 * s), round(y1 * s)), (round(x2 * s), round(y2 * s))
        cv2.rectangle(img, p1, p2, (0, 0, 255), 2)
        cv2.putText(img, f"{label} {score:.2f}", (p1[0], max(12, p1[1] - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 255), 1, cv2.LINE_AA)
    return img


def encode_jpeg(image_bgr: np.ndarray, quality: int = 80) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


class LiveFrames:
    """Thread-safe newest sample per camera (written by the loop, read by the web server).

    Args:
        interval: Seconds between "persist now" answers of :meth:`put` per camera.
    """

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._samples: dict[str, LiveSample] = {}
        self._persisted: dict[str, float] = {}
        self._seq = 0

    def put(self, camera: str, image: np.ndarray, dets: Detections, t: float) -> bool:
        """Keep a camera's newest sample; True when it is time to persist it (every ``interval`` s)."""
        with self._lock:
            self._seq += 1
            self._samples[camera] = LiveSample(image, dets, t, self._seq)
            now = time.monotonic()
            if now - self._persisted.get(camera, -1e9) >= self.interval:
                self._persisted[camera] = now
                return True
            return False

    def cameras(self) -> list[str]:
        with self._lock:
            return sorted(self._samples)

    def info(self, camera: str) -> dict[str, Any] | None:
        with self._lock:
            s = self._samples.get(camera)
            return None if s is None else {"t": s.t, "seq": s.seq, "detections": len(s.dets)}

    def jpeg(self, camera: str) -> bytes | None:
        """The newest sample as an annotated JPEG (encoded once per sample, here in the caller's thread)."""
        with self._lock:
            s = self._samples.get(camera)
        if s is None:
            return None
        if s.jpeg is None:
            s.jpeg = encode_jpeg(draw(s.image, s.dets))
        return s.jpeg


class LiveFileWriter:
    """Writes live frames (annotated JPEGs) in a daemon thread; only the newest job per file is kept.

    The loop thread only queues a reference; drawing and encoding (OpenCV releases the GIL)
    and the atomic replace (no fsync: the file is rewritten every few seconds) happen here.
    """

    def __init__(self) -> None:
        self._jobs: dict[str, tuple[np.ndarray, Detections]] = {}
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="synspill-live-frames", daemon=True)
        self._thread.start()

    def submit(self, path: str, image: np.ndarray, dets: Detections) -> None:
        with self._cv:
            self._jobs[path] = (image, dets)
            self._cv.notify()

    def _run(self) -> None:
        from synspill.io import write_bytes

        while True:
            with self._cv:
                while not self._jobs and not self._closed:
                    self._cv.wait()
                if not self._jobs:
                    return
                path, (image, dets) = self._jobs.popitem()
            try:
                write_bytes(path, encode_jpeg(draw(image, dets)), durable=False)
            except OSError as e:
                log.warning("live frame %s not written: %s", path, e)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout)
