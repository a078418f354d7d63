"""The maintenance log: spill events in one SQLite file (stdlib ``sqlite3``).

Durability: WAL journal; every write is one committed transaction, so a process crash
(even ``kill -9``) loses nothing committed and never leaves the file corrupt (SQLite
recovers the WAL on the next open). A newly confirmed event is committed with
``synchronous=FULL`` (the WAL is fsynced: it survives a power cut too); the frequent
"still there" updates use ``synchronous=NORMAL`` (no fsync; a power cut may roll back
the last few updates, never an event). Readers
(``synspill events``) can work while ``watch`` writes.

Tables:

- ``events``: one row per spill: camera, zone, class, first/last seen (epoch seconds,
  UTC), confidences, the latest box (absolute ``xyxy`` pixels of the frame) and its area,
  the frame size, severity, snapshot path, acknowledgement, open/closed.
- ``observations``: every sighting of an event (time, confidence, box, area), for growth
  curves.
- ``outbox``: alerts for network sinks (webhook, MQTT) not yet confirmed delivered: a row is
  committed (fsynced) before the alert is sent and deleted once the receiver confirmed it
  (HTTP 2xx, MQTT PUBACK); what is left is sent again on the next start (at least once).
- ``suppressions``: places where a class is a known false alarm on a camera (from
  :meth:`EventStore.mark_false_alarm`): the event's box normalised to 0-1 of the frame and a
  tolerance; the watch loop drops detections inside (see :mod:`synspill.watch.suppress`).
- ``cameras``: the latest state (JSON) and live frame of each camera, for dashboards.

Schema versions (``PRAGMA user_version``): v1 had events, observations and outbox; v2 adds
the events columns ``false_alarm``, ``closed_reason`` and ``frame`` (the clean frame of the
event's first snapshot) and the ``suppressions`` and ``cameras`` tables. A v1 file is
migrated in place, in one transaction, when it is opened.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synspill.errors import UsageError
from synspill.watch.alerts import LEVELS, EventState

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    zone TEXT,
    class_id INTEGER NOT NULL,
    class_name TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    confidence REAL NOT NULL,
    max_confidence REAL NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    area REAL NOT NULL,
    first_area REAL NOT NULL,
    area_frac REAL NOT NULL,
    growth_per_min REAL NOT NULL DEFAULT 0,
    frame_w INTEGER NOT NULL,
    frame_h INTEGER NOT NULL,
    severity TEXT NOT NULL,
    severity_score REAL NOT NULL,
    snapshot TEXT,
    alerts INTEGER NOT NULL DEFAULT 1,
    status TEXT NOT NULL DEFAULT 'open',
    closed_at REAL,
    acknowledged INTEGER NOT NULL DEFAULT 0,
    acked_at REAL,
    false_alarm INTEGER NOT NULL DEFAULT 0,
    closed_reason TEXT,
    frame TEXT
);
CREATE INDEX IF NOT EXISTS events_camera_time ON events(camera, first_seen);
CREATE INDEX IF NOT EXISTS events_time ON events(first_seen);
CREATE TABLE IF NOT EXISTS observations (
    event_id INTEGER NOT NULL REFERENCES events(id),
    t REAL NOT NULL,
    confidence REAL NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    area REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS observations_event ON observations(event_id, t);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    event_id INTEGER,
    payload TEXT NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_sink ON outbox(sink, id);
CREATE TABLE IF NOT EXISTS suppressions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    class_id INTEGER NOT NULL,
    class_name TEXT NOT NULL,
    x1 REAL, y1 REAL, x2 REAL, y2 REAL,  -- normalised 0-1 of the frame
    tolerance REAL NOT NULL,
    event_id INTEGER,
    created REAL NOT NULL,
    note TEXT
);
CREATE INDEX IF NOT EXISTS suppressions_camera ON suppressions(camera);
CREATE TABLE IF NOT EXISTS cameras (
    name TEXT PRIMARY KEY,
    updated REAL NOT NULL,
    state TEXT NOT NULL,  -- JSON
    frame TEXT  -- path of the latest live frame, or NULL
);
"""

#: v1 -> v2: what the events table gains (the new tables come from :data:`SCHEMA`).
_V2_COLUMNS = (("false_alarm", "INTEGER NOT NULL DEFAULT 0"), ("closed_reason", "TEXT"), ("frame", "TEXT"))

COLUMNS = ("id", "camera", "zone", "class_id", "class_name", "first_seen", "last_seen", "confidence",
           "max_confidence", "x1", "y1", "x2", "y2", "area", "first_area", "area_frac", "growth_per_min",
           "frame_w", "frame_h", "severity", "severity_score", "snapshot", "alerts", "status", "closed_at",
           "acknowledged", "acked_at", "false_alarm", "closed_reason", "frame")

SUPPRESSION_COLUMNS = ("id", "camera", "class_id", "class_name", "x1", "y1", "x2", "y2", "tolerance", "event_id",
                       "created", "note")


@dataclass(frozen=True)
class EventFilter:
    """Filters for :meth:`EventStore.query` (all optional, combined with AND).

    Attributes:
        camera, zone, class_name: Exact matches.
        since, until: Epoch seconds bounds on ``first_seen`` (until exclusive).
        min_severity: Keep this level and above (``high`` keeps high and critical).
        unacked: Only events nobody acknowledged.
        status: ``open`` or ``closed``.
        false_alarm: True: only events marked as false alarms; False: only the others; None: all.
    """

    camera: str | None = None
    zone: str | None = None
    class_name: str | None = None
    since: float | None = None
    until: float | None = None
    min_severity: str | None = None
    unacked: bool = False
    status: str | None = None
    false_alarm: bool | None = None


class EventStore:
    """The SQLite event log.

    Args:
        path: Database file (created with its folder when missing).
        existing: Open a log that must already exist (``synspill events``): a missing file
            is an error, never created. It is still opened for writing (``ack`` and
            ``false-alarm`` write into it), and a v1 file is migrated to v2 like any other.

    Raises:
        UsageError: The file is missing (``existing``) or not a synspill event database.
    """

    def __init__(self, path: str | Path, existing: bool = False) -> None:
        self.path = Path(path)
        if existing and not self.path.is_file():
            raise UsageError(f"{self.path}: no such event database; run `synspill watch ... --db {self.path}` first or pass --db")
        if not existing:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA busy_timeout=30000")
            ver = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if ver > SCHEMA_VERSION:
                raise UsageError(f"{self.path}: event database schema v{ver}, this synspill reads up to v{SCHEMA_VERSION}; "
                                 "upgrade synspill or use a new --db")
            if existing:
                self._check_schema()
                if ver == 1:
                    self._migrate_v1()
            else:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.execute("PRAGMA foreign_keys=ON")
                if ver == 1:
                    self._migrate_v1()
                self.conn.executescript(SCHEMA)  # idempotent (IF NOT EXISTS): a crash here is repaired next open
                self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise UsageError(f"{self.path}: not a usable event database ({e}); pass another --db") from None

    def _migrate_v1(self) -> None:
        """v1 -> v2 in one transaction: the new events columns and tables, then ``user_version=2``."""
        with self.transaction() as c:
            have = {r[1] for r in c.execute("PRAGMA table_info(events)")}
            for col, decl in _V2_COLUMNS:
                if col not in have:
                    c.execute(f"ALTER TABLE events ADD COLUMN {col} {decl}")
            for stmt in SCHEMA.split(";"):  # the CREATE ... IF NOT EXISTS of the new tables (the rest are no-ops)
                if stmt.strip():
                    c.execute(stmt)
            c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        log.info("%s: event database migrated from schema v1 to v%d", self.path, SCHEMA_VERSION)

    def _check_schema(self) -> None:
        have = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "events" not in have:
            raise UsageError(f"{self.path}: has no events table; is this a `synspill watch` database?")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE ... COMMIT`` (rolled back on error)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- writes (the watch loop) ----------------------------------------------------
    def insert(self, ev: EventState) -> int:
        """Insert a newly confirmed event (fsynced); sets and returns ``ev.event_id``."""
        self.conn.execute("PRAGMA synchronous=FULL")
        try:
            ev.event_id = self._insert(ev)
        finally:
            self.conn.execute("PRAGMA synchronous=NORMAL")
        return ev.event_id

    def _insert(self, ev: EventState) -> int:
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO events (camera, zone, class_id, class_name, first_seen, last_seen, confidence, max_confidence,"
                " x1, y1, x2, y2, area, first_area, area_frac, growth_per_min, frame_w, frame_h, severity, severity_score,"
                " snapshot, alerts, status) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,'open')",
                (ev.camera, ev.zone, ev.class_id, ev.class_name, ev.first_seen, ev.last_seen, ev.confidence,
                 ev.max_confidence, *ev.box, ev.area, ev.first_area, ev.area_frac, ev.growth_per_min,
                 ev.frame_w, ev.frame_h, ev.severity, ev.severity_score, ev.snapshot, ev.alerts))
            ev.event_id = int(cur.lastrowid or 0)
            self._observe(c, ev)
        return ev.event_id

    def apply(self, changes: list[tuple[str, EventState]], observations: bool = True) -> None:
        """Persist one sample's changes (``seen``/``updated``/``closed``) in one transaction."""
        if not changes:
            return
        with self.transaction() as c:
            for kind, ev in changes:
                if ev.event_id is None:
                    continue
                c.execute(
                    "UPDATE events SET zone=?, class_id=?, class_name=?, last_seen=?, confidence=?, max_confidence=?,"
                    " x1=?, y1=?, x2=?, y2=?, area=?, area_frac=?, growth_per_min=?, severity=?, severity_score=?,"
                    " snapshot=COALESCE(?, snapshot), alerts=? WHERE id=?",
                    (ev.zone, ev.class_id, ev.class_name, ev.last_seen, ev.confidence, ev.max_confidence, *ev.box,
                     ev.area, ev.area_frac, ev.growth_per_min, ev.severity, ev.severity_score, ev.snapshot,
                     ev.alerts, ev.event_id))
                if kind == "closed":  # one closed by hand meanwhile (false alarm) keeps its time and reason
                    c.execute("UPDATE events SET status='closed', closed_at=?, closed_reason=? WHERE id=? AND status='open'",
                              (ev.closed_at if ev.closed_at is not None else time.time(), ev.closed_reason, ev.event_id))
                elif observations:
                    self._observe(c, ev)

    def set_snapshot(self, event_id: int, path: str | None, frame: str | None = None) -> None:
        """Record an event's annotated snapshot and/or its clean frame (None keeps what is there)."""
        with self.transaction() as c:
            c.execute("UPDATE events SET snapshot=COALESCE(?, snapshot), frame=COALESCE(?, frame) WHERE id=?",
                      (path, frame, event_id))

    def close_stale(self, camera: str) -> int:
        """Close events a previous run left open for ``camera`` (reason ``stale``; returns how many)."""
        with self.transaction() as c:
            cur = c.execute("UPDATE events SET status='closed', closed_at=?, closed_reason='stale' WHERE camera=? AND status='open'",
                            (time.time(), camera))
        return cur.rowcount

    # -- the outbox (network sinks) ----------------------------------------------------
    def outbox_add(self, sinks: list[str], payload: dict[str, Any]) -> list[int]:
        """Record one alert for each of ``sinks`` before it is sent (fsynced); returns the row ids."""
        self.conn.execute("PRAGMA synchronous=FULL")
        try:
            with self.transaction() as c:
                body = json.dumps(payload, separators=(",", ":"))
                ids = [int(c.execute("INSERT INTO outbox (sink, event_id, payload, created) VALUES (?,?,?,?)",
                                     (s, payload.get("event_id"), body, time.time())).lastrowid or 0) for s in sinks]
        finally:
            self.conn.execute("PRAGMA synchronous=NORMAL")
        return ids

    def outbox_result(self, delivered: list[int], failed: list[tuple[int, str]]) -> None:
        """Delete delivered rows; count a failed attempt (with its reason) on the others."""
        if not delivered and not failed:
            return
        with self.transaction() as c:
            c.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in delivered])
            c.executemany("UPDATE outbox SET attempts=attempts+1, last_error=? WHERE id=?", [(r, i) for i, r in failed])

    def outbox_pending(self, sink: str | None = None) -> list[dict[str, Any]]:
        """Undelivered alerts, oldest first: ``id``, ``sink``, ``event_id``, ``payload`` (a dict), ``attempts``, ``last_error``."""
        sql = "SELECT id, sink, event_id, payload, attempts, last_error FROM outbox"
        rows = self.conn.execute(sql + (" WHERE sink=? ORDER BY id" if sink else " ORDER BY id"), (sink,) if sink else ())
        return [{**dict(r), "payload": json.loads(r["payload"])} for r in rows]

    @staticmethod
    def _observe(c: sqlite3.Connection, ev: EventState) -> None:
        c.execute("INSERT INTO observations (event_id, t, confidence, x1, y1, x2, y2, area) VALUES (?,?,?,?,?,?,?,?)",
                  (ev.event_id, ev.last_seen, ev.confidence, *ev.box, ev.area))

    # -- reads and maintenance (synspill events) --------------------------------------
    def query(self, f: EventFilter | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Events matching ``f``, oldest first, as dicts with the :data:`COLUMNS` keys."""
        f = f or EventFilter()
        where: list[str] = []
        args: list[Any] = []
        for col, val in (("camera", f.camera), ("zone", f.zone), ("class_name", f.class_name), ("status", f.status)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if f.since is not None:
            where.append("first_seen >= ?")
            args.append(f.since)
        if f.until is not None:
            where.append("first_seen < ?")
            args.append(f.until)
        if f.min_severity is not None:
            if f.min_severity not in LEVELS:
                raise UsageError(f"--severity {f.min_severity!r} is not one of {', '.join(LEVELS)}")
            keep = LEVELS[LEVELS.index(f.min_severity):]
            where.append(f"severity IN ({','.join('?' * len(keep))})")
            args.extend(keep)
        if f.unacked:
            where.append("acknowledged = 0")
        if f.false_alarm is not None:
            where.append("false_alarm = ?")
            args.append(int(f.false_alarm))
        sql = f"SELECT {', '.join(COLUMNS)} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY first_seen, id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [dict(r) for r in self.conn.execute(sql, args)]

    def observations(self, event_id: int) -> list[dict[str, Any]]:
        """Sightings of one event, in time order."""
        return [dict(r) for r in self.conn.execute(
            "SELECT t, confidence, x1, y1, x2, y2, area FROM observations WHERE event_id=? ORDER BY t", (event_id,))]

    def ack(self, ids: list[int]) -> list[int]:
        """Acknowledge events; returns the ids that do not exist (nothing is changed then).

        Raises:
            UsageError: Some ids are unknown (the message names them).
        """
        with self.transaction() as c:
            self._require(c, ids)
            c.execute(f"UPDATE events SET acknowledged=1, acked_at=? WHERE id IN ({','.join('?' * len(ids))}) AND acknowledged=0",
                      [time.time(), *ids])
        return []

    def _require(self, c: sqlite3.Connection, ids: list[int]) -> None:
        have = {r[0] for r in c.execute(f"SELECT id FROM events WHERE id IN ({','.join('?' * len(ids))})", ids)}
        missing = [i for i in ids if i not in have]
        if missing:
            raise UsageError(f"{self.path}: no event with id {', '.join(map(str, missing))}; see `synspill events list`")

    def event(self, event_id: int) -> dict[str, Any] | None:
        """One event as a dict with the :data:`COLUMNS` keys, or None when there is no such id."""
        r = self.conn.execute(f"SELECT {', '.join(COLUMNS)} FROM events WHERE id=?", (event_id,)).fetchone()
        return dict(r) if r is not None else None

    def close_events(self, ids: list[int], reason: str = "manual") -> None:
        """Close events by hand (``status='closed'``, ``closed_at`` now, ``closed_reason``); closed ones are left as they are.

        A running ``watch`` that still tracks such a spill keeps updating its row (last seen,
        box) but does not reopen it, and its own close later keeps this time and reason.

        Raises:
            UsageError: Some ids are unknown (the message names them; nothing is changed).
        """
        if not ids:
            return
        with self.transaction() as c:
            self._require(c, ids)
            c.execute(f"UPDATE events SET status='closed', closed_at=?, closed_reason=? WHERE status='open' AND id IN "
                      f"({','.join('?' * len(ids))})", [time.time(), reason, *ids])

    def mark_false_alarm(self, event_id: int, tolerance: float = 0.25, note: str | None = None) -> int:
        """Mark an event as a false alarm and suppress its class at its place on its camera.

        Sets ``false_alarm=1`` and acknowledges the event, closes it when open (reason
        ``false-alarm``) and adds a suppression: the event's latest box normalised to 0-1 by
        ``frame_w``/``frame_h``, widened by ``tolerance`` times its width/height on each side
        when the loop matches it (:mod:`synspill.watch.suppress`). Marking an event again
        adds no second suppression.

        Args:
            event_id: The event.
            tolerance: Margin of the suppressed region, as a fraction of the box size (>= 0).
            note: Free text kept with the suppression (who, why).

        Returns:
            The suppression's id (the existing one when the event was marked before).

        Raises:
            UsageError: No such event, or a negative tolerance.
        """
        if not tolerance >= 0:
            raise UsageError(f"tolerance {tolerance} must be >= 0 (a fraction of the box size, e.g. 0.25)")
        now = time.time()
        with self.transaction() as c:
            self._require(c, [event_id])
            c.execute("UPDATE events SET false_alarm=1, acknowledged=1, acked_at=COALESCE(acked_at, ?) WHERE id=?", (now, event_id))
            c.execute("UPDATE events SET status='closed', closed_at=?, closed_reason='false-alarm' WHERE id=? AND status='open'",
                      (now, event_id))
            have = c.execute("SELECT id FROM suppressions WHERE event_id=? ORDER BY id LIMIT 1", (event_id,)).fetchone()
            if have is not None:
                return int(have[0])
            e = c.execute("SELECT camera, class_id, class_name, x1, y1, x2, y2, frame_w, frame_h FROM events WHERE id=?",
                          (event_id,)).fetchone()
            w, h = max(int(e["frame_w"]), 1), max(int(e["frame_h"]), 1)
            cur = c.execute(
                "INSERT INTO suppressions (camera, class_id, class_name, x1, y1, x2, y2, tolerance, event_id, created, note)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (e["camera"], e["class_id"], e["class_name"], e["x1"] / w, e["y1"] / h, e["x2"] / w, e["y2"] / h,
                 float(tolerance), event_id, now, note))
            return int(cur.lastrowid or 0)

    def unmark_false_alarm(self, event_id: int) -> int:
        """Undo :meth:`mark_false_alarm`: clear the flag and remove the event's suppressions (returns how many).

        The event stays closed and acknowledged.

        Raises:
            UsageError: No such event.
        """
        with self.transaction() as c:
            self._require(c, [event_id])
            c.execute("UPDATE events SET false_alarm=0 WHERE id=?", (event_id,))
            return c.execute("DELETE FROM suppressions WHERE event_id=?", (event_id,)).rowcount

    def suppressions(self, camera: str | None = None) -> list[dict[str, Any]]:
        """Suppressions (all cameras, or ``camera``'s), oldest first, as dicts with the :data:`SUPPRESSION_COLUMNS` keys.

        ``x1, y1, x2, y2`` are normalised 0-1 ``xyxy`` of the frame.
        """
        sql = f"SELECT {', '.join(SUPPRESSION_COLUMNS)} FROM suppressions"
        rows = self.conn.execute(sql + (" WHERE camera=? ORDER BY id" if camera else " ORDER BY id"), (camera,) if camera else ())
        return [dict(r) for r in rows]

    def suppressions_version(self) -> tuple[int, int]:
        """``(max id, count)`` of the suppressions: changes whenever one is added or removed (cheap to poll)."""
        r = self.conn.execute("SELECT COALESCE(MAX(id), 0), COUNT(*) FROM suppressions").fetchone()
        return int(r[0]), int(r[1])

    def remove_suppression(self, sid: int) -> None:
        """Delete one suppression (detections there alert again; the event keeps its false-alarm flag).

        Raises:
            UsageError: No suppression with this id.
        """
        with self.transaction() as c:
            if c.execute("DELETE FROM suppressions WHERE id=?", (sid,)).rowcount == 0:
                raise UsageError(f"{self.path}: no suppression with id {sid}; see `synspill events suppressions`")

    # -- camera state (dashboards) ----------------------------------------------------------
    def upsert_camera(self, name: str, state: dict[str, Any], frame: str | None = None) -> None:
        """Record a camera's latest state (any JSON-able dict) and live frame path, in one transaction
        (at the connection's usual ``synchronous=NORMAL``: not fsynced)."""
        with self.transaction() as c:
            c.execute("INSERT INTO cameras (name, updated, state, frame) VALUES (?,?,?,?) ON CONFLICT(name) DO UPDATE"
                      " SET updated=excluded.updated, state=excluded.state, frame=excluded.frame",
                      (name, time.time(), json.dumps(state, separators=(",", ":"), default=str), frame))

    def cameras(self) -> list[dict[str, Any]]:
        """Every recorded camera, by name: ``name``, ``updated`` (epoch s), ``state`` (the dict), ``frame``."""
        return [{**dict(r), "state": json.loads(r["state"])}
                for r in self.conn.execute("SELECT name, updated, state, frame FROM cameras ORDER BY name")]

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` result (``ok`` when healthy)."""
        return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])
