"""Short CPU trainings of both backends on dark blobs: they must beat an untrained model.

Predictions go through ``synspill predict`` into a COCO results file, which is scored by an
independent evaluator (pycocotools mAP@50) and a top-1 hit rate computed here.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from synspill.cli import app
from synspill.detections import read_results
from tests.detectors.conftest import make_blobs

pytestmark = pytest.mark.slow


def _iou(a: list[float], b: list[float]) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw, ih = max(0.0, min(ax2, bx2) - max(a[0], b[0])), max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def score(gt: Path, preds: Path, iou: float = 0.5) -> tuple[float, float]:
    """(top-1 hit rate at ``iou``, pycocotools mAP@50) of a results file against the ground truth."""
    data = json.loads(gt.read_text())
    res = read_results(preds, image_ids={im["id"] for im in data["images"]})
    best: dict[int, dict] = {}
    for r in res:
        if r["image_id"] not in best or r["score"] > best[r["image_id"]]["score"]:
            best[r["image_id"]] = r
    hits = [a["image_id"] in best and best[a["image_id"]]["category_id"] == a["category_id"]
            and _iou(best[a["image_id"]]["bbox"], a["bbox"]) >= iou for a in data["annotations"]]
    if not res:
        return float(np.mean(hits)), 0.0
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    for a in data["annotations"]:
        a.setdefault("area", a["bbox"][2] * a["bbox"][3])
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints
        c = COCO()
        c.dataset = data
        c.createIndex()
        ev = COCOeval(c, c.loadRes(res), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    try:  # the project's own evaluator (synspill eval), where this branch has it: must agree with pycocotools
        from synspill import metrics
    except ImportError:
        metrics = None
    if metrics is not None:
        m = metrics.evaluate(metrics.GroundTruth.from_dict(json.loads(gt.read_text()), str(gt)),
                             metrics.Predictions.from_records(res, str(preds)), iou_thresholds=[iou])
        assert abs(m.map50 - ev.stats[1]) < 1e-6, (m.map50, ev.stats[1])
    return float(np.mean(hits)), float(ev.stats[1])


def _untrained_results(predictor, val: Path, out: Path) -> Path:
    from synspill.inference import predict_to_results

    return predict_to_results(predictor, val, out).results


def test_yolo_trains_and_beats_untrained(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNSPILL_CACHE", str(tmp_path / "cache"))
    train = make_blobs(tmp_path / "train", 24, size=64, seed=1)
    val = make_blobs(tmp_path / "val", 10, size=64, seed=2)
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["finetune", "yolo", "--data", str(train), "--val", str(val), "--model", "yolo11n",
                                 "--epochs", "20", "--imgsz", "64", "--batch-size", "4", "--device", "cpu", "--workers", "0",
                                 "--out", str(run), "--option", "optimizer=AdamW", "--option", "lr0=0.004",
                                 "--option", "nbs=4", "--option", "mosaic=0.0", "--option", "warmup_epochs=0"])
    assert r.exit_code == 0, r.output
    rec = json.loads((run / "run.json").read_text())
    assert rec["backend"] == "yolo" and rec["from_scratch"] is True and rec["weights"] == "weights/best.pt"
    assert (run / rec["weights"]).is_file() and (run / "results.csv").is_file() and (run / "results.png").is_file()
    assert rec["classes"][0] == "oil-spill" and rec["imgsz"] == 64 and rec["metrics"]["epochs_run"] >= 1
    assert rec["infer_scales"] == [1.0, 0.8, 0.64]  # the run's multi-scale inference default

    preds = tmp_path / "preds.json"
    r = CliRunner().invoke(app, ["predict", "--model", str(run), "--images", str(val), "--out", str(preds),
                                 "--device", "cpu", "--save-images", str(tmp_path / "pics")])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "preds.meta.json").read_text())
    assert meta["backend"] == "yolo" and meta["n_images"] == 10 and meta["unscored"] is False
    assert len(list((tmp_path / "pics").glob("*.jpg"))) == 10
    hit, map50 = score(val, preds)

    from ultralytics import YOLO

    from synspill.detectors.yolo import YoloPredictor
    untrained = YoloPredictor(YOLO("yolo11n.yaml"), Path("untrained"), "cpu", 64, 0.001, 8)
    hit0, map0 = score(val, _untrained_results(untrained, val, tmp_path / "untrained.json"))
    assert hit >= 0.5 and hit > hit0 + 0.3, (hit, hit0)
    assert map50 > map0 + 0.2, (map50, map0)


def test_detr_trains_and_beats_untrained(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNSPILL_CACHE", str(tmp_path / "cache"))
    train = make_blobs(tmp_path / "train", 16, size=64, seed=1)
    val = make_blobs(tmp_path / "val", 10, size=64, seed=2)
    run = tmp_path / "run"
    tiny = ["--option", "num_queries=20", "--option", "group_detr=1", "--option", "use_ema=false", "--option", "multi_scale=false"]
    r = CliRunner().invoke(app, ["finetune", "detr", "--data", str(train), "--val", str(val), "--model", "nano",
                                 "--epochs", "5", "--resolution", "64", "--batch-size", "4", "--grad-accum", "1", "--lr", "1e-3",
                                 "--patience", "0", "--device", "cpu", "--workers", "0", "--out", str(run), *tiny])
    assert r.exit_code == 0, r.output
    rec = json.loads((run / "run.json").read_text())
    assert rec["backend"] == "detr" and rec["variant"] == "nano" and rec["from_scratch"] is True
    assert (run / rec["weights"]).is_file() and (run / "metrics.csv").is_file() and (run / "results.png").is_file()
    assert rec["class_names"] == rec["classes"] and rec["metrics"]["epochs_run"] == 5

    preds = tmp_path / "preds.json"
    r = CliRunner().invoke(app, ["predict", "--model", str(run), "--images", str(val), "--out", str(preds), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "preds.meta.json").read_text())["backend"] == "detr"
    hit, map50 = score(val, preds)

    from rfdetr import RFDETRNano

    from synspill.detectors.detr import DetrPredictor
    base = RFDETRNano(pretrain_weights=None, num_queries=20, group_detr=1, resolution=64, num_classes=8, device="cpu")
    hit0, map0 = score(val, _untrained_results(DetrPredictor(base, Path("untrained"), 0.001, 8), val, tmp_path / "u.json"))
    assert hit >= 0.3 and hit > hit0 + 0.2, (hit, hit0)
    assert map50 > map0 + 0.1, (map50, map0)

    # a second run into the same folder is refused (rfdetr would keep a stale best checkpoint)
    r = CliRunner().invoke(app, ["finetune", "detr", "--data", str(train), "--out", str(run), "--device", "cpu"])
    assert r.exit_code == 1 and "already holds a finished run" in r.output


def test_yolo_interrupted_run_resumes(tmp_path, monkeypatch):
    from synspill.detectors import yolo

    monkeypatch.setenv("SYNSPILL_CACHE", str(tmp_path / "cache"))
    train = make_blobs(tmp_path / "train", 8, size=64, seed=3)
    cfg = yolo.YoloTrainConfig(data=str(train), out=str(tmp_path / "run"), model="yolo11n", epochs=3, imgsz=64, batch=4,
                               device="cpu", workers=0, options={"plots": False, "nbs": 4})
    seen = []

    def stop_in_epoch_2(done, total, info):
        seen.append(info["epoch"])
        if info["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        yolo.train(cfg, on_progress=stop_in_epoch_2)
    assert (tmp_path / "run" / "weights" / "last.pt").exists() and not (tmp_path / "run" / "run.json").exists()
    epochs = []
    rec = yolo.train(cfg, on_progress=lambda d, t, i: epochs.append(i["epoch"]))
    assert rec["resumed"] is True and min(epochs) == 2, epochs  # epoch 1 was not redone
    assert rec["metrics"]["epochs_run"] == 3 and (tmp_path / "run" / "weights" / "best.pt").exists()
