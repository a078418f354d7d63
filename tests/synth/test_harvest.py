"""``synspill harvest``: clean background frames from a generated clip, a folder and a fake live camera."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from synspill.cli import app
from synspill.errors import OutputExists, UsageError
from synspill.synth import harvest as hv
from synspill.synth.harvest import HarvestConfig, harvest

W, H, FPS = 320, 180, 10


def scene(seed: int, w: int = W, h: int = H) -> np.ndarray:
    """A textured static view (BGR): smooth blotches plus fine noise."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(40, 220, (6, 8, 3)).astype(np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(base.astype(int) + rng.integers(-12, 13, (h, w, 3)), 0, 255).astype(np.uint8)


def figure(img: np.ndarray, cx: int, top: int, height: int) -> np.ndarray:
    """Draw a filled dark human silhouette (head, torso, arms, legs) ``height`` px tall."""
    u, c = height / 8.0, (40, 40, 40)
    cv2.ellipse(img, (cx, int(top + 0.5 * u)), (int(0.38 * u), int(0.5 * u)), 0, 0, 360, c, -1)
    cv2.line(img, (cx, int(top + u)), (cx, int(top + 1.2 * u)), c, int(0.3 * u))
    torso = np.array([[cx - 0.9 * u, top + 1.3 * u], [cx + 0.9 * u, top + 1.3 * u],
                      [cx + 0.7 * u, top + 4.2 * u], [cx - 0.7 * u, top + 4.2 * u]], np.int32)
    cv2.fillPoly(img, [torso], c)
    for s in (-1, 1):
        cv2.line(img, (int(cx + s * 0.85 * u), int(top + 1.5 * u)), (int(cx + s * 1.1 * u), int(top + 4.3 * u)), c, int(0.35 * u))
        cv2.line(img, (int(cx + s * 0.4 * u), int(top + 4.1 * u)), (int(cx + s * 0.55 * u), int(top + 7.9 * u)), c, int(0.45 * u))
    return img


def frames_of(kind: str, n: int, w: int = W, h: int = H) -> list[np.ndarray]:
    """``n`` frames of a segment: ``A``/``B``/``C``... a static view, ``M`` view A with a
    bright block moving across it, ``D`` (almost) black."""
    if kind == "D":
        return [np.full((h, w, 3), 5, np.uint8)] * n
    if kind != "M":
        return [scene(ord(kind), w, h)] * n
    out = []
    for i in range(n):
        f = scene(ord("A"), w, h).copy()
        x, y, s = int(10 + (w - 80) * i / n), h // 3, h // 3
        f[y:y + s, x:x + s] = 250
        out.append(f)
    return out


def make_clip(path: Path, segments: list[tuple[str, float]], w: int = W, h: int = H) -> Path:
    """An mp4v video at 10 fps of ``(kind, seconds)`` segments (see :func:`frames_of`)."""
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (w, h))
    assert vw.isOpened()
    for kind, secs in segments:
        for f in frames_of(kind, round(secs * FPS), w, h):
            vw.write(f)
    vw.release()
    return path


# 18 s: A still, a block moving through A, A again, a different view B, black, A again.
SEGMENTS = [("A", 4), ("M", 4), ("A", 2), ("B", 4), ("D", 2), ("A", 2)]
# with --every 1 (samples at 0, 1, ... 17 s): the expected decision per sample
EXPECTED = (["kept"] + ["duplicate"] * 3 + ["motion"] * 4 + ["duplicate"] * 2 + ["kept"] + ["duplicate"] * 3
            + ["dark"] * 2 + ["duplicate"] * 2)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "lobby.mp4", SEGMENTS)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "harvest.jsonl").read_text().splitlines()]


def decisions(out: Path, camera: str) -> list[str]:
    rs = sorted((r for r in records(out) if r["camera"] == camera), key=lambda r: r["sample"])
    return ["kept" if r["kept"] else r["reason"] for r in rs]


def cfg(src, out: Path, **kw) -> HarvestConfig:
    return HarvestConfig(sources=(str(src),) if not isinstance(src, tuple) else src, out=str(out),
                         **{"every": 1.0, "people_check": False, **kw})


def test_clip_skips_motion_and_duplicates_and_keeps_the_new_view(clip, tmp_path):
    out = tmp_path / "frames"
    res = harvest(cfg(clip, out))
    (s,) = res.sources
    assert (s.camera, s.kind, s.status) == ("lobby", "file", "done")
    assert decisions(out, "lobby") == EXPECTED
    assert s.kept == 2 and s.samples == 18
    assert {k: v for k, v in s.skipped.items() if v} == {"motion": 4, "duplicate": 10, "dark": 2}
    kept = [r for r in records(out) if r["kept"]]
    assert [r["t"] for r in kept] == [0.0, 10.0]  # view A at the start, view B when it appears
    assert sorted(p.name for p in (out / "images" / "lobby").iterdir()) == ["lobby-0000000000ms.jpg", "lobby-0000010000ms.jpg"]
    img = cv2.imread(str(out / kept[1]["file"]))
    assert img.shape == (H, W, 3) and np.abs(img.astype(int) - scene(ord("B"))).mean() < 8  # the B view, not A
    summary = json.loads((out / "harvest.json").read_text())
    assert summary["sources"]["lobby"]["skipped"] == s.skipped and summary["kept"] == 2
    assert summary["settings"]["every"] == 1.0 and summary["people_check"] == "off"


def test_motion_threshold_and_dedupe_bits_are_used(clip, tmp_path):
    # a threshold above the block's changed fraction: the moving block is no longer motion,
    # and the block frames that differ enough from view A in their dHash are kept
    s = harvest(cfg(clip, tmp_path / "a", motion=0.3)).sources[0]
    assert s.skipped["motion"] == 0 and s.kept > 2
    assert "motion" not in decisions(tmp_path / "a", "lobby")
    # dedupe 64 bits: any frame under the same light as a kept one is a duplicate
    s = harvest(cfg(clip, tmp_path / "b", motion=0.3, dedupe=64)).sources[0]
    assert s.kept == 2 and s.skipped["duplicate"] == 14


def test_per_source_spreads_frames_over_the_video(tmp_path):
    video = make_clip(tmp_path / "six.mp4", [(k, 1) for k in "ABCDEF".replace("D", "G")])  # 6 distinct views
    out = tmp_path / "o"
    s = harvest(cfg(video, out, per_source=3)).sources[0]
    assert decisions(out, "six") == ["kept", "spacing", "kept", "spacing", "kept"]  # one per 2-second slot, then full
    assert s.kept == 3 and s.skipped["spacing"] == 2
    # an interrupted run resumes in the same time slots
    calls = []

    def stop(p: hv.HarvestProgress) -> None:
        calls.append(p)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        harvest(cfg(video, tmp_path / "r", per_source=3), on_progress=stop)
    assert 0 < len(records(tmp_path / "r")) < 5
    harvest(cfg(video, tmp_path / "r", per_source=3))
    assert decisions(tmp_path / "r", "six") == decisions(out, "six")
    s = harvest(cfg(video, tmp_path / "o1", per_source=1)).sources[0]
    assert s.kept == 1 and s.samples < 6  # stops once the source is full


def test_duration_limits_a_video(clip, tmp_path):
    s = harvest(cfg(clip, tmp_path / "o", duration=3.0)).sources[0]
    assert s.samples == 3 and s.kept == 1  # samples at 0, 1, 2 s


def test_image_folder_source(tmp_path):
    src = tmp_path / "shots"
    src.mkdir()
    for name, kind in [("01", "A"), ("02", "A"), ("03", "B"), ("05", "D"), ("06", "C")]:
        cv2.imwrite(str(src / f"{name}.png"), frames_of(kind, 1)[0])
    (src / "04.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "o"
    s = harvest(cfg(("yard=" + str(src),), out)).sources[0]
    assert (s.camera, s.kind) == ("yard", "folder")
    assert decisions(out, "yard") == ["kept", "duplicate", "kept", "corrupt", "dark", "kept"]
    assert sorted(p.name for p in (out / "images" / "yard").iterdir()) == ["yard-000000.jpg", "yard-000002.jpg", "yard-000005.jpg"]


def test_flaw_checks():
    a = cv2.cvtColor(scene(1, 320, 180), cv2.COLOR_BGR2RGB)
    assert hv._analyse(0, 0.0, a).flaw is None
    assert hv._analyse(0, 0.0, np.full_like(a, 8)).flaw == "dark"
    assert hv._analyse(0, 0.0, np.full_like(a, 128)).flaw == "uniform"
    smear = a.copy()
    smear[110:] = smear[109]  # lost slices concealed by repeating the last good row
    assert hv._analyse(0, 0.0, smear).flaw == "corrupt"
    letterbox = a.copy()
    letterbox[:40] = 0
    letterbox[140:] = 0
    assert hv._analyse(0, 0.0, letterbox).flaw is None
    # a global exposure change is not motion; a block over 10 % of the picture is
    t0, t1 = hv._analyse(0, 0, a).thumb, hv._analyse(0, 0, np.clip(a.astype(int) + 30, 0, 255).astype(np.uint8)).thumb
    assert hv.changed_fraction(t0, t1) < 0.01
    b = a.copy()
    b[60:120, 100:200] = 255
    assert 0.05 < hv.changed_fraction(t0, hv._analyse(0, 0, b).thumb) < 0.2
    assert hv.dhash(t0) == hv.dhash(t0.copy()) and (hv.dhash(t0) ^ hv.dhash(hv._analyse(0, 0, cv2.cvtColor(scene(2), cv2.COLOR_BGR2RGB)).thumb)).bit_count() > 10


def test_resume_after_interruption_does_not_redo_work(clip, tmp_path):
    ref = tmp_path / "ref"
    harvest(cfg(clip, ref))
    out = tmp_path / "o"
    calls = []

    def stop_midway(p: hv.HarvestProgress) -> None:
        calls.append(p)
        if len(calls) == 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        harvest(cfg(clip, out), on_progress=stop_midway)
    first = records(out)
    assert 0 < len(first) < 18 and len({r["sample"] for r in first}) == len(first)
    # the leftovers of a harder kill: a torn line, a temp file, an image without a record
    with open(out / "harvest.jsonl", "a") as f:
        f.write('{"camera":"lobby","sam')
    (out / "images" / "lobby" / ".lobby-x.jpg.tmp").write_bytes(b"half")
    (out / "images" / "lobby" / "lobby-0000099000ms.jpg").write_bytes(b"orphan")
    res = harvest(cfg(clip, out))
    rs = records(out)
    assert rs[:len(first)] == first  # earlier decisions kept, not redone
    assert sorted(r["sample"] for r in rs) == list(range(18))
    assert decisions(out, "lobby") == EXPECTED and res.sources[0].kept == 2
    assert sorted(p.name for p in (out / "images" / "lobby").iterdir()) == sorted(p.name for p in (ref / "images" / "lobby").iterdir())
    # a finished source is skipped on the next run
    again = harvest(cfg(clip, out)).sources[0]
    assert again.status == "already done" and again.kept == 2 and len(records(out)) == 18


def test_output_guards(clip, tmp_path):
    out = tmp_path / "o"
    harvest(cfg(clip, out))
    with pytest.raises(OutputExists, match="other settings"):
        harvest(cfg(clip, out, every=2.0))
    with pytest.raises(OutputExists, match="camera 'lobby' was harvested from"):
        harvest(cfg((f"lobby={make_clip(tmp_path / 'other.mp4', [('B', 1)])}",), out))
    assert harvest(cfg(clip, out, every=2.0), force=True).sources[0].samples == 9
    other = tmp_path / "notes"
    other.mkdir()
    (other / "x.txt").write_text("mine")
    with pytest.raises(OutputExists, match="not a harvest folder"):
        harvest(cfg(clip, other))


@pytest.mark.parametrize("kw, match", [
    ({"every": 0}, "--every 0"), ({"every": float("nan")}, "--every nan"), ({"per_source": 0}, "--per-source 0"),
    ({"duration": -1}, "--duration -1"), ({"motion": 0.7}, "--motion 0.7"), ({"dedupe": 65}, "--dedupe 65"),
    ({"quality": 0}, "--quality 0"), ({"image_format": "gif"}, "--format 'gif'"),
])
def test_config_validation(kw, match):
    with pytest.raises(UsageError, match=match):
        HarvestConfig(sources=("x.mp4",), out="o", **kw)


def test_source_names():
    assert hv.parse_source("door=rtsp://10.0.0.5/s") == ("door", "rtsp://10.0.0.5/s")
    assert hv.parse_source("rtsp://nvr:554/live?ch=2") == ("nvr-554", "rtsp://nvr:554/live?ch=2")
    assert hv.parse_source("videos/lobby.mp4") == ("lobby", "videos/lobby.mp4")
    assert hv.parse_source("0") == ("webcam0", "0")
    assert hv.redact("rtsp://admin:s3cret@10.0.0.5:554/s?ch=1") == "rtsp://admin:***@10.0.0.5:554/s?ch=1"
    assert hv.redact("http://10.0.0.5/mjpg") == "http://10.0.0.5/mjpg" and hv.redact("a/b.mp4") == "a/b.mp4"
    with pytest.raises(UsageError, match="both camera 'lobby'"):
        HarvestConfig(sources=("a/lobby.mp4", "b/lobby.mp4"), out="o")


def test_people_check_runs_only_on_candidates(clip, tmp_path, monkeypatch):
    seen: list[float] = []
    a_mean = float(cv2.cvtColor(scene(ord("A")), cv2.COLOR_BGR2RGB).mean())

    def fake(image: np.ndarray) -> bool:  # "sees a person" in every picture of view A
        seen.append(float(image.mean()))
        return abs(float(image.mean()) - a_mean) < 3

    monkeypatch.setattr(hv, "people_detector_available", lambda: True)
    monkeypatch.setattr(hv, "detect_people", fake)
    out = tmp_path / "o"
    res = harvest(cfg(clip, out, people_check=True))
    s = res.sources[0]
    assert res.people_check == "hog"
    # view A is never kept, so each clean A sample is a candidate; moving/dark samples never reach the detector
    assert decisions(out, "lobby") == [d if d in ("motion", "dark") or i in (10, 11, 12, 13) else "person"
                                       for i, d in enumerate(EXPECTED)][:10] + ["kept"] + ["duplicate"] * 3 + ["dark"] * 2 + ["person"] * 2
    assert s.skipped["person"] == 8 and s.kept == 1 and len(seen) == 9


def test_people_check_unavailable_is_reported(clip, tmp_path, monkeypatch):
    monkeypatch.setattr(hv, "people_detector_available", lambda: False)
    res = harvest(cfg(clip, tmp_path / "o", people_check=True))
    assert res.people_check == "unavailable" and res.sources[0].kept == 2


@pytest.mark.skipif(not hv.people_detector_available(), reason="this OpenCV has no HOG people detector (OpenCV 5)")
def test_hog_finds_a_drawn_person():
    img = cv2.cvtColor(scene(1, 640, 360), cv2.COLOR_BGR2RGB)
    assert not hv.detect_people(img)
    assert hv.detect_people(cv2.GaussianBlur(figure(img.copy(), 320, 40, 200), (3, 3), 0))


class FakeReader:
    """Stands in for :class:`CameraReader`: serves a list of RGB frames at ``fps``, wall clock."""

    pictures: list[np.ndarray] = []

    def __init__(self, camera: str, url: str, fps: float = 2.0, wake: threading.Event | None = None, **_) -> None:
        self.camera, self.period, self.wake = camera, 1.0 / fps, wake or threading.Event()
        self.status = type("S", (), {"samples": 0, "last_error": ""})()
        self.i, self.t0, self.stopped = 0, time.monotonic(), threading.Event()

    def start(self) -> None:
        self.t0 = time.monotonic()

        def tick() -> None:  # like the real reader: wake the consumer for each new sample
            while not self.stopped.wait(self.period):
                self.wake.set()

        threading.Thread(target=tick, daemon=True).start()

    def take(self):
        from synspill.watch.sources import Frame

        due = int((time.monotonic() - self.t0) / self.period)
        if self.i > due or self.i >= len(self.pictures):
            return None
        self.i += 1
        self.status.samples += 1
        return Frame(self.camera, self.pictures[self.i - 1], time.time(), self.i - 1, time.monotonic())

    @property
    def finished(self) -> bool:  # a camera that never connects keeps trying, like the real reader
        return bool(self.pictures) and self.i >= len(self.pictures)

    def stop(self) -> None:
        self.stopped.set()

    def join(self, timeout=None) -> None:
        pass


def test_live_stream_uses_wall_clock_and_duration(tmp_path, monkeypatch):
    import synspill.watch.sources as sources

    rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames_of("A", 3) + frames_of("M", 3) + frames_of("B", 30)]
    monkeypatch.setattr(FakeReader, "pictures", rgb)
    monkeypatch.setattr(sources, "CameraReader", FakeReader)
    out = tmp_path / "o"
    t0 = time.monotonic()
    s = harvest(cfg(("gate=rtsp://op:pw@127.0.0.1:9/cam",), out, every=0.1, duration=1.2)).sources[0]
    assert 1.0 < time.monotonic() - t0 < 4.0 and s.kind == "stream"
    got = decisions(out, "gate")
    assert 8 <= len(got) <= 13 and got[0] == "kept" and got[3:6] == ["motion"] * 3 and got.count("kept") == 2
    ts = [r["t"] for r in records(out)]
    assert abs(ts[0] - time.time()) < 10  # wall clock (epoch seconds), not media time
    assert all(p.name.startswith("gate-20") for p in (out / "images" / "gate").iterdir())
    assert "pw" not in (out / "harvest.jsonl").read_text() + (out / "harvest.json").read_text()
    assert records(out)[0]["source"] == "rtsp://op:***@127.0.0.1:9/cam"


def test_dead_live_source_fails_alone(clip, tmp_path, monkeypatch):
    import synspill.watch.sources as sources

    monkeypatch.setattr(FakeReader, "pictures", [])
    monkeypatch.setattr(sources, "CameraReader", FakeReader)
    monkeypatch.setattr(hv, "CONNECT_TIMEOUT", 0.3)
    r = CliRunner().invoke(app, ["harvest", "dead=rtsp://127.0.0.1:9/x", str(clip), "--out", str(tmp_path / "o"),
                                 "--every", "1", "--no-people-check"])
    assert r.exit_code == 1, r.output
    assert "lobby: kept 2 of 18 samples" in r.output and "1 of 2 sources gave no frame (dead" in r.output


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------
def test_cli_prints_one_line_per_source(clip, tmp_path):
    out = tmp_path / "frames"
    r = CliRunner().invoke(app, ["harvest", f"hall={clip}", "--out", str(out), "--every", "1", "--no-people-check"])
    assert r.exit_code == 0, r.output
    assert f"hall: kept 2 of 18 samples; skipped dark 2, motion 4, duplicate 10 -> {out / 'images' / 'hall'}" in r.output
    assert r.stdout.strip().splitlines()[-1] == str(out)


@pytest.mark.parametrize("args, code, match", [
    (["missing.mp4"], 2, "source 'missing.mp4': no such file or folder"),
    (["BAD"], 1, "not a readable video"),
    (["CLIP", "--every", "0"], 2, "--every 0: the time between samples must be a positive number"),
    (["CLIP", "--every", "soon"], 2, "Invalid value for '--every'"),
    (["CLIP", "--dedupe", "70"], 2, "--dedupe 70"),
    (["CLIP", "--format", "gif"], 2, "Invalid value for '--format'"),
    ([], 2, "Missing argument"),
])
def test_cli_errors_are_one_line(clip, tmp_path, args, code, match):
    bad = tmp_path / "bad.mp4"
    bad.write_text("this is not a video")
    args = [str(clip) if a == "CLIP" else str(bad) if a == "BAD" else a for a in args]
    r = CliRunner().invoke(app, ["harvest", *args, "--out", str(tmp_path / "o")])
    assert r.exit_code == code, r.output
    assert match in r.output and "Traceback" not in r.output
    if code == 1 or "--every 0" in match:
        assert len([ln for ln in r.output.splitlines() if ln.strip()]) == 1


def test_scenes_backgrounds_takes_a_harvest_folder(clip, tmp_path):
    frames = tmp_path / "frames"
    harvest(cfg(clip, frames))
    scenes = tmp_path / "scenes"
    r = CliRunner().invoke(app, ["scenes", "--backgrounds", str(frames), "--n", "4", "--size", "64", "--workers", "1",
                                 "--out", str(scenes)])
    assert r.exit_code == 0, r.output
    coco = json.loads((scenes / "scenes.json").read_text())
    assert len(coco["images"]) == 4
    used = {im["layout"]["source"] for im in coco["images"]}
    assert used <= {"images/lobby/lobby-0000000000ms.jpg", "images/lobby/lobby-0000010000ms.jpg"}


def test_one_command_from_camera_to_training_set(clip, tmp_path):
    frames, data = tmp_path / "frames", tmp_path / "set"
    args = ["harvest", f"lobby={clip}", "--out", str(frames), "--every", "1", "--no-people-check",
            "--dataset", str(data), "--n", "5", "--size", "64"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().splitlines()[-1] == str(data / "spills")
    assert f"next: synspill finetune yolo --data {data / 'spills'}" in r.output
    scenes = json.loads((data / "scenes" / "scenes.json").read_text())
    kept = {f"images/lobby/{p.name}" for p in (frames / "images" / "lobby").iterdir()}
    assert len(scenes["images"]) == 5 and {im["layout"]["source"] for im in scenes["images"]} <= kept
    coco = json.loads((data / "spills" / "annotations.json").read_text())
    assert len(coco["images"]) == 5 and len(coco["annotations"]) >= 5  # 1-3 spills in each of your views
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64
    before = {p: p.stat().st_mtime_ns for p in (data / "spills" / "images").iterdir()}
    again = CliRunner().invoke(app, args)  # everything is done: nothing is made again
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in (data / "spills" / "images").iterdir()} == before
    assert "making it again" not in again.output
    # a frame added to the folder (here by hand): the set is made again from the new list, not resumed as a mix
    (frames / "images" / "extra").mkdir()
    cv2.imwrite(str(frames / "images" / "extra" / "added.jpg"), np.full((48, 64, 3), 128, np.uint8))
    third = CliRunner().invoke(app, args)
    assert third.exit_code == 0, third.output
    assert "changed since" in third.output and "making it again" in third.output
    job = json.loads((data / "scenes" / "job.json").read_text())
    assert job["backgrounds_files"].startswith(f"{len(kept) + 1} images ")
