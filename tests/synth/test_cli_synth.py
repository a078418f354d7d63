"""The scenes / propose / inpaint commands: happy path, kill -9 resume, error paths."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synspill.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli") / "scenes"
    r = run("scenes", "--n", "3", "--out", str(d), "--size", "96", "--workers", "1")
    assert r.exit_code == 0, r.output
    assert "backend: procedural" in r.output
    return d


def test_scenes_propose_inpaint(scenes, tmp_path):
    assert (scenes / "scenes.json").exists() and len(list((scenes / "images").glob("*.jpg"))) == 3
    boxes = tmp_path / "boxes.json"
    r = run("propose", "--scenes", str(scenes), "--out", str(boxes), "--per-image", "2:2", "--classes", "oil,water", "--seed", "1")
    assert r.exit_code == 0, r.output
    b = json.loads(boxes.read_text())
    assert len(b["images"]) == 3 and b["annotations"] and all(a["auto"] for a in b["annotations"])
    assert {a["category_id"] for a in b["annotations"]} <= {1, 2}
    r = run("propose", "--scenes", str(scenes), "--out", str(boxes))
    assert r.exit_code == 1 and "--force" in r.output
    out = tmp_path / "inp"
    r = run("inpaint", "--scenes", str(scenes), "--boxes", str(boxes), "--out", str(out), "--workers", "1")
    assert r.exit_code == 0, r.output
    ann = json.loads((out / "annotations.json").read_text())
    assert ann["annotations"] and (out / "contact_sheet.png").exists()
    r = run("inpaint", "--scenes", str(scenes), "--propose", "--out", str(tmp_path / "p"), "--workers", "1", "--feather", "10")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(("args", "code", "msg"), [
    (["inpaint", "--scenes", "{tmp}/missing", "--propose", "--out", "{tmp}/o"], 1, "does not exist"),
    (["inpaint", "--scenes", "{scenes}", "--out", "{tmp}/o"], 2, "no boxes"),
    (["inpaint", "--scenes", "{scenes}", "--propose", "--boxes", "{tmp}/b.json", "--out", "{tmp}/o"], 2, "not both"),
    (["inpaint", "--scenes", "{scenes}", "--boxes", "{tmp}/b.json", "--out", "{tmp}/o"], 1, "no such COCO file"),
    (["inpaint", "--scenes", "{scenes}", "--propose", "--out", "{tmp}/o", "--opacity", "1.5"], 2, "--opacity"),
    (["inpaint", "--scenes", "{scenes}", "--propose", "--out", "{tmp}/o", "--strength", "0.7:0.5"], 2, "LOW:HIGH"),
    (["inpaint", "--scenes", "{scenes}", "--propose", "--out", "{tmp}/o", "--backend", "sdxl"], 2, "--model"),
    (["scenes", "--n", "2", "--out", "{tmp}/s", "--shard", "3/2"], 2, "--shard"),
    (["scenes", "--n", "2", "--out", "{tmp}/s", "--scene-types", "spaceship"], 2, "spaceship"),
    (["scenes", "--n", "2", "--out", "{tmp}/s", "--size", "100"], 2, "multiples of 8"),
    (["scenes", "--n", "2", "--out", "{tmp}/s", "--backgrounds", "{tmp}/nope"], 1, "does not exist"),
    (["propose", "--scenes", "{tmp}/missing", "--out", "{tmp}/b.json"], 1, "does not exist"),
    (["scenes", "--merge-only", "--out", "{tmp}"], 1, "job.json"),
])
def test_error_paths(scenes, tmp_path, args, code, msg):
    r = run(*[a.format(tmp=tmp_path, scenes=scenes) for a in args])
    assert r.exit_code == code, r.output
    assert msg in r.output
    assert "Traceback" not in r.output


def test_boxes_on_unknown_image(scenes, tmp_path):
    bad = {"images": [{"id": 1, "file_name": "other/photo.jpg", "width": 96, "height": 96}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10]}],
           "categories": [{"id": 1, "name": "oil-spill"}]}
    (tmp_path / "b.json").write_text(json.dumps(bad))
    r = run("inpaint", "--scenes", str(scenes), "--boxes", str(tmp_path / "b.json"), "--out", str(tmp_path / "o"))
    assert r.exit_code == 1 and "annotation 1 is on image 1" in r.output and "not among the scenes" in r.output


def test_unknown_category_in_boxes(scenes, tmp_path):
    bad = {"images": [{"id": 1, "file_name": "images/000001.jpg", "width": 96, "height": 96}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10]}],
           "categories": [{"id": 1, "name": "forklift"}]}
    (tmp_path / "b.json").write_text(json.dumps(bad))
    r = run("inpaint", "--scenes", str(scenes), "--boxes", str(tmp_path / "b.json"), "--out", str(tmp_path / "o"))
    assert r.exit_code == 1 and "forklift" in r.output


def test_backgrounds_cli(tmp_path):
    from tests.conftest import make_image

    for i in range(2):
        make_image(tmp_path / "photos" / f"p{i}.jpg", 120, 90, seed=i)
    r = run("scenes", "--num-images", "3", "--out", str(tmp_path / "s"), "--size", "64", "--backgrounds", str(tmp_path / "photos"))
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in (tmp_path / "s" / "manifest.jsonl").read_text().splitlines()]
    assert all(r["backend"] == "backgrounds" and r["params"]["source"].startswith("p") for r in recs)
    # photos added since: resuming would pick other photos for the same seeds, so it is refused by name
    make_image(tmp_path / "photos" / "p9.jpg", 120, 90, seed=9)
    again = run("scenes", "--num-images", "3", "--out", str(tmp_path / "s"), "--size", "64", "--backgrounds", str(tmp_path / "photos"))
    assert again.exit_code != 0 and "backgrounds_files: '2 images " in again.output and "-> '3 images " in again.output
    r = run("inpaint", "--scenes", str(tmp_path / "s"), "--propose", "--out", str(tmp_path / "o"))
    assert r.exit_code == 0, r.output


@pytest.mark.slow
def test_kill_9_then_resume(tmp_path):
    """A real SIGKILL mid-run, then the same command: complete, no duplicates, kept files untouched."""
    out = tmp_path / "k"
    cmd = [sys.executable, "-m", "synspill", "scenes", "--n", "30", "--out", str(out), "--size", "256",
           "--workers", "1", "--batch-size", "1"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]), OMP_NUM_THREADS="1")
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mf = out / "manifest.jsonl"
    t0 = time.time()
    while time.time() - t0 < 60 and (not mf.exists() or len(mf.read_text().splitlines()) < 4):
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    lines = mf.read_text().splitlines()
    assert 4 <= len(lines) < 30
    kept = {}
    for ln in lines:
        try:
            r = json.loads(ln)
        except ValueError:
            continue
        kept[r["file_name"]] = (out / r["file_name"]).stat().st_mtime_ns
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
    recs = [json.loads(x) for x in mf.read_text().splitlines()]
    assert sorted(r["index"] for r in recs) == list(range(30))
    assert all((out / n).stat().st_mtime_ns == t for n, t in kept.items())
    assert len(json.loads((out / "scenes.json").read_text())["images"]) == 30
