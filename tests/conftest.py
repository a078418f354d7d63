"""Shared fixtures: tiny images and COCO files made on the fly; nothing downloaded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def make_image(path: Path, w: int = 64, h: int = 48, seed: int = 0) -> Path:
    """Write a small random RGB image."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def tiny_coco(tmp_path: Path) -> Path:
    """A valid 3-image COCO dataset on disk (images beside the JSON under images/)."""
    from synspill import taxonomy

    images, anns = [], []
    for i in range(1, 4):
        make_image(tmp_path / "images" / f"im{i}.png", 64, 48, seed=i)
        images.append({"id": i, "file_name": f"images/im{i}.png", "width": 64, "height": 48})
        anns.append({"id": i, "image_id": i, "category_id": i, "bbox": [4.0, 5.0, 20.0, 10.0], "area": 200.0, "iscrowd": 0})
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": taxonomy.coco_categories()}))
    return path


@pytest.fixture
def wide_console():
    """A 300-column console, so that the tables a test reads keep their paths on one line."""
    from synspill.console import console

    old = console.width
    console.width = 300
    yield
    console.width = old
