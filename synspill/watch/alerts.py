"""When a tracked spill becomes an alert, how severe it is, and when to alert again.

The rule (documented in ``docs/watch.md``, configurable in the ``[severity]`` table):

``score = w_area * min(area_frac / area_full, 1)``
``      + w_growth * min(max(growth_per_min, 0) / growth_full, 1)``
``      + w_zone * zone_criticality + w_class * class_weight[class]``

divided by the sum of the weights, so ``score`` is in [0, 1]. ``area_frac`` is the box
area over the zone's area when the spill lies in a zone, else over the frame's;
``growth_per_min`` is the relative area change per minute over the last
``growth_window`` seconds (1.0 = doubling every minute). The level is the highest of
``low < medium < high < critical`` whose lower bound ``score`` reaches
(``levels = {medium = 0.35, high = 0.55, critical = 0.75}`` by default). An event's
severity is the highest level it has reached: the log records how bad it got.

An event (one spill) is opened when its track is confirmed (k of n samples), updated on
every sighting, re-alerted when its severity level rises or its area grew by
``realert_growth`` since the last alert (at most once per ``cooldown`` seconds; a level
rise ignores the cooldown), and closed after ``close_after`` seconds unseen.
No I/O here: :class:`EventEngine` returns :class:`EventChange` records for the loop to
persist and publish.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synspill import taxonomy
from synspill.errors import UsageError
from synspill.params import FromParams
from synspill.watch import Severity
from synspill.watch.tracker import SpillTracker, Track
from synspill.watch.zones import Zone, zone_of

LEVELS: tuple[str, ...] = tuple(s.value for s in Severity)

#: How much each class matters by default (chemicals and oil are worse than an old stain).
DEFAULT_CLASS_WEIGHTS: dict[str, float] = {
    "oil-spill": 0.8,
    "water-leak": 0.5,
    "chemical-discoloration": 1.0,
    "floor-stain": 0.2,
    "coolant-leak": 0.7,
    "rust-stain": 0.3,
    "grease-smear": 0.5,
    "powder-spill": 0.5,
}


@dataclass(frozen=True)
class SeverityRule:
    """The weighted-score severity rule (see the module docstring).

    Attributes:
        w_area, w_growth, w_zone, w_class: Non-negative weights (normalised by their sum).
        area_full: Area fraction (of zone or frame) that scores the full area term.
        growth_full: Relative growth per minute that scores the full growth term.
        growth_window: Seconds of history the growth rate is measured over.
        default_criticality: Criticality (0-1) of places outside every zone.
        class_weights: Class name -> weight in [0, 1].
        levels: Lower score bound of ``medium``, ``high`` and ``critical``.
    """

    w_area: float = 0.4
    w_growth: float = 0.2
    w_zone: float = 0.25
    w_class: float = 0.15
    area_full: float = 0.10
    growth_full: float = 1.0
    growth_window: float = 60.0
    default_criticality: float = 0.5
    class_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_CLASS_WEIGHTS))
    levels: dict[str, float] = field(default_factory=lambda: {"medium": 0.35, "high": 0.55, "critical": 0.75})

    def __post_init__(self) -> None:
        ws = (self.w_area, self.w_growth, self.w_zone, self.w_class)
        if min(ws) < 0 or sum(ws) <= 0:
            raise UsageError(f"severity weights {ws} must be >= 0 and not all 0")
        if self.area_full <= 0 or self.growth_full <= 0 or self.growth_window <= 0:
            raise UsageError("severity area_full, growth_full and growth_window must be > 0")
        for name, w in self.class_weights.items():
            if taxonomy.normalize_name(name) is None:
                raise UsageError(f"severity class_weights: {name!r} is not a class; use one of {', '.join(taxonomy.NAMES)}")
            if not 0.0 <= w <= 1.0:
                raise UsageError(f"severity class_weights.{name} = {w} must be in [0, 1]")
        if set(self.levels) != {"medium", "high", "critical"}:
            raise UsageError(f"severity levels {sorted(self.levels)} must be exactly medium, high, critical")
        m, h, c = self.levels["medium"], self.levels["high"], self.levels["critical"]
        if not 0.0 < m < h < c <= 1.0:
            raise UsageError(f"severity levels must satisfy 0 < medium < high < critical <= 1, got {m}, {h}, {c}")

    def class_weight(self, class_id: int) -> float:
        name = taxonomy.BY_ID[class_id].name if class_id in taxonomy.BY_ID else ""
        weights = {taxonomy.normalize_name(k) or k: v for k, v in self.class_weights.items()}
        return float(weights.get(name, 0.5))

    def score(self, area_frac: float, growth_per_min: float, criticality: float, class_id: int) -> float:
        """The severity score in [0, 1] (see the module docstring for the formula)."""
        terms = (
            self.w_area * min(max(area_frac, 0.0) / self.area_full, 1.0),
            self.w_growth * min(max(growth_per_min, 0.0) / self.growth_full, 1.0),
            self.w_zone * min(max(criticality, 0.0), 1.0),
            self.w_class * self.class_weight(class_id),
        )
        return float(sum(terms) / (self.w_area + self.w_growth + self.w_zone + self.w_class))

    def level(self, score: float) -> str:
        """``low``, ``medium``, ``high`` or ``critical`` for a score."""
        for name in ("critical", "high", "medium"):
            if score >= self.levels[name]:
                return name
        return "low"


@dataclass(frozen=True)
class AlertPolicy(FromParams):
    """When a spill is an alert, and when to say so again.

    Attributes:
        threshold: Minimum detection confidence that counts as a sighting.
        k, n: A track is confirmed when seen in ``k`` of its last ``n`` samples.
        cooldown: Seconds between re-alerts for one event (growth re-alerts).
        realert_growth: Re-alert when the area reached this multiple of the last alert's.
        close_after: Close an event not seen for this many seconds.
        iou, centre: Association thresholds (see :class:`~synspill.watch.tracker.SpillTracker`).
    """

    threshold: float = 0.5
    k: int = 3
    n: int = 5
    cooldown: float = 300.0
    realert_growth: float = 1.5
    close_after: float = 60.0
    iou: float = 0.3
    centre: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise UsageError(f"threshold {self.threshold} must be in [0, 1]")
        if not 1 <= self.k <= self.n:
            raise UsageError(f"k={self.k}, n={self.n}: need 1 <= k <= n (e.g. 3 of 5)")
        if self.cooldown < 0 or self.close_after <= 0:
            raise UsageError(f"cooldown {self.cooldown} must be >= 0 and close_after {self.close_after} > 0")
        if self.realert_growth <= 1.0:
            raise UsageError(f"realert_growth {self.realert_growth} must be > 1 (e.g. 1.5 = 50 % larger)")


@dataclass
class EventState:
    """What is known about one confirmed spill (one row of the events table).

    Boxes are absolute ``xyxy`` pixels of the camera frame.
    """

    track_id: int
    camera: str
    zone: str | None
    class_id: int
    first_seen: float
    last_seen: float
    confidence: float
    max_confidence: float
    box: tuple[float, float, float, float]
    area: float
    first_area: float
    area_frac: float
    growth_per_min: float
    severity: str
    severity_score: float
    frame_w: int
    frame_h: int
    event_id: int | None = None
    snapshot: str | None = None
    alerts: int = 0
    closed: bool = False
    closed_at: float | None = None
    closed_reason: str | None = None

    @property
    def class_name(self) -> str:
        return taxonomy.BY_ID[self.class_id].name if self.class_id in taxonomy.BY_ID else str(self.class_id)

    def payload(self, kind: str, reason: str) -> dict[str, Any]:
        """The JSON record sinks publish (see docs/watch.md "Payload")."""
        from datetime import UTC, datetime

        def iso(t: float) -> str:
            return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

        return {
            "type": f"spill.{kind}", "reason": reason, "event_id": self.event_id, "camera": self.camera,
            "zone": self.zone, "class": self.class_name, "class_id": self.class_id,
            "severity": self.severity, "severity_score": round(self.severity_score, 4),
            "confidence": round(self.confidence, 4), "max_confidence": round(self.max_confidence, 4),
            "box": [round(v, 1) for v in self.box], "area_px": round(self.area, 1),
            "area_frac": round(self.area_frac, 5), "growth_per_min": round(self.growth_per_min, 4),
            "first_seen": iso(self.first_seen), "last_seen": iso(self.last_seen),
            "frame_size": [self.frame_w, self.frame_h], "alerts": self.alerts, "snapshot": self.snapshot,
        }


@dataclass
class EventChange:
    """One thing that happened to an event during a sample.

    ``kind`` is ``opened`` (insert + publish), ``seen`` (update the row only), ``updated``
    (update + publish a re-alert, ``reason`` = ``severity`` or ``growth``) or ``closed``.
    """

    kind: str
    reason: str
    event: EventState

    @property
    def publish(self) -> bool:
        return self.kind != "seen"


class EventEngine:
    """Per-camera alert logic: tracker -> confirmed events -> changes to persist/publish.

    Args:
        camera: Camera name (copied into events).
        policy: k of n, threshold, cooldown, re-alert and closing rules.
        rule: Severity rule.
        zones: The camera's zones (polygons in absolute pixels or normalised 0-1).
    """

    def __init__(self, camera: str, policy: AlertPolicy, rule: SeverityRule, zones: tuple[Zone, ...] = ()) -> None:
        self.camera = camera
        self.policy = policy
        self.rule = rule
        self.zones = zones
        self.tracker = SpillTracker(k=policy.k, n=policy.n, iou=policy.iou, centre=policy.centre,
                                    growth_window=rule.growth_window)
        self.events: dict[int, EventState] = {}  # track id -> open event
        self._last_alert: dict[int, tuple[float, float, int]] = {}  # track id -> (t, area, level index)

    def step(self, xyxy: np.ndarray, score: np.ndarray, class_id: np.ndarray, t: float,
             frame_wh: tuple[int, int]) -> list[EventChange]:
        """Feed one sample's detections.

        Args:
            xyxy: ``(N, 4)`` absolute ``xyxy`` boxes.
            score: ``(N,)`` confidences (NaN = the model gave none: counts as 1.0).
            class_id: ``(N,)`` taxonomy ids.
            t: Sample time, epoch seconds.
            frame_wh: Frame ``(width, height)``.

        Returns:
            The changes, in order: opened/updated/seen events, then closed ones.
        """
        score = np.where(np.isnan(score), 1.0, score).astype(np.float32)
        keep = score >= self.policy.threshold
        self.tracker.update(np.asarray(xyxy, np.float32)[keep], score[keep], np.asarray(class_id)[keep], t)
        changes: list[EventChange] = []
        for tr in self.tracker.tracks:
            if not tr.confirmed or not tr.hit_now:
                continue
            ev = self.events.get(tr.id)
            state = self._state(tr, frame_wh, ev)
            if ev is None:
                self.events[tr.id] = state
                self._last_alert[tr.id] = (t, state.area, LEVELS.index(state.severity))
                state.alerts = 1
                changes.append(EventChange("opened", "confirmed", state))
                continue
            last_t, last_area, last_level = self._last_alert[tr.id]
            level = LEVELS.index(state.severity)
            reason = ""
            if level > last_level:
                reason = "severity"
            elif state.area >= last_area * self.policy.realert_growth and t - last_t >= self.policy.cooldown:
                reason = "growth"
            if reason:
                self._last_alert[tr.id] = (t, state.area, max(level, last_level))
                state.alerts += 1
                changes.append(EventChange("updated", reason, state))
            else:
                changes.append(EventChange("seen", "", state))
        for tr in list(self.tracker.tracks):
            if tr.confirmed and t - tr.last_seen >= self.policy.close_after:
                self.tracker.drop(tr.id)
                ev = self.events.pop(tr.id, None)
                self._last_alert.pop(tr.id, None)
                if ev is not None:
                    ev.closed, ev.closed_at, ev.closed_reason = True, t, "unseen"
                    changes.append(EventChange("closed", "unseen", ev))
        return changes

    def close_all(self) -> list[EventChange]:
        """Close every open event (end of a ``--once`` run)."""
        out = []
        for tid, ev in list(self.events.items()):
            ev.closed, ev.closed_at, ev.closed_reason = True, ev.last_seen, "end-of-stream"
            self.tracker.drop(tid)
            out.append(EventChange("closed", "end-of-stream", ev))
        self.events.clear()
        self._last_alert.clear()
        return out

    def _state(self, tr: Track, frame_wh: tuple[int, int], prev: EventState | None) -> EventState:
        w, h = frame_wh
        x1, y1, x2, y2 = (float(v) for v in tr.box)
        area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
        zone = prev_zone = None
        if prev is not None:
            prev_zone = next((z for z in self.zones if z.name == prev.zone), None)
        zone = prev_zone or zone_of(self.zones, ((x1 + x2) / 2, (y1 + y2) / 2), (w, h))
        denom = zone.area((w, h)) if zone is not None else float(w * h)
        area_frac = area / denom if denom > 0 else 0.0
        crit = zone.criticality if zone is not None else self.rule.default_criticality
        growth = tr.growth_per_min()
        score = self.rule.score(area_frac, growth, crit, tr.class_id)
        if prev is not None:
            score = max(score, prev.severity_score)
        state = EventState(
            track_id=tr.id, camera=self.camera, zone=zone.name if zone else None, class_id=tr.class_id,
            first_seen=tr.first_seen, last_seen=tr.last_seen, confidence=tr.last_conf,
            max_confidence=tr.max_conf, box=(x1, y1, x2, y2), area=area,
            first_area=prev.first_area if prev else area, area_frac=area_frac, growth_per_min=growth,
            severity=self.rule.level(score), severity_score=score, frame_w=int(w), frame_h=int(h),
        )
        if prev is not None:
            state.event_id, state.snapshot, state.alerts = prev.event_id, prev.snapshot, prev.alerts
            self.events[tr.id] = state
        return state
