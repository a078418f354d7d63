"""The detection loop: sources -> model -> tracker/alerts -> event log -> sinks.

One thread runs the models (so a GPU or the CPU is never oversubscribed); one reader
thread per camera keeps that camera's newest sample. Cameras sharing a model (same
weights, backend, device, size, prompt, classes) share one predictor and are batched
into one ``predict`` call. For each sample, in order: the camera's
:class:`~synspill.watch.alerts.EventEngine` turns detections into event changes; new
events are committed to the log first (one transaction), then their snapshot is
written and the alert published, so no alert ever names an event the log does not
hold; updates of the sample are committed in one more transaction.

``once=True`` reads files/folders with :func:`~synspill.watch.sources.iter_samples`:
every sampled frame, in order, no threads, reproducible; events still open at the end
are closed (reason ``end-of-stream``).

**No silent loss.** An alert for a network sink (webhook, MQTT) is committed to the
log's outbox before it is sent and removed once the receiver confirms it. On the way out
the sinks get a grace period (``sinks.delivery_grace``, 10 s) to deliver what is pending;
the rest stays in the outbox, is counted in :attr:`WatchSummary.undelivered` and is sent
again, oldest first, on the next start with the same database.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synspill.detections import Detections, Predictor
from synspill.errors import UsageError
from synspill.predictors import PredictorConfig, load_predictor
from synspill.watch.alerts import EventChange, EventEngine
from synspill.watch.baseline import Baseline, baseline_dir
from synspill.watch.config import CameraConfig, WatchConfig, parse_hostport
from synspill.watch.sinks import (
    JsonLinesSink,
    MqttSink,
    ReliableSink,
    Sink,
    SnapshotWriter,
    WebhookSink,
)
from synspill.watch.sources import CameraReader, Frame, iter_samples, source_kind
from synspill.watch.store import EventStore
from synspill.watch.suppress import SuppressionCache
from synspill.watch.ui.live import LiveFileWriter, LiveFrames

log = logging.getLogger(__name__)


def predictor_config(cam: CameraConfig, conf: float | None = None) -> PredictorConfig:
    """The :class:`PredictorConfig` of a camera (VLM prompt passed through)."""
    return PredictorConfig(model=cam.model, backend=cam.backend, device=cam.device,
                           conf=cam.policy.threshold if conf is None else conf, imgsz=cam.imgsz,
                           classes=cam.classes, batch=8, adapter=cam.adapter, prompt=cam.prompt, scales=cam.scales)


def load_watch_predictor(cfg: PredictorConfig) -> Predictor:
    """:func:`synspill.predictors.load_predictor` (which also takes ``py:module:factory`` models).

    ``py:my_pkg.models:make`` imports ``my_pkg.models`` and returns ``make(cfg)``: any
    object with ``name`` and ``predict(list[RGB uint8]) -> list[Detections]``.

    Raises:
        UsageError: A ``py:`` spec that cannot be imported or returns no predictor.
    """
    return load_predictor(cfg)


def _group_key(cam: CameraConfig) -> tuple:
    return (cam.model, cam.backend, cam.device, cam.imgsz, cam.adapter, cam.prompt, cam.classes, cam.scales)


@dataclass
class CameraStats:
    """Live numbers for the status line of one camera."""

    name: str
    state: str = "starting"
    samples: int = 0
    fps: float = 0.0  # processed samples per second (moving average)
    latency_ms: float = 0.0  # frame decoded -> its alerts handled
    infer_ms: float = 0.0  # model time per frame of the last batch
    dropped: int = 0
    reconnects: int = 0
    open_events: int = 0
    events: int = 0
    last_detection: str = "-"
    suppressed_false_alarm: int = 0  # detections dropped inside a false-alarm region (see synspill.watch.suppress)
    suppressed_baseline: int = 0  # sightings dropped: region unchanged since the camera's baseline
    baseline: str = "-"  # baseline state: "-" (off), "learning 12/60 s", "capturing 2/5", "active"
    last_t: float = field(default=0.0, repr=False)


@dataclass
class WatchSummary:
    """What a run did (returned by :meth:`Watcher.run`)."""

    samples: int = 0
    events_opened: int = 0
    alerts: int = 0
    infer_s: float = 0.0  # time inside predictor.predict
    handle_s: float = 0.0  # tracker, severity, log writes, sinks, snapshots (after predict)
    wall_s: float = 0.0
    cameras: dict[str, CameraStats] = field(default_factory=dict)
    #: Alerts still undelivered at exit per network sink (kept in the log's outbox), with the last reason.
    undelivered: dict[str, tuple[int, str]] = field(default_factory=dict)
    resent: int = 0  # alerts of earlier runs sent again at the start


class Watcher:
    """Runs the cameras of a :class:`WatchConfig` until stopped (or to the end with ``once``).

    Args:
        cfg: Cameras, log, sinks, severity rule.
        once: Process files/folders to their end, every sample, then return.
        predictors: Ready predictors by camera name (skip loading; tests, benchmarks).
        extra_sinks: More sinks besides those ``cfg.sinks`` asks for.
        origin: Epoch seconds of media time 0 in ``once`` mode (default: start time).
        live: Where the newest frame of each camera goes for the dashboard (default: a new
            :class:`~synspill.watch.ui.live.LiveFrames`; ``watch --ui`` shares its own).
    """

    def __init__(self, cfg: WatchConfig, once: bool = False, predictors: dict[str, Predictor] | None = None,
                 extra_sinks: list[Sink] | None = None, origin: float | None = None, live: LiveFrames | None = None) -> None:
        self.cfg, self.once, self.origin = cfg, once, origin
        self.live = live if live is not None else LiveFrames(cfg.ui.live_interval)
        self._live_files: LiveFileWriter | None = None
        for cam in cfg.cameras:
            kind = source_kind(cam.url)
            if once and kind == "webcam":
                raise UsageError(f"camera {cam.name}: --once needs a file, folder or finite stream, not webcam {cam.url}")
        self._stop = threading.Event()
        self.stats = {c.name: CameraStats(c.name) for c in cfg.cameras}
        self.engines = {c.name: EventEngine(c.name, c.policy, cfg.severity, c.zones) for c in cfg.cameras}
        self.cams = {c.name: c for c in cfg.cameras}
        self.baselines = {c.name: Baseline(c.name, c.baseline, baseline_dir(cfg.db))
                          for c in cfg.cameras if c.baseline.mode != "off"}
        self._given = predictors or {}
        self._extra_sinks = list(extra_sinks or [])
        self.summary = WatchSummary(cameras=self.stats)
        self.sinks: list[Sink] = []
        self.snapshots: SnapshotWriter | None = None
        self.store: EventStore | None = None
        self.groups: list[tuple[Predictor, list[str]]] = []
        self.network: list[ReliableSink] = []  # the sinks that confirm delivery (webhook, MQTT)
        self._last_error: dict[str, str] = {}
        self.suppressions = SuppressionCache()  # false-alarm regions, reloaded from the log every ~2 s

    def stop(self) -> None:
        """Ask the loop to finish (safe from signal handlers and other threads)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- set-up -----------------------------------------------------------------------
    def _load_predictors(self) -> None:
        groups: dict[tuple, list[str]] = {}
        for cam in self.cfg.cameras:
            if cam.name in self._given:
                self.groups.append((self._given[cam.name], [cam.name]))
            else:
                groups.setdefault(_group_key(cam), []).append(cam.name)
        for names in groups.values():
            cams = [self.cams[n] for n in names]
            conf = min(c.policy.threshold for c in cams)
            log.info("loading model %s for %s", cams[0].model, ", ".join(names))
            self.groups.append((load_watch_predictor(predictor_config(cams[0], conf)), names))

    def _open_sinks(self) -> None:
        s = self.cfg.sinks
        if s.stdout:
            self.sinks.append(JsonLinesSink())
        if s.webhook:
            self.sinks.append(WebhookSink(s.webhook, retries=s.webhook_retries))
        if s.mqtt:
            host, port = parse_hostport(s.mqtt)
            self.sinks.append(MqttSink(host, port, prefix=s.mqtt_prefix, retain_state=s.mqtt_retain,
                                       username=s.mqtt_username, password=s.mqtt_password))
        self.sinks.extend(self._extra_sinks)
        if s.snapshots:
            self.snapshots = SnapshotWriter(s.snapshots)
        assert self.store is not None
        self.network = [s for s in self.sinks if isinstance(s, ReliableSink)]
        for sink in self.network:  # what earlier runs could not deliver goes first
            pending = self.store.outbox_pending(sink.key)
            if pending:
                log.info("%s: sending %d undelivered alert(s) of an earlier run again", sink.key, len(pending))
                for row in pending:
                    sink.resend(int(row["id"]), row["payload"])
                self.summary.resent += len(pending)

    def _collect(self) -> None:
        """Apply the delivery outcomes the network sinks reported to the outbox."""
        assert self.store is not None
        delivered: list[int] = []
        failed: list[tuple[int, str]] = []
        for sink in self.network:
            for msg_id, ok, reason in sink.drain():
                if ok:
                    delivered.append(msg_id)
                else:
                    failed.append((msg_id, reason))
                    self._last_error[sink.key] = reason
        self.store.outbox_result(delivered, failed)

    def _close_sinks(self) -> None:
        """Close every sink, the network ones within the shared grace period; count what is left undelivered."""
        deadline = time.monotonic() + self.cfg.sinks.delivery_grace
        for sink in self.sinks:
            try:
                if sink in self.network:
                    sink.close(timeout=max(0.0, deadline - time.monotonic()))  # type: ignore[call-arg]
                else:
                    sink.close()
            except Exception:
                log.exception("closing sink %s", type(sink).__name__)
        if self.store is None:
            return
        self._collect()
        for sink in self.network:
            n = len(self.store.outbox_pending(sink.key))
            if n:
                self.summary.undelivered[sink.key] = (n, self._last_error.get(sink.key, "not confirmed in time"))

    # -- per-sample work ----------------------------------------------------------------
    def _publish(self, payload: dict[str, Any]) -> None:
        assert self.store is not None
        ids = self.store.outbox_add([s.key for s in self.network], payload) if self.network else []  # before anything is sent
        msg_ids = {id(s): i for s, i in zip(self.network, ids, strict=True)}
        for sink in self.sinks:
            try:
                if id(sink) in msg_ids:
                    sink.emit(payload, msg_ids[id(sink)])  # type: ignore[call-arg]
                else:
                    sink.emit(payload)
            except Exception:  # one broken sink must not stop the others or the log
                log.exception("sink %s failed", type(sink).__name__)
        self.summary.alerts += 1
        self._collect()

    def _clean_frame(self, frame: Frame | None, payload: dict[str, Any]) -> str | None:
        """The un-annotated frame of a new event, beside its snapshot (for hard negatives)."""
        if self.snapshots is None or frame is None:
            return None
        try:
            return self.snapshots.write_frame(frame.image, payload)
        except OSError as e:
            log.error("clean frame for event %s not written: %s", payload.get("event_id"), e)
            return None

    def _snapshot(self, frame: Frame | None, payload: dict[str, Any]) -> str | None:
        if self.snapshots is None or frame is None:
            return None
        cam = self.cams[payload["camera"]]
        h, w = frame.image.shape[:2]
        polys = [z.points((w, h)) for z in cam.zones]
        try:
            return self.snapshots.write(frame.image, payload, polys)
        except OSError as e:
            log.error("snapshot for event %s not written: %s", payload.get("event_id"), e)
            return None

    def _handle(self, frame: Frame | None, changes: list[EventChange]) -> None:
        assert self.store is not None
        rest: list[tuple[str, Any]] = []
        publish: list[EventChange] = []
        for ch in changes:
            ev = ch.event
            if ch.kind == "opened":
                self.store.insert(ev)  # committed before anything is published
                self.summary.events_opened += 1
                self.stats[ev.camera].events += 1
                opened = ev.payload("opened", ch.reason)
                snap = self._snapshot(frame, opened)
                clean = self._clean_frame(frame, opened)
                if snap or clean:
                    ev.snapshot = snap or ev.snapshot
                    self.store.set_snapshot(int(ev.event_id or 0), snap, frame=clean)
                self._publish(ev.payload("opened", ch.reason))
                continue
            if ch.kind == "updated":
                snap = self._snapshot(frame, ev.payload("updated", ch.reason))
                ev.snapshot = snap or ev.snapshot
            elif ch.kind == "closed":
                ev.closed_reason = ch.reason
            rest.append((ch.kind, ev))
            if ch.publish:
                publish.append(ch)
        self.store.apply(rest, observations=self.cfg.observations)
        for ch in publish:
            self._publish(ch.event.payload(ch.kind, ch.reason))

    def _process(self, frame: Frame, dets: Detections) -> None:
        t0 = time.perf_counter()
        self._process_inner(frame, dets)
        self._collect()
        self.summary.handle_s += time.perf_counter() - t0

    def _process_inner(self, frame: Frame, dets: Detections) -> None:
        cam = self.cams[frame.camera]
        if cam.classes is not None and len(dets):
            dets = dets.filter(np.isin(dets.class_id, np.array(cam.classes)))
        dets = self._baseline_filter(frame, dets)
        dets = self._suppression_filter(frame, dets)
        h, w = frame.image.shape[:2]
        eng = self.engines[frame.camera]
        changes = eng.step(dets.xyxy, dets.score, dets.class_id, frame.t, (w, h))
        self._handle(frame, changes)
        st = self.stats[frame.camera]
        now = time.monotonic()
        if st.last_t:
            dt = now - st.last_t
            st.fps = 1.0 / dt if st.fps == 0 else 0.8 * st.fps + 0.2 / max(dt, 1e-6)
        st.last_t = now
        st.samples += 1
        st.latency_ms = (now - frame.captured) * 1000
        st.open_events = len(eng.events)
        keep = dets.score >= cam.policy.threshold
        self._report_live(frame, dets.filter(keep))
        if keep.any():
            i = int(np.argmax(np.where(keep, dets.score, -1)))
            from synspill import taxonomy

            c = int(dets.class_id[i])
            name = taxonomy.BY_ID[c].name if c in taxonomy.BY_ID else str(c)
            st.last_detection = f"{time.strftime('%H:%M:%S', time.localtime(frame.t))} {name} {float(dets.score[i]):.2f}"
        self.summary.samples += 1

    def _report_live(self, frame: Frame, dets: Detections) -> None:
        """Hand the sample to the dashboard; every ``ui.live_interval`` s also log the camera's
        status (and, with snapshots on, its annotated frame under ``<snapshots>/live/``)."""
        if not self.live.put(frame.camera, frame.image, dets, frame.t):
            return
        assert self.store is not None
        path = None
        if self.cfg.sinks.snapshots:
            if self._live_files is None:
                self._live_files = LiveFileWriter()
            path = str(Path(self.cfg.sinks.snapshots) / "live" / f"{frame.camera}.jpg")
            self._live_files.submit(path, frame.image, dets)
        state = {k: v for k, v in dataclasses.asdict(self.stats[frame.camera]).items() if k != "last_t"}
        state["detections"] = len(dets)
        state["snapshots"] = str(Path(self.cfg.sinks.snapshots).resolve()) if self.cfg.sinks.snapshots else None
        self.store.upsert_camera(frame.camera, state, path)

    def _suppression_filter(self, frame: Frame, dets: Detections) -> Detections:
        """Drop detections inside a false-alarm region of their class on this camera (counted in the stats)."""
        if self.store is None or not len(dets):
            return dets
        regions = self.suppressions.get(self.store, frame.camera)
        if regions is None:
            return dets
        h, w = frame.image.shape[:2]
        drop = regions.mask(dets.xyxy, dets.class_id, (w, h))
        if not drop.any():
            return dets
        self.stats[frame.camera].suppressed_false_alarm += int(drop.sum())
        return dets.filter(~drop)

    def _baseline_filter(self, frame: Frame, dets: Detections) -> Detections:
        """Drop sightings whose region is unchanged since the camera's baseline; let it learn."""
        bl = self.baselines.get(frame.camera)
        if bl is None:
            return dets
        st = self.stats[frame.camera]
        unchanged = bl.step(frame.image, frame.t, dets.xyxy, dets.score, self.cams[frame.camera].policy.threshold,
                            busy=bool(self.engines[frame.camera].events))
        st.baseline = bl.state(frame.t)
        if not unchanged.any():
            return dets
        st.suppressed_baseline += int(unchanged.sum())
        return dets.filter(~unchanged)

    def _predict(self, pred: Predictor, frames: list[Frame]) -> list[Detections]:
        t0 = time.perf_counter()
        dets = pred.predict([f.image for f in frames])
        dt = time.perf_counter() - t0
        self.summary.infer_s += dt
        for f in frames:
            self.stats[f.camera].infer_ms = dt * 1000 / len(frames)
        if len(dets) != len(frames):
            raise RuntimeError(f"predictor {getattr(pred, 'name', pred)} returned {len(dets)} results for {len(frames)} images")
        return dets

    def _finish_camera(self, name: str, reason: str) -> None:
        changes = self.engines[name].close_all()
        for ch in changes:
            ch.reason = reason
        self._handle(None, changes)
        self.stats[name].open_events = 0

    # -- the loops ------------------------------------------------------------------------
    def run(self, on_status: Callable[[list[CameraStats]], None] | None = None) -> WatchSummary:
        """Run until :meth:`stop` (or, with ``once``, until every source ended).

        Args:
            on_status: Called after each batch with every camera's stats.

        Returns:
            Counts and timings of the run.
        """
        t0 = time.perf_counter()
        self.store = EventStore(self.cfg.db)
        try:
            self._load_predictors()
            self._open_sinks()
            for cam in self.cfg.cameras:
                n = self.store.close_stale(cam.name)
                if n:
                    log.info("camera %s: closed %d event(s) left open by a previous run", cam.name, n)
            if self.once:
                self._run_once(on_status)
            else:
                self._run_live(on_status)
        finally:
            try:
                self._close_sinks()
            finally:
                self.store.close()
                if self._live_files is not None:
                    self._live_files.close()
                self.summary.wall_s = time.perf_counter() - t0
        return self.summary

    def _run_once(self, on_status: Callable[[list[CameraStats]], None] | None) -> None:
        origin = time.time() if self.origin is None else self.origin
        iters: dict[str, Iterator[Frame]] = {c.name: iter_samples(c.name, c.url, c.fps, origin) for c in self.cfg.cameras}
        for n in iters:
            self.stats[n].state = "live"
        while iters and not self._stop.is_set():
            for pred, names in self.groups:
                batch: list[Frame] = []
                for n in names:
                    if n not in iters:
                        continue
                    f = next(iters[n], None)
                    if f is None:
                        del iters[n]
                        self.stats[n].state = "ended"
                        self._finish_camera(n, "end-of-stream")
                    else:
                        batch.append(f)
                if batch:
                    for f, d in zip(batch, self._predict(pred, batch), strict=True):
                        self._process(f, d)
                    if on_status:
                        on_status(list(self.stats.values()))
        for n in list(iters):  # stopped early
            self._finish_camera(n, "stopped")

    def _run_live(self, on_status: Callable[[list[CameraStats]], None] | None) -> None:
        wake = threading.Event()
        readers = {c.name: CameraReader(c.name, c.url, c.fps, loop=c.loop, wake=wake) for c in self.cfg.cameras}
        for r in readers.values():
            r.start()
        last_status = 0.0
        try:
            while not self._stop.is_set():
                wake.clear()
                frames = {n: f for n, r in readers.items() if (f := r.take()) is not None}
                for n, r in readers.items():
                    st = self.stats[n]
                    st.state, st.dropped, st.reconnects = r.status.state, r.status.dropped, r.status.reconnects
                if not frames:
                    if all(r.finished for r in readers.values()):
                        break
                    wake.wait(0.25)
                    if on_status and time.monotonic() - last_status > 0.5:
                        on_status(list(self.stats.values()))
                        last_status = time.monotonic()
                    continue
                for pred, names in self.groups:
                    batch = [frames[n] for n in names if n in frames]
                    if batch:
                        for f, d in zip(batch, self._predict(pred, batch), strict=True):
                            self._process(f, d)
                if on_status:
                    on_status(list(self.stats.values()))
                    last_status = time.monotonic()
        finally:
            for r in readers.values():
                r.stop()
            for r in readers.values():
                r.join(timeout=15)
            for n in readers:
                self._finish_camera(n, "shutdown" if self._stop.is_set() else "end-of-stream")
