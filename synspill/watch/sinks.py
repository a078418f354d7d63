"""Where alerts go: JSON lines on stdout, a webhook, MQTT, annotated snapshot JPEGs.

Every sink takes the payload dict of :meth:`~synspill.watch.alerts.EventState.payload`
(``type`` = ``spill.opened`` / ``spill.updated`` / ``spill.closed``). Network sinks never
block the detection loop: the webhook posts from its own thread with retries and
exponential back-off; paho-mqtt publishes from its network thread (QoS 1, so the
broker acknowledges; messages queue while it is down).

Network sinks are :class:`ReliableSink` s: ``emit(payload, msg_id)`` takes the id of the
alert's outbox row (:meth:`~synspill.watch.store.EventStore.outbox_add`) and the sink
reports, from its own thread, whether that alert was delivered (:meth:`drain`); ``close``
waits up to a grace period for the rest. The watch loop keeps what was not delivered in the
event log and sends it again on the next start.

MQTT topics (``prefix`` = ``synspill`` by default), the layout NVRs such as Frigate use:

- ``<prefix>/<camera>/events``: one message per alert (JSON payload, QoS 1);
- ``<prefix>/<camera>/state``: retained JSON ``{"spill": bool, "open_events": [...]}``;
- ``<prefix>/availability``: retained ``online`` / ``offline`` (last will).
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

import numpy as np

from synspill.errors import UsageError

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Receives alert payloads."""

    def emit(self, payload: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


#: A delivery outcome: ``(outbox id, delivered, reason)``.
Outcome = tuple[int, bool, str]


@runtime_checkable
class ReliableSink(Protocol):
    """A network sink whose deliveries are confirmed (see the module docstring)."""

    #: The destination, as recorded in the outbox (``webhook URL``, ``mqtt HOST:PORT/PREFIX``).
    key: str

    def emit(self, payload: dict[str, Any], msg_id: int | None = None) -> None: ...

    def resend(self, msg_id: int, payload: dict[str, Any]) -> None: ...

    def drain(self) -> list[Outcome]: ...

    def close(self, timeout: float = 10.0) -> None: ...


def _drain(q: queue.SimpleQueue[Outcome]) -> list[Outcome]:
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out


class JsonLinesSink:
    """One JSON object per line (stdout by default), flushed per alert."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def emit(self, payload: dict[str, Any]) -> None:
        self.stream.write(json.dumps(payload, separators=(",", ":")) + "\n")
        self.stream.flush()

    def close(self) -> None:
        try:
            self.stream.flush()
        except ValueError:  # closed stream
            pass


class WebhookSink:
    """HTTP POST of each payload as JSON, from a background thread with retries.

    A failure (connection error, timeout or a non-2xx status) is retried ``retries``
    times with back-off ``backoff * 2**attempt`` seconds (capped at 60 s); 4xx other
    than 408/429 is not retried (the request itself is wrong).

    Args:
        url: ``http(s)://`` endpoint.
        retries: Attempts after the first.
        backoff: First retry delay in seconds.
        timeout: Per-request timeout in seconds.
        headers: Extra HTTP headers (e.g. ``Authorization``).
    """

    def __init__(self, url: str, retries: int = 5, backoff: float = 1.0, timeout: float = 10.0,
                 headers: dict[str, str] | None = None) -> None:
        self.url, self.retries, self.backoff, self.timeout = url, retries, backoff, timeout
        self.key = f"webhook {url}"
        self.headers = {"Content-Type": "application/json", "User-Agent": "synspill-watch", **(headers or {})}
        self.delivered = 0
        self.failed = 0
        self.attempts = 0
        self._q: queue.Queue[tuple[int | None, dict[str, Any]] | None] = queue.Queue()
        self._outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def emit(self, payload: dict[str, Any], msg_id: int | None = None) -> None:
        """Queue one POST; with ``msg_id`` its outcome is reported by :meth:`drain`."""
        self._q.put((msg_id, payload))

    def resend(self, msg_id: int, payload: dict[str, Any]) -> None:
        """Send an alert an earlier run could not deliver."""
        self.emit(payload, msg_id)

    def drain(self) -> list[Outcome]:
        """Outcomes reported since the last call."""
        return _drain(self._outcomes)

    def _post(self, body: bytes) -> tuple[bool, bool, str]:
        """``(ok, retryable, reason)`` for one attempt."""
        self.attempts += 1
        req = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return 200 <= r.status < 300, True, f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            return False, e.code >= 500 or e.code in (408, 429), f"HTTP {e.code}"
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            return False, True, str(getattr(e, "reason", e))

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None or self._stop.is_set():  # past the grace period: the rest stays in the outbox
                return
            msg_id, payload = item
            ok, reason = self._deliver(payload)
            if msg_id is not None:
                self._outcomes.put((msg_id, ok, reason))

    def _deliver(self, payload: dict[str, Any]) -> tuple[bool, str]:
        """POST with retries; ``(delivered, last reason)``."""
        body = json.dumps(payload).encode()
        for attempt in range(self.retries + 1):
            ok, retryable, reason = self._post(body)
            if ok:
                self.delivered += 1
                return True, reason
            if not retryable or attempt == self.retries:
                self.failed += 1
                log.error("webhook %s: giving up on event %s after %d attempt(s): %s", self.url,
                          payload.get("event_id"), attempt + 1, reason)
                return False, reason
            delay = min(self.backoff * 2**attempt, 60.0)
            log.warning("webhook %s: %s; retry %d/%d in %.1f s", self.url, reason, attempt + 1, self.retries, delay)
            if self._stop.wait(delay):
                # the grace period is over: one last immediate try, then give up
                ok, _, reason = self._post(body)
                self.delivered += ok
                self.failed += not ok
                return ok, reason
        return False, "no attempt"  # not reached (retries >= 0)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued, retrying for up to ``timeout`` s (the grace period), then stop.

        Alerts still undelivered then are not reported as delivered (:meth:`drain`): they
        stay in the outbox.
        """
        self._q.put(None)
        self._thread.join(timeout)
        self._stop.set()
        self._thread.join(min(2.0, self.timeout))


class MqttSink:
    """Publishes alerts to an MQTT broker (paho-mqtt 2.x).

    An alert counts as delivered when the broker acknowledges it (QoS 1 PUBACK). While
    the broker is down, paho keeps reconnecting and queues the messages.

    Args:
        host, port: Broker address.
        prefix: Topic prefix (``<prefix>/<camera>/events``).
        retain_state: Keep a retained ``<prefix>/<camera>/state`` topic up to date.
        client_id: MQTT client id.
        username, password: Credentials (optional).
        connect_timeout: Seconds to wait for the first connection before going on
            (less when the broker refuses at once; paho keeps reconnecting in the
            background; messages queue meanwhile).
    """

    def __init__(self, host: str, port: int = 1883, prefix: str = "synspill", retain_state: bool = True,
                 client_id: str | None = None, username: str | None = None, password: str | None = None,
                 connect_timeout: float = 5.0) -> None:
        import paho.mqtt.client as mqtt

        self.prefix, self.retain_state = prefix.rstrip("/"), retain_state
        self.key = f"mqtt {host}:{port}/{self.prefix}"
        self._open: dict[str, dict[int, dict[str, Any]]] = {}
        self._connected = threading.Event()
        self._tried = threading.Event()  # the first connection attempt ended (either way)
        self._lock = threading.Lock()
        self._waiting: dict[int, int | None] = {}  # paho mid -> outbox id (None: not an alert)
        self._acked: set[int] = set()  # mids acknowledged before publish() returned
        self._outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"synspill-watch-{int(time.time())}")
        if username:
            self.client.username_pw_set(username, password)
        self.client.will_set(f"{self.prefix}/availability", "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(1, 30)
        self.client.max_queued_messages_set(10000)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = lambda *a: self._tried.set()
        self.client.on_disconnect = lambda *a, **k: self._connected.clear()
        self.client.on_publish = self._on_publish
        try:
            self.client.connect_async(host, port, keepalive=30)
        except (OSError, ValueError) as e:
            raise UsageError(f"MQTT broker {host}:{port}: {e}; check --mqtt HOST:PORT") from None
        self.client.loop_start()
        self._tried.wait(connect_timeout)
        if not self._connected.is_set():
            log.warning("MQTT broker %s:%d not reachable yet; alerts are queued until it is", host, port)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        self._tried.set()
        if getattr(reason_code, "is_failure", False):
            log.error("MQTT: connection refused: %s", reason_code)
            return
        self._publish(f"{self.prefix}/availability", "online", retain=True)
        self._connected.set()

    def _publish(self, topic: str, data: str, retain: bool = False, msg_id: int | None = None) -> None:
        info = self.client.publish(topic, data, qos=1, retain=retain)
        with self._lock:  # paho is never called under this lock (its callbacks take it)
            if info.mid in self._acked:
                self._acked.discard(info.mid)
                if msg_id is not None:
                    self._outcomes.put((msg_id, True, "PUBACK"))
            else:
                self._waiting[info.mid] = msg_id

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any = None, properties: Any = None) -> None:
        failed = bool(getattr(reason_code, "is_failure", False))
        with self._lock:
            if mid not in self._waiting:
                self._acked.add(mid)
                return
            msg_id = self._waiting.pop(mid)
        if msg_id is not None:
            self._outcomes.put((msg_id, not failed, str(reason_code) if failed else "PUBACK"))

    def emit(self, payload: dict[str, Any], msg_id: int | None = None) -> None:
        """Publish one alert (and the camera's retained state); ``msg_id``: report its outcome in :meth:`drain`."""
        cam = str(payload.get("camera"))
        self._publish(f"{self.prefix}/{cam}/events", json.dumps(payload), msg_id=msg_id)
        if self.retain_state:
            open_ev = self._open.setdefault(cam, {})
            if payload.get("type") == "spill.closed":
                open_ev.pop(int(payload.get("event_id") or 0), None)
            else:
                open_ev[int(payload.get("event_id") or 0)] = {k: payload.get(k) for k in (
                    "event_id", "zone", "class", "severity", "box", "last_seen")}
            state = {"spill": bool(open_ev), "open_events": list(open_ev.values())}
            self._publish(f"{self.prefix}/{cam}/state", json.dumps(state), retain=True)

    def resend(self, msg_id: int, payload: dict[str, Any]) -> None:
        """Publish an alert an earlier run could not deliver (the events topic only: the state is today's)."""
        self._publish(f"{self.prefix}/{payload.get('camera')}/events", json.dumps(payload), msg_id=msg_id)

    def drain(self) -> list[Outcome]:
        """Outcomes reported since the last call."""
        return _drain(self._outcomes)

    def _alerts_waiting(self) -> int:
        with self._lock:
            return sum(v is not None for v in self._waiting.values())

    def close(self, timeout: float = 5.0) -> None:
        """Wait up to ``timeout`` s (the grace period) for the broker to acknowledge every alert,
        mark offline, disconnect. Unacknowledged alerts stay in the outbox."""
        deadline = time.monotonic() + timeout
        while self._alerts_waiting() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._connected.is_set():
            info = self.client.publish(f"{self.prefix}/availability", "offline", qos=1, retain=True)
            end = min(deadline, time.monotonic() + 2.0)
            while not info.is_published() and time.monotonic() < end:
                time.sleep(0.02)
            while self.client.want_write() and time.monotonic() < end:
                time.sleep(0.02)
        self.client.disconnect()
        self.client.loop_stop()


SEVERITY_BGR = {"low": (80, 200, 80), "medium": (0, 200, 255), "high": (0, 120, 255), "critical": (0, 0, 230)}


def annotate(image_rgb: np.ndarray, box: tuple[float, float, float, float], label: str, severity: str,
             zone_polys: list[list[tuple[float, float]]] | None = None, footer: str = "") -> np.ndarray:
    """Draw a spill box and its label on a copy of an RGB frame.

    Args:
        image_rgb: ``(H, W, 3)`` RGB uint8.
        box: Absolute ``xyxy`` pixels.
        label: Text above the box (class, confidence, severity).
        severity: Picks the colour (green low -> red critical).
        zone_polys: Zone outlines (absolute pixels) drawn thin.
        footer: Text on a dark band at the bottom (camera, time, event id).

    Returns:
        The annotated BGR ``uint8`` image (ready for ``cv2.imencode``).
    """
    import cv2

    img = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    h, w = img.shape[:2]
    thick = max(1, round(min(h, w) / 300))
    for poly in zone_polys or []:
        cv2.polylines(img, [np.round(np.array(poly)).astype(np.int32)], True, (255, 200, 0), thick)
    color = SEVERITY_BGR.get(severity, (0, 0, 255))
    x1, y1, x2, y2 = (round(v) for v in box)
    cv2.rectangle(img, (x1, y1), (x2, y2), color, thick + 1)
    scale = max(0.35, min(h, w) / 900)
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    ty = y1 - 4 if y1 - th - base - 4 >= 0 else min(y2 + th + 4, h - base)
    cv2.rectangle(img, (x1, ty - th - base), (min(x1 + tw + 4, w - 1), ty + base), color, -1)
    cv2.putText(img, label, (x1 + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
    if footer:
        (fw, fh), fb = cv2.getTextSize(footer, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        cv2.rectangle(img, (0, h - fh - fb - 6), (min(fw + 8, w - 1), h - 1), (0, 0, 0), -1)
        cv2.putText(img, footer, (4, h - fb - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return img


class SnapshotWriter:
    """One annotated JPEG per alert under ``root/<camera>/``, written atomically.

    File name: ``<camera>/event<id>-<alert number>_<opened|updated>.jpg``; the clean
    (un-annotated) frame of a new event: ``<camera>/event<id>-frame.jpg`` (:meth:`write_frame`).
    """

    def __init__(self, root: str | Path, quality: int = 90) -> None:
        self.root = Path(root).absolute()
        self.quality = quality

    def write(self, image_rgb: np.ndarray, payload: dict[str, Any],
              zone_polys: list[list[tuple[float, float]]] | None = None) -> str:
        """Draw and save; returns the file path."""
        import cv2

        from synspill.io import write_bytes

        label = f"{payload['class']} {payload['confidence']:.2f} {payload['severity']}"
        zone = f" / {payload['zone']}" if payload.get("zone") else ""
        footer = f"{payload['camera']}{zone}  {payload['last_seen'][:19].replace('T', ' ')} UTC  event {payload['event_id']}"
        bgr = annotate(image_rgb, tuple(payload["box"]), label, payload["severity"], zone_polys, footer)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        path = self.root / payload["camera"] / f"event{payload['event_id']}-{payload.get('alerts', 0)}_{payload['type'].split('.')[-1]}.jpg"
        write_bytes(path, buf.tobytes())
        return str(path)

    def write_frame(self, image_rgb: np.ndarray, payload: dict[str, Any]) -> str:
        """Save the frame as it came from the camera (no drawing; quality 95); returns the file path."""
        import cv2

        from synspill.io import write_bytes

        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        path = self.root / payload["camera"] / f"event{payload['event_id']}-frame.jpg"
        write_bytes(path, buf.tobytes())
        return str(path)
