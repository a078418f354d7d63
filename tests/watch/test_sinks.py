"""Webhook (first POST fails, then retried) and MQTT (real mosquitto) delivery."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from synspill.watch.config import CameraConfig, SinkConfig, WatchConfig
from synspill.watch.loop import Watcher
from synspill.watch.sinks import JsonLinesSink, WebhookSink
from tests.watch.blobs import DarkBlobPredictor
from tests.watch.conftest import free_port


class Hook:
    """A local HTTP endpoint answering ``statuses`` in turn (then 200), recording bodies."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[int, dict]] = []
        hook = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                code = hook.statuses.pop(0) if hook.statuses else 200
                hook.requests.append((code, body))
                self.send_response(code)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/spill"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def watch_once(video, tmp_path, sinks: SinkConfig, extra=()):
    cfg = WatchConfig(cameras=(CameraConfig("dock", str(video), "unused"),), db=str(tmp_path / "e.sqlite"), sinks=sinks)
    return Watcher(cfg, once=True, predictors={"dock": DarkBlobPredictor()}, extra_sinks=list(extra)).run()


def test_webhook_retries_after_a_failure(spill_video, tmp_path):
    hook = Hook([500])
    buf = io.StringIO()
    try:
        watch_once(spill_video, tmp_path, SinkConfig(stdout=False, webhook=hook.url, webhook_retries=3), [JsonLinesSink(buf)])
    finally:
        hook.close()
    expected = [json.loads(s) for s in buf.getvalue().splitlines()]
    assert len(expected) >= 3
    codes = [c for c, _ in hook.requests]
    assert codes == [500] + [200] * len(expected)  # the first alert was posted twice
    assert hook.requests[0][1] == hook.requests[1][1] == expected[0]
    assert [b for c, b in hook.requests if c == 200] == expected


def test_webhook_gives_up_on_client_error_and_on_dead_server():
    hook = Hook([400])
    sink = WebhookSink(hook.url, retries=3, backoff=0.01)
    sink.emit({"event_id": 1})
    sink.close()
    hook.close()
    assert sink.attempts == 1 and sink.failed == 1 and sink.delivered == 0
    dead = WebhookSink(f"http://127.0.0.1:{free_port()}/x", retries=2, backoff=0.01, timeout=1)
    dead.emit({"event_id": 2})
    dead.close()
    assert dead.attempts == 3 and dead.failed == 1


@pytest.fixture
def mosquitto(tmp_path):
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if shutil.os.path.exists("/usr/sbin/mosquitto") else None)
    if exe is None:
        pytest.skip("mosquitto binary not installed (apt install mosquitto)")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import socket

    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("mosquitto did not start")
    yield port
    proc.terminate()
    proc.wait(10)


def subscribe(port: int, topic: str) -> tuple[object, list]:
    import paho.mqtt.client as mqtt

    got: list = []
    ready = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_connect = lambda cl, *a: (cl.subscribe(topic, qos=1), None)[1]
    c.on_subscribe = lambda *a: ready.set()
    c.on_message = lambda cl, u, m: got.append((m.topic, m.payload.decode(), m.retain))
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert ready.wait(5)
    return c, got


def test_mqtt_delivery_to_real_broker(spill_video, tmp_path, mosquitto):
    client, got = subscribe(mosquitto, "synspill/#")
    buf = io.StringIO()
    watch_once(spill_video, tmp_path, SinkConfig(stdout=False, mqtt=f"127.0.0.1:{mosquitto}"), [JsonLinesSink(buf)])
    expected = [json.loads(s) for s in buf.getvalue().splitlines()]
    deadline = time.time() + 5
    while time.time() < deadline and sum(t == "synspill/dock/events" for t, _, _ in got) < len(expected):
        time.sleep(0.05)
    client.loop_stop()
    client.disconnect()
    events = [json.loads(p) for t, p, _ in got if t == "synspill/dock/events"]
    assert events == expected and events[0]["type"] == "spill.opened"
    states = [json.loads(p) for t, p, _ in got if t == "synspill/dock/state"]
    assert states[0]["spill"] is True and states[0]["open_events"][0]["event_id"] == 1
    assert states[-1] == {"spill": False, "open_events": []}
    assert [p for t, p, _ in got if t == "synspill/availability"] == ["online", "offline"]
    # a late subscriber (an NVR starting up) gets the retained state
    late, got2 = subscribe(mosquitto, "synspill/dock/state")
    time.sleep(0.3)
    late.loop_stop()
    late.disconnect()
    assert got2 and got2[0][2] is True and json.loads(got2[0][1])["spill"] is False
