"""Detector commands: clear errors before any training, predict routing (VLM too) and its outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from synspill.cli import app
from synspill.detections import Detections, read_results
from tests.conftest import make_image


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("backend", ["yolo", "detr"])
def test_finetune_bad_dataset_path(tmp_path, backend):
    r = _run("finetune", backend, "--data", str(tmp_path / "nope.json"), "--out", str(tmp_path / "run"), "--device", "cpu")
    assert r.exit_code == 1 and "nope.json: no such COCO file" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize(("backend", "weights", "hint"), [("yolo", "yolo11x.pt", "ultralytics"), ("detr", "rf-detr-base.pth", "RF_HOME")])
def test_finetune_missing_weights_says_where_to_put_them(tmp_path, monkeypatch, backend, weights, hint):
    monkeypatch.setenv("SYNSPILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RF_HOME", raising=False)
    r = _run("finetune", backend, "--data", str(tmp_path / "x.json"), "--model", weights, "--out", str(tmp_path / "run"))
    assert r.exit_code == 1, r.output
    assert "not found" in r.output and hint in r.output and str(tmp_path / "cache") in r.output.replace("\n", "")


@pytest.mark.parametrize("backend", ["yolo", "detr"])
def test_finetune_empty_dataset(tmp_path, backend, monkeypatch):
    monkeypatch.setenv("SYNSPILL_CACHE", str(tmp_path / "cache"))
    coco = tmp_path / "empty.json"
    coco.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    r = _run("finetune", backend, "--data", str(coco), "--val", str(coco), "--out", str(tmp_path / "run"), "--device", "cpu")
    assert r.exit_code == 1 and "has no images" in r.output, r.output


def test_finetune_rejects_bad_values(tmp_path):
    r = _run("finetune", "yolo", "--data", "x.json", "--out", str(tmp_path / "r"), "--imgsz", "100")
    assert r.exit_code == 2 and "multiple of 32" in r.output
    r = _run("finetune", "detr", "--data", "x.json", "--out", str(tmp_path / "r"), "--model", "gigantic")
    assert r.exit_code == 2 and "gigantic" in r.output


def test_model_specs():
    from synspill.detectors import detr, yolo

    assert yolo.resolve_model("yolo11n") == ("yolo11n.yaml", True)
    assert yolo.resolve_model("yolov8s") == ("yolov8s.yaml", True)
    assert detr.resolve_model("rfdetr-small") == ("small", None)
    assert detr.resolve_model("RFDETRMedium") == ("medium", None)


class FakePredictor:
    """Two boxes per image (one without a score) and parse-drop counts, like a VLM."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, images):
        self.calls.append(len(images))
        out = []
        for im in images:
            h, w = im.shape[:2]
            out.append(Detections(np.array([[1, 2, w - 1, h - 2], [0, 0, 5, 5]]), np.array([1, 3]), np.array([0.9, np.nan]),
                                  meta={"dropped": {"bad_json": 1, "outside_image": 2}}))
        return out


def test_predict_routes_vlm_and_writes_results_meta_and_pictures(tmp_path, monkeypatch):
    import synspill.predictors as predictors

    seen = {}
    fake = FakePredictor()

    def fake_load(cfg):
        seen["cfg"] = cfg
        return fake

    monkeypatch.setattr(predictors, "load_predictor", fake_load)
    folder = tmp_path / "imgs"
    for i in range(5):
        make_image(folder / f"sub/{i}.jpg", 40 + i, 30, seed=i)
    out = tmp_path / "preds.json"
    r = _run("predict", "--vlm", "Qwen/Qwen2.5-VL-3B-Instruct", "--adapter", str(tmp_path / "lora"), "--prompt", "find oil",
             "--max-pixels", "200704", "--images", str(folder), "--out", str(out), "--batch", "2",
             "--classes", "oil,rust", "--save-images", str(tmp_path / "pics"))
    assert r.exit_code == 0, r.output
    cfg = seen["cfg"]
    assert (cfg.backend, cfg.model, cfg.prompt, cfg.max_pixels, cfg.batch, cfg.classes) == (
        "vlm", "Qwen/Qwen2.5-VL-3B-Instruct", "find oil", 200704, 2, (1, 6))
    assert cfg.adapter == str(tmp_path / "lora") and fake.calls == [2, 2, 1]
    listing = json.loads((tmp_path / "preds.images.json").read_text())
    ids = {im["file_name"]: im["id"] for im in listing["images"]}
    assert sorted(ids) == [f"sub/{i}.jpg" for i in range(5)]
    res = read_results(out, image_ids=set(ids.values()))
    assert len(res) == 10 and sum("score" not in x for x in res) == 5
    first = [x for x in res if x["image_id"] == ids["sub/1.jpg"] and x["category_id"] == 1][0]
    assert first["bbox"] == [1.0, 2.0, 39.0, 26.0]  # xyxy [1, 2, 40, 28] -> xywh, original pixels
    meta = json.loads((tmp_path / "preds.meta.json").read_text())
    assert meta["backend"] == "vlm" and meta["n_images"] == 5 and meta["unscored"] is True
    assert meta["parse_dropped"] == {"bad_json": 5, "outside_image": 10}
    assert len(list((tmp_path / "pics").glob("*.jpg"))) == 5
    # existing output without --force
    r = _run("predict", "--vlm", "x", "--images", str(folder), "--out", str(out))
    assert r.exit_code == 1 and "--force" in r.output


def test_predict_keeps_coco_image_ids(tmp_path, monkeypatch, tiny_coco):
    import synspill.predictors as predictors

    monkeypatch.setattr(predictors, "load_predictor", lambda cfg: FakePredictor())
    out = tmp_path / "p.json"
    r = _run("predict", "--model", str(tiny_coco), "--backend", "yolo", "--images", str(tiny_coco), "--out", str(out))
    assert r.exit_code == 0, r.output
    assert {x["image_id"] for x in read_results(out)} == {1, 2, 3}
    assert not (tmp_path / "p.images.json").exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--images", "IMG", "--out", "o.json"], 2, "exactly one of --model"),
        (["--model", "m.pt", "--vlm", "v", "--images", "IMG", "--out", "o.json"], 2, "exactly one of --model"),
        (["--model", "m.pt", "--adapter", "a", "--images", "IMG", "--out", "o.json"], 2, "--vlm only"),
        (["--model", "missing.pt", "--images", "IMG", "--out", "o.json"], 1, "missing.pt"),
        (["--model", "RUN", "--images", "nowhere", "--out", "o.json"], 1, "nowhere: no such file or folder"),
        (["--model", "RUN", "--images", "IMG", "--out", "o.json"], 1, "not a YOLO run folder"),
    ],
)
def test_predict_errors(tmp_path, monkeypatch, args, code, message):
    monkeypatch.chdir(tmp_path)
    make_image(tmp_path / "IMG" / "a.png")
    (tmp_path / "RUN").mkdir()
    (tmp_path / "RUN" / "run.json").write_text(json.dumps({"backend": "yolo2", "weights": "w.pt"}))
    r = _run("predict", *args, *(["--backend", "yolo"] if "RUN" in args else []))
    assert r.exit_code == code, r.output
    assert message in r.output.replace("\n", ""), r.output


def test_yolo_predictor_maps_classes_and_coordinates(tmp_path, monkeypatch):
    """A real (random) ultralytics model through our wrapper equals calling ultralytics directly."""
    monkeypatch.setenv("SYNSPILL_CACHE", str(tmp_path / "cache"))
    from synspill.detectors.yolo import YoloPredictor, _import_ultralytics

    _import_ultralytics()
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO("yolo11n.yaml")
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (90, 120, 3), dtype=np.uint8), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)]
    ours = YoloPredictor(model, Path("random"), "cpu", 64, 0.0001, 8).predict(imgs)
    ref = model.predict([np.ascontiguousarray(i[..., ::-1]) for i in imgs], imgsz=64, conf=0.0001, verbose=False, device="cpu")
    for d, r in zip(ours, ref, strict=True):
        keep = r.boxes.cls.numpy() < 8  # COCO-80 names: index k < 8 reads as taxonomy id k + 1
        assert np.allclose(d.xyxy, r.boxes.xyxy.numpy()[keep])
        assert (d.class_id == r.boxes.cls.numpy()[keep].astype(int) + 1).all()
        assert d.xyxy[:, 2].max(initial=0) <= imgs[0].shape[1] + 1e-3


def test_missing_weights_advice_names_a_url_only_for_real_release_names():
    from synspill.detectors import yolo
    from synspill.errors import ModelNotFound

    with pytest.raises(ModelNotFound, match=r"releases/download/v8\.3\.0/yolo11s\.pt"):
        yolo.resolve_model("yolo11s.pt")
    with pytest.raises(ModelNotFound) as e:
        yolo.resolve_model("/nowhere/my_plant_model.pt")
    assert "http" not in str(e.value) and "run folder" in str(e.value)
