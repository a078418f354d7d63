"""Per-camera baselines: the lighting-robust change measure, and a permanent distractor that
stops producing events while a later spill still produces exactly one."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from synspill.cli import app
from synspill.errors import UsageError
from synspill.watch.baseline import (
    Baseline,
    BaselineConfig,
    baseline_dir,
    box_to_work,
    changed_fraction,
    log_ratio,
    work_image,
)
from synspill.watch.config import (
    CameraConfig,
    SinkConfig,
    WatchConfig,
    config_from_dict,
    config_from_flags,
)
from synspill.watch.loop import Watcher
from synspill.watch.sinks import JsonLinesSink
from tests.watch.blobs import DarkBlobPredictor

W, H = 320, 240
MAT = (30, 150, 110, 200)  # x0, y0, x1, y1 of the permanent dark mat the detector fires on
SPILL_CENTRE, SPILL_AXES = (230, 80), (30, 20)


def floor(size: tuple[int, int] = (W, H), seed: int = 0) -> np.ndarray:
    """A textured grey floor (170 +- 15), BGR uint8."""
    rng = np.random.default_rng(seed)
    return (170 + rng.integers(-15, 16, (size[1], size[0], 1))).repeat(3, axis=2).astype(np.uint8)


def scene(t: float, mat: bool = True, spill_at: float | None = 5.0, light_at: float | None = None,
          gain: float = 0.6) -> np.ndarray:
    """The floor, the mat (``mat``), a spill from ``spill_at`` s, the light x ``gain`` from ``light_at`` s."""
    img = floor()
    if mat:
        cv2.rectangle(img, MAT[:2], (MAT[2] - 1, MAT[3] - 1), (30, 30, 30), -1)
    if spill_at is not None and t >= spill_at:
        cv2.ellipse(img, SPILL_CENTRE, SPILL_AXES, 0, 0, 360, (25, 30, 35), -1)
    if light_at is not None and t >= light_at:
        img = np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    return img


def make_clip(path: Path, seconds: float = 10.0, fps: float = 10.0, **kw) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    assert w.isOpened()
    for i in range(int(seconds * fps)):
        w.write(scene(i / fps, **kw))
    w.release()
    return path


def run(video: Path, db: Path, baseline: BaselineConfig | None = None):
    buf = io.StringIO()
    cam = CameraConfig("dock", str(video), "unused", baseline=baseline or BaselineConfig())
    cfg = WatchConfig(cameras=(cam,), db=str(db), sinks=SinkConfig(stdout=False))
    watcher = Watcher(cfg, once=True, predictors={"dock": DarkBlobPredictor()}, extra_sinks=[JsonLinesSink(buf)], origin=1.7e9)
    summary = watcher.run()
    alerts = [json.loads(line) for line in buf.getvalue().splitlines()]
    return summary, [a for a in alerts if a["type"] == "spill.opened"], summary.cameras["dock"]


def is_spill(a: dict) -> bool:
    x0, y0, x1, y1 = a["box"]
    return abs((x0 + x1) / 2 - SPILL_CENTRE[0]) < 10 and abs((y0 + y1) / 2 - SPILL_CENTRE[1]) < 10


# -- the change measure -------------------------------------------------------------------------
def frac(cur: np.ndarray, ref: np.ndarray, box: tuple[int, int, int, int]) -> float:
    c, r = work_image(cur), work_image(ref)
    return changed_fraction(log_ratio(c, r), box_to_work(np.array(box, float), (W, H), (c.shape[1], c.shape[0])), 0.15)


SPILL_BOX = (SPILL_CENTRE[0] - SPILL_AXES[0], SPILL_CENTRE[1] - SPILL_AXES[1],
             SPILL_CENTRE[0] + SPILL_AXES[0] + 1, SPILL_CENTRE[1] + SPILL_AXES[1] + 1)


@pytest.mark.parametrize("name,change", [
    ("gain x0.55", lambda im: im * 0.55),
    ("gain x1.5", lambda im: im * 1.5),
    ("left-right gradient 0.5-1.3", lambda im: im * np.linspace(0.5, 1.3, W)[None, :, None]),
    ("top-bottom gradient 1.2-0.6", lambda im: im * np.linspace(1.2, 0.6, H)[:, None, None]),
    ("gaussian noise sd 8", lambda im: im + np.random.default_rng(3).normal(0, 8, im.shape)),
])
def test_lighting_and_noise_are_not_change(name, change):
    ref = scene(0.0, spill_at=None)
    cur = np.clip(change(ref.astype(np.float32)), 0, 255).astype(np.uint8)
    assert frac(cur, ref, MAT) < 0.05, name  # the dark mat under new light
    assert frac(cur, ref, SPILL_BOX) < 0.05, name  # plain floor under new light


@pytest.mark.parametrize("gain", [1.0, 0.6, 1.4])
def test_a_new_spill_is_change_under_any_light(gain):
    ref = scene(0.0, spill_at=None)
    cur = np.clip(scene(9.0, spill_at=0.0).astype(np.float32) * gain, 0, 255).astype(np.uint8)
    assert frac(cur, ref, SPILL_BOX) > 0.6
    assert frac(cur, ref, MAT) < 0.05


def test_measure_reference_values():
    d = np.zeros((20, 20), np.float32)
    d[5:10, 5:10] = 1.0  # a changed 5x5 patch, the rest shifted by a gain (constant)
    assert changed_fraction(d + 0.7, (5, 5, 10, 10), 0.15) == 1.0
    assert changed_fraction(d + 0.7, (5, 5, 15, 10), 0.15) == 0.5  # half the box changed
    assert changed_fraction(d, (0, 0, 20, 20), 0.15) == 25 / 400  # no ring: the frame median (0) is the level
    assert changed_fraction(d, (30, 30, 40, 40), 0.15) == 1.0  # outside the image: never suppressed
    assert work_image(floor((640, 480))).shape == (120, 160)


# -- end to end ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("baseline")
    return {"mat": make_clip(d / "mat.avi"),  # the mat from frame 0, a spill from 5 s
            "light": make_clip(d / "light.avi", light_at=3.0, gain=0.6),  # and the lights dimmed at 3 s
            "light-late": make_clip(d / "late.avi", light_at=7.0, gain=0.6)}  # dimmed while the spill is seen


@pytest.mark.parametrize("clip", ["mat", "light", "light-late"])
def test_capture_stops_the_distractor_and_keeps_the_spill(clips, tmp_path, clip):
    # floor x0.6 stays above the predictor's grey threshold (80); mat and spill stay below
    assert floor().min() * 0.6 > 80
    summary, opened, st = run(clips[clip], tmp_path / "off.sqlite")
    assert summary.events_opened == 2 and sum(map(is_spill, opened)) == 1  # the mat and the spill
    assert st.suppressed_baseline == 0 and st.baseline == "-"

    summary, opened, st = run(clips[clip], tmp_path / "on.sqlite", BaselineConfig(mode="capture"))
    assert summary.events_opened == 1 and is_spill(opened[0])
    assert opened[0]["first_seen"].startswith("2023-11-14T22:13:25.000")  # the spill appears at 5.0 s
    assert st.suppressed_baseline == 20  # the mat on every one of the 20 samples, nothing else
    assert st.baseline == "active"
    stored = baseline_dir(tmp_path / "on.sqlite")
    assert stored == tmp_path / "on.baselines"
    meta = json.loads((stored / "dock.json").read_text())
    assert meta["frame_wh"] == [W, H] and meta["mode"] == "capture"
    assert cv2.imread(str(stored / "dock.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16


def test_learn_mode_waits_for_clean_frames_then_keeps_the_spill(tmp_path):
    clip = make_clip(tmp_path / "clean.avi", seconds=12, mat=False, spill_at=7.0)
    cfg = BaselineConfig(mode="learn", learn_seconds=4.0)
    summary, opened, st = run(clip, tmp_path / "e.sqlite", cfg)
    assert summary.events_opened == 1 and is_spill(opened[0]) and st.baseline == "active"
    assert st.suppressed_baseline == 0
    assert (tmp_path / "e.baselines" / "dock.png").is_file()


def test_learn_mode_never_learns_frames_with_detections(tmp_path):
    # the spill (and the mat) are there from the first frame: nothing is detection-free,
    # so nothing is learned and both still raise events -- this is what --capture-baseline is for
    clip = make_clip(tmp_path / "early.avi", seconds=10, spill_at=0.0)
    summary, opened, st = run(clip, tmp_path / "e.sqlite", BaselineConfig(mode="learn", learn_seconds=1.0))
    assert summary.events_opened == 2 and sum(map(is_spill, opened)) == 1
    assert st.suppressed_baseline == 0 and st.baseline.startswith("learning 0/")
    assert not (tmp_path / "e.baselines").exists()


def test_a_stored_baseline_is_resumed_in_learn_mode(clips, tmp_path):
    db = tmp_path / "e.sqlite"
    run(clips["mat"], db, BaselineConfig(mode="capture", capture_samples=2))
    summary, opened, st = run(clips["light"], db, BaselineConfig(mode="learn", learn_seconds=600.0))
    # active from the first sample: the mat is suppressed on all 20 samples although learning needs 600 s
    assert summary.events_opened == 1 and is_spill(opened[0])
    assert st.suppressed_baseline == 20 and st.baseline == "active"


def test_a_stored_baseline_of_another_frame_size_is_rebuilt(tmp_path, caplog):
    folder = tmp_path / "e.baselines"
    bl = Baseline("dock", BaselineConfig(mode="capture", capture_samples=1), folder)
    none = np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    bl.step(scene(0.0, spill_at=None), 0.0, *none, 0.5)
    assert bl.active and (folder / "dock.png").is_file()
    big = cv2.resize(scene(0.0, spill_at=None), (2 * W, 2 * H))
    with caplog.at_level(logging.WARNING, logger="synspill.watch.baseline"):
        learner = Baseline("dock", BaselineConfig(mode="learn", learn_seconds=1.0), folder)
        learner.step(big, 0.0, *none, 0.5)
    assert not learner.active and "is for frames [320, 240], the stream gives (640, 480)" in caplog.text
    # a size change mid-stream: the captured reference is dropped and captured again
    with caplog.at_level(logging.WARNING, logger="synspill.watch.baseline"):
        bl.step(big, 1.0, *none, 0.5)
    assert "frame size changed" in caplog.text and bl.active and bl.ref is not None and bl.ref.shape == (120, 160)


def test_cli_capture_baseline(clips, tmp_path):
    db = tmp_path / "ev.sqlite"
    res = CliRunner().invoke(app, ["watch", str(clips["light"]), "--model", "py:tests.watch.blobs:load", "--once",
                                   "--db", str(db), "--name", "dock", "--capture-baseline"])
    assert res.exit_code == 0, res.output
    opened = [json.loads(s) for s in res.stdout.splitlines() if '"spill.opened"' in s]
    assert len(opened) == 1 and is_spill(opened[0])
    assert "20 sightings suppressed (unchanged since baseline)" in res.output
    assert (tmp_path / "ev.baselines" / "dock.png").is_file()
    bad = CliRunner().invoke(app, ["watch", str(clips["light"]), "--model", "py:tests.watch.blobs:load", "--once",
                                   "--capture-baseline", "--baseline", "learn"])
    assert bad.exit_code == 2 and "--capture-baseline contradicts --baseline learn" in bad.output


# -- configuration --------------------------------------------------------------------------------
def cfg_dict(**cam) -> dict:
    return {"defaults": {"model": "m"}, "cameras": [{"name": "dock", "url": "0", **cam}]}


def test_config_keys():
    (cam,) = config_from_dict(cfg_dict(baseline="learn", baseline_learn_seconds=120, baseline_threshold=0.2)).cameras
    assert cam.baseline == BaselineConfig(mode="learn", learn_seconds=120, threshold=0.2)
    data = cfg_dict()
    data["defaults"].update(baseline="capture", baseline_capture_samples=3)
    assert config_from_dict(data).cameras[0].baseline == BaselineConfig(mode="capture", capture_samples=3)
    assert config_from_dict(cfg_dict()).cameras[0].baseline.mode == "off"
    assert config_from_dict(cfg_dict(baseline=False)).cameras[0].baseline.mode == "off"  # YAML `baseline: off`


@pytest.mark.parametrize("cam,match", [
    ({"baseline": "sometimes"}, r"cams.toml: cameras\[0\]\.baseline: baseline 'sometimes' must be one of off, learn, capture"),
    ({"baseline_learn_seconds": -5}, r"cameras\[0\]\.baseline_learn_seconds: baseline_learn_seconds -5 must be > 0"),
    ({"baseline_threshold": 0}, r"cameras\[0\]\.baseline_threshold: .* must be in \(0, 5\]"),
    ({"baseline_min_changed": 1.5}, r"cameras\[0\]\.baseline_min_changed: .* must be in \(0, 1\]"),
    ({"baseline_capture_samples": 2.5}, r"cameras\[0\]\.baseline_capture_samples: 2.5 is not an integer"),
    ({"baseline_learn_seconds": "1m"}, r"cameras\[0\]\.baseline_learn_seconds: '1m' is not a number"),
    ({"baseline_mode": "learn"}, r"cameras\[0\]\.baseline_mode: unknown key"),
])
def test_config_errors_name_the_key(cam, match):
    with pytest.raises(UsageError, match=match):
        config_from_dict(cfg_dict(**cam), "cams.toml")


def test_defaults_errors_blame_defaults():
    data = cfg_dict()
    data["defaults"]["baseline"] = "always"
    with pytest.raises(UsageError, match=r"cams.toml: defaults\.baseline: "):
        config_from_dict(data, "cams.toml")


def test_flags(tmp_path):
    assert config_from_flags("v.mp4", "m", camera={"baseline": "learn"}).cameras[0].baseline.mode == "learn"
    assert config_from_flags("v.mp4", "m", capture_baseline=True).cameras[0].baseline.mode == "capture"
    assert config_from_flags("v.mp4", "m").cameras[0].baseline.mode == "off"
    p = tmp_path / "cams.toml"
    p.write_text('[defaults]\nmodel = "m"\nbaseline = "learn"\nbaseline_learn_seconds = 30\n'
                 '[[cameras]]\nname = "a"\nurl = "0"\n[[cameras]]\nname = "b"\nurl = "1"\n')
    cams = config_from_flags(config=p, capture_baseline=True).cameras  # an action: allowed with a file, for every camera
    assert [c.baseline for c in cams] == [BaselineConfig(mode="capture", learn_seconds=30)] * 2
    with pytest.raises(UsageError, match="--baseline is a per-camera setting"):
        config_from_flags(config=p, camera={"baseline": "learn"})
