"""COCO data layer: dataset model, validated I/O, format import/export. Never imports torch."""

from synspill.coco.dataset import (
    Annotation,
    Category,
    CocoDataset,
    ImageRecord,
    load_coco,
    save_coco,
)

__all__ = ["Annotation", "Category", "CocoDataset", "ImageRecord", "load_coco", "save_coco"]
