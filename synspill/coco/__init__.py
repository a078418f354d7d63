"""COCO data layer: dataset model, validated I/O, format import/export. Never imports torch.

``from synspill.coco import load_coco`` works as before, but the dataset module loads on
first use, so importing :mod:`synspill.coco.formats` (the CLI does) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Annotation", "Category", "CocoDataset", "ImageRecord", "load_coco", "save_coco"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("synspill.coco.dataset"), name)
    raise AttributeError(f"module 'synspill.coco' has no attribute {name!r}")
