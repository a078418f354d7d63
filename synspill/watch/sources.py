"""Frame sources: RTSP, HTTP(S) (MJPEG, MPEG-TS, HLS), video files, webcams, image folders.

Two ways to read a camera:

- :class:`CameraReader` (live): a thread per camera reads the stream as fast as it comes
  (so nothing piles up in FFmpeg's buffers), decodes only the frames due at the sample
  rate and keeps just the **newest** one in a one-slot mailbox. A slow model therefore
  always sees the latest picture; older unconsumed samples are overwritten (counted in
  ``dropped``). A lost or stalled stream (read error, or no frame within
  ``stall_timeout`` thanks to FFmpeg's read timeout) is reported and reopened with
  exponential back-off, independently of the other cameras.
- :func:`iter_samples` (``--once``): a plain generator that yields **every** sampled
  frame of a file, folder or finite stream in order, timed by the media clock (frame
  index / fps), so a run is reproducible frame for frame.

Spills are stationary: there is no motion gating; every sample goes to the model.
OpenCV (with its FFmpeg backend) is imported lazily.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synspill import io
from synspill.errors import UsageError

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://", "rtp://")


@dataclass
class Frame:
    """One sampled picture.

    Attributes:
        camera: Camera name.
        image: RGB ``uint8`` ``(H, W, 3)``.
        t: Event clock, epoch seconds (wall clock live; start time + media time with ``--once``).
        index: Sample number from this source (0, 1, ...).
        captured: ``time.monotonic()`` when it was decoded (for latency).
    """

    camera: str
    image: np.ndarray
    t: float
    index: int
    captured: float


def source_kind(url: str) -> str:
    """``webcam``, ``folder``, ``file`` or ``stream`` for a source spec.

    Raises:
        UsageError: A path that does not exist and is no stream URL.
    """
    if url.isdigit():
        return "webcam"
    if url.lower().startswith(STREAM_SCHEMES):
        return "stream"
    p = Path(url)
    if p.is_dir():
        return "folder"
    if p.is_file():
        return "file"
    raise UsageError(f"source {url!r}: no such file or folder, and not a stream URL (rtsp://, http://, ...) or webcam index")


def folder_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder`` (sorted by name); an empty folder is an error."""
    files = io.list_images(folder, recursive=False)
    if not files:
        raise UsageError(f"source {folder}: the folder holds no images ({', '.join(io.IMAGE_SUFFIXES)})")
    return files


def read_image(path: Path) -> np.ndarray | None:
    """An image file as RGB ``uint8`` ``(H, W, 3)``, or None when it cannot be decoded."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def open_capture(url: str, timeout_s: float = 10.0, open_timeout_s: float = 15.0) -> Any:
    """An opened ``cv2.VideoCapture`` for a file, stream or webcam index (or None).

    Streams go through FFmpeg with open/read timeouts so a dead camera cannot block
    its reader forever (``timeout_s`` per read; opening gets ``open_timeout_s`` because
    FFmpeg probes a few seconds of a live stream first); RTSP defaults to TCP transport (set
    ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` to override). OpenCV's and FFmpeg's own stderr lines
    (``[ WARN:0@0.05] ...``, ``moov atom not found``) are silenced unless logging is at
    DEBUG (``--debug``): a failure is reported by the caller, in one line.
    """
    import cv2

    if not logging.getLogger("synspill").isEnabledFor(logging.DEBUG):
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read when FFmpeg opens a source
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    if url.isdigit():
        cap = cv2.VideoCapture(int(url))
    else:
        if url.lower().startswith(("rtsp://", "rtsps://")):
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(max(open_timeout_s, timeout_s) * 1000),
                                                     cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(timeout_s * 1000)])
    if not cap.isOpened():
        cap.release()
        return None
    return cap


def _src_fps(cap: Any) -> float:
    import cv2

    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if 0.5 <= fps <= 240 else 25.0


def iter_samples(camera: str, url: str, fps: float, origin: float | None = None) -> Iterator[Frame]:
    """Every sampled frame of a finite source, in order, on the media clock (``--once``).

    Frame ``i`` of a video is at media time ``i / source_fps``; it is taken when that
    time reaches the next sample time (``0, 1/fps, 2/fps, ...``). Each image of a
    folder is one sample, ``1/fps`` apart. Nothing is dropped, so two runs on the same
    input see the same frames.

    Args:
        camera: Camera name for the frames.
        url: Video file, image folder, or a stream that ends.
        fps: Samples per second of media time.
        origin: Epoch seconds of media time 0 (default: now).

    Raises:
        UsageError: The source cannot be opened.
    """
    import cv2

    origin = time.time() if origin is None else origin
    kind = source_kind(url)
    if kind == "folder":
        for i, path in enumerate(folder_images(url)):
            img = read_image(path)
            if img is None:
                log.warning("%s: cannot decode %s; skipped", camera, path)
                continue
            yield Frame(camera, img, origin + i / fps, i, time.monotonic())
        return
    cap = open_capture(url)
    if cap is None:
        raise UsageError(f"camera {camera}: cannot open {url!r}; check the path/URL and that FFmpeg can read it")
    try:
        src_fps = _src_fps(cap)
        period, next_t, i, n = 1.0 / fps, 0.0, 0, 0
        while cap.grab():
            media_t = i / src_fps
            i += 1
            if media_t + 1e-6 < next_t:
                continue
            ok, bgr = cap.retrieve()
            if not ok:
                continue
            while next_t <= media_t + 1e-6:
                next_t += period
            yield Frame(camera, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), origin + media_t, n, time.monotonic())
            n += 1
    finally:
        cap.release()


@dataclass
class SourceStatus:
    """What a reader reports (read by the status line and the loop)."""

    state: str = "connecting"  # connecting | live | reconnecting | ended | failed
    frames: int = 0  # frames read from the stream
    samples: int = 0  # frames decoded and offered to the model
    dropped: int = 0  # samples overwritten before the model took them
    reconnects: int = 0
    last_error: str = ""
    last_frame: float = 0.0  # time.monotonic() of the newest frame


class CameraReader(threading.Thread):
    """Live reader thread for one camera keeping only the newest sampled frame.

    Args:
        camera: Camera name.
        url: Source (see :func:`source_kind`).
        fps: Samples per second.
        loop: Replay files/folders forever (otherwise they end).
        stall_timeout: Seconds without a frame before a stream counts as stalled.
        backoff: ``(first, max)`` seconds of the exponential reconnect back-off.
        wake: Set whenever a new sample is available (shared by all readers).
    """

    def __init__(self, camera: str, url: str, fps: float = 2.0, loop: bool = False, stall_timeout: float = 10.0,
                 backoff: tuple[float, float] = (1.0, 30.0), wake: threading.Event | None = None) -> None:
        super().__init__(name=f"reader-{camera}", daemon=True)
        self.camera, self.url, self.fps, self.loop = camera, url, fps, loop
        self.kind = source_kind(url)
        self.stall_timeout = stall_timeout
        self.backoff = backoff
        self.wake = wake or threading.Event()
        self.status = SourceStatus()
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._slot: Frame | None = None
        self._n = 0

    # -- consumer side ---------------------------------------------------------------
    def take(self) -> Frame | None:
        """The newest sample not yet taken, or None."""
        with self._lock:
            f, self._slot = self._slot, None
        return f

    @property
    def finished(self) -> bool:
        """The source ended (file without ``loop``) or the reader was stopped."""
        return self.status.state in ("ended", "failed") or (self._halt.is_set() and not self.is_alive())

    def stop(self) -> None:
        self._halt.set()

    # -- reader side ----------------------------------------------------------------
    def _offer(self, img_rgb: np.ndarray) -> None:
        now = time.monotonic()
        f = Frame(self.camera, img_rgb, time.time(), self._n, now)
        self._n += 1
        with self._lock:
            if self._slot is not None:
                self.status.dropped += 1
            self._slot = f
        self.status.samples += 1
        self.wake.set()

    def run(self) -> None:
        delay = self.backoff[0]
        while not self._halt.is_set():
            try:
                got = self._run_folder() if self.kind == "folder" else self._run_capture()
            except Exception as e:  # keep the camera alive whatever FFmpeg/OpenCV throws
                log.exception("camera %s: reader error", self.camera)
                self.status.last_error = f"{type(e).__name__}: {e}"
                got = False
            if self._halt.is_set() or self.status.state == "ended":
                break
            if got:
                delay = self.backoff[0]
            self.status.state = "reconnecting"
            self.status.reconnects += 1
            log.warning("camera %s: stream lost (%s); reconnecting in %.0f s", self.camera,
                        self.status.last_error or "no frames", delay)
            self._halt.wait(delay)
            delay = min(delay * 2, self.backoff[1])
        if self.status.state != "ended":
            self.status.state = "ended" if self._halt.is_set() else self.status.state
        self.wake.set()

    def _run_folder(self) -> bool:
        period = 1.0 / self.fps
        files = folder_images(self.url)
        self.status.state = "live"
        next_due = time.monotonic()
        while not self._halt.is_set():
            for path in files:
                if self._halt.wait(max(0.0, next_due - time.monotonic())):
                    return True
                next_due = max(next_due + period, time.monotonic() - period)
                img = read_image(path)
                if img is None:
                    continue
                self.status.frames += 1
                self.status.last_frame = time.monotonic()
                self._offer(img)
            if not self.loop:
                self.status.state = "ended"
                return True
        return True

    def _run_capture(self) -> bool:
        import cv2

        self.status.state = "connecting" if self.status.reconnects == 0 else "reconnecting"
        cap = open_capture(self.url, timeout_s=self.stall_timeout)
        if cap is None:
            self.status.last_error = f"cannot open {self.url}"
            return False
        got = False
        try:
            is_file = self.kind == "file"
            src_period = 1.0 / _src_fps(cap) if is_file else 0.0
            period = 1.0 / self.fps
            self.status.state = "live"
            start = time.monotonic()
            i = 0
            last_sample = -1e9
            while not self._halt.is_set():
                if is_file:  # play files at their own speed, like a camera would
                    self._halt.wait(max(0.0, start + i * src_period - time.monotonic()))
                ok = cap.grab()
                if not ok:
                    if is_file:
                        if self.loop and got:
                            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                            start, i = time.monotonic(), 0
                            continue
                        self.status.state = "ended"
                        return got
                    self.status.last_error = "read failed or timed out"
                    return got
                i += 1
                now = time.monotonic()
                self.status.frames += 1
                self.status.last_frame = now
                if not got:
                    log.info("camera %s: %s", self.camera, "reconnected" if self.status.reconnects else "connected")
                got = True
                if now - last_sample >= period * 0.999:
                    ok, bgr = cap.retrieve()
                    if ok:
                        last_sample = now if now - last_sample > 2 * period else last_sample + period
                        self._offer(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        finally:
            cap.release()
        return got
