"""Harvest clean background frames from the user's own cameras (``synspill harvest``).

The harvested frames become the scenes that spills are painted into (``synspill scenes
--backgrounds`` or ``synspill inpaint --scenes``), so a detector learns the views it will
watch. Sources are whatever :mod:`synspill.watch.sources` reads: RTSP/HTTP streams, video
files, image folders and webcams.

Per source, a sample is taken every ``every`` seconds (media clock for video files, so a
run is reproducible; wall clock for live streams and webcams, which stop after
``duration``). Each sample goes through these checks, cheapest first; the first that
applies is its *reason* for being skipped:

============  ============================================================================
``corrupt``   an image of a folder that cannot be decoded, or a video frame whose bottom
              band is a frozen smear (lost packets)
``dark``      mean grey level below :data:`DARK_LUMA`
``uniform``   grey standard deviation below :data:`UNIFORM_STD` (no-signal screens)
``spacing``   its time slot already has a kept frame: ``per_source`` frames are spread
              evenly over the video (or the live ``duration``)
``motion``    more than ``motion`` of the picture changed against *both* neighbouring
              samples (a passer-by); a change against one neighbour only is a scene change
              or an object that came to rest, and a change of more than :data:`SCENE_CUT`
              is another view, not motion
``duplicate`` its 64-bit dHash is within ``dedupe`` bits of a frame already kept for that
              camera, under the same light (mean grey within :data:`LIGHT_DELTA`)
``person``    OpenCV's HOG people detector fires (OpenCV 4.x only: OpenCV 5 moved it out
              of the main package; then this check is reported as unavailable)
============  ============================================================================

Output (``OUT``)::

    images/<camera>/<camera>-<time>.jpg   kept frames, written atomically
    harvest.jsonl                         one record per decided sample (camera, source (no password),
                                          sample, t, kept or reason, hash, motion)
    harvest.json                          settings and per-camera counts by reason

**Resume.** A run stopped at any point (Ctrl-C, ``kill -9``) continues when started again
with the same settings: finished sources are skipped, samples of a video or folder that
have a record are not decided again, kept frames of a live source count towards its
``per_source``; stray temp files and images without a record are removed.

numpy and OpenCV are imported lazily.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from synspill.errors import DatasetError, OutputExists, UsageError

if TYPE_CHECKING:
    import numpy as np

    from synspill.synth.inpaint import InpaintJob
    from synspill.synth.scenes import ScenesJob
    from synspill.watch.sources import Frame

log = logging.getLogger(__name__)

#: Reasons for skipping a sample, in the order the checks run.
REASONS = ("corrupt", "dark", "uniform", "spacing", "motion", "duplicate", "person")

DARK_LUMA = 20.0  # mean grey (0-255) below which a frame is too dark to paint spills on
UNIFORM_STD = 6.0  # grey std below which a frame is blank (no signal, lens cap, grey decoder output)
PIXEL_DELTA = 20  # grey levels a blurred thumbnail pixel must change by to count as changed
SCENE_CUT = 0.5  # changed fraction from which two samples show different views, not motion
LIGHT_DELTA = 12.0  # mean grey change from which the same view counts as new (lighting variety)
THUMB_W = 160  # width of the analysis thumbnail (motion, hash, exposure)
LIVE_DURATION = 600.0  # default seconds read from a live stream or webcam
CONNECT_TIMEOUT = 30.0  # seconds a live source may take to deliver its first frame
PEOPLE_SIDE = 800  # longer side of the picture the people detector sees (never upscaled)
PEOPLE_SCORE = 0.5  # HOG SVM score from which a window counts as a person

MANIFEST = "harvest.jsonl"
SUMMARY = "harvest.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ImageFormat(str, Enum):
    """File format of the kept frames."""

    jpg = "jpg"
    png = "png"


def parse_source(spec: str) -> tuple[str, str]:
    """A source argument as ``(camera, url)``.

    ``NAME=URL`` names the camera (letters, digits, ``.-_``); otherwise the name comes from
    the source (file stem, stream host, ``webcam0``). An existing path containing ``=`` and
    URLs with ``=`` in their query (``rtsp://h/s?ch=1``) are taken whole.

    Raises:
        UsageError: An empty source or nothing after ``NAME=``.
    """
    from synspill.watch.config import camera_name_for

    spec = spec.strip()
    if "=" in spec and not Path(spec).exists():
        name, url = spec.split("=", 1)
        if _NAME.match(name):
            if not url.strip():
                raise UsageError(f"source {spec!r}: nothing after '='; use NAME=SOURCE, e.g. door=rtsp://10.0.0.5/stream")
            return name, url.strip()
    if not spec:
        raise UsageError("empty source; give a stream URL, video file, image folder or webcam index")
    return camera_name_for(spec) or "camera", spec


def redact(url: str) -> str:
    """``url`` without a password (``rtsp://user:***@host/...``): manifests travel with data sets."""
    from urllib.parse import urlsplit, urlunsplit

    if "://" not in url:
        return url
    u = urlsplit(url)
    if u.password is None:
        return url
    host = u.netloc.rsplit("@", 1)[1]
    return urlunsplit(u._replace(netloc=f"{u.username}:***@{host}"))


@dataclass(frozen=True)
class HarvestConfig:
    """One harvest job (saved as ``settings`` in ``OUT/harvest.json``).

    Attributes:
        sources: Source arguments: RTSP/HTTP(S) URL, video file, image folder or webcam
            index, each optionally ``NAME=SOURCE`` (see :func:`parse_source`).
        out: Output folder.
        every: Seconds between samples (media time for videos, wall time for live
            sources; every image of a folder is a sample).
        per_source: Most frames kept per source, spread evenly over a video's length (or
            the live ``duration``); a folder keeps its first ``per_source`` clean images.
        duration: Seconds read per source: the start of each video (None: all of it) or
            the wall time of a live source (None: :data:`LIVE_DURATION`). Folders ignore it.
        motion: Changed fraction of the picture, against both neighbouring samples, from
            which a sample counts as having motion (0 < motion < :data:`SCENE_CUT`).
        dedupe: Hamming distance (bits of 64) of the dHash up to which a frame duplicates
            one already kept for its camera (0: only identical hashes).
        people_check: Skip frames where OpenCV's HOG people detector fires.
        image_format: ``jpg`` or ``png``.
        quality: JPEG quality (1-100).
    """

    sources: tuple[str, ...]
    out: str
    every: float = 2.0
    per_source: int = 200
    duration: float | None = None
    motion: float = 0.005
    dedupe: int = 6
    people_check: bool = True
    image_format: ImageFormat = ImageFormat.jpg
    quality: int = 95

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(str(s) for s in self.sources))
        object.__setattr__(self, "out", str(self.out))
        try:
            object.__setattr__(self, "image_format", ImageFormat(str(getattr(self.image_format, "value", self.image_format)).lower().lstrip(".")))
        except ValueError:
            raise UsageError(f"--format {self.image_format!r}: use jpg or png") from None
        if not self.sources:
            raise UsageError("no sources; give stream URLs, video files, image folders or webcam indices")
        if not (self.every > 0 and math.isfinite(self.every)):
            raise UsageError(f"--every {self.every:g}: the time between samples must be a positive number of seconds, e.g. --every 2")
        if self.per_source < 1:
            raise UsageError(f"--per-source {self.per_source}: keep at least 1 frame per source, e.g. --per-source 200")
        if self.duration is not None and not (self.duration > 0 and math.isfinite(self.duration)):
            raise UsageError(f"--duration {self.duration:g}: must be a positive number of seconds, e.g. --duration 600")
        if not 0 < self.motion < SCENE_CUT:
            raise UsageError(f"--motion {self.motion:g}: the changed fraction of the picture must be in (0, {SCENE_CUT:g}), e.g. --motion 0.005")
        if not 0 <= self.dedupe <= 64:
            raise UsageError(f"--dedupe {self.dedupe}: a Hamming distance of a 64-bit hash is 0-64, e.g. --dedupe 6")
        if not 1 <= self.quality <= 100:
            raise UsageError(f"--quality {self.quality}: JPEG quality is 1-100, e.g. --quality 95")
        seen: dict[str, str] = {}
        for cam, url in self.cameras:
            if cam in seen:
                raise UsageError(f"sources {seen[cam]!r} and {url!r} are both camera {cam!r}; name them, e.g. "
                                 f"{cam}-a={seen[cam]} {cam}-b={url}")
            seen[cam] = url

    @property
    def cameras(self) -> list[tuple[str, str]]:
        """``(camera, url)`` per source, in order."""
        return [parse_source(s) for s in self.sources]

    def settings(self) -> dict[str, Any]:
        """What decides which frames are kept (a resume must not change it)."""
        return {f.name: (getattr(self, f.name).value if isinstance(getattr(self, f.name), Enum) else getattr(self, f.name))
                for f in fields(self) if f.name not in ("sources", "out")}


#: Field defaults of :class:`HarvestConfig` (for CLI help texts).
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(HarvestConfig) if f.name not in ("sources", "out")}


@dataclass
class SourceResult:
    """What one source gave.

    Attributes:
        camera: Camera name (the folder under ``OUT/images``).
        source: The URL, file or folder.
        kind: ``file``, ``folder``, ``stream`` or ``webcam``.
        kept: Frames kept (all runs).
        skipped: Skipped samples by reason (all runs; every reason of :data:`REASONS`).
        samples: Samples decided (kept + skipped).
        folder: ``OUT/images/<camera>``.
        status: ``done``, ``already done`` (a finished source of an earlier run) or ``failed``.
        error: Why a live source gave no frames (status ``failed``).
    """

    camera: str
    source: str
    kind: str
    kept: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    samples: int = 0
    folder: str = ""
    status: str = "done"
    error: str | None = None

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())


@dataclass
class HarvestResult:
    """The outcome of :func:`harvest`.

    Attributes:
        out: Output folder.
        sources: One result per source, in order.
        people_check: ``hog``, ``off`` or ``unavailable`` (OpenCV without HOG).
        seconds: Wall time of this run.
    """

    out: Path
    sources: list[SourceResult]
    people_check: str
    seconds: float

    @property
    def kept(self) -> int:
        return sum(s.kept for s in self.sources)

    @property
    def failed(self) -> list[SourceResult]:
        return [s for s in self.sources if s.status == "failed"]


@dataclass
class HarvestProgress:
    """Progress of one source (passed to ``on_progress`` after each sample).

    Attributes:
        camera: Camera name.
        source_index: 0-based position of the source.
        n_sources: Number of sources.
        done: Seconds of the source read (media or wall clock); samples for a folder.
        total: ``done`` at the end (None: unknown, e.g. a folder).
        kept: Frames kept so far (all runs).
        skipped: Samples skipped so far (all runs).
        finished: The source is finished.
    """

    camera: str
    source_index: int
    n_sources: int
    done: float
    total: float | None
    kept: int
    skipped: int
    finished: bool = False


# ---------------------------------------------------------------------------------------
# per-frame analysis
# ---------------------------------------------------------------------------------------
@dataclass
class _Sample:
    index: int
    t: float
    image: np.ndarray  # RGB uint8 (H, W, 3)
    thumb: np.ndarray  # blurred grey uint8, THUMB_W wide
    luma: float
    flaw: str | None  # corrupt | dark | uniform
    f_prev: float | None = None  # changed fraction against the previous sample
    f_next: float | None = None


def _analyse(index: int, t: float, image: np.ndarray) -> _Sample:
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    small = cv2.resize(grey, (THUMB_W, max(8, round(h * THUMB_W / w))), interpolation=cv2.INTER_AREA)
    luma, std = float(small.mean()), float(small.std())
    flaw = "corrupt" if _smeared(small) else "dark" if luma < DARK_LUMA else "uniform" if std < UNIFORM_STD else None
    return _Sample(index, t, image, cv2.GaussianBlur(small, (5, 5), 0), luma, flaw)


def _smeared(small: np.ndarray) -> bool:
    """A bottom band of identical rows (>= 25 % of the height) that is not a black letterbox.

    H.264 packet loss conceals the missing slices by repeating the last good row downwards;
    real pictures always differ a little from row to row (texture, noise).
    """
    import numpy as np

    rows = small.astype(np.float32)
    frozen = np.abs(np.diff(rows, axis=0)).mean(axis=1) < 0.5
    n = len(frozen)
    tail = n - int(np.flatnonzero(~frozen)[-1]) - 1 if (~frozen).any() else n
    head = int(np.argmin(frozen)) if (~frozen).any() else n
    band = rows[len(rows) - tail:]
    return tail >= 0.25 * len(rows) and head < 0.1 * len(rows) and band.size > 0 and float(band.mean()) >= DARK_LUMA


def changed_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels of two blurred grey thumbnails that differ by more than :data:`PIXEL_DELTA`.

    The median difference is removed first, so a global exposure change alone is no motion.
    """
    import numpy as np

    if a.shape != b.shape:
        return 1.0
    d = a.astype(np.int16) - b.astype(np.int16)
    d -= np.int16(np.median(d))
    return float((np.abs(d) > PIXEL_DELTA).mean())


def dhash(thumb: np.ndarray) -> int:
    """64-bit difference hash of a grey image (9x8 area-resized, left < right per cell)."""
    import cv2
    import numpy as np

    px = cv2.resize(thumb, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    return int.from_bytes(np.packbits(px[:, 1:] > px[:, :-1]).tobytes(), "big")


def _motion(s: _Sample, threshold: float) -> tuple[bool, float | None]:
    """Motion when every informative neighbour (same view) changed by more than ``threshold``."""
    near = [f for f in (s.f_prev, s.f_next) if f is not None and f < SCENE_CUT]
    return (bool(near) and min(near) > threshold), (round(min(near), 5) if near else None)


@functools.cache
def _hog() -> Any:
    """OpenCV's default HOG people detector, or None (OpenCV 5 moved HOG to opencv-contrib)."""
    import cv2
    import numpy as np

    if not hasattr(cv2, "HOGDescriptor"):
        return None
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), np.float32))
    return hog


def people_detector_available() -> bool:
    """Whether this OpenCV has the HOG people detector."""
    return _hog() is not None


def detect_people(image: np.ndarray) -> bool:
    """Whether OpenCV's HOG people detector finds a person in an RGB ``(H, W, 3)`` uint8 image.

    The image is downscaled to :data:`PEOPLE_SIDE` on its longer side (never upscaled), so
    people smaller than about 128 px at that size are missed: a cheap safety net behind the
    motion check, which catches anyone who moves.
    """
    import cv2
    import numpy as np

    hog = _hog()
    if hog is None:
        return False
    h, w = image.shape[:2]
    s = min(1.0, PEOPLE_SIDE / max(h, w))
    if s < 1.0:
        image = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    _, weights = hog.detectMultiScale(image, winStride=(8, 8), padding=(8, 8), scale=1.05)
    return bool(len(weights)) and float(np.max(weights)) >= PEOPLE_SCORE


# ---------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------
@dataclass
class _Source:
    camera: str
    url: str
    kind: str
    length: float | None = None  # seconds of a video (None: unknown)


def _probe(camera: str, url: str) -> _Source:
    """Check that a source can be read before anything is harvested (live ones are not opened)."""
    import cv2

    from synspill.watch.sources import iter_samples, open_capture, source_kind

    kind = source_kind(url)
    if kind == "folder":
        gen = cast(Generator["Frame", None, None], iter_samples(camera, url, 1.0))  # a generator: closable
        try:
            first = next(gen, None)
        finally:
            gen.close()
        if first is None:
            raise DatasetError(f"{url}: no image in the folder can be decoded; check the files or remove the folder from the sources")
        return _Source(camera, url, kind)
    if kind != "file":
        return _Source(camera, url, kind)
    cap = open_capture(url)
    if cap is None:
        raise DatasetError(f"{url}: not a readable video (OpenCV/FFmpeg cannot open it); check the file, "
                           "or re-encode it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4")
    try:
        if not cap.grab():
            raise DatasetError(f"{url}: the video has no decodable frame; check the file, or re-encode it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n = float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
    finally:
        cap.release()
    fps = fps if 0.5 <= fps <= 240 else 25.0  # the same fallback as iter_samples
    return _Source(camera, url, kind, n / fps if n > 0 else None)


def _span(src: _Source, cfg: HarvestConfig) -> float | None:
    """Seconds of a source that will be read (None: unknown, or a folder)."""
    if src.kind in ("stream", "webcam"):
        return cfg.duration or LIVE_DURATION
    if src.kind == "folder" or (src.length is None and cfg.duration is None):
        return None
    return min(cfg.duration or math.inf, src.length or math.inf)


def _live_frames(src: _Source, cfg: HarvestConfig, budget_s: float, status: dict[str, str]) -> Generator[Frame, None, None]:
    """Newest frame every ``cfg.every`` seconds (wall clock) for ``budget_s`` seconds."""
    import threading

    from synspill.watch.sources import CameraReader

    wake = threading.Event()
    reader = CameraReader(src.camera, src.url, fps=1.0 / cfg.every, wake=wake)
    start = time.monotonic()
    reader.start()
    try:
        while (left := start + budget_s - time.monotonic()) > 0:
            if reader.status.samples == 0 and time.monotonic() - start > CONNECT_TIMEOUT:
                status["error"] = f"no frame within {CONNECT_TIMEOUT:g} s ({reader.status.last_error or 'cannot connect'})"
                return
            wake.wait(min(0.5, left))
            wake.clear()
            frame = reader.take()
            if frame is not None:
                yield frame
            elif reader.finished:
                if reader.status.samples == 0:
                    status["error"] = f"the stream ended without a frame ({reader.status.last_error or 'no data'})"
                return
    finally:
        reader.stop()
        reader.join(timeout=5.0)


# ---------------------------------------------------------------------------------------
# output folder: settings, manifest, summary
# ---------------------------------------------------------------------------------------
@dataclass
class _CamState:
    """What the manifest says about one camera."""

    records: list[dict[str, Any]] = field(default_factory=list)
    decided: set[int] = field(default_factory=set)
    hashes: list[tuple[int, float]] = field(default_factory=list)
    bins: set[int] = field(default_factory=set)
    counts: Counter = field(default_factory=Counter)
    kept: int = 0

    def add(self, r: dict[str, Any]) -> None:
        self.records.append(r)
        self.decided.add(int(r["sample"]))
        if r["kept"]:
            self.kept += 1
            self.hashes.append((int(r["hash"], 16), float(r["luma"])))
            if r.get("bin") is not None:
                self.bins.add(int(r["bin"]))
        else:
            self.counts[r["reason"]] += 1


def _read_manifest(out: Path) -> tuple[dict[str, _CamState], bool]:
    """Valid records per camera; True when some line had to be dropped (torn, or its image gone)."""
    states: dict[str, _CamState] = {}
    dropped = False
    path = out / MANIFEST
    if not path.exists():
        return states, False
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                r = json.loads(line)
                if r["kept"] and not (out / r["file"]).is_file():
                    raise ValueError("image gone")
                states.setdefault(str(r["camera"]), _CamState()).add(r)
            except (ValueError, KeyError, TypeError):
                dropped = True
    return states, dropped


def _prepare(cfg: HarvestConfig, force: bool) -> tuple[Path, dict[str, Any], dict[str, _CamState]]:
    """Create or check ``OUT``; return the summary and manifest state of earlier runs."""
    import shutil

    from synspill.io import write_text

    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder")
    if force and out.is_dir():
        for name in ("images", MANIFEST, SUMMARY):
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    summary: dict[str, Any] = {}
    if (out / SUMMARY).is_file():
        try:
            summary = json.loads((out / SUMMARY).read_text(encoding="utf-8"))
        except ValueError:
            raise DatasetError(f"{out / SUMMARY}: not valid JSON; pass --force to start over, or choose another --out") from None
        old = summary.get("settings", {})
        diff = sorted(k for k in set(old) | set(cfg.settings()) if old.get(k) != cfg.settings().get(k))
        if diff:
            raise OutputExists(f"{out} holds a harvest with other settings ("
                               + ", ".join(f"{k}: {old.get(k)!r} -> {cfg.settings().get(k)!r}" for k in diff[:3])
                               + "); run with the same settings to resume, pass --force to start over, or choose another --out")
    elif out.is_dir() and any(out.iterdir()):
        raise OutputExists(f"{out} exists and is not a harvest folder (no {SUMMARY}); choose another --out")
    known = summary.get("sources", {})
    for cam, url in cfg.cameras:
        if cam in known and known[cam].get("source") != redact(url):
            raise OutputExists(f"{out}: camera {cam!r} was harvested from {known[cam].get('source')!r}, not {redact(url)!r}; "
                               f"name this source differently (NAME={url}), or pass --force to start over")
    (out / "images").mkdir(parents=True, exist_ok=True)
    states, dropped = _read_manifest(out)
    if dropped:  # start appends on a clean line; forget records whose image is gone
        write_text(out / MANIFEST, "".join(json.dumps(r, separators=(",", ":")) + "\n"
                                           for st in states.values() for r in st.records))
    for cam, _ in cfg.cameras:  # leftovers of a kill: temp files, images written before their record
        folder = out / "images" / cam
        if folder.is_dir():
            keep = {Path(r["file"]).name for r in states.get(cam, _CamState()).records if r["kept"]}
            for p in folder.iterdir():
                if p.is_file() and p.name not in keep:
                    p.unlink()
    summary.setdefault("sources", {})
    summary["settings"] = cfg.settings()
    return out, summary, states


def _result(src: _Source, st: _CamState, out: Path, status: str, error: str | None = None) -> SourceResult:
    skipped = dict.fromkeys(REASONS, 0)
    skipped.update(st.counts)
    return SourceResult(src.camera, src.url, src.kind, kept=st.kept, skipped=skipped, samples=len(st.records),
                        folder=str(out / "images" / src.camera), status=status, error=error)


def _write_summary(out: Path, summary: dict[str, Any], results: dict[str, SourceResult], people: str) -> None:
    from synspill import __version__
    from synspill.io import write_json

    for r in results.values():
        entry = summary["sources"].setdefault(r.camera, {})
        entry.update({"source": redact(r.source), "kind": r.kind, "done": r.status in ("done", "already done"),
                      "kept": r.kept, "samples": r.samples, "skipped": r.skipped, "folder": f"images/{r.camera}"})
        if r.error:
            entry["error"] = r.error
    totals = Counter[str]()
    for e in summary["sources"].values():
        totals.update(e.get("skipped", {}))
    summary.update({"synspill": __version__, "people_check": people,
                    "kept": sum(e.get("kept", 0) for e in summary["sources"].values()),
                    "skipped": {k: totals.get(k, 0) for k in REASONS}})
    write_json(out / SUMMARY, summary, indent=2)


# ---------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------
class _Writer:
    """Appends manifest records: flushed per record, fsynced per kept frame and at the end."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "a", encoding="utf-8")

    def add(self, r: dict[str, Any], sync: bool = False) -> None:
        self.f.write(json.dumps(r, separators=(",", ":")) + "\n")
        self.f.flush()
        if sync:
            os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()


def _encode(image: np.ndarray, fmt: ImageFormat, quality: int) -> bytes:
    import cv2

    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt is ImageFormat.jpg else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buf = cv2.imencode(f".{fmt.value}", bgr, params)
    if not ok:
        raise DatasetError(f"cannot encode a {image.shape} frame as {fmt.value}; try --format png")
    return buf.tobytes()


def _frame_name(src: _Source, s: _Sample, fmt: ImageFormat) -> str:
    if src.kind == "folder":
        stem = f"{s.index:06d}"
    elif src.kind == "file":
        stem = f"{round(s.t * 1000):010d}ms"  # media time: the same name on every run
    else:
        stem = time.strftime("%Y%m%d-%H%M%S", time.localtime(s.t)) + f"-{int(s.t * 1000) % 1000:03d}"
    return f"{src.camera}-{stem}.{fmt.value}"


def _harvest_source(src: _Source, cfg: HarvestConfig, out: Path, st: _CamState, writer: _Writer,
                    people: Callable[[np.ndarray], bool] | None, report: Callable[[float, bool], None]) -> str | None:
    """Sample, check and keep frames of one source; returns an error text for a dead live source."""
    from synspill.io import write_bytes
    from synspill.watch.sources import iter_samples

    live = src.kind in ("stream", "webcam")
    budget = cfg.per_source - st.kept
    if budget <= 0:
        return None
    span = _span(src, cfg)
    status: dict[str, str] = {}
    if live:
        origin = time.time()
        frames: Generator[Frame, None, None] = _live_frames(src, cfg, span or LIVE_DURATION, status)
    else:
        origin = 0.0
        frames = cast(Generator["Frame", None, None], iter_samples(src.camera, src.url, 1.0 / cfg.every, origin=0.0))
    # spread the kept frames over time: at most one per slot of bin_w seconds. A video's
    # slots depend on its length only (a resumed run continues the same ones); a live run
    # spreads what is left of per_source over its own duration.
    bin_w = max(cfg.every, span / (budget if live else cfg.per_source)) if span else None
    taken: set[int] = set() if live else set(st.bins)
    folder = out / "images" / src.camera
    folder.mkdir(parents=True, exist_ok=True)
    source = redact(src.url)

    def record(r: dict[str, Any], sync: bool = False) -> None:
        r = {"camera": src.camera, "source": source, **r}
        writer.add(r, sync)
        st.add(r)

    def decide(s: _Sample) -> None:
        base: dict[str, Any] = {"sample": s.index, "t": round(s.t, 3)}
        slot = int((s.t - origin) / bin_w + 1e-6) if bin_w else None
        moving, f = _motion(s, cfg.motion)
        reason = s.flaw
        if reason is None and slot is not None and slot in taken:
            reason = "spacing"
        if reason is None and moving:
            reason = "motion"
        h = 0
        if reason is None:
            h = dhash(s.thumb)
            if any((h ^ k).bit_count() <= cfg.dedupe and abs(s.luma - lum) < LIGHT_DELTA for k, lum in st.hashes):
                reason = "duplicate"
        if reason is None and people is not None and people(s.image):
            reason = "person"
        if reason is not None:
            record({**base, "kept": False, "reason": reason, "motion": f})
            return
        if slot is not None:
            taken.add(slot)
        name = _frame_name(src, s, cfg.image_format)
        write_bytes(folder / name, _encode(s.image, cfg.image_format, cfg.quality))
        record({**base, "kept": True, "file": f"images/{src.camera}/{name}", "hash": f"{h:016x}",
                "luma": round(s.luma, 2), "motion": f, "bin": slot}, sync=True)

    pending: _Sample | None = None
    prev: _Sample | None = None
    expected = 0  # next folder index: a gap is an image that could not be decoded
    next_live = max(st.decided, default=-1) + 1  # live sample numbers continue over runs
    try:
        for fr in frames:
            if src.kind == "file" and cfg.duration is not None and fr.t > cfg.duration - 1e-6:  # [0, duration)
                break
            index = fr.index
            if src.kind == "folder":
                for gap in range(expected, index):
                    if gap not in st.decided:
                        record({"sample": gap, "t": round(gap * cfg.every, 3), "kept": False, "reason": "corrupt", "motion": None})
                expected = index + 1
            elif live:
                index, next_live = next_live, next_live + 1
            s = _analyse(index, fr.t, fr.image)
            # a dark, blank or corrupt neighbour says nothing about motion
            f = changed_fraction(prev.thumb, s.thumb) if prev is not None and prev.flaw is None and s.flaw is None else None
            prev = s
            if pending is not None:
                pending.f_next = f
                decide(pending)
                pending = None
                report(index if src.kind == "folder" else fr.t - origin, False)
            if st.kept >= cfg.per_source:
                break
            if not live and index in st.decided:  # decided in an earlier run (resume)
                continue
            s.f_prev = f
            pending = s
        if pending is not None and st.kept < cfg.per_source:
            decide(pending)
    finally:
        frames.close()  # releases the capture / stops the live reader
    return status.get("error")


def harvest(cfg: HarvestConfig, on_progress: Callable[[HarvestProgress], None] | None = None,
            force: bool = False) -> HarvestResult:
    """Harvest clean background frames from every source of ``cfg`` into ``cfg.out``.

    Sources are checked before anything is read (a missing path or an unreadable video
    stops the job at once); a live source that delivers no frame within
    :data:`CONNECT_TIMEOUT` is reported as ``failed`` and the others go on.

    Args:
        cfg: The job.
        on_progress: Called after each decided sample and when a source finishes.
        force: Delete an earlier harvest in ``cfg.out`` (its images, manifest and summary) first.

    Returns:
        Per-source counts of kept frames and of skipped samples by reason.

    Raises:
        UsageError: A source is neither an existing path nor a stream URL / webcam index.
        DatasetError: A video or folder cannot be decoded.
        OutputExists: ``cfg.out`` holds something else, or a harvest with other settings.
    """
    t0 = time.monotonic()
    sources = [_probe(cam, url) for cam, url in cfg.cameras]
    out, summary, states = _prepare(cfg, force)
    people_state = "off"
    people: Callable[[np.ndarray], bool] | None = None
    if cfg.people_check:
        if people_detector_available():
            people_state, people = "hog", detect_people
        else:
            import cv2

            people_state = "unavailable"
            log.warning("people check unavailable: OpenCV %s has no HOG people detector (moved to opencv-contrib "
                        "in OpenCV 5), so only people who move are skipped; people_check=False (--no-people-check) "
                        "silences this", cv2.__version__)
    results: dict[str, SourceResult] = {}
    writer = _Writer(out / MANIFEST)
    try:
        for i, src in enumerate(sources):
            st = states.setdefault(src.camera, _CamState())
            if summary["sources"].get(src.camera, {}).get("done"):
                results[src.camera] = _result(src, st, out, "already done")
                continue
            results[src.camera] = _result(src, st, out, "running")
            _write_summary(out, summary, results, people_state)  # the camera -> source mapping, before frames
            total = _span(src, cfg)

            def report(done: float, finished: bool, i: int = i, src: _Source = src, st: _CamState = st,
                       total: float | None = total) -> None:
                if on_progress is not None:
                    on_progress(HarvestProgress(src.camera, i, len(sources), done, total, st.kept,
                                                sum(st.counts.values()), finished))

            report(0.0, False)
            error = _harvest_source(src, cfg, out, st, writer, people, report)
            if error and st.kept == 0:
                results[src.camera] = _result(src, st, out, "failed", error)
                log.warning("camera %s: %s", src.camera, error)
            else:
                results[src.camera] = _result(src, st, out, "done")
            _write_summary(out, summary, results, people_state)
            report(total or 0.0, True)
    finally:
        writer.close()
    return HarvestResult(out, [results[s.camera] for s in sources], people_state, time.monotonic() - t0)


#: Sub-folders of a training set made from harvested frames (:func:`training_set_jobs`).
SET_SCENES, SET_SPILLS = "scenes", "spills"


def frames_changed(scenes: ScenesJob) -> bool:
    """Whether ``scenes.out`` was made from another set of frames than its folder holds now.

    The training set is derived data: when a later harvest added frames, it is made again
    (``harvest --dataset`` does that) rather than resumed from a mix of two draws.
    """
    import json

    try:
        old = json.loads((Path(scenes.out) / "job.json").read_text(encoding="utf-8")).get("backgrounds_files")
    except (OSError, ValueError, AttributeError):
        return False
    return old is not None and old != scenes.settings().get("backgrounds_files")


def training_set_jobs(frames: str | Path, out: str | Path, n: int = 2000, size: int = 640, seed: int = 0,
                      workers: int = 1) -> tuple[ScenesJob, InpaintJob]:
    """The two jobs that turn harvested frames into a training set: your views, with spills.

    ``OUT/scenes`` holds ``n`` scenes cover-cropped from the frames (random crop, zoom and
    flip per scene); ``OUT/spills`` the same scenes with procedural spills painted into
    automatically proposed boxes (``annotations.json``: tight boxes and masks), which is
    what ``finetune`` takes. Run them with :func:`~synspill.synth.scenes.run_scenes` and
    :func:`~synspill.synth.inpaint.run_inpaint`; both resume after an interruption.

    Args:
        frames: A harvest folder (or any folder of images).
        out: Folder for the training set.
        n: Number of training images.
        size: Square side of the training images in pixels (multiple of 8).
        seed: Seed of crops, placements and spills.
        workers: CPU processes.
    """
    from synspill.synth.inpaint import InpaintJob
    from synspill.synth.scenes import ScenesJob

    out = Path(out)
    scenes = ScenesJob(out=out / SET_SCENES, n=n, seed=seed, backend="backgrounds", width=size, height=size,
                       backgrounds=str(frames), workers=workers)
    spills = InpaintJob(scenes=out / SET_SCENES, out=out / SET_SPILLS, propose=True, seed=seed, workers=workers)
    return scenes, spills
