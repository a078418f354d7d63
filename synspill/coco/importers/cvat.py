"""CVAT for images 1.1 XML: ``<annotations><version>1.1</version><meta>...</meta><image ...>``.

Each ``<image name width height>`` holds shapes: ``<box xtl ytl xbr ybr [rotation]>``,
``<polygon points="x,y;x,y;...">``, ``<ellipse cx cy rx ry>`` and ``<mask left top width
height>`` become boxes (rotated boxes and ellipses: their axis-aligned bounds);
``<polyline>``, ``<points>``, ``<cuboid>``, ``<skeleton>`` and ``<tag>`` are reported as
skipped. ``<attribute name>`` children, ``occluded`` and ``group_id`` go to
``Annotation.extra``; ``source="auto"``/``"semi-auto"`` marks a machine box (``auto``).
Images are looked up in ``images/`` beside the XML (CVAT's export zip layout).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from synspill.coco.importers._common import (
    MALFORMED_BOX,
    NOT_A_BOX,
    RawItem,
    RawShape,
    ellipse_bounds,
    negative_size,
    num,
    opt_int,
    parse_xml,
    rotated_rect_bounds,
)
from synspill.errors import DatasetError

NAME = "cvat"
SUFFIXES = (".xml",)
_NO_AREA = ("polyline", "points", "cuboid", "skeleton", "tag")


def sniff_xml(root: ET.Element) -> bool:
    """True for the root of a CVAT XML export."""
    return root.tag == "annotations" and (root.find("version") is not None or root.find("meta") is not None)


def _polygon(points: str | None, path: Path, where: str) -> list[float]:
    if not points:
        raise DatasetError(f"{path}: {where} has no 'points'; CVAT polygons store points='x1,y1;x2,y2;...'")
    out: list[float] = []
    for pair in points.strip().split(";"):
        xy = pair.split(",")
        if len(xy) != 2:
            raise DatasetError(f"{path}: {where} has points {points[:60]!r}; expected 'x1,y1;x2,y2;...'")
        out += [num(xy[0], path, where, "x"), num(xy[1], path, where, "y")]
    return out


def _shape(el: ET.Element, k: int, path: Path, iwhere: str) -> RawShape:
    label = el.get("label") or ""
    where = f"{el.tag} {k}"
    w = f"{iwhere} {where} ({label!r})"
    extra: dict[str, Any] = {}
    attrs = {a.get("name") or "": (a.text or "") for a in el.findall("attribute")}
    if attrs:
        extra["attributes"] = attrs
    if el.get("occluded") == "1":
        extra["occluded"] = True
    if el.get("group_id"):
        extra["group_id"] = el.get("group_id")
    if el.get("source") in ("auto", "semi-auto"):
        extra["auto"] = True
    sh = RawShape(label, where, extra=extra)
    g = el.get
    if el.tag == "box":
        x1, y1 = num(g("xtl"), path, w, "xtl"), num(g("ytl"), path, w, "ytl")
        x2, y2 = num(g("xbr"), path, w, "xbr"), num(g("ybr"), path, w, "ybr")
        rot = num(g("rotation") or 0, path, w, "rotation")
        sh.xyxy = rotated_rect_bounds(x1, y1, x2 - x1, y2 - y1, rot, "center")
        why = negative_size(x2 - x1, y2 - y1)
        if why:
            sh.skip = (MALFORMED_BOX, f"xtl={x1:g} ytl={y1:g} xbr={x2:g} ybr={y2:g}: {why}")
        if rot:
            sh.extra["rotation"] = rot
    elif el.tag == "polygon":
        poly = _polygon(g("points"), path, w)
        if len(poly) < 6:
            sh.skip = (NOT_A_BOX, f"polygon with {len(poly) // 2} point(s)")
        else:
            sh.polygon = poly
    elif el.tag == "ellipse":
        sh.xyxy = ellipse_bounds(
            num(g("cx"), path, w, "cx"), num(g("cy"), path, w, "cy"),
            num(g("rx"), path, w, "rx"), num(g("ry"), path, w, "ry"),
            num(g("rotation") or 0, path, w, "rotation"),
        )
    elif el.tag == "mask":
        left, top = num(g("left"), path, w, "left"), num(g("top"), path, w, "top")
        mw, mh = num(g("width"), path, w, "width"), num(g("height"), path, w, "height")
        sh.xyxy = (left, top, left + mw, top + mh)
        why = negative_size(mw, mh)
        if why:
            sh.skip = (MALFORMED_BOX, f"mask {why}")
    else:
        sh.skip = (NOT_A_BOX, f"CVAT <{el.tag}> has no area; draw a box or polygon")
    return sh


def read(path: Path, root: ET.Element | None = None) -> list[RawItem]:
    """Parse a CVAT for images 1.1 XML file into one :class:`RawItem` per ``<image>``.

    Coordinates are absolute pixels of the image as CVAT saw it (``width``/``height``).

    Raises:
        DatasetError: Malformed XML, a CVAT *video* export, or bad coordinates (naming the image).
    """
    root = parse_xml(path) if root is None else root
    if not sniff_xml(root):
        raise DatasetError(f"{path}: not a CVAT XML export (root <{root.tag}>, expected <annotations> with <version>); pick the right --format")
    images = root.findall("image")
    if not images and root.findall("track"):
        raise DatasetError(f"{path}: this is a 'CVAT for video' export (<track> elements); export the task as 'CVAT for images 1.1'")
    items = []
    for el in images:
        name = el.get("name")
        iwhere = f"image {name!r}" if name else f"image id={el.get('id')}"
        if not name:
            raise DatasetError(f"{path}: <image id={el.get('id')!r}> has no 'name'; re-export from CVAT")
        shapes = [_shape(ch, k, path, iwhere) for k, ch in enumerate(c for c in el if c.tag in ("box", "polygon", "ellipse", "mask", *_NO_AREA))]
        items.append(
            RawItem(
                source_file=path,
                where=iwhere,
                image_ref=name,
                width=opt_int(el.get("width")),
                height=opt_int(el.get("height")),
                shapes=shapes,
                search=[path.parent / "images", path.parent],
            )
        )
    return items
