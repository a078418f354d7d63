"""Config files: a full TOML/YAML example loads; each mistake names the file and key."""

from __future__ import annotations

import textwrap

import pytest

from synspill.errors import UsageError
from synspill.watch.config import camera_name_for, load_config, parse_hostport

GOOD = """
db = "log/events.sqlite"
snapshots = "snaps"

[defaults]
model = "py:tests.watch.blobs:load"
threshold = 0.6
fps = 2
k = 3
n = 5
cooldown = 120

[sinks]
stdout = false
webhook = "http://127.0.0.1:8080/spill"
mqtt = "127.0.0.1:1883"

[severity]
weights = {area = 0.5, growth = 0.1, zone = 0.3, class = 0.1}
class_weights = {oil = 1.0}
levels = {critical = 0.8}

[[cameras]]
name = "dock"
url = "rtsp://127.0.0.1:8554/dock"
classes = ["oil-spill", "water"]
fps = 1

[[cameras.zones]]
name = "pump-bay"
polygon = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]
criticality = "high"

[[cameras]]
name = "hall"
url = "0"
model = "runs/vlm"
prompt = "find oil"
threshold = 0.4
"""


def test_full_toml_example(tmp_path):
    p = tmp_path / "cams.toml"
    p.write_text(GOOD)
    cfg = load_config(p)
    assert cfg.db == str(tmp_path / "log/events.sqlite")
    assert cfg.sinks.snapshots == str(tmp_path / "snaps") and cfg.sinks.stdout is False
    dock, hall = cfg.cameras
    assert dock.classes == (1, 2) and dock.fps == 1.0 and dock.policy.threshold == 0.6 and dock.policy.cooldown == 120
    assert dock.zones[0].criticality == 0.75 and dock.zones[0].normalised
    assert hall.prompt == "find oil" and hall.policy.threshold == 0.4 and hall.model == "runs/vlm"
    assert cfg.severity.w_area == 0.5 and cfg.severity.class_weights["oil-spill"] == 1.0
    assert cfg.severity.levels == {"medium": 0.35, "high": 0.55, "critical": 0.8}


def test_yaml_equivalent(tmp_path):
    p = tmp_path / "cams.yaml"
    p.write_text(textwrap.dedent("""
        defaults: {model: "py:tests.watch.blobs:load"}
        cameras:
          - name: dock
            url: rtsp://127.0.0.1/x
            k: 2
            n: 4
            zones: [{name: z, polygon: [[0, 0], [10, 0], [10, 10]], criticality: 0.9}]
    """))
    cam = load_config(p).cameras[0]
    assert (cam.policy.k, cam.policy.n) == (2, 4) and cam.zones[0].criticality == 0.9


@pytest.mark.parametrize("patch,match", [
    (("fps = 1", "fps = 0"), r"cameras\[0\].*fps 0"),
    (("fps = 1", "fsp = 1"), r"cameras\[0\]\.fsp: unknown key"),
    (('criticality = "high"', 'criticality = "extreme"'), r"cameras\[0\]\.zones\[0\]\.criticality"),
    (("polygon = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]", "polygon = [[0, 0], [1, 1]]"), r"zones\[0\]\.polygon"),
    (('classes = ["oil-spill", "water"]', 'classes = ["lava"]'), r"cameras\[0\]\.classes.*lava"),
    (("threshold = 0.6", "threshold = 1.5"), r"cams.toml: defaults: threshold 1.5"),  # set in [defaults], not by a camera
    (("k = 3", 'k = "three"'), r"cams.toml: defaults\.k: 'three' is not an integer"),
    (('mqtt = "127.0.0.1:1883"', 'mqtt = "127.0.0.1:port"'), r"sinks.*HOST:PORT"),
    (('webhook = "http://127.0.0.1:8080/spill"', 'webhook = "ftp://x"'), r"sinks.*http"),
    (("levels = {critical = 0.8}", "levels = {critical = 0.5}"), r"severity.*medium < high < critical"),
    (('name = "hall"', 'name = "dock"'), r"repeated: dock"),
    (('name = "hall"', 'name = "a/b"'), r"MQTT topic level"),
    (('url = "0"', 'url = "/nope/missing.mp4"'), None),  # checked when the source opens, not here
])
def test_config_errors_name_file_and_key(tmp_path, patch, match):
    p = tmp_path / "cams.toml"
    p.write_text(GOOD.replace(*patch, 1))
    if match is None:
        load_config(p)
        return
    with pytest.raises(UsageError, match=match) as e:
        load_config(p)
    assert str(p) in str(e.value)


def test_bad_syntax_and_missing_file(tmp_path):
    p = tmp_path / "cams.toml"
    p.write_text("[[cameras]\nname=")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_config(p)
    with pytest.raises(UsageError, match="no such config file"):
        load_config(tmp_path / "none.toml")
    q = tmp_path / "cams.yaml"
    q.write_text("cameras: [\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_config(q)
    r = tmp_path / "cams.toml"
    r.write_text('[[cameras]]\nname = "a"\nurl = "0"\n')
    with pytest.raises(UsageError, match=r"cameras\[0\]\.model: missing"):
        load_config(r)


def test_helpers():
    assert parse_hostport("127.0.0.1:1884") == ("127.0.0.1", 1884)
    assert parse_hostport("broker") == ("broker", 1883)
    assert camera_name_for("rtsp://10.0.0.5:554/live") == "10.0.0.5-554"
    assert camera_name_for("/data/dock cam.mp4") == "dock-cam"
    assert camera_name_for("0") == "webcam0"


def test_flags_build_one_camera_with_config_defaults(tmp_path):
    from synspill.watch import DEFAULT_DB
    from synspill.watch.alerts import AlertPolicy
    from synspill.watch.config import SinkConfig, config_from_flags

    cfg = config_from_flags("rtsp://cam.local:8554/a", "runs/yolo", camera={"classes": "oil,rust", "fps": 1.0},
                            policy={"k": 2}, sinks={"stdout": False})
    (cam,) = cfg.cameras
    assert cam.name == "cam.local-8554" and cam.classes == (1, 6) and cam.fps == 1.0 and cam.backend == "auto"
    assert cam.policy == AlertPolicy(k=2) and cfg.sinks == SinkConfig(stdout=False) and cfg.db == DEFAULT_DB


def test_flags_with_a_config_file(tmp_path):
    from synspill.watch.config import config_from_flags

    p = tmp_path / "cams.toml"
    p.write_text(GOOD)
    cfg = config_from_flags(config=p, sinks={"mqtt_prefix": "plant"}, db=str(tmp_path / "x.db"))
    assert cfg.sinks.mqtt_prefix == "plant" and cfg.sinks.stdout is False and cfg.db == str(tmp_path / "x.db")
    with pytest.raises(UsageError, match="--close-after is a per-camera setting; with --config put it in the file"):
        config_from_flags(config=p, policy={"close_after": 5.0})
    with pytest.raises(UsageError, match="not both"):
        config_from_flags("video.mp4", None, p)
    with pytest.raises(UsageError, match="nothing to watch"):
        config_from_flags()
    with pytest.raises(UsageError, match="--model is required"):
        config_from_flags("video.mp4")
