"""Per-camera baselines: a detection whose region did not change against the camera's clean
scene is not a spill event.

Each camera may keep a **reference** of its clean scene: the grey frame downscaled to
:data:`WORK_WIDTH` pixels wide (aspect kept), lightly blurred, ``float32``. A detection
whose box is *unchanged* against the reference is dropped before the tracker (and counted
as "suppressed: unchanged since baseline"): a permanent mat, a painted line or a stain the
detector fires on all day stops producing events, while a new spill still does.

**The change measure** (lighting-robust local log-ratio). With ``c = LOG_OFFSET`` grey
levels (damps the noise of very dark pixels), per working pixel::

    d = log(cur + c) - log(ref + c)

A change of illumination multiplies brightness, so it *adds a constant* to ``d``. The
local lighting change is estimated as the median of ``d`` over a **ring** around the box
(the box grown by ``RING_MARGIN`` of its size on each side, minus the box, clipped to the
frame; the frame-wide median when the ring has fewer than ``MIN_RING_PIXELS`` pixels).
The box is **changed** when the fraction of its pixels with ``|d - ring_median| > tau``
reaches ``min_changed``. Lights dimmed or brightened, day/night and any gain that is
smooth over the size of the ring shift box and ring alike and cancel; a spill that
appeared inside the box changes the interior but not the ring.

**Modes** (:class:`BaselineConfig`):

- ``off``: no reference, nothing suppressed.
- ``learn``: the reference is the per-pixel median of up to :data:`SNAPSHOTS` snapshots
  taken from **detection-free** samples (no detection at or above the camera's threshold
  left after suppression, no open event), spaced ``learn_seconds / SNAPSHOTS`` apart. It
  is inactive (suppresses nothing) until those samples span ``learn_seconds``; then it
  keeps adapting the same way (a rolling median of the last ``learn_seconds`` of clean
  samples). Samples with detections are never learned from, so a spill is not absorbed
  while it is detected; but a distractor the detector fires on from the start is never
  learned either: capture the reference instead.
- ``capture``: the reference is the per-pixel median of the first ``capture_samples``
  samples of this run, *regardless of detections* (the operator says: the scene is clean
  now, so whatever is detected on those samples is suppressed too), then kept as it is
  for the rest of the run.

The reference is saved (16-bit grey PNG + JSON, written atomically) in
``<db stem>.baselines/<camera>.png`` next to the event log; a later ``learn`` run resumes
from it, a ``capture`` run replaces it. A reference of another frame size is discarded
(with a warning) and rebuilt.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synspill import io
from synspill.errors import UsageError
from synspill.watch import BaselineMode

log = logging.getLogger(__name__)

#: Width of the working grey images (pixels); height keeps the frame's aspect.
WORK_WIDTH = 160
#: Grey levels added before the log (damps the noise of very dark pixels).
LOG_OFFSET = 8.0
#: Ring width around a box, as a fraction of the box's width / height on each side.
RING_MARGIN = 0.5
#: Fewer ring pixels than this: use the frame-wide median of ``d`` instead.
MIN_RING_PIXELS = 12
#: Snapshots in a learned reference (its per-pixel median).
SNAPSHOTS = 15
#: Least snapshots before a learned reference becomes active.
MIN_SNAPSHOTS = 3
_BLUR_SIGMA = 1.0


@dataclass(frozen=True)
class BaselineConfig:
    """A camera's baseline settings (config keys ``baseline``, ``baseline_<field>``).

    Attributes:
        mode: ``off``, ``learn`` or ``capture`` (see the module docstring).
        learn_seconds: Sample time of detection-free frames a learned reference spans.
        capture_samples: Samples whose median is the captured reference.
        threshold: ``tau``: a pixel changed when its log-ratio departs from the ring's
            median by more than this (0.15 ~ a 16 % brightness change).
        min_changed: A box changed when at least this fraction of its pixels changed.
    """

    mode: str = BaselineMode.off.value
    learn_seconds: float = 60.0
    capture_samples: int = 5
    threshold: float = 0.15
    min_changed: float = 0.2

    def __post_init__(self) -> None:
        modes = [m.value for m in BaselineMode]
        if self.mode not in modes:
            raise UsageError(f"baseline {self.mode!r} must be one of {', '.join(modes)}")
        if not 0.0 < self.learn_seconds <= 7 * 86400:
            raise UsageError(f"baseline_learn_seconds {self.learn_seconds} must be > 0 (at most a week)")
        if not 1 <= self.capture_samples <= 100:
            raise UsageError(f"baseline_capture_samples {self.capture_samples} must be in 1-100")
        if not 0.0 < self.threshold <= 5.0:
            raise UsageError(f"baseline_threshold {self.threshold} must be in (0, 5] (a log-ratio; 0.15 ~ 16 %)")
        if not 0.0 < self.min_changed <= 1.0:
            raise UsageError(f"baseline_min_changed {self.min_changed} must be in (0, 1]")


def baseline_dir(db: str | Path) -> Path:
    """The folder of a log's references: ``events.sqlite`` -> ``events.baselines``."""
    p = Path(db)
    return p.with_name(p.stem + ".baselines")


def work_image(image: np.ndarray) -> np.ndarray:
    """A frame as a working grey image.

    Args:
        image: RGB (or BGR: the grey weights differ slightly) ``uint8`` ``(H, W, 3)``, or grey ``(H, W)``.

    Returns:
        ``float32`` ``(h, WORK_WIDTH)`` in grey levels 0-255, ``h = round(H * WORK_WIDTH / W)``, blurred.
    """
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    h, w = grey.shape[:2]
    wh = (WORK_WIDTH, max(1, round(h * WORK_WIDTH / w)))
    small = cv2.resize(grey, wh, interpolation=cv2.INTER_AREA).astype(np.float32)
    return cv2.GaussianBlur(small, (0, 0), _BLUR_SIGMA)


def log_ratio(cur: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``log(cur + c) - log(ref + c)`` of two working images (``c = LOG_OFFSET``)."""
    return np.log(cur + LOG_OFFSET) - np.log(ref + LOG_OFFSET)


def changed_fraction(d: np.ndarray, box: tuple[int, int, int, int], tau: float) -> float:
    """Fraction of a box's pixels whose log-ratio departs from the local lighting change.

    Args:
        d: Log-ratio image (:func:`log_ratio`), ``(h, w)`` ``float32``.
        box: ``x0, y0, x1, y1`` in working pixels (absolute ``xyxy``, ``x1``/``y1`` exclusive).
        tau: Per-pixel threshold on ``|d - ring median|``.

    Returns:
        The fraction in [0, 1]; 1 for a box outside the image (what cannot be checked is
        never suppressed).
    """
    h, w = d.shape
    x0, y0, x1, y1 = max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3])
    if x1 <= x0 or y1 <= y0:
        return 1.0
    mx = max(2, round((x1 - x0) * RING_MARGIN))
    my = max(2, round((y1 - y0) * RING_MARGIN))
    X0, Y0, X1, Y1 = max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)
    outer = d[Y0:Y1, X0:X1]
    ring_mask = np.ones(outer.shape, bool)
    ring_mask[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0] = False
    ring = outer[ring_mask]
    level = float(np.median(ring)) if ring.size >= MIN_RING_PIXELS else float(np.median(d))
    inner = d[y0:y1, x0:x1]
    return float(np.mean(np.abs(inner - level) > tau))


def box_to_work(xyxy: np.ndarray, frame_wh: tuple[int, int], work_wh: tuple[int, int]) -> tuple[int, int, int, int]:
    """An absolute ``xyxy`` frame box -> working-pixel box covering it (at least 1 px)."""
    sx, sy = work_wh[0] / frame_wh[0], work_wh[1] / frame_wh[1]
    x0, y0 = int(np.floor(xyxy[0] * sx)), int(np.floor(xyxy[1] * sy))
    x1, y1 = int(np.ceil(xyxy[2] * sx)), int(np.ceil(xyxy[3] * sy))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


class Baseline:
    """One camera's reference: learns it, stores it, and says which boxes are unchanged.

    Args:
        camera: Camera name (file name of the stored reference).
        cfg: Mode and thresholds.
        folder: Where references are stored (:func:`baseline_dir`); None: not stored.
    """

    def __init__(self, camera: str, cfg: BaselineConfig, folder: Path | None = None) -> None:
        self.camera, self.cfg, self.folder = camera, cfg, folder
        self.ref: np.ndarray | None = None  # the active reference (working grey float32)
        self._log_ref: np.ndarray | None = None
        self._frame_wh: tuple[int, int] | None = None
        self._snaps: list[np.ndarray] = []  # learn: clean snapshots; capture: the first samples
        self._first_clean: float | None = None
        self._last_snap = -np.inf
        self._last_save = -np.inf
        self._loaded = False
        self.captured = False  # capture mode: reference taken (frozen from then on)

    @property
    def active(self) -> bool:
        """Whether boxes are being checked against a reference."""
        return self.ref is not None

    def state(self, t: float | None = None) -> str:
        """A short status (``learning 12/60 s``, ``capturing 2/5``, ``active``)."""
        if self.active:
            return "active"
        if self.cfg.mode == BaselineMode.capture.value:
            return f"capturing {len(self._snaps)}/{self.cfg.capture_samples}"
        span = 0.0 if self._first_clean is None or t is None else t - self._first_clean
        return f"learning {min(span, self.cfg.learn_seconds):.0f}/{self.cfg.learn_seconds:g} s"

    # -- the reference ---------------------------------------------------------------------
    def _paths(self) -> tuple[Path, Path] | None:
        if self.folder is None:
            return None
        return self.folder / f"{self.camera}.png", self.folder / f"{self.camera}.json"

    def _set_ref(self, ref: np.ndarray) -> None:
        self.ref = ref.astype(np.float32)
        self._log_ref = np.log(self.ref + LOG_OFFSET)

    def _reset(self) -> None:
        self.ref, self._log_ref, self._snaps = None, None, []
        self._first_clean, self._last_snap = None, -np.inf

    def _load(self, frame_wh: tuple[int, int]) -> None:
        """Resume a stored reference (learn mode) if it fits this stream's frame size."""
        self._loaded = True
        paths = self._paths()
        if paths is None or self.cfg.mode != BaselineMode.learn.value or not paths[0].is_file():
            return
        import cv2

        try:
            meta = json.loads(paths[1].read_text(encoding="utf-8"))
            img = cv2.imread(str(paths[0]), cv2.IMREAD_UNCHANGED)
        except (OSError, ValueError) as e:
            log.warning("camera %s: stored baseline %s unreadable (%s); learning a new one", self.camera, paths[0], e)
            return
        if img is None or img.ndim != 2 or tuple(meta.get("frame_wh", ())) != frame_wh:
            log.warning("camera %s: stored baseline %s is for frames %s, the stream gives %s; learning a new one",
                        self.camera, paths[0], meta.get("frame_wh"), frame_wh)
            return
        ref = img.astype(np.float32) / 256.0
        self._set_ref(ref)
        # the stored reference weighs as half a window of snapshots: new clean samples replace it gradually
        self._snaps = [ref] * (SNAPSHOTS // 2)
        log.info("camera %s: baseline resumed from %s", self.camera, paths[0])

    def save(self, t: float) -> None:
        """Write the reference (16-bit grey PNG, grey level x 256) and its meta atomically."""
        paths = self._paths()
        if paths is None or self.ref is None or self._frame_wh is None:
            return
        import cv2

        ok, png = cv2.imencode(".png", np.clip(np.round(self.ref * 256.0), 0, 65535).astype(np.uint16))
        if not ok:  # pragma: no cover - cv2 always encodes a uint16 grey image
            return
        try:
            io.write_bytes(paths[0], png.tobytes())
            io.write_json(paths[1], {"camera": self.camera, "mode": self.cfg.mode, "frame_wh": list(self._frame_wh),
                                     "work_wh": [self.ref.shape[1], self.ref.shape[0]], "scale": 256,
                                     "t": t, "saved": time.time()}, indent=1)
        except OSError as e:  # a full disk must not stop the watch: the reference lives on in memory
            log.error("camera %s: baseline not saved to %s: %s", self.camera, paths[0], e)
            return
        self._last_save = t

    # -- per sample --------------------------------------------------------------------------
    def step(self, image: np.ndarray, t: float, xyxy: np.ndarray, score: np.ndarray, threshold: float,
             busy: bool = False) -> np.ndarray:
        """Check one sample's boxes against the reference, then learn from the sample.

        Args:
            image: The frame, RGB ``uint8`` ``(H, W, 3)``.
            t: Its time (seconds).
            xyxy: Detection boxes, absolute ``xyxy`` frame pixels, ``(N, 4)``.
            score: Their confidences ``(N,)`` (NaN = the model gave none: counts as 1.0).
            threshold: Sightings are boxes at or above this confidence.
            busy: The camera has open events (learn mode: do not learn from this sample).

        Returns:
            Boolean ``(N,)``: True for sightings to suppress: their region is unchanged against
            the active reference, or (capture mode) they are on a sample being captured. All
            False while a learned reference is not active yet.
        """
        h, w = image.shape[:2]
        if not self._loaded:
            self._frame_wh = (w, h)
            self._load((w, h))
        elif self._frame_wh != (w, h):
            log.warning("camera %s: frame size changed from %s to %s; rebuilding the baseline", self.camera,
                        self._frame_wh, (w, h))
            self._frame_wh = (w, h)
            self._reset()
            self.captured = False
        unchanged = np.zeros(len(score), bool)
        sighted = np.where(np.isnan(score), 1.0, score) >= threshold
        capture = self.cfg.mode == BaselineMode.capture.value
        need_learn = (not self.captured) if capture else self._snapshot_due(t)
        if not sighted.any() and not need_learn:
            return unchanged  # nothing to check, nothing to learn: no image work at all
        cur = work_image(image)
        if self.ref is not None and self._log_ref is not None and sighted.any():
            d = np.log(cur + LOG_OFFSET) - self._log_ref
            work_wh = (cur.shape[1], cur.shape[0])
            for i in np.flatnonzero(sighted):
                box = box_to_work(xyxy[i], (w, h), work_wh)
                unchanged[i] = changed_fraction(d, box, self.cfg.threshold) < self.cfg.min_changed
        if capture:
            if not self.captured:
                unchanged = sighted.copy()  # part of the scene being captured, which the operator says is clean
                self._snaps.append(cur)
                if len(self._snaps) >= self.cfg.capture_samples:
                    self._set_ref(np.median(np.stack(self._snaps), axis=0))
                    self._snaps, self.captured = [], True
                    self.save(t)
                    log.info("camera %s: baseline captured from %d samples", self.camera, self.cfg.capture_samples)
        elif not busy and not (sighted & ~unchanged).any():
            self._learn(cur, t)
        return unchanged

    def _snapshot_due(self, t: float) -> bool:
        return t - self._last_snap >= self.cfg.learn_seconds / SNAPSHOTS

    def _learn(self, cur: np.ndarray, t: float) -> None:
        """Add a clean sample to the rolling snapshots when one is due; refresh the reference."""
        if self._first_clean is None:
            self._first_clean = t
        if not self._snapshot_due(t):
            return
        self._last_snap = t
        self._snaps = [*self._snaps[-(SNAPSHOTS - 1):], cur]
        if self.ref is None and (t - self._first_clean < self.cfg.learn_seconds or len(self._snaps) < MIN_SNAPSHOTS):
            return
        first = self.ref is None
        self._set_ref(np.median(np.stack(self._snaps), axis=0))
        if first:
            log.info("camera %s: baseline learned from %d clean samples", self.camera, len(self._snaps))
        if first or t - self._last_save >= self.cfg.learn_seconds:
            self.save(t)
