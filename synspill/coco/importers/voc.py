"""Pascal VOC XML: one ``<annotation>`` per image with ``<object><name>`` and ``<bndbox>``.

``xmin ymin xmax ymax`` are read as continuous pixel coordinates (box = ``[xmin, ymin,
xmax - xmin, ymax - ymin]``), as LabelImg, CVAT and Roboflow write them. ``difficult``,
``truncated``, ``occluded``, ``pose`` and CVAT's ``<attributes>`` go to ``Annotation.extra``.
The image is ``<filename>`` (or the basename of ``<path>``), looked up beside the XML and
in the VOC layout's ``JPEGImages/``.
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
    basename,
    negative_size,
    num,
    opt_int,
    parse_xml,
)
from synspill.errors import DatasetError

NAME = "voc"
SUFFIXES = (".xml",)


def sniff_xml(root: ET.Element) -> bool:
    """True for the root of a Pascal VOC annotation."""
    return root.tag == "annotation" and (root.find("filename") is not None or root.find("object") is not None)


def read(path: Path, root: ET.Element | None = None) -> list[RawItem]:
    """Parse one VOC XML file into one :class:`RawItem` (absolute tool pixels).

    Raises:
        DatasetError: Malformed XML, not VOC, or non-numeric coordinates (naming the object).
    """
    root = parse_xml(path) if root is None else root
    if not sniff_xml(root):
        raise DatasetError(f"{path}: not a Pascal VOC file (root <{root.tag}>, expected <annotation>); pick the right --format")
    shapes = []
    for k, obj in enumerate(root.findall("object")):
        label = (obj.findtext("name") or "").strip()
        where = f"object {k}"
        extra: dict[str, Any] = {}
        for key in ("difficult", "truncated", "occluded"):
            v = (obj.findtext(key) or "").strip()
            if v in ("1", "true", "True"):
                extra[key] = True
        pose = (obj.findtext("pose") or "").strip()
        if pose and pose != "Unspecified":
            extra["pose"] = pose
        attrs = {(a.findtext("name") or ""): (a.findtext("value") or "") for a in obj.findall("attributes/attribute")}
        if attrs:
            extra["attributes"] = attrs
        sh = RawShape(label, where, extra=extra)
        bb = obj.find("bndbox")
        if bb is None:
            sh.skip = (NOT_A_BOX, "object has no <bndbox>")
        else:
            w = f"{where} ({label!r})"
            x1, y1, x2, y2 = (num(bb.findtext(t), path, w, t) for t in ("xmin", "ymin", "xmax", "ymax"))
            sh.xyxy = (x1, y1, x2, y2)
            why = negative_size(x2 - x1, y2 - y1)
            if why:
                sh.skip = (MALFORMED_BOX, f"xmin={x1:g} ymin={y1:g} xmax={x2:g} ymax={y2:g}: {why}")
        shapes.append(sh)
    filename = (root.findtext("filename") or "").strip()
    ipath = (root.findtext("path") or "").strip()
    return [
        RawItem(
            source_file=path,
            image_ref=filename or None,
            width=opt_int(root.findtext("size/width")),
            height=opt_int(root.findtext("size/height")),
            shapes=shapes,
            search=[path.parent, path.parent.parent / "JPEGImages", path.parent.parent / "images", path.parent / "images"],
            alt_names=[basename(ipath)] if ipath else [],
            stem=None if (filename or ipath) else path.stem,
        )
    ]
