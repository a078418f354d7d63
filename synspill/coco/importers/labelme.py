"""LabelMe JSON: one file per image with ``shapes`` (``label``, ``points``, ``shape_type``).

``rectangle`` (two opposite corners), ``polygon`` (vertices), ``circle`` (centre and a point
on the rim) and ``mask`` (two corners + a mask bitmap) become boxes; ``point``, ``line``,
``linestrip`` and ``points`` have no area and are reported as skipped. ``imagePath`` is
relative to the JSON file; when no image file is found, the base64 ``imageData`` embedded
by LabelMe is written out as an image file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from synspill.coco.dataset import read_json
from synspill.coco.importers._common import (
    NOT_A_BOX,
    RawItem,
    RawShape,
    decode_base64,
    num,
    opt_int,
)
from synspill.errors import DatasetError

NAME = "labelme"
SUFFIXES = (".json",)


def sniff(obj: Any) -> bool:
    """True for a parsed LabelMe JSON object."""
    return isinstance(obj, dict) and isinstance(obj.get("shapes"), list) and ("imagePath" in obj or "imageData" in obj)


def _points(s: dict, path: Path, where: str) -> list[tuple[float, float]]:
    pts = s.get("points")
    if not isinstance(pts, list) or not all(isinstance(p, list | tuple) and len(p) == 2 for p in pts):
        raise DatasetError(f"{path}: {where} has points {pts!r}; LabelMe points are a list of [x, y] pairs -- fix or re-save the file")
    return [(num(p[0], path, where, "x"), num(p[1], path, where, "y")) for p in pts]


def read(path: Path, obj: Any = None) -> list[RawItem]:
    """Parse one LabelMe file into one :class:`RawItem` (coordinates: absolute tool pixels).

    Raises:
        DatasetError: Malformed JSON, not a LabelMe file, or malformed points (naming the shape).
    """
    obj = read_json(path, "LabelMe") if obj is None else obj
    if not sniff(obj):
        raise DatasetError(f"{path}: not a LabelMe file (needs 'shapes' and 'imagePath'); pick the right --format or re-export from LabelMe")
    shapes: list[RawShape] = []
    for i, s in enumerate(obj["shapes"]):
        where = f"shape {i}"
        if not isinstance(s, dict):
            raise DatasetError(f"{path}: {where} is {type(s).__name__}, expected an object with 'label' and 'points'")
        label = str(s.get("label") or "")
        kind = s.get("shape_type") or "polygon"  # LabelMe < 3 had no shape_type: polygons
        pts = _points(s, path, f"{where} ({label!r})")
        extra: dict[str, Any] = {}
        if s.get("group_id") is not None:
            extra["group_id"] = s["group_id"]
        if s.get("description"):
            extra["description"] = s["description"]
        if s.get("flags"):
            extra["attributes"] = s["flags"]
        sh = RawShape(label, where, extra=extra)
        if kind in ("rectangle", "mask"):
            if len(pts) < 2:
                sh.skip = (NOT_A_BOX, f"{kind} with {len(pts)} point(s)")
            else:
                xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                sh.xyxy = (min(xs), min(ys), max(xs), max(ys))
        elif kind == "polygon":
            if len(pts) < 3:
                sh.skip = (NOT_A_BOX, f"polygon with {len(pts)} point(s)")
            else:
                sh.polygon = [v for p in pts for v in p]
        elif kind == "circle":
            if len(pts) != 2:
                sh.skip = (NOT_A_BOX, f"circle with {len(pts)} point(s); LabelMe circles are centre + rim point")
            else:
                (cx, cy), (px, py) = pts
                r = math.hypot(px - cx, py - cy)
                sh.xyxy = (cx - r, cy - r, cx + r, cy + r)
        else:
            sh.skip = (NOT_A_BOX, f"LabelMe shape_type {kind!r} has no area; draw a rectangle or polygon")
        shapes.append(sh)
    ref = obj.get("imagePath") or None
    data = obj.get("imageData")
    return [
        RawItem(
            source_file=path,
            image_ref=str(ref) if ref else None,
            width=opt_int(obj.get("imageWidth")),
            height=opt_int(obj.get("imageHeight")),
            shapes=shapes,
            search=[path.parent, path.parent / "images"],
            alt_names=[f"{path.stem}{e}" for e in (".jpg", ".png", ".jpeg")] if not ref else [],
            image_data=decode_base64(data, path, "imageData") if isinstance(data, str) and data else None,
        )
    ]
