"""Image decoding throughput of ``predict``'s loader: several threads against one (same run).

``iter_predictions`` decodes the next batch while the model works on the current one. With
one decoding thread (the loader before ``--workers``), a fast model (a GPU) waits on JPEG
decoding of large frames; the default is one thread per core, up to 8. This measures the
loader's ceiling with a model that costs nothing: images per second of
``iter_predictions`` over JPEGs written for the purpose (photo-like content: smooth colour
fields with noise, so they compress like camera frames), ``--workers 1`` against the default,
interleaved repeats, median reported.

Usage:
    python benchmarks/bench_predict_io.py [--n 96] [--size 1024] [--batch 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


class Nothing:
    """A predictor that costs nothing: the loader alone sets the pace."""

    name = "nothing"

    def predict(self, images: list[np.ndarray]) -> list:
        from synspill.detections import Detections

        return [Detections.empty() for _ in images]


def make_images(folder: Path, n: int, size: int) -> None:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.int16)
        img += rng.integers(-12, 13, img.shape, dtype=np.int16)
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])


def run(folder: Path, batch: int, workers: int | None) -> float:
    from synspill.inference import image_source, iter_predictions

    ds, _ = image_source(folder)
    t = time.perf_counter()
    n = sum(1 for _ in iter_predictions(Nothing(), ds, batch, workers=workers))  # type: ignore[arg-type]
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    from synspill.inference import decode_workers

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        make_images(folder, a.n, a.size)
        run(folder, a.batch, 1)  # warm the page cache and imports
        one, many = [], []
        for _ in range(a.repeats):
            one.append(run(folder, a.batch, 1))
            many.append(run(folder, a.batch, None))
    m1, mn = statistics.median(one), statistics.median(many)
    print(f"{a.n} JPEGs of {a.size}x{a.size}, batch {a.batch}, median of {a.repeats}")
    print(f"1 decoding thread (baseline): {m1:7.1f} images/s")
    print(f"{decode_workers():d} decoding threads (default): {mn:7.1f} images/s  ->  {mn / m1:.2f}x")


if __name__ == "__main__":
    main()
