"""One ``watch --once`` run of the dashboard benchmark, on the synspill tree given by ``--src``.

Run by ``bench_watch.py --only dashboard`` in a fresh process per run, so that the code
from before the dashboard (a ``git archive`` of an older commit) and today's code are
measured the same way. Prints one JSON line: wall time, CPU time of all threads and of the loop's (main) thread, samples, time inside predict,
loop handling time, page requests served.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import threading
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--src", required=True)
ap.add_argument("--video", required=True)
ap.add_argument("--work", required=True)
ap.add_argument("--cams", type=int, default=4)
ap.add_argument("--imgsz", type=int, default=320)
ap.add_argument("--ui", action="store_true", help="Serve the dashboard and poll it like an open page (every 2 s).")
ap.add_argument("--baseline", default=None, help="Per-camera baseline mode (learn, capture); default off.")
a = ap.parse_args()
sys.path.insert(0, a.src)
os.environ.setdefault("YOLO_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ultralytics import YOLO  # noqa: E402

from synspill.watch.config import CameraConfig, SinkConfig, WatchConfig  # noqa: E402
from synspill.watch.loop import Watcher  # noqa: E402
from synspill.watch.sinks import JsonLinesSink  # noqa: E402
from tests.watch.blobs import DarkBlobPredictor  # noqa: E402

torch.set_num_threads(1)


class YoloPlusBlobs:
    """YOLO11n inference (the cost) + dark-blob detections (the events), as in bench_watch.py."""

    name = "yolo11n+blobs"

    def __init__(self, imgsz: int) -> None:
        self.model, self.imgsz, self.blobs = YOLO("yolo11n.yaml"), imgsz, DarkBlobPredictor()

    def predict(self, images):
        self.model.predict([im[..., ::-1] for im in images], imgsz=self.imgsz, conf=0.25, verbose=False, device="cpu")
        return self.blobs.predict(images)


pred = YoloPlusBlobs(a.imgsz)
pred.predict([np.zeros((480, 640, 3), np.uint8)])  # warm-up
kw = {}
if a.baseline:
    from synspill.watch.baseline import BaselineConfig

    kw["baseline"] = BaselineConfig(mode=a.baseline)
cams = tuple(CameraConfig(f"cam{i}", a.video, "unused", **kw) for i in range(a.cams))
tag = f"{'ui' if a.ui else 'plain'}-{a.baseline or 'off'}-{os.getpid()}"
cfg = WatchConfig(cameras=cams, db=os.path.join(a.work, f"{tag}.sqlite"),
                  sinks=SinkConfig(stdout=False, snapshots=os.path.join(a.work, f"snaps-{tag}")))
w = Watcher(cfg, once=True, predictors={c.name: pred for c in cams}, extra_sinks=[JsonLinesSink(io.StringIO())])
requests = [0]
stop = threading.Event()
server = None
if a.ui:
    from pathlib import Path

    from synspill.watch.store import EventStore
    from synspill.watch.ui.app import UIState, create_app
    from synspill.watch.ui.server import UIServer

    EventStore(cfg.db).close()
    server = UIServer(create_app(UIState(db=Path(cfg.db), snapshots=Path(cfg.sinks.snapshots or "."), live=w.live)),
                      "127.0.0.1", 0).start()

    def page() -> None:  # what static/app.js does every 2 s, plus the images it then loads
        base = server.url
        urllib.request.urlopen(base, timeout=10).read()
        while not stop.wait(2.0):
            for path in ["partials/cameras", "partials/events"] + [f"cameras/cam{i}/frame.jpg" for i in range(a.cams)]:
                try:
                    urllib.request.urlopen(base + path, timeout=10).read()
                    requests[0] += 1
                except OSError:
                    pass

    threading.Thread(target=page, daemon=True).start()
t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
s = w.run()
wall, cpu, main_cpu = time.perf_counter() - t0, time.process_time() - c0, time.thread_time() - m0
stop.set()
if server is not None:
    server.stop()
print(json.dumps({"wall": wall, "cpu": cpu, "main_cpu": main_cpu, "samples": s.samples, "infer_s": s.infer_s, "handle_s": s.handle_s,
                  "events": s.events_opened, "requests": requests[0]}))
