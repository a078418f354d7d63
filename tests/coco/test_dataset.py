"""COCO model: validation names file + record + fix; atomic round-trip; taxonomy."""

from __future__ import annotations

import copy
import json
import os

import pytest

from synspill import taxonomy
from synspill.coco import load_coco, save_coco
from synspill.errors import DatasetError, UsageError
from tests.conftest import make_image

BASE = {
    "images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 50}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}],
    "categories": taxonomy.coco_categories(),
}


def _mut(fn):
    d = copy.deepcopy(BASE)
    fn(d)
    return d


CASES = [
    ("dup image", lambda d: d["images"].append(dict(d["images"][0])), r"image id 1 is used 2 times"),
    ("dup ann", lambda d: d["annotations"].append(dict(d["annotations"][0])), r"annotation id 1 is used 2 times"),
    ("missing image", lambda d: d["annotations"][0].update(image_id=9), r"annotation 1 refers to image_id 9"),
    ("unknown cat", lambda d: d["annotations"][0].update(category_id=12), r"category_id 12, which is not a category"),
    ("zero width", lambda d: d["annotations"][0].update(bbox=[1, 1, 0, 5]), r"non-positive size"),
    ("outside", lambda d: d["annotations"][0].update(bbox=[90, 10, 20, 20]), r"outside its image 1 \(100x50\)"),
    ("bbox 3 values", lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), r"must be 4 numbers"),
    ("no id", lambda d: d["annotations"][0].pop("id"), r"annotation #0 has no 'id'"),
    ("no images key", lambda d: d.pop("images"), r"missing 'images' list"),
    ("float id", lambda d: d["images"][0].update(id=1.5), r"id=1.5; it must be an integer"),
    ("zero size image", lambda d: d["images"][0].update(width=0), r"size 0x50"),
]


@pytest.mark.parametrize("name,mutate,pattern", CASES, ids=[c[0] for c in CASES])
def test_validation_names_file_record_and_fix(tmp_path, name, mutate, pattern):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(_mut(mutate)))
    with pytest.raises(DatasetError, match=pattern) as e:
        load_coco(p)
    assert str(p) in str(e.value)


def test_malformed_json_and_missing_file(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"malformed JSON at line 1"):
        load_coco(p)
    with pytest.raises(DatasetError, match="no such COCO file"):
        load_coco(tmp_path / "nope.json")


def test_missing_and_unreadable_image_files(tiny_coco):
    ds = load_coco(tiny_coco, check_images=True)
    assert len(ds.images) == 3
    (tiny_coco.parent / "images" / "im2.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=r"image 2 file .* not a readable image"):
        load_coco(tiny_coco, check_images=True)
    make_image(tiny_coco.parent / "images" / "im2.png")
    os.remove(tiny_coco.parent / "images" / "im3.png")
    with pytest.raises(DatasetError, match=r"image 3 file .* does not exist"):
        load_coco(tiny_coco, check_images=True)


def test_round_trip_keeps_extras(tmp_path, tiny_coco):
    ds = load_coco(tiny_coco)
    ds.annotations[0].extra["auto"] = True
    ds.images[0].extra["seed"] = 123
    out = save_coco(ds, tmp_path / "out" / "c.json")
    again = load_coco(out, image_root=tiny_coco.parent)
    assert again.to_dict() == ds.to_dict()
    assert again.annotations[0].extra == {"auto": True}
    assert again.images[0].extra == {"seed": 123}
    assert not [f for f in os.listdir(out.parent) if f.endswith(".tmp")]


def test_save_is_atomic_on_failure(tmp_path, tiny_coco):
    ds = load_coco(tiny_coco)
    target = tmp_path / "keep.json"
    save_coco(ds, target)
    before = target.read_text()
    ds.annotations[0].category_id = 99  # invalid -> save refuses, old file intact
    with pytest.raises(DatasetError):
        save_coco(ds, target)
    assert target.read_text() == before


def test_stats(tiny_coco):
    s = load_coco(tiny_coco).stats()
    assert s["images"] == 3 and s["annotations"] == 3
    assert s["per_class"] == {"chemical-discoloration": 1, "oil-spill": 1, "water-leak": 1}
    assert s["box_area_fraction"]["median"] == pytest.approx(200 / (64 * 48))


def test_taxonomy():
    assert len(taxonomy.CLASSES) == 8
    assert [c.id for c in taxonomy.CLASSES] == list(range(1, 9))
    for n in ("oil-spill", "floor-stain", "chemical-discoloration"):
        assert n in taxonomy.NAMES
    assert taxonomy.class_id("Oil") == 1 and taxonomy.class_id("wet floor") == 2 and taxonomy.class_id("3") == 3
    assert taxonomy.parse_classes("oil-spill, rust") == [1, 6]
    with pytest.raises(UsageError, match="not in the taxonomy"):
        taxonomy.class_id("banana")
    assert all(c.description for c in taxonomy.CLASSES)
