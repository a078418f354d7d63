"""Benchmark the COCO data tools (not a test; prints timings and ratios).

1. ``annotate-import`` of a YOLO dataset (N images, ~12 boxes each) through
   :func:`synspill.coco.importers.import_annotations`, against supervision's
   ``DetectionDataset.from_yolo`` loading the same folder (baseline, same run).
2. :func:`synspill.coco.tools.split` (iterative stratification) on a multi-label dataset
   of M images, against a plain seeded random split (baseline).

Usage: ``python benchmarks/bench_coco.py [--images 2000] [--split-images 50000]``
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synspill.coco.dataset import Annotation, CocoDataset, ImageRecord  # noqa: E402
from synspill.coco.importers import import_annotations  # noqa: E402
from synspill.coco.tools import split, subset  # noqa: E402


def make_yolo(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "data.yaml").write_text("names:\n  0: oil\n  1: water\n  2: rust\n")
    img = Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    img.save(root / "images" / "im0.jpg", quality=80)
    data = (root / "images" / "im0.jpg").read_bytes()
    for i in range(n):
        if i:
            (root / "images" / f"im{i}.jpg").write_bytes(data)
        k = int(rng.integers(6, 18))
        c = rng.uniform(0.2, 0.8, (k, 2))
        wh = rng.uniform(0.02, 0.3, (k, 2))
        cls = rng.integers(0, 3, k)
        (root / "labels" / f"im{i}.txt").write_text("".join(f"{a} {x:.5f} {y:.5f} {w:.5f} {h:.5f}\n" for a, (x, y), (w, h) in zip(cls, c, wh, strict=True)))


def timed(fn, repeat: int = 2) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_import(n: int) -> None:
    import supervision as sv

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        make_yolo(root, n)
        t_ours, res = timed(lambda: import_annotations([root / "labels"], images=root / "images"))
        t_sv, ds = timed(lambda: sv.DetectionDataset.from_yolo(str(root / "images"), str(root / "labels"), str(root / "data.yaml")))
        boxes_sv = sum(len(ds[i][2]) for i in range(len(ds)))  # type: ignore[index]
    print(f"import {n} YOLO images ({res.report.imported} boxes; supervision {boxes_sv}):")  # type: ignore[union-attr]
    print(f"  synspill import_annotations  {t_ours:7.3f} s")
    print(f"  supervision from_yolo        {t_sv:7.3f} s  (baseline)")
    print(f"  ratio synspill / baseline    {t_ours / t_sv:7.2f}")


def bench_split(m: int) -> None:
    rng = random.Random(0)
    P = {1: 0.45, 2: 0.3, 3: 0.15, 4: 0.1, 5: 0.06, 6: 0.04, 7: 0.03, 8: 0.02}
    ds = CocoDataset()
    for i in range(1, m + 1):
        ds.images.append(ImageRecord(i, f"{i}.jpg", 100, 100))
        for c, p in P.items():
            if rng.random() < p:
                ds.annotations.append(Annotation(len(ds.annotations) + 1, i, c, [1, 1, 5, 5]))

    def rand_split():
        ids = [im.id for im in ds.images]
        random.Random(0).shuffle(ids)
        a, b = int(0.8 * m), int(0.9 * m)
        return [subset(ds, ids[:a]), subset(ds, ids[a:b]), subset(ds, ids[b:])]

    t_ours, _ = timed(lambda: split(ds, (0.8, 0.1, 0.1), seed=0), repeat=1)
    t_rand, _ = timed(rand_split, repeat=1)
    print(f"split {m} images ({len(ds.annotations)} boxes), 0.8/0.1/0.1:")
    print(f"  stratified split             {t_ours:7.3f} s")
    print(f"  random split (baseline)      {t_rand:7.3f} s")
    print(f"  ratio stratified / random    {t_ours / t_rand:7.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--split-images", type=int, default=50000)
    a = ap.parse_args()
    bench_import(a.images)
    bench_split(a.split_images)
