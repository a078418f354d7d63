"""A training run folder synspill started is recognised: stopped before its first checkpoint
(Ctrl-C, kill -9 in epoch 1) it starts again cleanly; other settings still need --force (#14 row 3)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from synspill import runfolder
from synspill.errors import OutputExists
from tests.detectors.conftest import make_blobs


def test_marker_changes():
    m = {"backend": "yolo", "settings": {"epochs": 3, "device": "cpu", "options": {"lr0": 0.01}}}
    assert runfolder.changes(m, "yolo", {"epochs": 3, "device": "cuda", "options": {"lr0": 0.01}}, ("device",)) == []
    assert runfolder.changes(m, "yolo", {"epochs": 5, "device": "cpu", "options": {"lr0": 0.01}}) == ["epochs: 3 -> 5"]
    assert runfolder.changes(m, "detr", {}) == ["backend: 'yolo' -> 'detr'"]


@pytest.mark.slow
def test_yolo_stopped_in_epoch_1_starts_again(tmp_path, monkeypatch):
    from synspill.detectors import yolo

    monkeypatch.setenv("SYNSPILL_CACHE", str(tmp_path / "cache"))
    data = make_blobs(tmp_path / "train", 6, size=64, seed=4)
    run = tmp_path / "run"
    cfg = yolo.YoloTrainConfig(data=str(data), out=str(run), model="yolo11n", epochs=1, imgsz=64, batch=4, device="cpu",
                               workers=0, options={"plots": False, "val": False})

    def ctrl_c(done, total, info):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        yolo.train(cfg, on_progress=ctrl_c)
    assert not (run / "weights" / "last.pt").exists() and any(run.iterdir())
    assert runfolder.read_marker(run)["backend"] == "yolo"
    # as a folder from before the split head (no split_head in its marker): YOLO11n trains no split head, so
    # the same command still continues it and only the real change is named below
    marker_file = run / runfolder.MARKER
    old = json.loads(marker_file.read_text())
    assert old["settings"].pop("split_head") is False
    marker_file.write_text(json.dumps(old))
    # other settings on the unfinished folder: refused, naming what differs
    other = yolo.YoloTrainConfig(**{**cfg.__dict__, "epochs": 2})
    with pytest.raises(OutputExists, match=r"other settings \(epochs: 1 -> 2\).*--force"):
        yolo.train(other)
    rec = yolo.train(cfg)  # the same command: starts again and finishes
    assert rec["resumed"] is False and (run / "run.json").exists() and (run / rec["weights"]).exists()
    with pytest.raises(OutputExists, match="finished run"):
        yolo.train(cfg)


class _FakeRfdetr:
    """Stands in for an rfdetr model class: ``train`` writes the best checkpoint, or stops first."""

    stop = False

    def __init__(self, **kw) -> None:
        self.model_config = type("C", (), {"resolution": 64})()
        self.model = type("M", (), {"class_names": None})()

    def train(self, output_dir: str, **kw) -> None:
        (Path(output_dir) / "log.txt").write_text("epoch 1 ...\n")
        if _FakeRfdetr.stop:
            raise KeyboardInterrupt
        (Path(output_dir) / "checkpoint_best_total.pth").write_bytes(b"weights")


def test_detr_stopped_before_its_first_checkpoint_starts_again(tmp_path, monkeypatch):
    from synspill.detectors import detr

    monkeypatch.setenv("SYNSPILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(detr, "_model_class", lambda variant: _FakeRfdetr)
    monkeypatch.setattr(detr, "_split_options", lambda variant, options: ({}, {}))
    monkeypatch.setattr(detr, "_quiet", lambda logfile, verbose: contextlib.nullcontext())
    data = make_blobs(tmp_path / "train", 4, size=64, seed=5)
    run = tmp_path / "run"
    cfg = detr.DetrTrainConfig(data=str(data), out=str(run), model="nano", epochs=1, device="cpu", workers=0)
    _FakeRfdetr.stop = True
    with pytest.raises(KeyboardInterrupt):
        detr.train(cfg)
    assert (run / "log.txt").exists() and not (run / "last.ckpt").exists()
    with pytest.raises(OutputExists, match=r"other settings \(epochs: 1 -> 3\)"):
        detr.train(detr.DetrTrainConfig(**{**cfg.__dict__, "epochs": 3}))
    _FakeRfdetr.stop = False
    rec = detr.train(cfg)
    assert rec["resumed"] is False and json.loads((run / "run.json").read_text())["weights"] == detr.BEST
    # a folder that is not synspill's is still refused
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OutputExists, match="not empty"):
        detr.train(detr.DetrTrainConfig(**{**cfg.__dict__, "out": str(foreign)}))


def test_vlm_folder_without_checkpoint_restarts_with_the_same_settings_only(tmp_path):
    from dataclasses import asdict

    from synspill.vlm.train import VlmTrainConfig, _check_out

    out = tmp_path / "vlm"
    out.mkdir()
    cfg = VlmTrainConfig(model="m", data="d.json", out=str(out), steps=10)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg)))  # written at the start; killed before a checkpoint
    assert _check_out(cfg, out) is False  # same settings: start again
    assert _check_out(VlmTrainConfig(**{**asdict(cfg), "steps": 20}), out) is False  # steps may change
    with pytest.raises(OutputExists, match=r"other settings \(lr: 5e-05 -> 0.001\).*--force"):
        _check_out(VlmTrainConfig(**{**asdict(cfg), "lr": 1e-3}), out)
    assert _check_out(VlmTrainConfig(**{**asdict(cfg), "lr": 1e-3, "force": True}), out) is False


def test_lite_run_from_before_the_split_head_says_how_to_continue(tmp_path):
    """An interrupted lite0 folder whose marker predates the split head trained YOLO11's head:
    the same command is refused with the flag that continues it."""
    from dataclasses import asdict

    from synspill.detectors import yolo

    run = tmp_path / "run"
    cfg = yolo.YoloTrainConfig(data=str(tmp_path / "train.json"), out=str(run), model="lite0", epochs=2, device="cpu")
    settings = {**asdict(cfg), "data": str((tmp_path / "train.json").absolute()), "val": None}
    settings.pop("split_head")
    runfolder.write_marker(run, "yolo", settings)
    with pytest.raises(OutputExists, match=r"split_head: False -> True.*add --shared-head"):
        yolo.train(cfg)
    shared = yolo.YoloTrainConfig(**{**cfg.__dict__, "split_head": False})
    with pytest.raises(Exception) as e:  # --shared-head gets past the marker (then fails on the missing data)
        yolo.train(shared)
    assert not isinstance(e.value, OutputExists)
