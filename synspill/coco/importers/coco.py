"""COCO JSON (merge): every image and box of one or more COCO files, categories by name.

Category names are mapped onto the taxonomy (``--map`` first, then aliases); boxes go
through the same clipping and checks as every other format, so a COCO file from another
tool with slightly out-of-image boxes imports with a report instead of failing. ``file_name``
is looked up in ``--images``, beside the JSON, then in ``images/`` beside it. The
``segmentation`` of an annotation is kept; its other keys go to ``Annotation.extra``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synspill.coco.dataset import CocoDataset, read_json
from synspill.coco.importers._common import (
    MALFORMED_BOX,
    MISSING_REF,
    RawItem,
    RawShape,
    negative_size,
)

NAME = "coco"
SUFFIXES = (".json",)


def sniff(obj: Any) -> bool:
    """True for a parsed COCO detection file."""
    return isinstance(obj, dict) and all(isinstance(obj.get(k), list) for k in ("images", "annotations", "categories"))


def read(path: Path, obj: Any = None) -> list[RawItem]:
    """Parse a COCO file into one :class:`RawItem` per image (absolute ``xywh`` -> ``xyxy``).

    Raises:
        DatasetError: Malformed JSON or records (naming the file and record).
    """
    obj = read_json(path, "COCO") if obj is None else obj
    ds = CocoDataset.from_dict(obj, str(path), path.parent)
    cats = ds.category_names()
    items: dict[int, RawItem] = {}
    for im in ds.images:
        items[im.id] = RawItem(
            source_file=path,
            where=f"image {im.id}",
            image_ref=im.file_name,
            width=im.width,
            height=im.height,
            search=[path.parent, path.parent / "images"],
        )
    orphans: list[int] = []
    for a in ds.annotations:
        item = items.get(a.image_id)
        if item is None:
            orphans.append(a.id)
            continue
        x, y, w, h = a.bbox
        label = cats.get(a.category_id, f"category_id {a.category_id}")
        extra = {k: v for k, v in a.extra.items() if k not in ("source", "source_file", "source_item")}
        extra["coco_id"] = a.id
        sh = RawShape(label, f"annotation {a.id}", xyxy=(x, y, x + w, y + h), segmentation=a.segmentation or None, iscrowd=a.iscrowd, extra=extra)
        why = negative_size(w, h)
        if why:
            sh.skip = (MALFORMED_BOX, f"bbox {[x, y, w, h]} ([x, y, w, h]) has {why}")
        item.shapes.append(sh)
    out = list(items.values())
    if orphans:  # an image-less item that only carries the report
        out.append(RawItem(source_file=path, skipped=[(MISSING_REF, f"annotations {orphans[:5]} refer to image ids not in 'images'", len(orphans))]))
    return out
