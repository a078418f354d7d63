"""False-alarm feedback: store v2 and its migration, suppression regions, hard negatives, the loop."""

from __future__ import annotations

import json
import sqlite3
import time

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from synspill.cli import app
from synspill.detections import Detections
from synspill.errors import UsageError
from synspill.watch.alerts import EventState
from synspill.watch.config import CameraConfig, SinkConfig, WatchConfig
from synspill.watch.loop import Watcher
from synspill.watch.sources import Frame
from synspill.watch.store import COLUMNS, SCHEMA_VERSION, EventFilter, EventStore
from synspill.watch.suppress import Regions, SuppressionCache
from tests.watch.blobs import DarkBlobPredictor, make_spill_video

#: The v1 DDL (synspill before false alarms), kept verbatim to build a real v1 file.
V1_SCHEMA = """
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
    acked_at REAL
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
"""


def make_v1(path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(V1_SCHEMA)
    db.execute("PRAGMA user_version=1")
    db.execute("INSERT INTO events (camera, class_id, class_name, first_seen, last_seen, confidence, max_confidence, x1, y1, x2,"
               " y2, area, first_area, area_frac, frame_w, frame_h, severity, severity_score, status, acknowledged)"
               " VALUES ('dock', 1, 'oil-spill', 100, 110, 0.9, 0.95, 10, 20, 50, 60, 1600, 400, 0.02, 320, 240, 'high',"
               " 0.6, 'closed', 1)")
    db.execute("INSERT INTO observations VALUES (1, 105, 0.9, 10, 20, 50, 60, 1600)")
    db.commit()
    db.close()


def event_state(camera: str = "dock", box=(80.0, 60.0, 160.0, 120.0), class_id: int = 1) -> EventState:
    area = (box[2] - box[0]) * (box[3] - box[1])
    return EventState(track_id=1, camera=camera, zone=None, class_id=class_id, first_seen=1000.0, last_seen=1001.0,
                      confidence=0.9, max_confidence=0.9, box=box, area=area, first_area=area, area_frac=0.1,
                      growth_per_min=0.0, severity="medium", severity_score=0.4, frame_w=320, frame_h=240, alerts=1)


# -- schema v2 and the v1 migration ------------------------------------------------------------
@pytest.mark.parametrize("existing", [False, True])
def test_v1_file_is_migrated_in_place_keeping_rows(tmp_path, existing):
    path = tmp_path / "v1.sqlite"
    make_v1(path)
    with EventStore(path, existing=existing) as store:
        rows = store.query()
        assert len(rows) == 1 and rows[0]["camera"] == "dock" and rows[0]["acknowledged"] == 1
        assert rows[0]["false_alarm"] == 0 and rows[0]["closed_reason"] is None and rows[0]["frame"] is None
        assert store.observations(1)[0]["area"] == 1600
        assert store.suppressions() == [] and store.cameras() == []
        sid = store.mark_false_alarm(1)  # the new tables are writable
        assert store.suppressions()[0]["id"] == sid
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    cols = [r[1] for r in db.execute("PRAGMA table_info(events)")]
    assert cols == list(COLUMNS)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"events", "observations", "outbox", "suppressions", "cameras"} <= tables
    with EventStore(path, existing=existing) as store:  # opening a v2 file again changes nothing
        assert len(store.query()) == 1 and len(store.suppressions()) == 1


def test_fresh_db_is_v2_and_existing_never_creates(tmp_path):
    with EventStore(tmp_path / "new.sqlite") as store:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert [r[1] for r in store.conn.execute("PRAGMA table_info(events)")] == list(COLUMNS)
    with pytest.raises(UsageError, match="no such event database"):
        EventStore(tmp_path / "missing.sqlite", existing=True)
    assert not (tmp_path / "missing.sqlite").exists()
    db = sqlite3.connect(tmp_path / "future.sqlite")
    db.executescript(V1_SCHEMA)
    db.execute("PRAGMA user_version=3")
    db.commit()
    with pytest.raises(UsageError, match="schema v3"):
        EventStore(tmp_path / "future.sqlite")


# -- store methods -------------------------------------------------------------------------------
def test_mark_false_alarm_closes_flags_and_suppresses_once(tmp_path):
    with EventStore(tmp_path / "e.sqlite") as store:
        eid = store.insert(event_state())
        store.insert(event_state(camera="hall"))
        assert store.event(eid)["status"] == "open" and store.event(99) is None
        sid = store.mark_false_alarm(eid, tolerance=0.5, note="shadow")
        ev = store.event(eid)
        assert ev["false_alarm"] == 1 and ev["acknowledged"] == 1 and ev["acked_at"] is not None
        assert ev["status"] == "closed" and ev["closed_reason"] == "false-alarm" and ev["closed_at"] is not None
        (s,) = store.suppressions()
        assert s["id"] == sid and s["camera"] == "dock" and s["class_id"] == 1 and s["class_name"] == "oil-spill"
        # box 80,60,160,120 of a 320 x 240 frame
        assert (s["x1"], s["y1"], s["x2"], s["y2"]) == (0.25, 0.25, 0.5, 0.5)
        assert s["tolerance"] == 0.5 and s["event_id"] == eid and s["note"] == "shadow"
        assert store.mark_false_alarm(eid) == sid and len(store.suppressions()) == 1  # twice: still one
        assert store.suppressions("hall") == [] and len(store.suppressions("dock")) == 1
        assert [r["id"] for r in store.query(EventFilter(false_alarm=True))] == [eid]
        assert [r["id"] for r in store.query(EventFilter(false_alarm=False))] == [2]
        with pytest.raises(UsageError, match="no event with id 42"):
            store.mark_false_alarm(42)
        with pytest.raises(UsageError, match="tolerance"):
            store.mark_false_alarm(2, tolerance=-0.1)
        store.remove_suppression(sid)
        assert store.suppressions() == []
        with pytest.raises(UsageError, match="no suppression with id 7"):
            store.remove_suppression(7)
        sid2 = store.mark_false_alarm(2)
        assert store.unmark_false_alarm(2) == 1 and store.event(2)["false_alarm"] == 0 and sid2 not in store.suppressions()


def test_close_events_and_loop_closes_keep_reason(tmp_path):
    with EventStore(tmp_path / "e.sqlite") as store:
        a, b = store.insert(event_state()), store.insert(event_state())
        with pytest.raises(UsageError, match="no event with id 5"):
            store.close_events([a, 5])
        assert store.event(a)["status"] == "open"  # nothing changed
        store.close_events([a])
        assert store.event(a)["closed_reason"] == "manual"
        ev = event_state()
        ev.event_id, ev.closed_at, ev.closed_reason = a, 2000.0, "unseen"
        store.apply([("closed", ev)])  # the loop closing it later keeps the manual close
        assert store.event(a)["closed_reason"] == "manual" and store.event(a)["closed_at"] != 2000.0
        ev.event_id = b
        store.apply([("closed", ev)])
        assert store.event(b)["closed_reason"] == "unseen" and store.event(b)["closed_at"] == 2000.0
        c = store.insert(event_state())
        assert store.close_stale("dock") == 1 and store.event(c)["closed_reason"] == "stale"


def test_cameras_upsert_and_list(tmp_path):
    with EventStore(tmp_path / "e.sqlite") as store:
        store.upsert_camera("yard", {"state": "live", "fps": 2.0})
        store.upsert_camera("dock", {"state": "starting"}, frame="/tmp/dock.jpg")
        store.upsert_camera("yard", {"state": "reconnecting"})
        cams = store.cameras()
        assert [c["name"] for c in cams] == ["dock", "yard"]
        assert cams[1]["state"] == {"state": "reconnecting"} and cams[1]["frame"] is None
        assert cams[0]["frame"] == "/tmp/dock.jpg" and cams[0]["updated"] > 0
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL, as before


# -- regions ----------------------------------------------------------------------------------------
def test_regions_hand_computed():
    # box 0.25..0.5 of a 400 x 200 frame = (100, 50, 200, 100); tolerance 0.25 widens by 25 px / 12.5 px
    reg = Regions(np.array([1]), np.array([[0.25, 0.25, 0.5, 0.5]]), np.array([0.25]))
    assert reg.absolute((400, 200)).tolist() == [[75.0, 37.5, 225.0, 112.5]]
    dets = np.array([
        [80, 40, 220, 110],  # inside: dropped
        [75, 37.5, 262.5, 112.5],  # 150 of 187.5 px wide inside = exactly 0.8: dropped
        [75, 37.5, 300, 112.5],  # 150 / 225 = 0.67 inside: kept (grew beyond)
        [300, 150, 350, 190],  # elsewhere: kept
        [100, 50, 100, 90],  # zero area: kept
    ], np.float32)
    assert reg.mask(dets, np.array([1, 1, 1, 1, 1]), (400, 200)).tolist() == [True, True, False, False, False]
    assert not reg.mask(dets[:1], np.array([2]), (400, 200)).any()  # another class is never suppressed
    tight = Regions(np.array([1]), np.array([[0.25, 0.25, 0.5, 0.5]]), np.array([0.0]))
    near = np.array([[90, 50, 200, 100], [50, 50, 200, 100]], np.float32)  # 100/110 = 0.91 and 100/150 = 0.67 inside
    assert tight.mask(near, np.array([1, 1]), (400, 200)).tolist() == [True, False]
    assert Regions.from_rows([]).mask(dets, np.ones(5), (400, 200)).tolist() == [False] * 5


# -- the loop picks up suppressions added by another process -------------------------------------
def test_suppression_added_while_running_is_picked_up(tmp_path):
    db = tmp_path / "e.sqlite"
    cfg = WatchConfig(cameras=(CameraConfig("dock", str(tmp_path), "unused"),), db=str(db), sinks=SinkConfig(stdout=False))
    w = Watcher(cfg, once=True, predictors={"dock": DarkBlobPredictor()})
    w.store = EventStore(db)
    clock = [0.0]
    w.suppressions = SuppressionCache(clock=lambda: clock[0])
    frame = Frame("dock", np.zeros((240, 320, 3), np.uint8), 1000.0, 0, time.monotonic())
    dets = Detections(np.array([[90, 70, 150, 110]], np.float32), np.array([1]), np.array([0.9], np.float32))
    st = w.stats["dock"]

    def step(t: float) -> int:
        clock[0] = t
        return len(w._suppression_filter(frame, dets))

    try:
        assert step(0.0) == 1
        with EventStore(db, existing=True) as other:  # `synspill events false-alarm` in another process
            eid = other.insert(event_state())
            sid = other.mark_false_alarm(eid)
        assert step(1.0) == 1 and st.suppressed_false_alarm == 0  # not checked again before 2 s
        assert step(2.5) == 0 and st.suppressed_false_alarm == 1
        assert step(3.0) == 0 and st.suppressed_false_alarm == 2
        other_cam = Frame("hall", frame.image, 1000.0, 0, time.monotonic())
        w.stats["hall"] = type(st)("hall")
        assert len(w._suppression_filter(other_cam, dets)) == 1  # only on its own camera
        with EventStore(db, existing=True) as other:
            other.remove_suppression(sid)
        assert step(5.0) == 1 and w.suppressions.reloads == 3
        # the check itself is cheap: one aggregate over a small table
        w.suppressions.interval = 0.0
        t0 = time.perf_counter()
        for i in range(500):
            step(10.0 + i)
        per_check_ms = (time.perf_counter() - t0) / 500 * 1000
        assert per_check_ms < 5.0, per_check_ms
    finally:
        w.store.close()


# -- end to end -------------------------------------------------------------------------------------
def crop_of(img: np.ndarray, box) -> np.ndarray:
    """The expected hard negative: box x2 around its centre, at least 160 px, clipped (computed here independently)."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    hw, hh = max(x2 - x1, 80), max(y2 - y1, 80)
    h, w = img.shape[:2]
    return img[max(0, round(cy - hh)):min(h, round(cy + hh)), max(0, round(cx - hw)):min(w, round(cx + hw))]


def watch_once(video, db, snaps=None):
    cfg = WatchConfig(cameras=(CameraConfig("dock", str(video), "unused"),), db=str(db),
                      sinks=SinkConfig(stdout=False, snapshots=str(snaps) if snaps else None))
    return Watcher(cfg, once=True, predictors={"dock": DarkBlobPredictor()}, origin=1.7e9).run()


def test_false_alarm_loop_end_to_end(tmp_path):
    small = make_spill_video(tmp_path / "small.avi", r1=30.0)  # a stain growing to 78 x 60 px at (200, 150)
    big = make_spill_video(tmp_path / "big.avi", r1=90.0)  # the same place, growing far beyond it
    db, snaps = tmp_path / "ev.sqlite", tmp_path / "snaps"
    r = CliRunner()
    res = r.invoke(app, ["watch", str(small), "--model", "py:tests.watch.blobs:load", "--once", "--db", str(db),
                         "--name", "dock", "--snapshots", str(snaps)])
    assert res.exit_code == 0, res.output
    with EventStore(db, existing=True) as store:
        (ev,) = store.query()
    assert ev["frame"] == str(snaps / "dock" / "event1-frame.jpg")
    clean = cv2.imread(ev["frame"])
    assert clean.shape == (240, 320, 3)
    box = (ev["x1"], ev["y1"], ev["x2"], ev["y2"])
    assert clean[150, 200].mean() < 60 and cv2.imread(ev["snapshot"]) is not None  # the spill, no drawing

    res = r.invoke(app, ["events", "false-alarm", "1", "--db", str(db), "--note", "painted floor"])
    assert res.exit_code == 0, res.output
    neg_dir = tmp_path / "ev.negatives"
    neg = neg_dir / "images" / "dock-event1.jpg"
    assert "suppression 1" in res.output and str(neg) in " ".join(res.output.split())
    got, want = cv2.imread(str(neg)).astype(int), crop_of(clean, box).astype(int)
    assert got.shape == want.shape == (160, 160, 3)
    assert np.abs(got - want).mean() < 2.0  # the same pixels (JPEG re-encoded) ...
    assert np.abs(got[:, 8:] - want[:, :-8]).mean() > 2 * np.abs(got - want).mean()  # ... not a shifted crop
    coco = json.loads((neg_dir / "annotations.json").read_text())
    assert [im["file_name"] for im in coco["images"]] == ["images/dock-event1.jpg"] and coco["annotations"] == []
    assert len(coco["categories"]) == 8 and coco["images"][0]["width"] == 160
    assert r.invoke(app, ["events", "false-alarm", "1", "--db", str(db)]).exit_code == 0  # idempotent
    assert len(json.loads((neg_dir / "annotations.json").read_text())["images"]) == 1
    res = r.invoke(app, ["events", "suppressions", "--db", str(db), "--json"])
    (s,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert s["camera"] == "dock" and s["event_id"] == 1 and s["note"] == "painted floor"
    res = r.invoke(app, ["events", "list", "--db", str(db), "--false-alarms", "--json"])
    assert [json.loads(line)["false_alarm"] for line in res.stdout.splitlines()] == [True]
    assert r.invoke(app, ["events", "list", "--db", str(db), "--no-false-alarms", "--json"]).stdout == ""

    again = watch_once(small, db)  # the same stain again: quiet
    assert again.events_opened == 0 and again.cameras["dock"].suppressed_false_alarm > 10
    grown = watch_once(big, db)  # a spill growing well beyond the marked place: reported
    assert grown.events_opened == 1 and grown.cameras["dock"].suppressed_false_alarm > 0
    with EventStore(db, existing=True) as store:
        last = store.event(2)
    assert last is not None and last["false_alarm"] == 0 and last["x2"] - last["x1"] > 150

    res = r.invoke(app, ["events", "unsuppress", "1", "--db", str(db)])
    assert res.exit_code == 0 and "removed 1" in res.output
    assert watch_once(small, db).events_opened == 1  # no longer suppressed

    # spills after all: --undo clears the flags, the suppressions and the hard negatives
    assert r.invoke(app, ["events", "false-alarm", "3", "--db", str(db)]).exit_code == 0  # no clean frame: no crop
    with EventStore(db, existing=True) as store:
        assert [s["event_id"] for s in store.suppressions()] == [3]  # event 1's was removed by unsuppress
    res = r.invoke(app, ["events", "false-alarm", "1", "3", "--undo", "--db", str(db)])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert f"event 1: no longer a false alarm; 0 suppression(s) removed; hard negative {neg} removed" in said
    assert "event 3: no longer a false alarm; 1 suppression(s) removed; no hard negative to remove" in said
    assert not neg.exists()  # a real spill must not train the next model as background
    assert json.loads((neg_dir / "annotations.json").read_text())["images"] == []
    with EventStore(db, existing=True) as store:
        assert store.suppressions() == []
        for i in (1, 3):
            ev_ = store.event(i)
            assert ev_ is not None and ev_["false_alarm"] == 0 and ev_["acknowledged"]
    bad = r.invoke(app, ["events", "false-alarm", "3", "--undo", "--db", str(db)])
    assert bad.exit_code == 2 and "event 3 is not marked as a false alarm" in bad.output


def test_false_alarm_without_clean_frame_and_cli_errors(tmp_path, spill_video):
    db = tmp_path / "ev.sqlite"
    watch_once(spill_video, db)  # no --snapshots: no clean frame
    r = CliRunner()
    res = r.invoke(app, ["events", "false-alarm", "1", "--db", str(db)])
    assert res.exit_code == 0 and "no hard negative" in res.output
    assert not (tmp_path / "ev.negatives").exists()
    with EventStore(db, existing=True) as store:
        assert len(store.suppressions()) == 1 and store.event(1)["false_alarm"] == 1
    bad = r.invoke(app, ["events", "false-alarm", "1", "9", "--db", str(db)])
    assert bad.exit_code == 2 and "no event with id 9" in bad.output
    bad = r.invoke(app, ["events", "unsuppress", "1", "5", "--db", str(db)])
    assert bad.exit_code == 2 and "no suppression with id 5" in bad.output and len(bad.output.strip().splitlines()) == 1
    with EventStore(db, existing=True) as store:
        assert len(store.suppressions()) == 1  # nothing removed
    bad = r.invoke(app, ["events", "close", "3", "--db", str(db)])
    assert bad.exit_code == 2 and "no event with id 3" in bad.output
    for cmd in ("false-alarm", "suppressions", "unsuppress", "close"):
        assert r.invoke(app, ["events", cmd, "--help"]).exit_code == 0


def _export_many(args) -> None:
    from synspill.watch.negatives import export_negative

    frame, out, ids, barrier = args
    barrier.wait()
    for i in ids:
        export_negative({"id": i, "camera": "dock", "class_name": "oil-spill", "x1": 10, "y1": 10, "x2": 60, "y2": 50,
                         "frame": frame}, out)


def test_hard_negatives_from_two_processes_at_once_lose_no_record(tmp_path):
    import multiprocessing as mp

    from synspill.watch.negatives import remove_negative

    frame = tmp_path / "frame.jpg"
    cv2.imwrite(str(frame), np.full((240, 320, 3), 90, np.uint8))
    out = tmp_path / "negatives"
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_export_many, args=((str(frame), str(out), range(k, 40, 2), barrier),)) for k in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    coco = json.loads((out / "annotations.json").read_text())
    assert sorted(im["event_id"] for im in coco["images"]) == list(range(40))
    assert len({im["id"] for im in coco["images"]}) == 40  # unique image ids
    assert remove_negative(7, out) == out / "images" / "dock-event7.jpg" and not (out / "images" / "dock-event7.jpg").exists()
    assert len(json.loads((out / "annotations.json").read_text())["images"]) == 39
