"""``synspill eval``: the table, report files, plots, sidecars and every error path."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from synspill import taxonomy
from synspill.cli import app
from synspill.detections import find_sidecar
from synspill.evaluation import evaluate_files, resolve_classes
from synspill.metrics import GroundTruth, Predictions, evaluate

runner = CliRunner()


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    """A 6-image ground truth (taxonomy classes), a detector-like and a VLM-like result file."""
    rng = np.random.default_rng(0)
    images, anns, det, vlm = [], [], [], []
    aid = 1
    for i in range(1, 7):
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 320, "height": 240})
        for _ in range(3):
            w, h = (int(v) for v in rng.integers(20, 80, 2))
            x, y = int(rng.integers(0, 320 - w)), int(rng.integers(0, 240 - h))
            c = int(rng.integers(1, 4))
            anns.append({"id": aid, "image_id": i, "category_id": c, "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
            aid += 1
            det.append({"image_id": i, "category_id": c, "bbox": [x + 2, y + 1, w, h - 2], "score": round(float(rng.random()), 3)})
            det.append({"image_id": i, "category_id": 5, "bbox": [0, 0, 30, 30], "score": 0.05})
            if rng.random() < 0.6:
                vlm.append({"image_id": i, "category_id": c, "bbox": [x + 6, y + 4, w - 4, h]})
    gt = {"images": images, "annotations": anns, "categories": taxonomy.coco_categories()}
    paths = {"gt": tmp_path / "gt.json", "det": tmp_path / "yolo.json", "vlm": tmp_path / "qwen.json"}
    paths["gt"].write_text(json.dumps(gt))
    paths["det"].write_text(json.dumps(det))
    paths["vlm"].write_text(json.dumps(vlm))
    (tmp_path / "qwen.json.meta.json").write_text(json.dumps(
        {"model": "qwen2.5-vl-7b-lora-vl", "parse_dropped": {"no_json": 2, "bad_box": 1}, "unscored": True}))
    return paths


def invoke(*args: str):
    return runner.invoke(app, ["eval", *map(str, args)])


def test_table_report_files_and_plots(data, tmp_path):
    out, plots = tmp_path / "report", tmp_path / "plots"
    r = invoke("--gt", data["gt"], "--pred", data["det"], "--pred", data["vlm"], "--name", "YOLOv11", "--name", "Qwen-7B LoRA",
               "--iou", "0.5:0.9:0.1", "--out", out, "--plots", plots)
    assert r.exit_code == 0, r.output
    # the rich table on stdout: every method, every threshold column, the unscored flag
    for s in ("YOLOv11", "Qwen-7B LoRA", "HR@0.5", "HR@0.9", "mAP@50", "mAP@50:95", "FP/img@0.5", "unscored", "parse drops 3"):
        assert s in r.stdout, s

    # numbers in the files are the library's numbers
    ref = evaluate(GroundTruth.from_dict(json.loads(data["gt"].read_text())),
                   Predictions.from_records(json.loads(data["det"].read_text())), "0.5:0.9:0.1")
    rep = json.loads((out / "eval.json").read_text())
    yolo, qwen = rep["methods"]
    assert yolo["name"] == "YOLOv11" and qwen["name"] == "Qwen-7B LoRA"
    assert rep["iou_thresholds"] == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert yolo["map50"] == pytest.approx(ref.map50, abs=1e-12) and yolo["map50_95"] == pytest.approx(ref.map50_95, abs=1e-12)
    assert yolo["hit_rate"] == pytest.approx(ref.hit_rate.tolist(), abs=1e-12)
    assert yolo["fp_per_image"] == pytest.approx(ref.fp_per_image.tolist())
    assert yolo["unscored"] is False and qwen["unscored"] is True
    assert qwen["meta"]["parse_dropped"] == {"no_json": 2, "bad_box": 1} and qwen["meta_path"].endswith("qwen.json.meta.json")
    assert [c["name"] for c in yolo["per_class"]] == list(taxonomy.NAMES)

    md = (out / "eval.md").read_text()
    assert f"| YOLOv11 | {ref.hit_rate[0]:.3f} |" in md
    assert f"{ref.map50:.3f}" in md and "qwen2.5-vl-7b-lora-vl" in md and "no_json 2" in md

    rows = list(csv.DictReader(io.StringIO((out / "eval.csv").read_text())))
    allrow = next(x for x in rows if x["method"] == "YOLOv11" and x["class"] == "all")
    assert float(allrow["hit_rate@0.7"]) == pytest.approx(ref.hit_rate[2], abs=1e-12)
    assert float(allrow["ap50"]) == pytest.approx(ref.map50, abs=1e-12)
    assert len(rows) == 2 * (1 + 8)

    from PIL import Image

    for name in ("hit_rate_vs_iou.png", "pr_curve_iou50.png"):
        p = plots / name
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(p) as im:
            im.verify()
            assert im.size[0] > 300 and im.size[1] > 200


@pytest.mark.parametrize("suffix", [".json", ".csv", ".md"])
def test_out_single_file_and_no_overwrite_without_force(data, tmp_path, suffix):
    out = tmp_path / f"res{suffix}"
    assert invoke("--gt", data["gt"], "--pred", data["det"], "--out", out).exit_code == 0
    assert out.exists() and not (tmp_path / "eval.json").exists()
    r = invoke("--gt", data["gt"], "--pred", data["det"], "--out", out)
    assert r.exit_code == 1 and "--force" in r.output
    assert invoke("--gt", data["gt"], "--pred", data["det"], "--out", out, "--force").exit_code == 0


def test_single_threshold_and_class_filter(data, tmp_path):
    out = tmp_path / "r.json"
    r = invoke("--gt", data["gt"], "--pred", data["det"], "--iou", "0.75", "--classes", "oil-spill,water", "--out", out)
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert rep["iou_thresholds"] == [0.75]
    assert [c["name"] for c in rep["classes"]] == ["oil-spill", "water-leak"]
    assert "HR@0.75" in r.stdout


def test_default_names_and_sidecar_lookup(data, tmp_path):
    rep = evaluate_files(data["gt"], [data["det"], data["vlm"]])
    assert [r.name for r in rep.results] == ["yolo", "qwen"]
    assert rep.results[1].parse_dropped == {"no_json": 2, "bad_box": 1}
    # the current x.meta.json name is preferred over the older x.json.meta.json
    (tmp_path / "yolo.meta.json").write_text('{"model": "yolo11n"}')
    assert find_sidecar(data["det"]) == tmp_path / "yolo.meta.json"


def test_resolve_classes(data):
    gt = GroundTruth.from_dict(json.loads(data["gt"].read_text()))
    assert resolve_classes("Oil-Spill, 3, rust", gt) == [1, 3, 6]
    assert resolve_classes(None, gt) is None


def _bad_records(tmp_path: Path, records) -> Path:
    p = tmp_path / "bad.json"
    p.write_text(records if isinstance(records, str) else json.dumps(records))
    return p


@pytest.mark.parametrize(("records", "message"), [
    ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5},
      {"image_id": 42, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}], "record #1 has image_id 42"),
    ([{"image_id": 1, "category_id": 12, "bbox": [0, 0, 5, 5], "score": 0.5}], "record #0 has category_id 12"),
    ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5], "score": 0.5}], "record #0 has bbox"),
    ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 7}], "record #0 has score 7"),
    ([{"category_id": 1, "bbox": [0, 0, 5, 5]}], "record #0 has no 'image_id'"),
    ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]', "malformed JSON"),
    ({"images": [], "annotations": [], "categories": []}, "not a results file"),
])
def test_bad_prediction_file_is_one_clear_error(data, tmp_path, records, message):
    bad = _bad_records(tmp_path, records)
    r = invoke("--gt", data["gt"], "--pred", data["det"], "--pred", bad)
    assert r.exit_code == 1
    assert message in r.output and str(bad) in r.output.replace("\n", "")
    assert "Traceback" not in r.output


@pytest.mark.parametrize(("args", "message"), [
    (["--iou", "0.5:abc:0.1"], "must be numbers"),
    (["--iou", "1.5"], "outside (0, 1]"),
    (["--iou", "0.9:0.5:0.1"], "below start"),
    (["--name", "a", "--name", "b"], "2 --name for 1 --pred"),
    (["--classes", "lava"], "not a category"),
    (["--classes", "99"], "no category with id 99"),
    (["--min-score", "2"], "outside [0, 1]"),
    (["--out", "report.xlsx"], "unknown report type"),
    (["--bootstrap", "-5"], "--bootstrap -5"),
])
def test_usage_errors_exit_2(data, args, message):
    r = invoke("--gt", data["gt"], "--pred", data["det"], *args)
    assert r.exit_code == 2, r.output
    assert message in r.output


def test_bad_ground_truth(tmp_path, data):
    r = invoke("--gt", tmp_path / "nope.json", "--pred", data["det"])
    assert r.exit_code == 1 and "no such COCO file" in r.output
    bad = tmp_path / "gt_bad.json"
    gt = json.loads(data["gt"].read_text())
    gt["annotations"][0]["category_id"] = 77
    bad.write_text(json.dumps(gt))
    r = invoke("--gt", bad, "--pred", data["det"])
    assert r.exit_code == 1 and "category_id 77" in r.output


def test_malformed_sidecar_is_an_error(data, tmp_path):
    (tmp_path / "yolo.json.meta.json").write_text("[1, 2]")
    r = invoke("--gt", data["gt"], "--pred", data["det"])
    assert r.exit_code == 1 and "meta.json is a JSON object" in r.output


def test_empty_prediction_file_scores_zero(data, tmp_path):
    empty = _bad_records(tmp_path, [])
    out = tmp_path / "e.json"
    r = invoke("--gt", data["gt"], "--pred", empty, "--out", out)
    assert r.exit_code == 0, r.output
    m = json.loads(out.read_text())["methods"][0]
    assert m["hit_rate"] == [0.0] * 5 and m["map50"] == 0.0 and m["precision"] == [None] * 5


def test_bootstrap_intervals_in_table_and_report_files(data, tmp_path):
    from synspill.bootstrap import bootstrap, interval

    out = tmp_path / "report"
    r = invoke("--gt", data["gt"], "--pred", data["vlm"], "--name", "vlm", "--iou", "0.5,0.75", "--classes", "1,2",
               "--bootstrap", "200", "--out", out)
    assert r.exit_code == 0, r.output
    assert "95% CI" in r.output
    # the same draws as the library's, with the same class filter and the first threshold
    gt = GroundTruth.from_dict(json.loads(data["gt"].read_text()))
    pred = Predictions.from_records(json.loads(data["vlm"].read_text()))
    draws = bootstrap(gt, pred, n_boot=200, iou=0.5, classes=[1, 2])
    want = {k: interval(v) for k, v in draws.items()}
    rep = json.loads((out / "eval.json").read_text())["methods"][0]
    assert rep["ci"]["map50"] == want["map50"].to_dict() and rep["ci"]["hit_rate"] == want["hit_rate"].to_dict()
    assert want["hit_rate"].low < want["hit_rate"].high  # 6 images, 40 % of boxes missed: a real spread
    rows = list(csv.DictReader(io.StringIO((out / "eval.csv").read_text())))
    assert float(rows[0]["ap50_ci_low"]) == pytest.approx(want["map50"].low, abs=1e-6)
    assert float(rows[0]["hit_rate@0.5_ci_high"]) == pytest.approx(want["hit_rate"].high, abs=1e-6)
    assert rows[1]["ap50_ci_low"] == ""  # per-class rows carry none
    md = (out / "eval.md").read_text()
    assert f"| {want['hit_rate']} | {want['map50']} |" in md and "200 draws of the 6 images" in md
    # without --bootstrap: no interval columns anywhere
    r = invoke("--gt", data["gt"], "--pred", data["det"], "--out", tmp_path / "plain.csv")
    assert "CI" not in r.output and "ci_low" not in (tmp_path / "plain.csv").read_text()


def test_bootstrap_difference_against_the_first_method_is_paired(data, tmp_path):
    from synspill.bootstrap import bootstrap, interval

    # a second method that finds what the first finds, plus a confident false positive in every other image
    vlm = json.loads(data["vlm"].read_text())
    noisy = [{**r, "score": 0.5} for r in vlm] + [{"image_id": i, "category_id": 1, "bbox": [280, 200, 30, 30], "score": 0.9}
                                                  for i in range(1, 7, 2)]
    data["noisy"] = tmp_path / "noisy.json"
    data["noisy"].write_text(json.dumps(noisy))
    out = tmp_path / "r.json"
    r = invoke("--gt", data["gt"], "--pred", data["vlm"], "--name", "vlm", "--pred", data["noisy"], "--name", "noisy",
               "--bootstrap", "300", "--out", out)
    assert r.exit_code == 0, r.output
    assert "ΔmAP@50 vs first 95% CI" in r.output
    gt = GroundTruth.from_dict(json.loads(data["gt"].read_text()))
    draws = [bootstrap(gt, Predictions.from_records(json.loads(data[k].read_text())), n_boot=300)["map50"] for k in ("vlm", "noisy")]
    want = interval(draws[1] - draws[0])
    methods = json.loads(out.read_text())["methods"]
    assert "map50_vs_first" not in methods[0]["ci"] and methods[1]["ci"]["map50_vs_first"] == want.to_dict()
    # paired: the same draws for both files, so the difference's interval is narrower than unpaired draws would give
    unpaired = interval(draws[1] - np.roll(draws[0], 1))
    assert want.high - want.low < 0.75 * (unpaired.high - unpaired.low)
