"""No silent success for alerts (#14 row 4): what a dead webhook or MQTT broker could not take
within the grace period is kept in the event log (the outbox), reported with exit 1 in --once
mode, and delivered first on the next start."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synspill.cli import app
from synspill.watch.store import EventStore
from tests.watch.conftest import free_port


def config(tmp_path: Path, video: Path, sinks: str) -> Path:
    cfg = tmp_path / "cams.toml"
    cfg.write_text(f'db = "events.sqlite"\n[sinks]\nstdout = true\ndelivery_grace = 0.5\n{sinks}\n'
                   f'[[cameras]]\nname = "dock"\nurl = "{video}"\nmodel = "py:tests.watch.blobs:load"\n')
    return cfg


def watch(cfg: Path):
    return CliRunner().invoke(app, ["watch", "--config", str(cfg), "--once"])


def alerts(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


class Receiver:
    """An HTTP endpoint on a given port that records every POSTed JSON body."""

    def __init__(self, port: int) -> None:
        self.bodies: list[dict] = []
        rec = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                rec.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_dead_webhook_keeps_alerts_exits_1_and_delivers_them_next_start(spill_video, tmp_path):
    port = free_port()  # nothing listens there: connection refused
    cfg = config(tmp_path, spill_video, f'webhook = "http://127.0.0.1:{port}/spill"\nwebhook_retries = 1')
    r = watch(cfg)
    first = alerts(r.output)
    assert r.exit_code == 1, r.output
    assert (f"{len(first)} alert(s) not delivered to webhook http://127.0.0.1:{port}/spill (" in r.output
            and "within the 0.5 s grace period; they are kept in" in r.output), r.output
    with EventStore(tmp_path / "events.sqlite") as store:
        assert [row["payload"] for row in store.outbox_pending()] == first
    hook = Receiver(port)
    try:
        r = watch(cfg)
    finally:
        hook.close()
    assert r.exit_code == 0, r.output
    assert f"{len(first)} alerts of earlier runs sent again" in r.output
    assert hook.bodies == first + alerts(r.output)  # the old ones first, then this run's
    with EventStore(tmp_path / "events.sqlite") as store:
        assert store.outbox_pending() == []


def _mosquitto(port: int, folder: Path) -> subprocess.Popen:
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if exe is None:
        pytest.skip("mosquitto binary not installed (apt install mosquitto)")
    conf = folder / f"mosquitto-{port}.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("mosquitto did not start")


def test_dead_mqtt_broker_keeps_alerts_exits_1_and_delivers_them_next_start(spill_video, tmp_path):
    from tests.watch.test_sinks import subscribe

    port = free_port()
    cfg = config(tmp_path, spill_video, f'mqtt = "127.0.0.1:{port}"')
    t0 = time.monotonic()
    r = watch(cfg)
    first = alerts(r.output)
    assert r.exit_code == 1, r.output
    assert f"{len(first)} alert(s) not delivered to mqtt 127.0.0.1:{port}/synspill" in r.output
    assert time.monotonic() - t0 < 5  # a refused broker is not waited for; the grace is 0.5 s
    broker = _mosquitto(port, tmp_path)
    try:
        client, got = subscribe(port, "synspill/dock/events")
        r = watch(cfg)
        assert r.exit_code == 0, r.output
        deadline = time.time() + 5
        while time.time() < deadline and len(got) < 2 * len(first):
            time.sleep(0.05)
        client.loop_stop()
        client.disconnect()
    finally:
        broker.terminate()
        broker.wait(10)
    received = [json.loads(p) for _, p, _ in got]
    assert received[: len(first)] == first and received[len(first):] == alerts(r.output)
    with EventStore(tmp_path / "events.sqlite") as store:
        assert store.outbox_pending() == []
