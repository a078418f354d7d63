"""End to end on a video made by the test: one spill -> exactly one event, rising severity."""

from __future__ import annotations

import io
import json
import sqlite3

import cv2
import numpy as np
from typer.testing import CliRunner

from synspill.cli import app
from synspill.watch.config import CameraConfig, SinkConfig, WatchConfig
from synspill.watch.loop import Watcher
from synspill.watch.sinks import JsonLinesSink
from synspill.watch.sources import iter_samples
from tests.watch.blobs import DarkBlobPredictor

ORDER = ["low", "medium", "high", "critical"]


def run_once(video, tmp_path, **cam_kw):
    buf = io.StringIO()
    cfg = WatchConfig(cameras=(CameraConfig("dock", str(video), "unused", **cam_kw),), db=str(tmp_path / "e.sqlite"),
                      sinks=SinkConfig(stdout=False, snapshots=str(tmp_path / "snaps")))
    pred = DarkBlobPredictor()
    summary = Watcher(cfg, once=True, predictors={"dock": pred}, extra_sinks=[JsonLinesSink(buf)], origin=1.7e9).run()
    return summary, [json.loads(line) for line in buf.getvalue().splitlines()], pred


def test_sampling_is_every_half_second_and_complete(spill_video):
    frames = list(iter_samples("dock", str(spill_video), fps=2.0, origin=0.0))
    assert [f.t for f in frames] == [i * 0.5 for i in range(24)]
    assert frames[2].image.shape == (240, 320, 3) and frames[2].image.dtype == np.uint8
    # the noise square is on frame 10 (t = 1.0 s, sample 2) and nowhere else
    assert frames[2].image[45, 45].mean() < 60 and frames[3].image[45, 45].mean() > 120


def test_growing_spill_gives_one_event_with_rising_severity(spill_video, tmp_path):
    summary, alerts, pred = run_once(spill_video, tmp_path)
    assert pred.calls == summary.samples == 24  # --once drops no sample
    assert summary.events_opened == 1
    ids = {a["event_id"] for a in alerts}
    assert ids == {1}
    assert alerts[0]["type"] == "spill.opened" and alerts[-1]["type"] == "spill.closed"
    # confirmed on the 3rd sighting: spill appears at 2.0 s -> samples 2.0, 2.5, 3.0
    assert alerts[0]["first_seen"].startswith("2023-11-14T22:13:22.000") and alerts[0]["last_seen"].endswith("23.000Z")
    levels = [ORDER.index(a["severity"]) for a in alerts]
    assert levels == sorted(levels) and levels[-1] > levels[0]
    assert all(a["reason"] == "severity" for a in alerts if a["type"] == "spill.updated")
    assert alerts[-1]["area_px"] > 10 * alerts[0]["area_px"]
    # the noise square (one sample) never became an event: every alert is about the spill on the right
    assert all(a["box"][0] > 100 for a in alerts)
    db = sqlite3.connect(tmp_path / "e.sqlite")
    rows = db.execute("SELECT severity, status, max_confidence, first_area, area, snapshot FROM events").fetchall()
    assert len(rows) == 1 and rows[0][0] == "critical" and rows[0][1] == "closed"
    assert rows[0][3] < rows[0][4]
    snap = cv2.imread(rows[0][5])
    assert snap is not None and snap.shape == (240, 320, 3)
    n_obs = db.execute("SELECT COUNT(*) FROM observations").fetchone()[0]
    assert n_obs == 24 - 6  # one per sighting from confirmation (sample 6, 3.0 s) to the last (sample 23)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_once_is_reproducible(spill_video, tmp_path):
    _, a1, _ = run_once(spill_video, tmp_path / "a")
    _, a2, _ = run_once(spill_video, tmp_path / "b")
    strip = [{k: v for k, v in a.items() if k != "snapshot"} for a in a1]
    assert strip == [{k: v for k, v in a.items() if k != "snapshot"} for a in a2]


def test_short_blip_and_noise_give_no_event(tmp_path):
    from tests.watch.blobs import make_spill_video

    # the spill is there for only 1 s (2 samples < k=3), the noise square for one frame
    video = make_spill_video(tmp_path / "blip.avi", seconds=6, appear=2.0, gone_after=3.0)
    summary, alerts, _ = run_once(video, tmp_path)
    assert summary.samples == 12 and summary.events_opened == 0 and alerts == []


def test_cli_once_then_events_commands(spill_video, tmp_path):
    r = CliRunner()
    db = str(tmp_path / "ev.sqlite")
    res = r.invoke(app, ["watch", str(spill_video), "--model", "py:tests.watch.blobs:load", "--once", "--db", db,
                         "--name", "dock", "--snapshots", str(tmp_path / "snaps")])
    assert res.exit_code == 0, res.output
    lines = [json.loads(s) for s in res.stdout.splitlines() if s.startswith("{")]
    assert [x["type"] for x in lines][0] == "spill.opened" and lines[-1]["type"] == "spill.closed"
    res = r.invoke(app, ["events", "list", "--db", db, "--json", "--severity", "critical"])
    rows = [json.loads(s) for s in res.stdout.splitlines()]
    assert res.exit_code == 0 and len(rows) == 1 and rows[0]["camera"] == "dock" and not rows[0]["acknowledged"]
    assert r.invoke(app, ["events", "list", "--db", db, "--json", "--camera", "other"]).stdout == ""
    assert r.invoke(app, ["events", "ack", "1", "--db", db]).exit_code == 0
    assert r.invoke(app, ["events", "list", "--db", db, "--json", "--unacked"]).stdout == ""
    bad = r.invoke(app, ["events", "ack", "99", "--db", db])
    assert bad.exit_code == 2 and "no event with id 99" in bad.output
    assert r.invoke(app, ["events", "export", "--db", db, "--format", "csv", "--out", str(tmp_path / "e.csv")]).exit_code == 0
    csv_text = (tmp_path / "e.csv").read_text()
    assert csv_text.splitlines()[0].startswith("id,camera,zone") and len(csv_text.splitlines()) == 2
    assert r.invoke(app, ["events", "export", "--db", db, "--format", "json", "--out", str(tmp_path / "e.json")]).exit_code == 0
    assert json.loads((tmp_path / "e.json").read_text())[0]["severity"] == "critical"
    res = r.invoke(app, ["events", "report", "--db", db, "--out", str(tmp_path / "rep"), "--bucket", "hour"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["events"] == 1 and summary["by_camera"] == {"dock": 1}
    assert 120 < summary["hotspot"]["dock"]["x"] < 280 and 90 < summary["hotspot"]["dock"]["y"] < 210
    heat = cv2.imread(str(tmp_path / "rep" / "heatmap_dock.png"))
    assert heat is not None and heat.shape[0] > 100
    assert (tmp_path / "rep" / "counts_over_time.png").stat().st_size > 1000


def test_cli_errors(tmp_path, spill_video):
    r = CliRunner()
    res = r.invoke(app, ["watch", str(tmp_path / "missing.mp4"), "--model", "py:tests.watch.blobs:load", "--once"])
    assert res.exit_code == 2 and "no such file or folder" in res.output
    res = r.invoke(app, ["watch", str(spill_video), "--once"])
    assert res.exit_code == 2 and "--model is required" in res.output
    res = r.invoke(app, ["watch", str(spill_video), "--model", "py:nosuchmod:load", "--once", "--db", str(tmp_path / "x.db")])
    assert res.exit_code == 2 and "nosuchmod" in res.output
    res = r.invoke(app, ["events", "list", "--db", str(tmp_path / "none.sqlite")])
    assert res.exit_code == 2 and "no such event database" in res.output
    res = r.invoke(app, ["watch", str(spill_video), "--model", "py:tests.watch.blobs:load", "--k", "9"])
    assert res.exit_code == 2 and "k=9" in res.output


def test_config_file_with_image_folder_and_zone(tmp_path):
    from tests.watch.blobs import spill_frame

    (tmp_path / "imgs").mkdir()
    for i in range(8):  # a stationary spill in the right half on 8 images
        frame = spill_frame(30, 10, appear=0.0, grow_until=0.0, r0=20, r1=20, noise_frames=())
        cv2.imwrite(str(tmp_path / "imgs" / f"{i:03d}.png"), frame)
    (tmp_path / "cams.toml").write_text(
        'db = "log.sqlite"\nsnapshots = "snaps"\n[sinks]\nstdout = false\n'
        '[[cameras]]\nname = "hall"\nurl = "imgs"\nmodel = "py:tests.watch.blobs:load"\n'
        '[[cameras.zones]]\nname = "right"\npolygon = [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]\ncriticality = "critical"\n')
    res = CliRunner().invoke(app, ["watch", "--config", str(tmp_path / "cams.toml"), "--once"])
    assert res.exit_code == 0, res.output
    db = sqlite3.connect(tmp_path / "log.sqlite")
    (zone, frac, snap), = db.execute("SELECT zone, area_frac, snapshot FROM events").fetchall()
    assert zone == "right" and 0.05 < frac < 0.2  # area over the zone (half the frame), not the frame
    assert snap.startswith(str(tmp_path / "snaps" / "hall")) and cv2.imread(snap) is not None
