"""Watch-loop benchmarks: overhead over bare inference, memory over a soak, cameras per core.

Model: ultralytics YOLO11n built from ``yolo11n.yaml`` (random init, offline) on CPU with
one torch thread. A random-init YOLO finds nothing, so the predictor also returns the
dark-blob detections of a synthetic growing spill (cost < 1 ms/frame): the tracker,
the SQLite log and the sinks then have real events to handle. The *baseline* is that same
predictor's own ``predict`` time on the same sampled frames, measured in the same run.

1. overhead: ``synspill watch --once`` on a 640x480 video (decoding, sampling,
   tracking, severity, SQLite WAL commits, JSON lines, snapshots) vs. the bare
   ``predict`` calls on the already decoded samples. Target <= 5 %.
2. cameras per core: per-sample cost of the loop at imgsz 640 and 320 -> how many
   2-fps cameras one core sustains; then a live check running that many looping
   cameras for ``--live-seconds`` and reporting the achieved fps per camera.
3. soak: one camera on a looping ffmpeg-served MPEG-TS stream on loopback (spill appearing and vanishing each loop, so events keep
   opening and closing) for ``--soak-seconds``; RSS first/last/max.

4. dashboard: 4 cameras, ``--once`` on the same video, one fresh process per run (runs
   interleaved): the loop as it was before the dashboard and baselines (``git archive`` of
   ``--before``, default the commit before them) vs today's loop plain, with the dashboard
   served and polled like an open page (every 2 s: the camera grid, the event list and the 4
   live frames), with per-camera baselines on, and with both. Target: the dashboard adds
   <= 5 % at 4 cameras.

Run: ``PYTHONPATH=. python benchmarks/bench_watch.py [--soak-seconds 600]``;
only the dashboard part: ``--skip overhead,live,soak``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from synspill.detections import Detections  # noqa: E402
from synspill.watch.alerts import AlertPolicy  # noqa: E402
from synspill.watch.config import CameraConfig, SinkConfig, WatchConfig  # noqa: E402
from synspill.watch.loop import Watcher  # noqa: E402
from synspill.watch.sinks import JsonLinesSink  # noqa: E402
from synspill.watch.sources import iter_samples  # noqa: E402
from tests.watch.blobs import DarkBlobPredictor, make_spill_video  # noqa: E402


class YoloPlusBlobs:
    """YOLO11n inference (the cost) + dark-blob detections (the events)."""

    def __init__(self, imgsz: int) -> None:
        import torch
        from ultralytics import YOLO

        torch.set_num_threads(1)
        self.model = YOLO("yolo11n.yaml")
        self.imgsz = imgsz
        self.blobs = DarkBlobPredictor()
        self.name = f"yolo11n@{imgsz}+blobs"

    def predict(self, images: list[np.ndarray]) -> list[Detections]:
        res = self.model.predict([im[..., ::-1] for im in images], imgsz=self.imgsz, conf=0.25, verbose=False, device="cpu")
        out = self.blobs.predict(images)
        for d, r in zip(out, res, strict=True):
            b = r.boxes
            if len(b):
                d.xyxy = np.concatenate([d.xyxy, b.xyxy.numpy()])
                d.class_id = np.concatenate([d.class_id, b.cls.numpy().astype(np.int64) % 8 + 1])
                d.score = np.concatenate([d.score, b.conf.numpy()])
        return out


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def watch_once(video: Path, pred, work: Path, tag: str) -> tuple[float, int, float, float]:
    """Wall time, samples, in-predict time and post-predict handling time of a ``--once`` run."""
    cfg = WatchConfig(cameras=(CameraConfig("cam", str(video), "unused"),), db=str(work / f"{tag}.sqlite"),
                      sinks=SinkConfig(stdout=False, snapshots=str(work / f"snaps-{tag}")))
    t0 = time.perf_counter()
    s = Watcher(cfg, once=True, predictors={"cam": pred}, extra_sinks=[JsonLinesSink(io.StringIO())]).run()
    return time.perf_counter() - t0, s.samples, s.infer_s, s.handle_s


def bench_overhead(video: Path, imgsz: int, work: Path, repeats: int) -> float:
    pred = YoloPlusBlobs(imgsz)
    frames = [f.image for f in iter_samples("cam", str(video), 2.0)]
    for f in frames[:3]:  # warm-up
        pred.predict([f])
    bare, watch, inside, decode, handle = [], [], [], [], []
    for i in range(repeats):  # interleaved, so load changes on a shared machine hit all of them
        t0 = time.perf_counter()
        for f in frames:
            pred.predict([f])
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        n_dec = sum(1 for _ in iter_samples("cam", str(video), 2.0))
        decode.append(time.perf_counter() - t0)
        w, n, inf, hs = watch_once(video, pred, work, f"o{imgsz}-{i}")
        assert n == n_dec == len(frames)
        handle.append(hs)
        watch.append(w)
        inside.append(inf)
    b, w, inf, dec = (statistics.median(x) for x in (bare, watch, inside, decode))
    n = len(frames)
    per = w / n
    loop = [(x - y - z) / y for x, y, z in zip(watch, inside, decode, strict=True)]
    hand = [h / y for h, y in zip(handle, inside, strict=True)]
    print(f"[imgsz {imgsz}] {n} samples (2 fps from a 10-fps 640x480 video) x {repeats} runs, medians:")
    print(f"[imgsz {imgsz}]   bare predict (baseline) {b:.2f} s = {1000 * b / n:.1f} ms/frame; "
          f"watch --once {w:.2f} s = {1000 * per:.1f} ms/sample (predict inside {inf:.2f} s, "
          f"decoding all {n * 5} source frames {dec:.2f} s)")
    print(f"[imgsz {imgsz}]   watch-loop overhead, timed inside the loop (tracker, severity, SQLite, JSON lines, "
          f"snapshots) over its own inference: {100 * statistics.median(hand):+.2f} % (target <= 5 %), "
          f"{1000 * statistics.median(handle) / n:.2f} ms/sample, per run {[f'{100 * x:+.2f}' for x in hand]}")
    print(f"[imgsz {imgsz}]   same from wall clocks (watch - its predict - separately timed decoding) / its predict: "
          f"{100 * statistics.median(loop):+.1f} %, per run {[f'{100 * x:+.1f}' for x in loop]} (shared-CPU noise)")
    print(f"[imgsz {imgsz}]   end to end incl. decoding vs bare predict on decoded frames: {100 * (w / b - 1):+.1f} % "
          f"(per run {[f'{100 * (x / y - 1):+.1f}' for x, y in zip(watch, bare, strict=True)]})")
    cams = int(1.0 / (2.0 * per))
    print(f"[imgsz {imgsz}]   one core: {1.0 / per:.1f} samples/s end to end -> {cams} cameras at 2 fps")
    return per


def bench_live(video: Path, imgsz: int, n_cams: int, seconds: float, work: Path) -> None:
    if n_cams < 1:
        print(f"[live {imgsz}] fewer than one 2-fps camera per core; skipped")
        return
    pred = YoloPlusBlobs(imgsz)
    cams = tuple(CameraConfig(f"cam{i}", str(video), "unused", loop=True, policy=AlertPolicy(close_after=2.0))
                 for i in range(n_cams))
    cfg = WatchConfig(cameras=cams, db=str(work / f"live{imgsz}.sqlite"), sinks=SinkConfig(stdout=False))
    # one model on one core, shared by every camera (one predict per camera sample)
    w = Watcher(cfg, predictors={c.name: pred for c in cams}, extra_sinks=[JsonLinesSink(io.StringIO())])
    th = threading.Thread(target=w.run, daemon=True)
    th.start()
    time.sleep(3.0)  # readers connect, warm-up
    s0 = {n: st.samples for n, st in w.stats.items()}
    d0 = {n: st.dropped for n, st in w.stats.items()}
    time.sleep(seconds)
    fps = [(w.stats[n].samples - s0[n]) / seconds for n in s0]
    drop = sum(w.stats[n].dropped - d0[n] for n in d0)
    lat = statistics.median(st.latency_ms for st in w.stats.values())
    w.stop()
    th.join(30)
    print(f"[live {imgsz}] {n_cams} looping cameras for {seconds:.0f} s: achieved fps per camera "
          f"min {min(fps):.2f} / mean {statistics.mean(fps):.2f} (asked 2.0), samples dropped {drop}, "
          f"latency ~{lat:.0f} ms")


def bench_soak(seconds: float, imgsz: int, work: Path, via: str) -> None:
    import shutil
    import socket
    import subprocess

    video = make_spill_video(work / "soak.avi", seconds=8, fps=10, size=(640, 480), appear=1.0, grow_until=5.0,
                             gone_after=6.0, centre=(400, 300))
    pred = YoloPlusBlobs(imgsz)
    server = None
    url = str(video)
    if via == "stream" and shutil.which("ffmpeg"):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}/soak.ts"
        server = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i",
                                   str(video), "-c:v", "mpeg2video", "-q:v", "5", "-f", "mpegts", "-listen", "1", url],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    else:
        via = "file"
    cam = CameraConfig("soak", url, "unused", loop=True, policy=AlertPolicy(close_after=1.5, cooldown=0))
    cfg = WatchConfig(cameras=(cam,), db=str(work / "soak.sqlite"), sinks=SinkConfig(stdout=False, snapshots=str(work / "soak-snaps")))
    w = Watcher(cfg, predictors={"soak": pred}, extra_sinks=[JsonLinesSink(io.StringIO())])
    th = threading.Thread(target=w.run, daemon=True)
    th.start()
    samples = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        time.sleep(min(5.0, max(seconds / 20, 0.5)))
        samples.append((time.monotonic() - t0, rss_mb(), w.summary.events_opened))
    w.stop()
    th.join(30)
    if server is not None:
        server.kill()
        server.wait()
    warm = min(60.0, seconds / 4)  # model, allocator and FFmpeg buffers fill up first
    first = next((x for x in samples if x[0] >= warm), samples[-1])
    last = samples[-1]
    print(f"[soak] looping {'ffmpeg MPEG-TS stream on loopback' if via == 'stream' else 'video file'}, imgsz {imgsz}, "
          f"{seconds:.0f} s, {w.summary.samples} samples, {w.summary.events_opened} events opened/closed: "
          f"RSS first after warm-up {first[1]:.1f} MB (t={first[0]:.0f} s), last {last[1]:.1f} MB (t={last[0]:.0f} s), "
          f"max {max(s[1] for s in samples):.1f} MB, growth {last[1] - first[1]:+.1f} MB")
    marks = sorted({min(len(samples) - 1, round(q * (len(samples) - 1))) for q in (0.1, 0.25, 0.5, 0.75, 1.0)})
    print("[soak] RSS over time: " + ", ".join(f"{samples[i][0]:.0f} s {samples[i][1]:.1f} MB" for i in marks))


def bench_dashboard(video: Path, work: Path, repeats: int, before: str, baseline: str, imgsz: int = 320) -> None:
    import json
    import subprocess

    root = Path(__file__).resolve().parents[1]
    old = work / "before"
    old.mkdir()
    arch = subprocess.run(["git", "-C", str(root), "archive", before, "synspill", "tests"], capture_output=True)
    if arch.returncode != 0:
        print(f"[dashboard] cannot git archive {before!r} ({arch.stderr.decode().strip()}); 'before' skipped")
        old = None  # type: ignore[assignment]
    else:
        subprocess.run(["tar", "-x", "-C", str(old)], input=arch.stdout, check=True)
    runs: dict[str, tuple[Path, list[str]]] = {"plain": (root, []), "dashboard": (root, ["--ui"]),
                                               "baselines": (root, ["--baseline", baseline]),
                                               "dashboard+baselines": (root, ["--ui", "--baseline", baseline])}
    if old is not None:
        runs = {f"before ({before})": (old, []), **runs}
    res: dict[str, list[dict]] = {k: [] for k in runs}
    child = Path(__file__).with_name("_watch_child.py")
    for _ in range(repeats):
        for name, (src, extra) in runs.items():
            out = subprocess.run([sys.executable, str(child), "--src", str(src), "--video", str(video), "--work", str(work),
                                  "--cams", "4", "--imgsz", str(imgsz), *extra], capture_output=True, text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
            if out.returncode != 0:
                raise SystemExit(f"[dashboard] {name} failed:\n{out.stderr[-2000:]}")
            res[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    ref_key = next(iter(runs))
    ref = statistics.median(r["wall"] for r in res[ref_key])
    ref_cpu = statistics.median(r["cpu"] for r in res[ref_key])
    print(f"[dashboard] 4 cameras x {res[ref_key][0]['samples'] // 4} samples, YOLO11n@{imgsz}+blobs, --once, "
          f"{repeats} interleaved runs each, medians (baseline: {ref_key}):")
    for name, rs in res.items():
        wall = statistics.median(r["wall"] for r in rs)
        n = rs[0]["samples"]
        hand = statistics.median(r["handle_s"] for r in rs)
        inf = statistics.median(r["infer_s"] for r in rs)
        req = statistics.median(r["requests"] for r in rs)
        cpu = statistics.median(r["cpu"] for r in rs)
        print(f"[dashboard]   {name:<24} wall {wall:6.2f} s = {1000 * wall / n:5.1f} ms/sample ({wall / ref:.3f}x, "
              f"{100 * (wall / ref - 1):+.1f} %); CPU (all threads) {cpu:6.2f} s ({100 * (cpu / ref_cpu - 1):+.1f} %); loop handling {1000 * hand / n:.2f} ms/sample = "
              f"{100 * hand / inf:.2f} % of its inference; events {rs[0]['events']}; page requests {req:.0f}; "
              f"wall per run {[round(r['wall'], 2) for r in rs]}")
    # Whole-run times swing by +-10 % between identical runs (inference on a shared CPU), so the
    # dashboard's cost is read from what it adds: CPU of the threads besides the loop (web
    # server, live-frame writer) and the loop's own handling time, over the plain run's CPU.
    for a, b in (("plain", "dashboard"), ("baselines", "dashboard+baselines")):
        other = {k: statistics.median(r["cpu"] - r["main_cpu"] for r in res[k]) for k in (a, b)}
        hand = {k: statistics.median(r["handle_s"] for r in res[k]) for k in (a, b)}
        total = statistics.median(r["cpu"] for r in res[a])
        add = (other[b] - other[a]) + (hand[b] - hand[a])
        print(f"[dashboard]   the dashboard open adds to the {a} loop: {add:+.3f} s CPU = {100 * add / total:+.2f} % of the "
              f"run's {total:.2f} s (server/writer threads {other[a]:.3f} -> {other[b]:.3f} s, loop handling "
              f"{hand[a]:.3f} -> {hand[b]:.3f} s; target <= 5 %)")
    for a, b in (("plain", "baselines"),):
        hand = {k: statistics.median(r["handle_s"] for r in res[k]) for k in (a, b)}
        total = statistics.median(r["cpu"] for r in res[a])
        print(f"[dashboard]   baselines on add {hand[b] - hand[a]:+.3f} s of loop handling = "
              f"{100 * (hand[b] - hand[a]) / total:+.2f} % of the run's CPU")
    if old is not None:
        key = f"before ({before})"
        hb, hp = (statistics.median(r["handle_s"] for r in res[k]) for k in (key, "plain"))
        n = res["plain"][0]["samples"]
        print(f"[dashboard]   loop handling before -> now (plain): {1000 * hb / n:.2f} -> {1000 * hp / n:.2f} ms/sample")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="Length of the overhead video (2 fps samples).")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--live-seconds", type=float, default=20.0)
    ap.add_argument("--live-cams", default="", help="Comma list of camera counts to check live (default: the estimate).")
    ap.add_argument("--soak-seconds", type=float, default=60.0)
    ap.add_argument("--soak-via", choices=("stream", "file"), default="stream",
                    help="Soak on an ffmpeg-served loopback stream (default, needs ffmpeg) or a looping file.")
    ap.add_argument("--sizes", default="640,320")
    ap.add_argument("--skip", default="", help="Comma list of parts to skip: overhead, live, soak, dashboard.")
    ap.add_argument("--before", default="65482c0", help="Git ref of the loop before the dashboard (dashboard part).")
    ap.add_argument("--baseline", default="capture", choices=("learn", "capture"), help="Baseline mode of the dashboard part.")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    print(f"synspill watch benchmark: YOLO11n (random init) on CPU, torch threads 1, {os.cpu_count()} CPUs visible, "
          f"load avg {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        video = make_spill_video(work / "bench.avi", seconds=a.seconds, fps=10, size=(640, 480), appear=2.0,
                                 grow_until=a.seconds * 0.8, r1=150, centre=(400, 300))
        for sz in (int(s) for s in a.sizes.split(",")):
            per = bench_overhead(video, sz, work, a.repeats) if "overhead" not in skip else None
            if "live" in skip:
                continue
            counts = [int(c) for c in a.live_cams.split(",") if c] or ([int(1.0 / (2.0 * per))] if per else [])
            for n_cams in counts:
                bench_live(video, sz, n_cams, a.live_seconds, work)
        if "soak" not in skip:
            bench_soak(a.soak_seconds, 320, work, a.soak_via)
        if "dashboard" not in skip:
            bench_dashboard(video, work, a.repeats, a.before, a.baseline)


if __name__ == "__main__":
    main()
