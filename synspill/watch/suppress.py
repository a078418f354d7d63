"""False-alarm suppression: drop detections where a class is known to be a false alarm.

A suppression (a row of the event log's ``suppressions`` table, made by
:meth:`~synspill.watch.store.EventStore.mark_false_alarm`) holds a camera, a class, the
false alarm's box as normalised 0-1 ``xyxy`` of the frame and a ``tolerance``. Its
*region* on a frame of ``W x H`` pixels is that box scaled to the frame and widened by
``tolerance`` times its width (height) on the left and right (top and bottom)::

    region = (x1 - t*bw, y1 - t*bh, x2 + t*bw, y2 + t*bh)   (bw, bh: the box's size)

A detection of the same class on the same camera is suppressed when at least
:data:`MIN_COVER` (80 %) of its own area lies in the region:
``area(det ∩ region) / area(det) >= 0.8``. So the same stain seen again a little shifted
or larger stays quiet, while a real spill that grows well beyond the region (or one of
another class, or elsewhere) is reported. Pure NumPy; no I/O except the periodic reload
in :class:`SuppressionCache`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from synspill.boxes import box_area, intersection_xyxy

#: Share of a detection's area that must lie inside a region for it to be suppressed.
MIN_COVER = 0.8
#: Seconds between checks for suppressions added or removed by another process.
RELOAD_S = 2.0


@dataclass(frozen=True)
class Regions:
    """The suppressions of one camera, as arrays.

    Attributes:
        class_id: ``(M,)`` int64 taxonomy ids.
        box: ``(M, 4)`` float64 normalised 0-1 ``xyxy`` of the frame.
        tolerance: ``(M,)`` float64 margins, as fractions of the box width/height.
    """

    class_id: np.ndarray
    box: np.ndarray
    tolerance: np.ndarray

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]]) -> Regions:
        """From :meth:`EventStore.suppressions` rows (``class_id``, ``x1``..``y2``, ``tolerance``)."""
        return cls(np.array([int(r["class_id"]) for r in rows], np.int64).reshape(-1),
                   np.array([[r["x1"], r["y1"], r["x2"], r["y2"]] for r in rows], np.float64).reshape(-1, 4),
                   np.array([float(r["tolerance"]) for r in rows], np.float64).reshape(-1))

    def __len__(self) -> int:
        return len(self.class_id)

    def absolute(self, frame_wh: tuple[int, int]) -> np.ndarray:
        """The regions in absolute pixels of a ``(width, height)`` frame: ``(M, 4)`` ``xyxy``, tolerance applied."""
        w, h = frame_wh
        b = self.box * np.array([w, h, w, h], np.float64)
        mx = self.tolerance * (b[:, 2] - b[:, 0])
        my = self.tolerance * (b[:, 3] - b[:, 1])
        return np.stack([b[:, 0] - mx, b[:, 1] - my, b[:, 2] + mx, b[:, 3] + my], axis=1)

    def mask(self, xyxy: np.ndarray, class_id: np.ndarray, frame_wh: tuple[int, int],
             min_cover: float = MIN_COVER) -> np.ndarray:
        """Which detections are suppressed.

        Args:
            xyxy: ``(N, 4)`` absolute ``xyxy`` pixel boxes.
            class_id: ``(N,)`` taxonomy ids.
            frame_wh: The frame's ``(width, height)``.
            min_cover: Share of a detection's area that must lie in a region of its class.

        Returns:
            ``(N,)`` bool: True = drop (a zero-area box is never dropped).
        """
        det = np.asarray(xyxy, np.float64).reshape(-1, 4)
        if not len(det) or not len(self):
            return np.zeros(len(det), bool)
        inter = intersection_xyxy(det, self.absolute(frame_wh))  # (N, M)
        area = box_area(det)
        same = np.asarray(class_id).reshape(-1)[:, None] == self.class_id[None, :]
        cover = np.where(same & (area[:, None] > 0), inter / np.maximum(area[:, None], 1e-12), 0.0)
        return np.asarray((cover >= min_cover).any(axis=1), bool)


class SuppressionCache:
    """Every camera's :class:`Regions`, reloaded from the event log when they change.

    At most every ``interval`` seconds it asks the log for ``(max id, count)`` of the
    suppressions (one indexed aggregate over a small table) and re-reads them only when
    that changed, so suppressions added or removed by another process (``synspill events
    false-alarm``, a dashboard) take effect within ``interval`` seconds.

    Args:
        interval: Seconds between checks.
        clock: Monotonic time source (tests pass a fake one).
    """

    def __init__(self, interval: float = RELOAD_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.clock = interval, clock
        self.by_camera: dict[str, Regions] = {}
        self._version: tuple[int, int] | None = None
        self._checked = -float("inf")
        self.reloads = 0

    def get(self, store: Any, camera: str) -> Regions | None:
        """The camera's regions (None: none), after a reload check when ``interval`` has passed.

        Args:
            store: An :class:`~synspill.watch.store.EventStore`.
            camera: Camera name.
        """
        now = self.clock()
        if now - self._checked >= self.interval:
            self._checked = now
            version = store.suppressions_version()
            if version != self._version:
                self._version = version
                rows: dict[str, list[dict[str, Any]]] = {}
                for r in store.suppressions():
                    rows.setdefault(r["camera"], []).append(r)
                self.by_camera = {cam: Regions.from_rows(rs) for cam, rs in rows.items()}
                self.reloads += 1
        return self.by_camera.get(camera)
