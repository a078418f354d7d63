"""CLI: annotate-import (summary, --strict, --force, --map, error paths) and dataset stats/split/merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synspill.cli import app
from synspill.coco.dataset import load_coco
from tests.coco import exports

pytestmark = pytest.mark.usefixtures("wide_console")


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_import_summary_and_valid_output(tmp_path):
    xml = exports.cvat(tmp_path / "cvat")
    out = tmp_path / "out" / "spills.json"
    r = run("annotate-import", xml, "--out", out)
    assert r.exit_code == 0, r.output
    assert "boxes imported" in r.output and "3" in r.output
    assert "skipped: not a box shape" in r.output and "skipped: unknown label" in r.output
    assert "annotations.xml" in r.output and "smoke" in r.output  # unknown label named with its file
    assert "oil-spill" in r.output and "water-leak" in r.output  # per-class table
    ds = load_coco(out, check_images=True)  # written, valid, images resolvable
    assert len(ds.images) == 3 and len(ds.annotations) == 3
    assert all(Path(im.file_name).is_absolute() for im in ds.images)  # images live outside out/
    rep = json.loads((tmp_path / "out" / "spills.import-report.json").read_text())
    assert rep["skipped_by_reason"] == {"not a box shape": 3, "unknown label": 1}
    assert rep["skipped"][0]["file"] == "annotations.xml"


def test_import_relative_file_names_inside_out_folder(tmp_path):
    xml = exports.cvat(tmp_path / "cvat")
    r = run("annotate-import", xml, "--out", tmp_path / "cvat" / "coco.json")
    assert r.exit_code == 0, r.output
    ds = json.loads((tmp_path / "cvat" / "coco.json").read_text())
    assert sorted(im["file_name"] for im in ds["images"]) == ["images/frame_001.jpg", "images/frame_002.jpg", "images/frame_003.png"]


def test_import_map_and_strict(tmp_path):
    xml = exports.cvat(tmp_path / "cvat")
    out = tmp_path / "o.json"
    r = run("annotate-import", xml, "--out", out, "--strict")
    assert r.exit_code == 1
    assert "--strict: 1 problem(s)" in r.output and "annotations.xml" in r.output and "'smoke'" in r.output
    assert not out.exists()
    r = run("annotate-import", xml, "--out", out, "--strict", "--map", "smoke=powder-spill", "--map", "Oil Spill=grease")
    assert r.exit_code == 0, r.output
    ds = load_coco(out)
    names = ds.category_names()
    got = sorted(names[a.category_id] for a in ds.annotations)
    assert got == ["grease-smear", "powder-spill", "water-leak", "water-leak"]
    smoke = next(a for a in ds.annotations if names[a.category_id] == "powder-spill")
    assert smoke.extra["source_label"] == "smoke" and smoke.extra["source"] == "cvat"


def test_import_never_overwrites_without_force(tmp_path):
    xml = exports.cvat(tmp_path / "cvat")
    out = tmp_path / "o.json"
    out.write_text("precious")
    r = run("annotate-import", xml, "--out", out)
    assert r.exit_code == 1 and "exists; pass --force" in r.output
    assert out.read_text() == "precious"
    r = run("annotate-import", xml, "--out", out, "--force")
    assert r.exit_code == 0, r.output
    assert len(load_coco(out).annotations) == 3


def test_import_labelme_folder_writes_embedded_image(tmp_path):
    src = exports.labelme(tmp_path / "lm")
    out = tmp_path / "ds" / "coco.json"
    r = run("annotate-import", src, "--out", out, "--format", "labelme")
    assert r.exit_code == 0, r.output
    ds = load_coco(out, check_images=True)
    names = {im.file_name for im in ds.images}
    assert "images/lost_on_annotator_pc.png" in names  # embedded imageData, relative to out/


def test_import_yolo_and_voc_via_cli(tmp_path):
    root = exports.yolo(tmp_path / "y")
    r = run("annotate-import", root, "--out", tmp_path / "y.json", "--map", "smoke=powder")
    assert r.exit_code == 0, r.output
    assert len(load_coco(tmp_path / "y.json", check_images=True).annotations) == 4
    ann = exports.voc(tmp_path / "VOC")
    r = run("annotate-import", ann, "--out", tmp_path / "v.json", "--format", "voc")
    assert r.exit_code == 0, r.output
    assert "clipped" in r.output


@pytest.mark.parametrize(
    "setup,args,code,msg",
    [
        (lambda d: (d / "bad.json").write_text("{oops"), ["bad.json"], 1, "bad.json: malformed JSON at line 1"),
        (lambda d: None, ["missing.json"], 1, "missing.json: no such file or folder"),
        (lambda d: (d / "x.json").write_text("{}"), ["x.json", "--format", "nope"], 2, "nope"),
        (lambda d: exports.cvat(d / "c"), ["c", "--map", "smoke"], 2, "--map 'smoke' has no '='"),
        (lambda d: exports.cvat(d / "c"), ["c", "--map", "smoke=lava"], 2, "'lava' is not a taxonomy class"),
        (lambda d: exports.cvat(d / "c"), ["c", "--format", "voc"], 1, "no voc annotation files found"),
        (lambda d: exports.cvat(d / "c"), ["c/annotations.xml", "--images", "nowhere"], 1, "--images nowhere: not a folder"),
        (lambda d: (d / "e").mkdir(), ["e"], 1, "no annotation files found"),
    ],
)
def test_import_errors(tmp_path, monkeypatch, setup, args, code, msg):
    monkeypatch.chdir(tmp_path)
    setup(tmp_path)
    r = run("annotate-import", *args, "--out", "o.json")
    assert r.exit_code == code, r.output
    assert msg in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "o.json").exists()


def test_import_out_must_be_json(tmp_path):
    xml = exports.cvat(tmp_path / "c")
    r = run("annotate-import", xml, "--out", tmp_path / "o.txt")
    assert r.exit_code == 2 and "COCO .json" in r.output


# ---- dataset group -----------------------------------------------------------------------
def _imported(tmp_path) -> Path:
    from synspill.coco.dataset import save_coco
    from tests.coco.test_tools import synthetic
    from tests.conftest import make_image

    ds = synthetic(120)
    make_image(tmp_path / "d" / "images" / "one.png", 100, 100)
    for im in ds.images:
        im.file_name = "images/one.png"  # all records share one real file; fine for split tests
    ds.root = tmp_path / "d"
    return save_coco(ds, tmp_path / "d" / "annotations.json")


def test_dataset_stats_json_and_table(tiny_coco):
    r = run("dataset", "stats", tiny_coco, "--json", "--check-images")
    assert r.exit_code == 0, r.output
    st = json.loads(r.stdout)
    assert st["images"] == 3 and st["annotations"] == 3
    assert st["classes"]["oil-spill"] == {"boxes": 1, "images": 1}
    r = run("dataset", "stats", tiny_coco)
    assert r.exit_code == 0 and "water-leak" in r.stdout


def test_dataset_split_writes_disjoint_files(tmp_path):
    src = _imported(tmp_path)
    out = tmp_path / "split"
    r = run("dataset", "split", src, "--out", out, "--seed", "5")
    assert r.exit_code == 0, r.output
    parts = {n: load_coco(out / f"{n}.json", check_images=True) for n in ("train", "val", "test")}
    ids = [im.id for p in parts.values() for im in p.images]
    assert len(ids) == len(set(ids)) == 120
    man = json.loads((out / "split.json").read_text())
    assert man["seed"] == 5 and man["splits"]["train"]["images"] == len(parts["train"].images)
    r = run("dataset", "split", src, "--out", out, "--seed", "5")
    assert r.exit_code == 1 and "exists; pass --force" in r.output
    first = (out / "train.json").read_text()
    r = run("dataset", "split", src, "--out", out, "--seed", "5", "--force")
    assert r.exit_code == 0 and (out / "train.json").read_text() == first  # same seed, same split
    r = run("dataset", "split", src, "--out", tmp_path / "s2", "--fractions", "0.5,0.6")
    assert r.exit_code == 2 and "sum to 1" in r.output


def test_dataset_merge(tmp_path):
    a = exports.coco(tmp_path / "a")
    tiny = tmp_path / "b"
    exports.cvat(tiny)
    r = run("annotate-import", tiny / "annotations.xml", "--out", tiny / "coco.json", "--map", "smoke=dust")
    assert r.exit_code == 0, r.output
    # merge validates its inputs: the other tool's box sticks out (annotate-import would clip it)
    r = run("dataset", "merge", a, tiny / "coco.json", "--out", tmp_path / "m.json")
    assert r.exit_code == 1 and "annotation 2 box [60.0, 40.0, 10.0, 10.0] lies outside" in r.output
    assert "check the box format is [x, y, w, h]" in r.output  # brackets are not eaten as markup
    b2 = json.loads(a.read_text())
    b2["annotations"][1]["bbox"] = [50, 30, 10, 10]
    a.write_text(json.dumps(b2))
    # a 'person' category in use: needs --map
    r = run("dataset", "merge", a, tiny / "coco.json", "--out", tmp_path / "m.json")
    assert r.exit_code == 1 and "'person' is not a taxonomy class; map it with --map 'person=<class>'" in r.output
    r = run("dataset", "merge", a, tiny / "coco.json", "--out", tmp_path / "m.json", "--map", "person=stain")
    assert r.exit_code == 0, r.output
    m = load_coco(tmp_path / "m.json", check_images=True)
    assert len(m.images) == 5 and len(m.annotations) == 7
    assert [im.id for im in m.images] == [1, 2, 3, 4, 5]
    r = run("dataset", "merge", a, "--out", tmp_path / "m2.json")
    assert r.exit_code == 2
