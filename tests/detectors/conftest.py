"""Tiny detection data made on the fly: dark blobs on a plain, slightly noisy floor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def make_blobs(root: Path, n: int, size: int = 96, seed: int = 0, name: str = "annotations.json",
               negatives: int = 0) -> Path:
    """Write ``n`` images with one dark blob each (class oil-spill) plus ``negatives`` empty floors.

    Returns the COCO file; boxes are COCO ``xywh`` absolute, tight around the blob.
    """
    from PIL import Image

    from synspill import taxonomy

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n + negatives):
        floor = rng.integers(150, 210)
        a = np.clip(floor + rng.normal(0, 6, (size, size, 3)), 0, 255)
        if i < n:
            w, h = rng.integers(size // 5, size // 2, 2)
            x, y = rng.integers(0, size - w), rng.integers(0, size - h)
            cx, cy = x + w / 2, y + h / 2
            inside = ((xx - cx + 0.5) / (w / 2)) ** 2 + ((yy - cy + 0.5) / (h / 2)) ** 2 <= 1.0
            a[inside] = rng.integers(15, 45)
            ys, xs = np.nonzero(inside)
            bx, by = int(xs.min()), int(ys.min())
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1,
                         "bbox": [bx, by, int(xs.max()) + 1 - bx, int(ys.max()) + 1 - by], "iscrowd": 0})
        fn = f"images/b{seed}_{i}.png"
        Image.fromarray(a.astype(np.uint8)).save(root / fn)
        images.append({"id": i + 1, "file_name": fn, "width": size, "height": size})
    path = root / name
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": taxonomy.coco_categories()}))
    return path


@pytest.fixture
def blobs(tmp_path: Path) -> Path:
    """A 12-image blob dataset (10 with a blob, 2 empty floors)."""
    return make_blobs(tmp_path / "blobs", 10, negatives=2)
