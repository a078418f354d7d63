"""Hard negatives (``finetune --negatives``): background images in the training split only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synspill.cli import app
from synspill.coco.dataset import load_coco
from synspill.coco.export import export_rfdetr, split_off_val
from synspill.coco.tools import add_background
from synspill.errors import DatasetError
from tests.detectors.conftest import make_blobs


@pytest.fixture
def negatives(tmp_path: Path) -> Path:
    """A hard-negative folder: 3 images (the first with a stray box, which must be ignored)."""
    path = make_blobs(tmp_path / "neg", 1, negatives=2, seed=7)
    assert json.loads(path.read_text())["annotations"]  # the stray box is there
    return path.parent


def test_yolo_layout_has_negatives_in_train_with_empty_labels(blobs, negatives, tmp_path, monkeypatch):
    from synspill.detectors import yolo

    monkeypatch.setenv("SYNSPILL_CACHE", str(tmp_path / "cache"))
    cfg = yolo.YoloTrainConfig(data=str(blobs), out=str(tmp_path / "run"), negatives=(str(negatives),))
    export, _ = yolo.prepare_data(cfg)
    labels = export.root / "labels"
    neg_names = {p.stem for p in (negatives / "images").iterdir()}  # b7_0, b7_1, b7_2
    train = {p.stem: p.read_text() for p in (labels / "train").iterdir()}
    val = {p.stem for p in (labels / "val").iterdir()}
    added = {k: v for k, v in train.items() if k.split("_", 1)[1] in neg_names}
    assert len(added) == 3 and all(v == "" for v in added.values())  # background: empty label files
    assert not any(k.split("_", 1)[1] in neg_names for k in val)  # training split only
    for k in added:
        assert any((export.root / "images" / "train").glob(f"{k}.*"))
    plain, _ = yolo.prepare_data(yolo.YoloTrainConfig(data=str(blobs), out=str(tmp_path / "run")))
    assert export.counts["train"] == plain.counts["train"] + 3 and export.boxes == plain.boxes
    assert export.counts["val"] == plain.counts["val"]


def test_rfdetr_layout_and_add_background(blobs, negatives, tmp_path):
    ds = load_coco(blobs)
    train, val = split_off_val(ds, 0.2, 0)
    both = add_background(train, [negatives, negatives / "annotations.json"])  # the same images twice: added once
    assert len(both.images) == len(train.images) + 3 and both.annotations == train.annotations
    assert len(train.images) == len(ds.images) - len(val.images)  # the input is not changed
    r = export_rfdetr({"train": both, "val": val}, tmp_path / "cache")
    coco = json.loads((r.root / "train" / "_annotations.coco.json").read_text())
    with_boxes = {a["image_id"] for a in coco["annotations"]}
    assert len(coco["images"]) == len(both.images) and len([im for im in coco["images"] if im["id"] not in with_boxes]) >= 3
    with pytest.raises(DatasetError):
        add_background(train, [tmp_path / "nowhere"])


def test_finetune_help_lists_negatives():
    r = CliRunner(env={"COLUMNS": "250"})  # the narrow CI pass would cut option names
    for backend in ("yolo", "detr"):
        res = r.invoke(app, ["finetune", backend, "--help"])
        assert res.exit_code == 0 and "--negatives" in res.output
