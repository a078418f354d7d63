"""COCO -> YOLO / rfdetr export: class ids, coordinates, links, content cache, clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from synspill import taxonomy
from synspill.coco.dataset import Annotation, Category, CocoDataset, ImageRecord, load_coco
from synspill.coco.export import (
    export_rfdetr,
    export_yolo,
    rfdetr_class_to_taxonomy,
    split_off_val,
    taxonomy_map,
)
from synspill.errors import DatasetError
from tests.conftest import make_image


def _ds(root: Path, cats: list[Category] | None = None, anns: list[tuple[int, int, list[float]]] | None = None,
        n: int = 3) -> CocoDataset:
    images = []
    for i in range(1, n + 1):
        make_image(root / "images" / f"im{i}.png", 64, 48, seed=i)
        images.append(ImageRecord(i, f"images/im{i}.png", 64, 48))
    anns = anns if anns is not None else [(1, 1, [4.0, 6.0, 20.0, 12.0]), (2, 3, [0.0, 0.0, 64.0, 48.0])]
    return CocoDataset(images, [Annotation(k + 1, im, c, b) for k, (im, c, b) in enumerate(anns)],
                       cats if cats is not None else [Category(**c) for c in taxonomy.coco_categories()], root)


def test_yolo_labels_ids_coordinates_and_links(tmp_path):
    ds = _ds(tmp_path / "d")
    r = export_yolo({"train": ds, "val": ds}, tmp_path / "cache")
    assert not r.cached and r.counts == {"train": 3, "val": 3} and r.boxes == {"train": 2, "val": 2}
    lab = (r.root / "labels" / "train" / "1_im1.txt").read_text().split()
    # class index = taxonomy id - 1; centre format normalised by width 64, height 48
    assert lab == ["0", f"{14 / 64:.6f}", f"{12 / 48:.6f}", f"{20 / 64:.6f}", f"{12 / 48:.6f}"]
    assert (r.root / "labels" / "train" / "2_im2.txt").read_text().split() == ["2", "0.500000", "0.500000", "1.000000", "1.000000"]
    assert (r.root / "labels" / "train" / "3_im3.txt").read_text() == ""  # an image without boxes: empty label file
    src, dst = tmp_path / "d" / "images" / "im1.png", r.root / "images" / "train" / "1_im1.png"
    assert os.stat(src).st_ino == os.stat(dst).st_ino, "images must be hard links, not copies"
    assert r.link_mode == "hardlink"
    yaml = r.data.read_text()
    for i, name in enumerate(taxonomy.NAMES):  # all eight names, in taxonomy order
        assert f'  {i}: "{name}"' in yaml
    assert f'path: "{r.root}"' in yaml and "train: images/train" in yaml and "val: images/val" in yaml


def test_yolo_export_is_cached_by_content(tmp_path):
    ds = _ds(tmp_path / "d")
    first = export_yolo({"train": ds, "val": ds}, tmp_path / "cache")
    marker = first.root / "export.json"
    mtime = marker.stat().st_mtime_ns
    again = export_yolo({"train": ds, "val": ds}, tmp_path / "cache")
    assert again.cached and again.root == first.root and marker.stat().st_mtime_ns == mtime
    ds.annotations[0].bbox = [5.0, 6.0, 20.0, 12.0]  # changed content -> a new export folder
    third = export_yolo({"train": ds, "val": ds}, tmp_path / "cache")
    assert not third.cached and third.root != first.root
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted([first.root.name, third.root.name])


def test_categories_are_mapped_by_name_not_id(tmp_path):
    # A tool export numbering its own categories (and using an alias): ids must follow the taxonomy.
    cats = [Category(0, "spills", "none"), Category(1, "rust", "spills"), Category(2, "Oil Spill", "spills")]
    ds = _ds(tmp_path / "d", cats, [(1, 1, [4.0, 6.0, 20.0, 12.0]), (2, 2, [1.0, 1.0, 10.0, 10.0])])
    assert taxonomy_map(ds) == {1: 6, 2: 1}
    r = export_yolo({"train": ds, "val": ds}, tmp_path / "cache")
    assert (r.root / "labels" / "train" / "1_im1.txt").read_text().startswith("5 ")  # rust-stain: id 6 -> 5
    rd = export_rfdetr({"train": ds, "val": ds}, tmp_path / "cache")
    coco = json.loads((rd.root / "train" / "_annotations.coco.json").read_text())
    assert [a["category_id"] for a in coco["annotations"]] == [6, 1]
    assert coco["categories"] == taxonomy.coco_categories()


@pytest.mark.slow  # imports rfdetr (torch, transformers)
def test_rfdetr_layout_and_rfdetr_reads_taxonomy_classes(tmp_path):
    ds = _ds(tmp_path / "d")
    r = export_rfdetr({"train": ds, "val": ds, "test": ds}, tmp_path / "cache")
    for split in ("train", "valid", "test"):
        coco = load_coco(r.root / split / "_annotations.coco.json", check_images=True)
        assert len(coco.images) == 3 and len(coco.annotations) == 2
    # rfdetr's own reader (independent reference): 0-based class k is taxonomy id k + 1
    from rfdetr.detr import RFDETR

    names = RFDETR._load_classes(str(r.root))
    assert names == list(taxonomy.NAMES)
    assert rfdetr_class_to_taxonomy(names) == list(range(1, 9))
    assert export_rfdetr({"train": ds, "val": ds, "test": ds}, tmp_path / "cache").cached


def test_rfdetr_class_mapping_fallbacks():
    assert rfdetr_class_to_taxonomy(["water", "oil-spill"]) == [2, 1]  # by name
    assert rfdetr_class_to_taxonomy(None, 10)[:9] == [1, 2, 3, 4, 5, 6, 7, 8, 0]  # by index, beyond 8 dropped


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda ds: ds.images.clear() or ds.annotations.clear(), "has no images"),
        (lambda ds: ds.annotations.clear(), "no boxes"),
        (lambda ds: setattr(ds.images[0], "file_name", "images/missing.png"), "missing.png"),
        (lambda ds: ds.categories.append(Category(9, "forklift")) or setattr(ds.annotations[0], "category_id", 9), "forklift"),
    ],
    ids=["empty", "no-boxes", "missing-image", "unknown-class"],
)
def test_bad_datasets_give_clear_errors(tmp_path, mutate, message):
    ds = _ds(tmp_path / "d")
    mutate(ds)
    with pytest.raises(DatasetError, match=message):
        export_yolo({"train": ds, "val": _ds(tmp_path / "v")}, tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("yolo-*")) if (tmp_path / "cache").exists() else True


def test_split_off_val_is_seeded_and_disjoint(tmp_path):
    ds = _ds(tmp_path / "d", n=10, anns=[(i, 1, [1.0, 1.0, 5.0, 5.0]) for i in range(1, 8)])
    tr, va = split_off_val(ds, 0.3, seed=1)
    tr2, va2 = split_off_val(ds, 0.3, seed=1)
    assert [im.id for im in va.images] == [im.id for im in va2.images]
    assert {im.id for im in tr.images}.isdisjoint({im.id for im in va.images})
    assert len(tr.images) + len(va.images) == 10 and 2 <= len(va.images) <= 4
    assert va.annotations and {a.image_id for a in va.annotations} <= {im.id for im in va.images}
