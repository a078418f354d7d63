"""Multi-scale inference: one pass per size, boxes merged by NMS; the run's default and its override."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from synspill.detectors.yolo import MERGE_IOU, YoloPredictor, _merge_nms
from synspill.errors import UsageError
from synspill.models import PredictorConfig


def test_merge_keeps_the_best_of_overlapping_boxes_per_class():
    xyxy = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    score = np.array([0.6, 0.9, 0.8, 0.3], np.float32)
    cls = np.array([0, 0, 1, 0])
    # boxes 0 and 1 overlap (IoU 9/11 > 0.5) in class 0: the better one stays; class 1 is separate
    assert sorted(_merge_nms(xyxy, score, cls, 300).tolist()) == [1, 2, 3]
    # class-agnostic: box 2 also overlaps box 1
    assert sorted(_merge_nms(xyxy, score, None, 300).tolist()) == [1, 3]
    assert _merge_nms(xyxy, score, None, 1).tolist() == [1]
    # IoU exactly below the threshold keeps both
    far = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)  # IoU 50/150
    assert 50 / 150 < MERGE_IOU and len(_merge_nms(far, score[:2], None, 300)) == 2


@pytest.fixture(scope="module")
def yolo():
    from ultralytics import YOLO

    torch.manual_seed(0)
    return YOLO("yolo11n.yaml")


def test_two_scales_equal_the_nms_of_each_scale_alone(yolo):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)
    seen: list[int] = []
    orig = yolo.predict

    def spy(*a, **k):
        seen.append(k["imgsz"])
        return orig(*a, **k)

    ms = YoloPredictor(yolo, Path("random"), "cpu", 160, 1e-9, 8, scales=(1.0, 0.8))
    yolo.predict = spy
    try:
        got = ms.predict([img])[0]
    finally:
        yolo.predict = orig
    assert seen == [160, 128] and ms.sizes == [160, 128]
    singles = [YoloPredictor(yolo, Path("random"), "cpu", s, 1e-9, 8).predict([img])[0] for s in (160, 128)]
    xyxy = np.concatenate([d.xyxy for d in singles])
    score = np.concatenate([d.score for d in singles])
    cls = np.concatenate([d.class_id for d in singles])
    assert len(xyxy) > 0
    keep = torchvision.ops.batched_nms(torch.from_numpy(xyxy), torch.from_numpy(score), torch.from_numpy(cls), MERGE_IOU)[:300]
    order = np.argsort(-got.score, kind="stable")
    want = keep.numpy()
    assert len(got) == len(want) and len(got) < len(xyxy)
    np.testing.assert_allclose(np.sort(got.score)[::-1], np.sort(score[want])[::-1], rtol=1e-6)
    np.testing.assert_allclose(got.xyxy[order][:5], xyxy[want][np.argsort(-score[want], kind="stable")][:5], atol=1e-4)


def test_run_default_scales_and_override(yolo, tmp_path):
    from synspill.detectors.yolo import load_predictor

    (tmp_path / "bare").mkdir()
    yolo.save(str(tmp_path / "bare" / "w.pt"))  # a plain .pt, no run.json anywhere above it
    assert load_predictor(PredictorConfig(model=str(tmp_path / "bare" / "w.pt"), device="cpu", imgsz=320)).sizes == [320]
    run = tmp_path / "run"
    run.mkdir()
    yolo.save(str(run / "w.pt"))
    (run / "run.json").write_text(json.dumps({"backend": "yolo", "weights": "w.pt", "imgsz": 160, "infer_scales": [1.0, 0.8]}))
    assert load_predictor(PredictorConfig(model=str(run), device="cpu")).sizes == [160, 128]
    assert load_predictor(PredictorConfig(model=str(run), device="cpu", scales=(1.0,))).sizes == [160]
    (run / "run.json").write_text(json.dumps({"backend": "yolo", "weights": "w.pt", "imgsz": 160, "infer_scales": [1.0, 0.8, 0.64]}))
    assert load_predictor(PredictorConfig(model=str(run), device="cpu")).sizes == [160, 128, 96]  # 102.4 -> a multiple of 32
    (run / "run.json").write_text(json.dumps({"backend": "yolo", "weights": "w.pt", "imgsz": 160}))
    assert load_predictor(PredictorConfig(model=str(run), device="cpu")).sizes == [160]  # a run from before
    with pytest.raises(UsageError, match="scales"):
        PredictorConfig(model="x", scales=(1.0, 3.0))


def test_predict_cli_scales_option(tmp_path):
    from typer.testing import CliRunner

    from synspill.cli import app

    r = CliRunner().invoke(app, ["predict", "--model", "x.pt", "--images", str(tmp_path), "--out", str(tmp_path / "p.json"),
                                 "--scales", "1,big"])
    assert r.exit_code != 0 and "--scales" in r.output and "Traceback" not in r.output


def test_an_images_detections_do_not_depend_on_its_batch_neighbours(yolo):
    # ultralytics pads a one-shape batch to the nearest stride multiple but a mixed batch to a
    # square; a wide CCTV frame gave other boxes in `predict` over a folder than in `watch`
    rng = np.random.default_rng(1)
    wide = rng.integers(0, 255, (90, 200, 3), dtype=np.uint8)
    square = rng.integers(0, 255, (150, 150, 3), dtype=np.uint8)
    pred = YoloPredictor(yolo, Path("random"), "cpu", 160, 1e-9, 8)
    alone = pred.predict([wide])[0]
    mixed = pred.predict([square, wide, square])
    assert len(alone) > 0 and len(mixed) == 3
    np.testing.assert_allclose(mixed[1].xyxy, alone.xyxy, atol=1e-3)
    np.testing.assert_allclose(mixed[1].score, alone.score, atol=1e-5)
    np.testing.assert_allclose(mixed[0].xyxy, pred.predict([square])[0].xyxy, atol=1e-3)
    np.testing.assert_allclose(mixed[2].score, mixed[0].score, atol=1e-5)
