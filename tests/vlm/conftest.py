"""Fixtures of the VLM tests: a tiny random Qwen2.5-VL saved to disk once per session, and a
small COCO set whose images differ in colour (so ``similar`` selection has something to see)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

#: Pixel budget used throughout the VLM tests: 56x56 inputs -> 4 image tokens.
PX = 56 * 56


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder with a tiny random Qwen2.5-VL + tokenizer + processor (loaded via from_pretrained)."""
    import torch

    torch.set_num_threads(1)
    from tests.vlm.tiny import build_tiny_qwen25vl

    return str(build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny_qwen25vl")))


def make_coco(root: Path, n: int = 4, sizes: tuple[tuple[int, int], ...] = ((64, 48), (90, 60)), name: str = "ann.json") -> Path:
    """A COCO set of ``n`` solid-colour-ish images, one box each, classes alternating 1/2."""
    from PIL import Image

    from synspill import taxonomy

    (root / "images").mkdir(parents=True, exist_ok=True)
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (200, 30, 200)]
    images, anns = [], []
    for i in range(1, n + 1):
        w, h = sizes[(i - 1) % len(sizes)]
        rng = np.random.default_rng(i)
        arr = np.clip(np.array(colours[(i - 1) % len(colours)]) + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(root / "images" / f"im{i}.png")
        images.append({"id": i, "file_name": f"images/im{i}.png", "width": w, "height": h})
        anns.append({"id": i, "image_id": i, "category_id": 1 + (i - 1) % 2, "bbox": [8.0, 6.0, 30.0, 20.0], "area": 600.0, "iscrowd": 0})
    path = root / name
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": taxonomy.coco_categories()}))
    return path


@pytest.fixture
def vlm_coco(tmp_path: Path) -> Path:
    return make_coco(tmp_path)
