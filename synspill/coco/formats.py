"""The annotation-tool export formats ``annotate-import`` reads (light: the CLI imports it)."""

from __future__ import annotations

from enum import Enum


class ImportFormat(str, Enum):
    """An export format; ``auto`` detects it from the files."""

    auto = "auto"
    labelme = "labelme"
    cvat = "cvat"
    labelstudio = "labelstudio"
    voc = "voc"
    yolo = "yolo"
    coco = "coco"


#: The concrete formats (``auto`` excluded), in detection order.
FORMATS: tuple[str, ...] = tuple(f.value for f in ImportFormat if f is not ImportFormat.auto)
