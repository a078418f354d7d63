"""A real FFmpeg-served MPEG-TS stream on loopback, stalled, cut and restored: the camera reconnects."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from synspill.watch.alerts import AlertPolicy
from synspill.watch.config import CameraConfig, SinkConfig, WatchConfig
from synspill.watch.loop import Watcher
from synspill.watch.sources import CameraReader
from tests.watch.blobs import DarkBlobPredictor, make_spill_video
from tests.watch.conftest import free_port

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (apt install ffmpeg)")


def serve(video, port) -> subprocess.Popen:
    """FFmpeg as a one-client HTTP server streaming ``video`` in a loop, in real time."""
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(video),
         "-c:v", "mpeg2video", "-q:v", "5", "-g", "10", "-f", "mpegts", "-listen", "1", f"http://127.0.0.1:{port}/cam.ts"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def stationary_spill(tmp_path):
    # a spill present from the first frame, not growing: a stationary scene on a live camera
    return make_spill_video(tmp_path / "live.avi", seconds=4, appear=0.0, grow_until=0.0, r0=30, r1=30, noise_frames=())


@pytest.mark.slow
def test_stream_cut_and_restored_is_one_event_and_reconnects(stationary_spill, tmp_path):
    port = free_port()
    ff = serve(stationary_spill, port)
    url = f"http://127.0.0.1:{port}/cam.ts"
    db = tmp_path / "e.sqlite"
    cam = CameraConfig("yard", url, "unused", fps=4.0, policy=AlertPolicy(close_after=120))
    cfg = WatchConfig(cameras=(cam,), db=str(db), sinks=SinkConfig(stdout=False))
    w = Watcher(cfg, predictors={"yard": DarkBlobPredictor()})
    readers: list[CameraReader] = []
    orig_init = CameraReader.__init__

    def spy(self, *a, **kw):  # short stall timeout and back-off for the test
        orig_init(self, *a, **{**kw, "stall_timeout": 2.0, "backoff": (0.5, 2.0)})
        readers.append(self)

    CameraReader.__init__ = spy
    th = threading.Thread(target=w.run, daemon=True)
    try:
        th.start()
        wait_for(lambda: w.summary.events_opened == 1, 30, "the first event")
        before, r0 = w.stats["yard"].samples, readers[0].status.reconnects
        ff.send_signal(signal.SIGSTOP)  # stalled: connection open, no data
        wait_for(lambda: readers[0].status.reconnects > r0, 15, "the stall to be reported")
        assert "timed out" in readers[0].status.last_error
        assert readers[0].status.state in ("reconnecting", "connecting")
        ff.kill()  # lost: the server is gone
        ff.wait()
        time.sleep(1.5)  # a few failed attempts against a closed port (back-off)
        ff = serve(stationary_spill, port)
        wait_for(lambda: readers[0].status.state == "live" and w.stats["yard"].samples > before + 8, 30,
                 "samples after the stream came back")
    finally:
        CameraReader.__init__ = orig_init
        w.stop()
        th.join(30)
        ff.kill()
        ff.wait()
    assert not th.is_alive()
    assert readers[0].status.reconnects >= r0 + 2  # the stall, then at least one refused attempt
    rows = sqlite3.connect(db).execute("SELECT id, status FROM events").fetchall()
    assert rows == [(1, "closed")]  # the same spill across the outage is one event (closed at shutdown)
    assert w.summary.events_opened == 1


def test_newest_frame_only_no_backlog(tmp_path):
    """A consumer slower than the sample rate gets the newest sample; older ones are dropped."""
    video = make_spill_video(tmp_path / "v.avi", seconds=3, fps=20)
    r = CameraReader("c", str(video), fps=20.0)
    r.start()
    time.sleep(1.0)
    f = r.take()
    r.stop()
    r.join(5)
    assert f is not None and r.status.samples >= 10
    assert r.status.dropped >= r.status.samples - 2  # nothing was consumed but the last one
    assert f.index == r.status.samples - 1 or f.index >= r.status.samples - 2


def test_http_mjpeg_stream_is_read(stationary_spill):
    port = free_port()
    url = f"http://127.0.0.1:{port}/cam.mjpg"
    ff = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i",
                           str(stationary_spill), "-c:v", "mjpeg", "-q:v", "5", "-f", "mpjpeg", "-listen", "1", url],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = CameraReader("mjpeg", url, fps=2.0, backoff=(0.3, 1.0))
    try:
        r.start()
        wait_for(lambda: r.status.samples >= 3, 20, "MJPEG samples")
        f = r.take()
    finally:
        r.stop()
        r.join(10)
        ff.kill()
        ff.wait()
    assert f is not None and f.image.shape == (240, 320, 3)
    assert f.image[150, 200].mean() < 80  # the spill is where the video put it (RGB, not garbage)
