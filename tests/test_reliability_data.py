"""Issue #14, data side: no silent loss, no silent success, every fault named.

One section per row of the issue (rows 1, 6, 9, 10, 11, 12, 13, 14, 15). Bad inputs are
tables: the input, the expected exit code (1 bad input, 2 usage) and a message fragment;
every CLI case also checks that no traceback is printed.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synspill.cli import app

pytestmark = pytest.mark.usefixtures("wide_console")


def run(*args: object):
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in r.output, r.output
    return r


def flat(text: str) -> str:
    """Output with line breaks (rich wraps long lines) turned into spaces."""
    return " ".join(text.split())


# ---- row 10: atomically written files honour the umask -------------------------------------
@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_atomic_files_honour_the_umask(tmp_path, umask_022):
    from synspill.io import save_image, write_bytes, write_json, write_text

    write_text(tmp_path / "a.txt", "x")
    write_bytes(tmp_path / "b.bin", b"x")
    write_json(tmp_path / "c.json", {})
    save_image(tmp_path / "d.png", __import__("numpy").zeros((4, 4, 3), "uint8"))
    assert {p.name: _mode(p) for p in tmp_path.iterdir()} == {n: 0o644 for n in ("a.txt", "b.bin", "c.json", "d.png")}
    os.umask(0o007)
    write_text(tmp_path / "a.txt", "y")  # replacing a file: the new one follows the umask too
    assert _mode(tmp_path / "a.txt") == 0o660


def test_command_outputs_are_readable_by_others(tmp_path, umask_022, tiny_coco):
    out = tmp_path / "split"
    r = run("dataset", "split", tiny_coco, "--out", out, "--fractions", "0.34,0.33,0.33")
    assert r.exit_code == 0, r.output
    assert {p.name: _mode(p) for p in out.iterdir()} == {n: 0o644 for n in ("train.json", "val.json", "test.json", "split.json")}


# ---- row 1: a broken file of the export's format inside a folder is an item error ------------
def _lm_broken_json(d: Path) -> tuple[Path, list[str], str]:
    from tests.coco import exports

    src = exports.labelme(d / "lm")
    (src / "frame_002.json").write_text('{"version": "5.4.1", "shapes": [{"label": "oil", "poi')  # truncated
    return src, [], "frame_002.json"


def _lm_not_utf8(d: Path) -> tuple[Path, list[str], str]:
    from tests.coco import exports

    src = exports.labelme(d / "lm")
    (src / "frame_002.json").write_bytes(b'\xff\xfe{\x00"\x00s\x00')
    return src, ["--format", "labelme"], "frame_002.json"


def _lm_bad_points(d: Path) -> tuple[Path, list[str], str]:
    from tests.coco import exports

    src = exports.labelme(d / "lm")
    bad = {"shapes": [{"label": "oil", "points": "x", "shape_type": "rectangle"}], "imagePath": "../images/frame_002.jpg"}
    (src / "frame_002.json").write_text(json.dumps(bad))
    return src, [], "frame_002.json"


def _voc_truncated(d: Path) -> tuple[Path, list[str], str]:
    from tests.coco import exports

    ann = exports.voc(d / "VOC")
    (ann / "frame_003.xml").write_text("<annotation><filename>frame_003.png</filename><object><name>oil</name>")
    return ann, [], "frame_003.xml"


def _cvat_truncated(d: Path) -> tuple[Path, list[str], str]:
    from tests.coco import exports

    xml = exports.cvat(d / "cvat")
    (xml.parent / "job2.xml").write_text('<annotations><version>1.1</version><image id="0" name="frame_002.jpg"')
    return xml.parent, ["--format", "cvat"], "job2.xml"


def _coco_truncated(d: Path) -> tuple[Path, list[str], str]:
    from tests.coco import exports

    p = exports.coco(d / "c")
    (p.parent / "more.json").write_text('{"images": [{"id": 1, "file_name": "frame_003.png"')
    return p.parent, ["--map", "person=oil"], "more.json"


def _ls_truncated(d: Path) -> tuple[Path, list[str], str]:
    from tests.coco import exports

    p = exports.labelstudio(d / "ls")
    exports.scenes(d / "ls" / "images")
    (p.parent / "project-4.json").write_text('[{"id": 1, "data": {"image": "/data/upload/4/')
    return p.parent, [], "project-4.json"


def _yolo_not_utf8(d: Path) -> tuple[Path, list[str], str]:
    from tests.coco import exports

    root = exports.yolo(d / "y")
    (root / "labels" / "train" / "frame_003.txt").write_bytes(b"0 0.5 0.5 \xff\xfe 0.1\n")
    return root, ["--map", "smoke=powder"], "frame_003.txt"


BROKEN_IN_FOLDER = [_lm_broken_json, _lm_not_utf8, _lm_bad_points, _voc_truncated, _cvat_truncated, _coco_truncated,
                    _ls_truncated, _yolo_not_utf8]


@pytest.mark.parametrize("setup", BROKEN_IN_FOLDER, ids=lambda f: f.__name__.strip("_"))
def test_broken_file_in_a_folder_is_an_item_error(tmp_path, setup):
    src, args, broken = setup(tmp_path)
    out = tmp_path / "out" / "o.json"
    r = run("annotate-import", src, "--out", out, *args)
    assert r.exit_code == 0, r.output
    assert "malformed file" in r.output and broken in r.output
    rep = json.loads((tmp_path / "out" / "o.import-report.json").read_text())
    bad = [s for s in rep["skipped"] if s["reason"] == "malformed file"]
    assert [Path(s["file"]).name for s in bad] == [broken] and bad[0]["detail"]
    assert "not in" not in r.output or broken not in r.output.split("not in", 1)[1]  # not passed off as another format
    r = run("annotate-import", src, "--out", tmp_path / "strict.json", "--strict", *args)
    assert r.exit_code == 1, r.output
    assert "--strict" in r.output and "malformed file" in r.output and broken in flat(r.output)
    assert not (tmp_path / "strict.json").exists()


def test_folder_of_only_broken_files_names_them(tmp_path):
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "a.json").write_text('{"shapes": [')
    (tmp_path / "lm" / "b.json").write_text('{"shapes": [{')
    r = run("annotate-import", tmp_path / "lm", "--out", tmp_path / "o.json")
    assert r.exit_code == 1
    assert "a.json: malformed JSON at line 1" in flat(r.output) and "2 file(s)" in r.output


def test_yolo_file_with_one_bad_line_keeps_its_good_lines(tmp_path):
    from synspill.coco.dataset import load_coco
    from tests.coco import exports

    root = exports.yolo(tmp_path / "y")
    (root / "labels" / "train" / "frame_002.txt").write_text("1 0.5 0.5 0.25 0.5\n1 0.5 oops 0.1 0.1\n")
    out = tmp_path / "o.json"
    r = run("annotate-import", root, "--out", out, "--map", "smoke=powder")
    assert r.exit_code == 0, r.output
    ds = load_coco(out)
    f2 = next(im.id for im in ds.images if im.file_name.endswith("frame_002.jpg"))
    assert [a.bbox for a in ds.annotations if a.image_id == f2] == [[24.0, 12.0, 16.0, 24.0]]  # the good line
    assert "malformed line" in r.output and "line 2" in r.output and "'1 0.5 oops 0.1 0.1'" in r.output
    assert "other lines of the file were imported" in flat(r.output)
    r = run("annotate-import", root, "--out", tmp_path / "s.json", "--map", "smoke=powder", "--strict")
    assert r.exit_code == 1 and "malformed line" in r.output and "frame_002.txt" in r.output


# ---- row 15: an import that keeps nothing fails ----------------------------------------------
def _labelme_only(d: Path, label: str, n: int = 2) -> Path:
    from tests.coco import exports

    exports.scenes(d / "images")
    src = d / "lm"
    src.mkdir()
    for i in range(1, n + 1):
        shapes = [{"label": label, "points": [[2, 2], [20, 20]], "shape_type": "rectangle"}]
        (src / f"frame_00{i}.json").write_text(json.dumps({"shapes": shapes, "imagePath": f"../images/frame_00{i}.jpg"}))
    return src


def test_import_of_only_unknown_labels_fails_with_the_map_hint(tmp_path):
    src = _labelme_only(tmp_path, "spill")
    r = run("annotate-import", src, "--out", tmp_path / "o.json")
    assert r.exit_code == 1, r.output
    out = flat(r.output)
    assert "0 of 2 boxes imported" in out and "unknown label: 2" in out and "--map 'spill=<class>'" in out
    assert not (tmp_path / "o.json").exists()
    r = run("annotate-import", src, "--out", tmp_path / "o.json", "--map", "spill=oil")
    assert r.exit_code == 0, r.output


def test_import_of_only_negatives_still_succeeds(tmp_path):
    from tests.coco import exports

    root = exports.yolo(tmp_path / "y")
    for f in (root / "labels" / "train").iterdir():
        f.write_text("")
    r = run("annotate-import", root, "--out", tmp_path / "o.json")
    assert r.exit_code == 0, r.output  # an export without any box: background images, not a loss


# ---- row 11: negative-size boxes are malformed, not "clipped" into other boxes -----------------
def _neg_coco(d: Path) -> tuple[Path, str]:
    from tests.coco import exports

    p = exports.coco(d / "c")
    obj = json.loads(p.read_text())
    obj["annotations"] = [{"id": 1, "image_id": 10, "category_id": 3, "bbox": [1, 2, 10, 20]},
                          {"id": 2, "image_id": 11, "category_id": 3, "bbox": [30, 10, -20, 10]}]
    p.write_text(json.dumps(obj))
    return p, "annotation 2"


def _neg_yolo(d: Path) -> tuple[Path, str]:
    from tests.coco import exports

    exports.scenes(d)
    (d / "classes.txt").write_text("oil\n")
    (d / "frame_001.txt").write_text("0 0.5 0.5 0.25 0.5\n0 0.5 0.5 -0.2 0.2\n")
    return d / "frame_001.txt", "line 2"


def _neg_voc(d: Path) -> tuple[Path, str]:
    from tests.coco import exports

    ann = exports.voc(d / "VOC")
    f = ann / "frame_002.xml"
    f.write_text(f.read_text().replace("<xmin>1</xmin>", "<xmin>30</xmin>"))  # xmax 11 < xmin 30
    return ann, "object 0"


def _neg_cvat(d: Path) -> tuple[Path, str]:
    from tests.coco import exports

    xml = exports.cvat(d / "cvat")
    xml.write_text(xml.read_text().replace('xtl="4.50"', 'xtl="60.00"'))
    return xml, "box 0"


def _neg_labelstudio(d: Path) -> tuple[Path, str]:
    from tests.coco import exports

    p = exports.labelstudio(d / "ls")
    exports.scenes(d / "ls" / "images")
    tasks = json.loads(p.read_text())
    tasks[0]["annotations"][0]["result"][0]["value"]["width"] = -25.0
    p.write_text(json.dumps(tasks))
    return p, "result 0"


@pytest.mark.parametrize("setup", [_neg_coco, _neg_yolo, _neg_voc, _neg_cvat, _neg_labelstudio], ids=lambda f: f.__name__[5:])
def test_negative_size_box_is_reported_malformed(tmp_path, setup):
    from synspill.coco.importers import import_annotations

    src, where = setup(tmp_path)
    res = import_annotations([src], label_map={"smoke": "powder-spill", "person": "oil-spill"})
    bad = [s for s in res.report.skipped if s.reason == "malformed box"]
    assert len(bad) == 1 and where in bad[0].where and "negative width" in bad[0].detail, res.report.skipped
    assert not res.report.clipped or all(where not in c.where for c in res.report.clipped)
    r = run("annotate-import", src, "--out", tmp_path / "s.json", "--strict", "--map", "smoke=powder", "--map", "person=oil")
    assert r.exit_code == 1 and "malformed box" in r.output


# ---- row 13 (import wording) -------------------------------------------------------------------
def test_missing_image_names_the_image_not_a_question_mark(tmp_path):
    from synspill.coco.importers import import_annotations
    from tests.coco import exports

    p = exports.labelstudio(tmp_path / "ls")
    exports.scenes(tmp_path / "ls" / "images", names=("frame_002.jpg",))
    rep = import_annotations([p]).report
    miss = [s for s in rep.skipped if s.reason == "image not found"]
    assert len(miss) == 1 and "'1a2b3c4d-frame_001.jpg' not found" in miss[0].detail and "'?'" not in miss[0].detail


def test_strict_names_the_missing_image_not_the_label(tmp_path):
    from tests.coco import exports

    xml = exports.cvat(tmp_path / "cvat")
    (tmp_path / "cvat" / "images" / "frame_001.jpg").unlink()
    r = run("annotate-import", xml, "--out", tmp_path / "o.json", "--strict", "--map", "smoke=powder")
    out = flat(r.output)
    assert r.exit_code == 1
    assert "image not found: 'frame_001.jpg' not found in" in out and "image not found 'Oil Spill'" not in out


# ---- row 6: eval screens predictions as strictly as the ground truth ---------------------------
@pytest.fixture
def gt_file(tmp_path) -> Path:
    from synspill import taxonomy

    gt = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
                     {"id": 2, "file_name": "b.jpg", "width": 100, "height": 80}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20]},
                          {"id": 2, "image_id": 2, "category_id": 2, "bbox": [50, 40, 20, 20]}],
          "categories": taxonomy.coco_categories()}
    p = tmp_path / "gt.json"
    p.write_text(json.dumps(gt))
    return p


GOOD = '{"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20], "score": 0.9}'


@pytest.mark.parametrize(("bad", "reason"), [
    ('{"image_id": 1, "category_id": 1, "bbox": [40, 10, -30, 20], "score": 0.8}', "non-positive width or height"),
    ('{"image_id": 1, "category_id": 1, "bbox": [40, 10, 30, 0], "score": 0.8}', "non-positive width or height"),
    ('{"image_id": 2, "category_id": 2, "bbox": [NaN, 40, 20, 20], "score": 0.8}', "non-finite coordinates"),
    ('{"image_id": 2, "category_id": 2, "bbox": [50, 40, Infinity, 20], "score": 0.8}', "non-finite coordinates"),
    ('{"image_id": 2, "category_id": 2, "bbox": [150, 40, 20, 20], "score": 0.8}', "entirely outside the image"),
    ('{"image_id": 2, "category_id": 2, "bbox": [-40, -30, 20, 20], "score": 0.8}', "entirely outside the image"),
])
def test_eval_drops_malformed_predictions_and_says_so(tmp_path, gt_file, bad, reason):
    pred = tmp_path / "p.json"
    pred.write_text(f"[{GOOD}, {bad}]")
    out = tmp_path / "r.json"
    r = run("eval", "--gt", gt_file, "--pred", pred, "--out", out)
    assert r.exit_code == 0, r.output
    assert f"dropped 1 of 2 predictions: {reason} 1" in flat(r.output)
    m = json.loads(out.read_text())["methods"][0]
    assert m["dropped"] == {reason: 1} and m["n_pred"] == 1
    assert m["precision"][0] == 1.0  # the one kept prediction is a hit; the dropped one is not counted anywhere


@pytest.mark.parametrize(("records", "code", "message"), [
    (f'[{GOOD}, {{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": true}}]', 1, "record #1 has score True"),
    (f'[{GOOD}, {{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": "0.5"}}]', 1, "record #1 has score '0.5'"),
    (f'[{GOOD}, {{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": NaN}}]', 1, "record #1 has score nan"),
    (f'[{GOOD}, {{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": -0.1}}]', 1, "record #1 has score -0.1"),
    (f'[{GOOD}, {{"image_id": 1, "category_id": 1, "bbox": [1, true, 5, 5]}}]', 1, "record #1 has bbox [1, True, 5, 5]"),
    ('[{"image_id": 1, "category_id": 1, "bbox": [40, 10, -30, 20]}, {"image_id": 2, "category_id": 1, "bbox": [500, 1, 5, 5]}]',
     1, "no usable prediction: 2 of 2 dropped (non-positive width or height 1, entirely outside the image 1)"),
])
def test_eval_unusable_prediction_file_is_an_error(tmp_path, gt_file, records, code, message):
    pred = tmp_path / "p.json"
    pred.write_text(records)
    r = run("eval", "--gt", gt_file, "--pred", pred)
    assert r.exit_code == code, r.output
    assert message in flat(r.output) and "p.json" in r.output


# ---- row 14: eval validates its arguments before the work --------------------------------------
@pytest.mark.parametrize(("args", "code", "message"), [
    (["--out", "report.xlsx"], 2, "unknown report type"),
    (["--plots", "{gt}"], 2, "is a file"),
    (["--out", "{gt}"], 1, "exists; pass --force"),
])
def test_eval_checks_outputs_before_printing_the_table(tmp_path, gt_file, args, code, message):
    pred = tmp_path / "p.json"
    pred.write_text(f"[{GOOD}]")
    r = run("eval", "--gt", gt_file, "--pred", pred, *[a.format(gt=gt_file) for a in args])
    assert r.exit_code == code, r.output
    assert message in flat(r.output)
    assert "HR@" not in r.output and "evaluating" not in r.output  # nothing evaluated, no table


def test_ground_truth_with_a_nan_coordinate_is_an_error(tmp_path, gt_file):
    gt_file.write_text(gt_file.read_text().replace("[10, 10, 30, 20]", "[NaN, 10, 30, 20]"))
    pred = tmp_path / "p.json"
    pred.write_text(f"[{GOOD}]")
    r = run("eval", "--gt", gt_file, "--pred", pred)
    assert r.exit_code == 1 and "annotation 1 has a box with a non-finite coordinate" in flat(r.output)


# ---- row 9: dataset merge is idempotent ---------------------------------------------------------
def test_merge_of_a_dataset_with_itself_is_the_dataset(tmp_path, tiny_coco):
    from synspill.coco.dataset import load_coco

    out = tmp_path / "m" / "all.json"
    r = run("dataset", "merge", tiny_coco, tiny_coco, "--out", out)
    assert r.exit_code == 0, r.output
    assert "3 duplicate boxes left out" in flat(r.output)
    m, a = load_coco(out, check_images=True), load_coco(tiny_coco)
    assert len(m.images) == 3 and len(m.annotations) == 3
    assert sorted((x.category_id, x.bbox) for x in m.annotations) == sorted((x.category_id, x.bbox) for x in a.annotations)
    assert m.info["merge"]["duplicate_boxes"] == 3


def test_merge_keeps_every_distinct_box_of_overlapping_datasets(tmp_path, tiny_coco):
    from synspill.coco.dataset import load_coco

    b = json.loads(tiny_coco.read_text())
    b["annotations"].append({"id": 9, "image_id": 1, "category_id": 1, "bbox": [30.0, 20.0, 10.0, 10.0]})  # new box
    b["annotations"].append({"id": 10, "image_id": 2, "category_id": 5, "bbox": [4.0, 5.0, 20.0, 10.0]})  # same box, other class
    (tmp_path / "b.json").write_text(json.dumps(b))
    out = tmp_path / "all.json"
    r = run("dataset", "merge", tiny_coco, tmp_path / "b.json", "--out", out)
    assert r.exit_code == 0, r.output
    assert len(load_coco(out).annotations) == 5 and "3 duplicate boxes left out" in flat(r.output)


# ---- row 11: odd results are errors, not silent successes ---------------------------------------
def test_split_that_leaves_a_split_empty_fails(tmp_path, tiny_coco):
    r = run("dataset", "split", tiny_coco, "--out", tmp_path / "s")
    assert r.exit_code == 1, r.output
    assert "gives the val and test split no image" in flat(r.output) and "--fractions 0.8,0.1,0.1 over 3 image(s)" in r.output
    assert not (tmp_path / "s" / "train.json").exists()
    r = run("dataset", "split", tiny_coco, "--out", tmp_path / "s", "--fractions", "0.67,0.33,0")  # an empty test on purpose
    assert r.exit_code == 0, r.output


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("rel") / "scenes"
    r = run("scenes", "--n", "2", "--out", d, "--size", "64", "--workers", "1")
    assert r.exit_code == 0, r.output
    return d


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--min-box", "5"], 2, "--min-box 5.0 must be within 0-0.5"),
    (["--min-box", "-0.1"], 2, "--min-box -0.1 must be within 0-0.5"),
    (["--spill-scale", "50"], 2, "--spill-scale 50.0 must be within 0.1-10"),
])
def test_propose_rejects_out_of_range_options(scenes_dir, tmp_path, args, code, message):
    r = run("propose", "--scenes", scenes_dir, "--out", tmp_path / "b.json", *args)
    assert r.exit_code == code, r.output
    assert message in r.output and not (tmp_path / "b.json").exists()


def test_propose_that_finds_no_place_fails(tmp_path):
    from tests.conftest import make_image

    for i in range(2):
        make_image(tmp_path / "tiny" / f"{i}.png", 8, 8, seed=i)  # no spill fits an 8 px image
    r = run("propose", "--scenes", tmp_path / "tiny", "--out", tmp_path / "b.json")
    assert r.exit_code == 1, r.output
    assert "0 proposals over 2 scene(s)" in flat(r.output) and "--min-box" in r.output
    assert not (tmp_path / "b.json").exists()


def test_inpaint_with_no_box_fails_before_writing(scenes_dir, tmp_path):
    boxes = json.loads((scenes_dir / "scenes.json").read_text())
    boxes["annotations"] = []
    (tmp_path / "b.json").write_text(json.dumps(boxes))
    r = run("inpaint", "--scenes", scenes_dir, "--boxes", tmp_path / "b.json", "--out", tmp_path / "o")
    assert r.exit_code == 1, r.output
    assert "no box over the 2 scene(s)" in flat(r.output) and "spills in" not in r.output
    assert not (tmp_path / "o").exists()


# ---- row 12: a failed run leaves no stub that blocks the corrected command -----------------------
def test_scenes_with_a_file_as_backgrounds_then_the_corrected_command(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"")
    out = tmp_path / "s"
    r = run("scenes", "--n", "2", "--out", out, "--size", "64", "--backgrounds", tmp_path / "photo.jpg")
    assert r.exit_code == 1, r.output
    assert "--backgrounds" in r.output and "is a file, not a folder" in flat(r.output)  # row 13: not "does not exist"
    assert not out.exists()
    r = run("scenes", "--n", "2", "--out", out, "--size", "64", "--workers", "1")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("cmd", ["scenes", "inpaint"])
def test_run_that_fails_after_starting_leaves_nothing_that_blocks(scenes_dir, tmp_path, cmd):
    out = tmp_path / "o"
    base = ["scenes", "--n", "2", "--size", "64"] if cmd == "scenes" else ["inpaint", "--scenes", scenes_dir, "--propose"]
    r = run(*base, "--out", out, "--model", "no-such/sdxl-weights")  # fails when the backend loads
    assert r.exit_code == 1, r.output
    assert not out.exists() or not any(out.iterdir())
    r = run(*base, "--out", out, "--workers", "1")
    assert r.exit_code == 0, r.output


def test_stub_with_other_settings_and_no_finished_item_is_restarted(tmp_path):
    out = tmp_path / "s"
    (out / "images").mkdir(parents=True)
    (out / "job.json").write_text(json.dumps({"job": "scenes", "backend": "sdxl", "n": 2}))  # a run that made nothing
    (out / "manifest.jsonl").write_text("")
    r = run("scenes", "--n", "2", "--out", out, "--size", "64", "--workers", "1")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "job.json").read_text())["backend"] == "procedural"


# ---- row 13: wording ----------------------------------------------------------------------------
def test_inpaint_lists_only_what_it_wrote(scenes_dir, tmp_path):
    r = run("inpaint", "--scenes", scenes_dir, "--propose", "--out", tmp_path / "o", "--contact-sheet", "0", "--workers", "1")
    assert r.exit_code == 0, r.output
    assert "contact_sheet.png" not in r.output and not (tmp_path / "o" / "contact_sheet.png").exists()
    assert "annotations.json" in r.output


def test_missing_hub_weights_advice_is_given_once(tmp_path):
    r = run("scenes", "--n", "2", "--size", "64", "--out", tmp_path / "s", "--model", "no-such/sdxl-weights")
    assert r.exit_code == 1
    assert flat(r.output).count("huggingface-cli download") == 1, r.output


def test_finetune_vlm_with_missing_weights_leaves_no_folder(tmp_path, tiny_coco):
    out = tmp_path / "run"
    r = run("finetune", "vlm", "--data", tiny_coco, "--out", out, "--model", "no-such/qwen", "--steps", "1", "--device", "cpu")
    assert r.exit_code == 1, r.output
    assert "not in the local Hugging Face cache" in flat(r.output)
    assert not out.exists()


@pytest.mark.parametrize(("defaults", "camera", "message"), [
    ('fps = "fast"', "", "defaults.fps: "),
    ("imgsz = 0.5", "", "defaults.imgsz: "),
    ("threshold = 7", "", "defaults: "),
    ('classes = ["lava"]', "", "defaults.classes: "),
    ('fps = "fast"', 'fps = "slow"', "cameras[0].fps: "),  # the camera's own value is the camera's fault
])
def test_watch_config_errors_in_defaults_name_defaults(tmp_path, defaults, camera, message):
    from synspill.errors import UsageError
    from synspill.watch.config import load_config

    p = tmp_path / "cams.toml"
    p.write_text(f'[defaults]\nmodel = "m.pt"\n{defaults}\n\n[[cameras]]\nname = "dock"\nurl = "0"\n{camera}\n')
    with pytest.raises(UsageError) as e:
        load_config(p)
    assert f"cams.toml: {message}" in str(e.value)
    if message.startswith("defaults"):
        assert "cameras[0]" not in str(e.value)


def test_unreadable_video_error_is_not_buried_in_opencv_noise(tmp_path):
    import subprocess
    import sys

    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("OPENCV_FFMPEG_LOGLEVEL", None)
    p = subprocess.run([sys.executable, "-m", "synspill", "harvest", str(tmp_path / "bad.mp4"), "--out", str(tmp_path / "h")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 1
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith("[progress]")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "not a readable video" in lines[0], p.stderr


def test_third_party_import_warnings_are_kept_out(tmp_path, monkeypatch, caplog):
    import logging
    import sys

    from synspill.runtime import import_quietly

    (tmp_path / "noisy_pkg").mkdir()
    (tmp_path / "noisy_pkg" / "__init__.py").write_text(
        "import logging\nlogging.getLogger('noisy_pkg.backends.cpu.ops').warning('Failed to load CPU gemm_4bit_forward')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "noisy_pkg", raising=False)
    with caplog.at_level(logging.INFO):
        mod = import_quietly("noisy_pkg")
    assert mod.__name__ == "noisy_pkg" and not caplog.records
    assert logging.getLogger("noisy_pkg").level == logging.NOTSET  # restored


# ---- row 14: the event store says how it opens a log -------------------------------------------
def test_event_store_opens_an_existing_log_for_ack(tmp_path):
    from synspill.errors import UsageError
    from synspill.watch.store import EventStore

    with pytest.raises(UsageError, match="no such event database"):
        EventStore(tmp_path / "missing.sqlite", existing=True)
    assert not (tmp_path / "missing.sqlite").exists()  # nothing created
    EventStore(tmp_path / "ev.sqlite").close()
    with EventStore(tmp_path / "ev.sqlite", existing=True) as store, pytest.raises(UsageError, match="no event with id 1"):
        store.ack([1])  # opened for writing: ack's write transaction starts (and finds no such event)
