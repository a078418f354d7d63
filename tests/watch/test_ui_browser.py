"""The dashboard in a real headless browser (Debian's chromium driven by Playwright) against a
running ``synspill watch --ui`` on a generated clip, and ``synspill ui`` bound to a
non-loopback address with credentials.

``SYNSPILL_SCREENSHOTS=docs/img pytest tests/watch/test_ui_browser.py`` also saves the
screenshots shown in docs/watch.md.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.watch.blobs import make_spill_video
from tests.watch.conftest import free_port

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (scripts/bootstrap.sh installs it as root)"),
]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
CAMERA = "<script>"


def shots() -> Path | None:
    d = os.environ.get("SYNSPILL_SCREENSHOTS")
    return Path(d) if d else None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SYNSPILL_PROGRESS_INTERVAL": "3600"}
    return subprocess.Popen([sys.executable, "-m", "synspill", *args], cwd=ROOT, env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            pytest.fail(f"server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers (401 etc.)
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"no answer from {url} in {timeout} s:\n{log.read_text()[-3000:]}")


def db_value(db: Path, sql: str) -> object:
    with sqlite3.connect(db, timeout=10) as con:
        row = con.execute(sql).fetchone()
    return row[0] if row else None


def poll(fn, timeout: float = 15.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    return fn()


def raw_get(port: int, path: str) -> int:
    """Status of a GET sent byte for byte (browsers and HTTP clients normalise ``../`` away)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        head = s.recv(64).decode("latin-1")
    return int(head.split()[1])


def test_live_dashboard_alert_ack_and_false_alarm(browser, tmp_path):
    clip = make_spill_video(tmp_path / "clip.avi", seconds=45.0, fps=10.0, appear=7.0, grow_until=14.0, noise_frames=())
    db, snaps, port = tmp_path / "events.sqlite", tmp_path / "snaps", free_port()
    (tmp_path / "outside.jpg").write_bytes(b"\xff\xd8 private")
    log = tmp_path / "watch.log"
    proc = start(["watch", str(clip), "--model", "py:tests.watch.blobs:load", "--name", CAMERA, "--fps", "2",
                  "--db", str(db), "--snapshots", str(snaps), "--no-json", "--ui", f"127.0.0.1:{port}"], log)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_http(url + "api/state", proc, log)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
        page.goto(url)
        page.evaluate("window.__sameDocument = 42")
        # the grid shows the camera, its name as text, with its live frame
        page.wait_for_selector(".cam img", timeout=20000)
        assert page.locator(".camname").inner_text() == CAMERA
        page.wait_for_function("() => [...document.querySelectorAll('.cam img')].some(i => i.complete && i.naturalWidth > 0)",
                               timeout=20000)
        assert page.locator("tr.ev").count() == 0
        # the spill appears at 7 s: its alert shows up on the page without a reload
        page.wait_for_selector("tr.ev.open", timeout=40000)
        assert page.evaluate("window.__sameDocument") == 42
        row = page.locator("tr.ev.open").first
        assert CAMERA in row.inner_text() and "oil-spill" in row.inner_text()
        page.wait_for_function("() => { const i = document.querySelector('tr.ev.open img.thumb'); return i && i.naturalWidth > 0 }",
                               timeout=10000)
        if shots():
            page.wait_for_timeout(2500)
            page.screenshot(path=str(shots() / "watch-dashboard.png"))
        eid = int(row.get_attribute("data-event") or 0)
        assert eid >= 1 and db_value(db, f"SELECT acknowledged FROM events WHERE id={eid}") == 0
        row.locator("button[data-action=ack]").click()
        assert poll(lambda: db_value(db, f"SELECT acknowledged FROM events WHERE id={eid}") == 1)
        page.wait_for_function(f"() => document.querySelector('tr[data-event=\"{eid}\"]').innerText.includes('acked')")
        # the event page: snapshot, where on the frame, confidence and area over time
        page.goto(f"{url}events/{eid}")
        assert page.locator("img.snapshot").evaluate("i => i.naturalWidth") > 0
        assert page.locator("svg.chart polyline").count() == 2 and page.locator("svg.where rect.box").count() == 1
        if shots():
            page.screenshot(path=str(shots() / "watch-event.png"), full_page=True)
        page.locator("button[data-action=false-alarm]").click()
        assert poll(lambda: db_value(db, f"SELECT false_alarm FROM events WHERE id={eid}") == 1)
        assert db_value(db, f"SELECT count(*) FROM suppressions WHERE event_id={eid}") == 1
        assert len(dialogs) == 1 and dialogs[0].startswith(f"Mark event {eid} as a false alarm")  # the confirm, no injected alert
        # snapshots: served from the folder only, even for raw ../ paths
        assert raw_get(port, "/files/../outside.jpg") == 404 and raw_get(port, "/files/%2e%2e/outside.jpg") == 404
        assert raw_get(port, "/files/../events.sqlite") == 404
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
    assert rc == 130, log.read_text()[-3000:]


def test_non_loopback_dashboard_needs_login_and_csrf(browser, tmp_path):
    clip = make_spill_video(tmp_path / "clip.avi", seconds=12.0, fps=10.0)
    db = tmp_path / "events.sqlite"
    r = subprocess.run([sys.executable, "-m", "synspill", "watch", str(clip), "--model", "py:tests.watch.blobs:load",
                        "--once", "--no-json", "--db", str(db), "--snapshots", str(tmp_path / "snaps")], cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    hp = subprocess.run([sys.executable, "-m", "synspill", "ui", "hash-password", "--username", "safety"], cwd=ROOT,
                        input="s3cret pass\n", capture_output=True, text=True, timeout=60)
    assert hp.returncode == 0 and "s3cret" not in hp.stdout, hp.stderr
    (tmp_path / "auth.toml").write_text(hp.stdout)
    port = free_port()
    log = tmp_path / "ui.log"
    # without credentials a non-loopback bind is refused outright
    bad = subprocess.run([sys.executable, "-m", "synspill", "ui", "--db", str(db), "--bind", f"0.0.0.0:{port}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "open to the network" in bad.stderr and "Traceback" not in bad.stderr
    proc = start(["ui", "--db", str(db), "--bind", f"0.0.0.0:{port}", "--auth", str(tmp_path / "auth.toml")], log)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_http(url + "api/state", proc, log)
        req = urllib.request.Request(url + "events/1/ack", method="POST", data=b"")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        assert e.value.code == 401
        page = browser.new_page()
        page.goto(url)
        assert "/login" in page.url  # reads need a login too
        page.fill("input[name=username]", "safety")
        page.fill("input[name=password]", "wrong")
        page.click("form.login button")
        assert "wrong user name or password" in page.content()
        page.fill("input[name=username]", "safety")
        page.fill("input[name=password]", "s3cret pass")
        page.click("form.login button")
        page.wait_for_selector("tr.ev")
        # logged in, but a write without the page's CSRF token is still refused
        status = page.evaluate("async () => (await fetch('/events/1/ack', {method: 'POST', headers: {'X-CSRF-Token': 'forged'}})).status")
        assert status == 403 and db_value(db, "SELECT acknowledged FROM events WHERE id=1") == 0
        page.locator("tr[data-event='1'] button[data-action=ack]").click()
        assert poll(lambda: db_value(db, "SELECT acknowledged FROM events WHERE id=1") == 1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
