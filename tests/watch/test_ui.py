"""The dashboard's routes without a browser: access control, CSRF, path traversal, escaping, actions."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from synspill.errors import UsageError
from synspill.watch.config import CameraConfig, SinkConfig, WatchConfig
from synspill.watch.loop import Watcher
from synspill.watch.ui.app import UIState, create_app, served_path
from synspill.watch.ui.auth import Signer, UIConfig, check_secret, hash_secret, parse_bind
from synspill.watch.zones import Zone
from tests.watch.blobs import DarkBlobPredictor

EVIL_CAMERA = "<script>"
EVIL_ZONE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def logged(spill_video, tmp_path_factory) -> tuple[Path, Path]:
    """An event log with one spill event on a camera named ``<script>`` in a zone with markup in its name."""
    tmp = tmp_path_factory.mktemp("ui")
    zone = Zone(EVIL_ZONE, ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)))
    cfg = WatchConfig(cameras=(CameraConfig(EVIL_CAMERA, str(spill_video), "unused", zones=(zone,)),),
                      db=str(tmp / "e.sqlite"), sinks=SinkConfig(stdout=False, snapshots=str(tmp / "snaps")))
    summary = Watcher(cfg, once=True, predictors={EVIL_CAMERA: DarkBlobPredictor()}, origin=1.7e9).run()
    assert summary.events_opened == 1
    (tmp / "secret.jpg").write_bytes(b"\xff\xd8 not for the web")
    return tmp / "e.sqlite", tmp / "snaps"


def client(db: Path, snaps: Path, ui: UIConfig | None = None) -> TestClient:
    return TestClient(create_app(UIState(db=db, snapshots=snaps, ui=ui or UIConfig())))


def csrf_of(c: TestClient) -> str:
    m = re.search(r'name="csrf-token" content="([^"]+)"', c.get("/").text)
    assert m is not None
    return m.group(1)


def acked(db: Path, eid: int = 1) -> int:
    with sqlite3.connect(db) as con:
        return int(con.execute("SELECT acknowledged FROM events WHERE id=?", (eid,)).fetchone()[0])


def reset_ack(db: Path) -> None:
    with sqlite3.connect(db) as con:
        con.execute("UPDATE events SET acknowledged=0, acked_at=NULL")


# -- credentials ---------------------------------------------------------------------------
def test_password_hash_round_trip_and_salt():
    h = hash_secret("correct horse")
    assert h.startswith("pbkdf2_sha256$260000$") and "correct horse" not in h
    assert check_secret("correct horse", h) and not check_secret("correct hors", h)
    assert hash_secret("correct horse") != h  # a new salt each time
    assert not check_secret("x", "md5$1$a$b") and not check_secret("x", "garbage")


def test_non_loopback_bind_needs_credentials():
    with pytest.raises(UsageError, match="open to the network"):
        UIConfig(bind="0.0.0.0:8080")
    UIConfig(bind="127.0.0.1:8080")
    UIConfig(bind="[::1]:8080")
    UIConfig(bind="0.0.0.0:8080", token_hash=hash_secret("t"))
    with pytest.raises(UsageError, match="hash-password"):
        UIConfig(bind="0.0.0.0:8080", username="a", password_hash="plain-text-password")
    assert parse_bind("8081") == ("127.0.0.1", 8081)
    with pytest.raises(UsageError, match="HOST:PORT"):
        parse_bind("host:http")


def test_signed_cookie_rejects_tampering_and_expiry():
    s = Signer(b"k" * 32)
    v = s.sign({"user": "ann", "exp": 4e9})
    assert s.unsign(v) == {"user": "ann", "exp": 4e9}
    body, mac = v.rsplit(".", 1)
    forged = ("B" if body[0] != "B" else "C") + body[1:]  # another payload under the old signature
    assert s.unsign(forged + "." + mac) is None
    assert s.unsign(v[:-2] + "xx") is None
    assert s.unsign(s.sign({"user": "ann", "exp": 1.0})) is None  # expired
    assert Signer(b"j" * 32).unsign(v) is None  # another process's secret


# -- loopback, no credentials: CSRF still required -----------------------------------------------
def test_loopback_write_needs_the_pages_csrf_token(logged):
    db, snaps = logged
    reset_ack(db)
    c = client(db, snaps)
    assert c.post("/events/1/ack").status_code == 403
    assert c.post("/events/1/ack", headers={"X-CSRF-Token": "forged"}).status_code == 403
    tok = csrf_of(c)
    other = client(db, snaps)  # a token is bound to its browser session
    other.get("/")
    assert other.post("/events/1/ack", headers={"X-CSRF-Token": tok}).status_code == 403
    assert c.post("/events/1/ack", headers={"X-CSRF-Token": tok, "Origin": "http://evil.example"}).status_code == 403
    assert acked(db) == 0
    r = c.post("/events/1/ack", headers={"X-CSRF-Token": tok})
    assert r.status_code == 200 and r.json()["ok"] and acked(db) == 1
    # a plain HTML form post (no JS) with the hidden field works too and redirects back
    reset_ack(db)
    r = c.post("/events/1/ack", data={"csrf": tok}, follow_redirects=False)
    assert r.status_code == 303 and acked(db) == 1


def test_unknown_event_is_404_not_a_crash(logged):
    db, snaps = logged
    c = client(db, snaps)
    tok = csrf_of(c)
    r = c.post("/events/999/ack", headers={"X-CSRF-Token": tok})
    assert r.status_code == 404 and "999" in r.json()["error"]
    assert c.get("/events/999").status_code == 404


# -- credentials configured (what a non-loopback bind requires) -----------------------------------
def test_with_credentials_reads_and_writes_need_login_or_token(logged):
    db, snaps = logged
    reset_ack(db)
    ui = UIConfig(bind="0.0.0.0:8080", username="safety", password_hash=hash_secret("pw1"), token_hash=hash_secret("tok1"))
    c = client(db, snaps, ui)
    assert c.post("/events/1/ack").status_code == 401
    assert c.get("/api/events").status_code == 401
    assert c.get("/files/" + EVIL_CAMERA + "/x.jpg").status_code == 401
    r = c.get("/", headers={"accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert c.post("/events/1/ack", headers={"Authorization": "Bearer wrong"}).status_code == 401
    # login: wrong password refused, right one gives a session; writes then need the CSRF token
    tok = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)  # type: ignore[union-attr]
    assert c.post("/login", data={"csrf": tok, "username": "safety", "password": "nope"}).status_code == 401
    assert c.post("/login", data={"username": "safety", "password": "pw1"}).status_code == 403  # login form needs CSRF too
    r = c.post("/login", data={"csrf": tok, "username": "safety", "password": "pw1"}, follow_redirects=False)
    assert r.status_code == 303
    assert c.get("/api/events").status_code == 200
    assert c.post("/events/1/ack").status_code == 403 and acked(db) == 0
    assert c.post("/events/1/ack", headers={"X-CSRF-Token": tok}).status_code == 200 and acked(db) == 1
    # a script with the bearer token needs no session or CSRF
    reset_ack(db)
    bare = client(db, snaps, ui)
    assert bare.post("/events/1/ack", headers={"Authorization": "Bearer tok1"}).status_code == 200 and acked(db) == 1


# -- files ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["../secret.jpg", "..%2fsecret.jpg", "%2e%2e/secret.jpg", "%2e%2e%2fsecret.jpg",
                                  "..%5csecret.jpg", "/etc/passwd", "%2fetc%2fpasswd", "link.jpg", "../e.sqlite"])
def test_snapshot_paths_outside_the_folder_are_404(logged, path):
    db, snaps = logged
    link = snaps / "link.jpg"
    if not link.exists():
        link.symlink_to(snaps.parent / "secret.jpg")
    r = client(db, snaps).get("/files/" + path)
    assert r.status_code == 404
    assert b"not for the web" not in r.content


def test_snapshot_inside_the_folder_is_served(logged):
    db, snaps = logged
    with sqlite3.connect(db) as con:
        snap = con.execute("SELECT snapshot FROM events WHERE id=1").fetchone()[0]
    rel = served_path(snaps, snap)
    assert rel is not None and not rel.startswith("..")
    r = client(db, snaps).get("/files/" + rel)
    assert r.status_code == 200 and r.content == Path(snap).read_bytes()
    assert served_path(snaps, str(snaps.parent / "secret.jpg")) is None


# -- escaping ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["/", "/partials/cameras", "/partials/events", "/events/1"])
def test_names_with_markup_are_rendered_as_text(logged, url):
    db, snaps = logged
    r = client(db, snaps).get(url)
    assert r.status_code == 200
    assert "&lt;script&gt;" in r.text
    assert "<script>" not in r.text  # our own script tag has a src attribute
    assert "<img src=x" not in r.text
    if url in ("/", "/partials/events", "/events/1"):
        assert "&lt;img src=x onerror=alert(1)&gt;" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]


def test_report_page_renders_charts_from_the_log(logged):
    db, snaps = logged
    c = client(db, snaps)
    r = c.get("/report?bucket=hour&false_alarms=all")
    assert r.status_code == 200
    imgs = re.findall(r'src="(/report/files/[^"]+\.png)"', r.text)
    assert any("counts_over_time" in i for i in imgs) and any("heatmap" in i for i in imgs)
    png = c.get(imgs[0])
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    assert c.get("/report/files/../../etc/passwd").status_code == 404


def writable_copy(logged, tmp_path):
    """A dashboard on a copy of the logged database, with a hard-negative folder: ``(client, db, negatives, token)``."""
    import shutil

    src, snaps = logged
    db, neg = tmp_path / "e.sqlite", tmp_path / "neg"
    shutil.copy(src, db)
    c = TestClient(create_app(UIState(db=db, snapshots=snaps, negatives=neg)))
    return c, db, neg, csrf_of(c)


def test_false_alarm_action_suppresses_exports_and_can_be_undone(logged, tmp_path):
    c, db, neg, tok = writable_copy(logged, tmp_path)
    assert c.post("/events/1/false-alarm").status_code == 403
    r = c.post("/events/1/false-alarm", headers={"X-CSRF-Token": tok})
    assert r.status_code == 200, r.text
    with sqlite3.connect(db) as con:
        fa, status = con.execute("SELECT false_alarm, status FROM events WHERE id=1").fetchone()
        sup = con.execute("SELECT id, camera, event_id FROM suppressions").fetchall()
    assert fa == 1 and status == "closed" and len(sup) == 1 and sup[0][1:] == (EVIL_CAMERA, 1)
    import json

    from synspill.watch.negatives import _safe

    crop = neg / "images" / f"{_safe(EVIL_CAMERA)}-event1.jpg"
    assert [p.name for p in (neg / "images").iterdir()] == [crop.name] and crop.stat().st_size > 0
    coco = json.loads((neg / "annotations.json").read_text())
    assert [im["file_name"] for im in coco["images"]] == [f"images/{crop.name}"] and coco["annotations"] == []
    # hidden from the default list, shown with false_alarms=only; the suppression page escapes the camera name
    assert 'data-event="1"' not in c.get("/partials/events").text
    assert 'data-event="1"' in c.get("/partials/events?false_alarms=only").text
    page = c.get("/suppressions").text
    assert "&lt;script&gt;" in page and "<script>" not in page and f'data-suppression="{sup[0][0]}"' in page
    assert c.post(f"/suppressions/{sup[0][0]}/remove").status_code == 403
    assert c.post(f"/suppressions/{sup[0][0]}/remove", headers={"X-CSRF-Token": tok}).status_code == 200
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM suppressions").fetchone()[0] == 0


def test_not_a_false_alarm_undoes_the_mark_in_the_dashboard(logged, tmp_path):
    import json

    from synspill.watch.negatives import _safe

    c, db, neg, tok = writable_copy(logged, tmp_path)
    assert 'data-action="not-false-alarm"' not in c.get("/events/1").text  # offered only for a marked event
    assert c.post("/events/1/not-false-alarm", headers={"X-CSRF-Token": tok}).status_code == 409
    assert c.post("/events/1/false-alarm", headers={"X-CSRF-Token": tok}).status_code == 200
    page = c.get("/events/1").text
    assert 'data-action="not-false-alarm"' in page and 'data-action="false-alarm"' not in page
    assert c.post("/events/1/not-false-alarm").status_code == 403  # no CSRF token
    r = c.post("/events/1/not-false-alarm", headers={"X-CSRF-Token": tok})
    assert r.status_code == 200 and "1 suppression(s) removed" in r.json()["detail"], r.text
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT false_alarm FROM events WHERE id=1").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM suppressions").fetchone()[0] == 0
    assert not (neg / "images" / f"{_safe(EVIL_CAMERA)}-event1.jpg").exists()
    assert json.loads((neg / "annotations.json").read_text())["images"] == []
    assert 'data-event="1"' in c.get("/partials/events?false_alarms=all").text


def test_read_only_dashboard_shows_no_actions_and_refuses_them(logged):
    db, snaps = logged
    reset_ack(db)
    c = TestClient(create_app(UIState(db=db, snapshots=snaps, read_only=True)))
    page = c.get("/").text
    assert 'data-event="1"' in page and "data-action=" not in page
    r = c.post("/events/1/ack", headers={"X-CSRF-Token": csrf_of(c)})
    assert r.status_code == 403 and "read-only" in r.text and acked(db) == 0


def test_ui_command_errors_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from synspill.cli import app

    r = CliRunner().invoke(app, ["ui", "--db", str(tmp_path / "missing.sqlite")])
    assert r.exit_code != 0 and "no such event database" in r.output and "Traceback" not in r.output
    (tmp_path / "auth.toml").write_text('[ui]\nusername = "a"\npassword_hash = "hunter2"\n')
    r = CliRunner().invoke(app, ["ui", "--db", str(tmp_path / "missing.sqlite"), "--auth", str(tmp_path / "auth.toml")])
    assert r.exit_code != 0 and "hash-password" in r.output
    r = CliRunner().invoke(app, ["ui", "hash-password", "--username", 'o"brien'], input="pw\n")
    assert r.exit_code == 0
    import tomllib

    ui = tomllib.loads(r.output)["ui"]
    assert ui["username"] == 'o"brien' and check_secret("pw", ui["password_hash"])


def test_live_frame_and_status_written_by_watch_are_served(logged):
    import cv2
    import numpy as np

    db, snaps = logged
    c = client(db, snaps)
    r = c.get("/cameras/%3Cscript%3E/frame.jpg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (240, 320, 3)
    state = c.get("/api/state").json()["cameras"]
    assert [s["name"] for s in state] == [EVIL_CAMERA] and state[0]["state"]["samples"] > 0
    assert c.get("/cameras/nobody/frame.jpg").status_code == 404


def test_address_in_use_is_one_clear_line(logged, tmp_path):
    import socket

    from typer.testing import CliRunner

    from synspill.cli import app

    db, _ = logged
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = CliRunner().invoke(app, ["ui", "--db", str(db), "--bind", f"127.0.0.1:{port}"])
    assert r.exit_code != 0 and f"could not listen on 127.0.0.1:{port}" in r.output and "--bind" in r.output
    assert "dashboard of" not in r.output and "Traceback" not in r.output and "ERROR" not in r.output


def test_report_folders_do_not_pile_up(logged, tmp_path):
    from synspill.watch.ui.app import REPORTS_KEPT

    db, snaps = logged
    c = TestClient(create_app(UIState(db=db, snapshots=snaps, report_dir=tmp_path)))
    for _ in range(REPORTS_KEPT + 3):
        assert c.get("/report?false_alarms=all").status_code == 200
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == REPORTS_KEPT
