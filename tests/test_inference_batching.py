"""A folder of mixed image sizes is predicted with images of one size side by side (full
batches, mostly of one shape), and the results do not depend on the grouping (they are
written in dataset order, as one image at a time gives)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from synspill.inference import image_source, iter_predictions, predict_to_results
from tests.watch.blobs import DarkBlobPredictor

SIZES = [(64, 48), (32, 32), (64, 48), (32, 32), (48, 64), (64, 48)]  # (w, h) in dataset order


class Recording(DarkBlobPredictor):
    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[list[tuple[int, int]]] = []

    def predict(self, images):
        self.shapes.append([(a.shape[1], a.shape[0]) for a in images])
        return super().predict(images)


def _folder(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(3)
    for i, (w, h) in enumerate(SIZES):
        a = np.full((h, w, 3), 200, np.uint8)
        y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
        a[y:y + h // 3, x:x + w // 3] = 20  # one dark blob per image
        Image.fromarray(a).save(d / f"{i:02d}.png")
    return d


def test_images_of_one_size_are_batched_side_by_side(tmp_path):
    ds, _ = image_source(_folder(tmp_path))
    p = Recording()
    order = [im.id for im, _, _ in iter_predictions(p, ds, batch=2, workers=1)]
    # dataset order would give [A, B], [A, B], [C, A]: three batches of two shapes
    assert p.shapes == [[(64, 48), (64, 48)], [(64, 48), (32, 32)], [(32, 32), (48, 64)]]
    assert order == [1, 3, 6, 2, 4, 5]  # sizes by first appearance, dataset order within a size


def test_grouping_does_not_change_the_results(tmp_path):
    folder = _folder(tmp_path)
    one = predict_to_results(DarkBlobPredictor(), folder, tmp_path / "one.json", batch=1).results
    grouped = predict_to_results(DarkBlobPredictor(), folder, tmp_path / "grouped.json", batch=4).results
    assert one.read_bytes() == grouped.read_bytes()
    ids = [r["image_id"] for r in json.loads(grouped.read_text())]
    assert ids == sorted(ids) and len(set(ids)) == len(SIZES)  # dataset order, every image found
