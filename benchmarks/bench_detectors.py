"""Detector benchmarks (CPU): wrapper overhead of `synspill predict`, and COCO->YOLO export speed.

1. YOLO11n at 640: ``synspill.inference.predict_to_results`` over a folder of JPEGs through
   ``load_predictor`` (decode, batch, map classes, write COCO results) vs ultralytics'
   ``model.predict`` on the same file paths, same batch, same conf, in the same run.
   Target: ours within 10 % (ratio <= 1.10).
2. RF-DETR Nano at its default 384: the same wrapper vs rfdetr's own ``model.predict`` on the
   same paths and batches. Target: within 10 %.
3. COCO->YOLO export of 10,000 images with 3 boxes each (hard links). Target: < 5 s; the
   baseline is copying the same image files (what a naive exporter does).

Random-init weights (throughput does not depend on them). Runs are interleaved and the
best of ``--repeat`` is kept, so other load on the machine hurts both sides alike.

    OMP_NUM_THREADS=2 python benchmarks/bench_detectors.py [--images 32] [--repeat 3] [--skip-detr]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_images(folder: Path, n: int, w: int = 640, h: int = 480) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        a = np.clip(rng.normal(170, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        y, x = rng.integers(0, h - 100), rng.integers(0, w - 160)
        a[y:y + 80, x:x + 140] = 30
        p = folder / f"img{i:04d}.jpg"
        Image.fromarray(a).save(p, quality=90)
        paths.append(p)
    return paths


def best_of(fns: dict[str, callable], repeat: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():  # interleaved
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: min(v) for k, v in times.items()}


def bench_yolo(tmp: Path, paths: list[Path], repeat: int, batch: int) -> None:
    import torch

    from synspill import taxonomy
    from synspill.detectors.yolo import _import_ultralytics
    from synspill.inference import predict_to_results
    from synspill.predictors import PredictorConfig, load_predictor

    _import_ultralytics()
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    m = YOLO("yolo11n.yaml")
    m.model = DetectionModel("yolo11n.yaml", nc=8, verbose=False)
    m.model.names = dict(enumerate(taxonomy.NAMES))
    weights = tmp / "yolo11n-random.pt"
    m.save(weights)

    pred = load_predictor(PredictorConfig(model=str(weights), device="cpu", imgsz=640, conf=0.001, batch=batch))
    ref = YOLO(str(weights))
    strs = [str(p) for p in paths]

    def ours() -> None:
        predict_to_results(pred, paths[0].parent, tmp / "yolo-preds.json", batch=batch)

    def direct() -> None:
        for r in ref.predict(strs, imgsz=640, conf=0.001, batch=batch, device="cpu", verbose=False, stream=True):
            _ = (r.boxes.xyxy.cpu().numpy(), r.boxes.cls.cpu().numpy(), r.boxes.conf.cpu().numpy())

    ours(), direct()  # warm-up (model fuse, predictor set-up)
    t = best_of({"synspill predict": ours, "ultralytics direct": direct}, repeat)
    n = len(paths)
    print(f"YOLO11n @640, {n} images, batch {batch}: synspill {n / t['synspill predict']:.2f} img/s, "
          f"ultralytics {n / t['ultralytics direct']:.2f} img/s, ratio (ours/direct time) "
          f"{t['synspill predict'] / t['ultralytics direct']:.3f}  (target <= 1.10)")


def bench_detr(tmp: Path, paths: list[Path], repeat: int, batch: int) -> None:
    import logging

    import torch
    from rfdetr import RFDETRNano

    from synspill import taxonomy
    from synspill.detectors.detr import DetrPredictor
    from synspill.inference import predict_to_results

    logging.getLogger("rf-detr").setLevel(logging.ERROR)
    torch.manual_seed(0)
    model = RFDETRNano(pretrain_weights=None, num_classes=8, device="cpu")
    model.model.class_names = list(taxonomy.NAMES)
    pred = DetrPredictor(model, Path("rfdetr-nano-random"), conf=0.001, batch=batch)
    strs = [str(p) for p in paths]

    def ours() -> None:
        predict_to_results(pred, paths[0].parent, tmp / "detr-preds.json", batch=batch)

    def direct() -> None:
        for i in range(0, len(strs), batch):
            for d in model.predict(strs[i:i + batch], threshold=0.001):
                _ = (d.xyxy, d.class_id, d.confidence)

    ours(), direct()
    t = best_of({"synspill predict": ours, "rfdetr direct": direct}, repeat)
    n = len(paths)
    print(f"RF-DETR Nano @{model.model_config.resolution}, {n} images, batch {batch}: synspill {n / t['synspill predict']:.2f} img/s, "
          f"rfdetr {n / t['rfdetr direct']:.2f} img/s, ratio (ours/direct time) "
          f"{t['synspill predict'] / t['rfdetr direct']:.3f}  (target <= 1.10)")


def bench_export(tmp: Path, n: int = 10_000) -> None:
    from PIL import Image

    from synspill.coco.dataset import Annotation, CocoDataset, ImageRecord
    from synspill.coco.export import export_yolo, split_off_val

    root = tmp / "big"
    (root / "images").mkdir(parents=True)
    src = root / "src.jpg"
    Image.fromarray(np.full((480, 640, 3), 128, np.uint8)).save(src, quality=90)
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(1, n + 1):
        os.link(src, root / "images" / f"im{i:05d}.jpg")
        images.append(ImageRecord(i, f"images/im{i:05d}.jpg", 640, 480))
        for _ in range(3):
            x, y = rng.uniform(0, 500), rng.uniform(0, 380)
            anns.append(Annotation(len(anns) + 1, i, int(rng.integers(1, 9)), [x, y, 100.0, 80.0]))
    ds = CocoDataset(images, anns, root=root)
    train, val = split_off_val(ds, 0.1, seed=0)
    t = time.perf_counter()
    r = export_yolo({"train": train, "val": val}, tmp / "cache")
    first = time.perf_counter() - t
    t = time.perf_counter()
    again = export_yolo({"train": train, "val": val}, tmp / "cache")
    cached = time.perf_counter() - t
    assert again.cached
    dst = tmp / "copies"
    dst.mkdir()
    t = time.perf_counter()
    for im in images:
        shutil.copyfile(root / im.file_name, dst / Path(im.file_name).name)
    copy = time.perf_counter() - t
    print(f"COCO->YOLO export, {n} images / {len(anns)} boxes: {first:.2f} s ({r.link_mode}; target < 5 s), "
          f"re-run {cached:.2f} s (cache hit); copying the images alone takes {copy:.2f} s (ratio {first / copy:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-yolo", action="store_true")
    ap.add_argument("--skip-detr", action="store_true")
    ap.add_argument("--skip-export", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_detectors_") as d:
        tmp = Path(d)
        os.environ["SYNSPILL_CACHE"] = str(tmp / "synspill-cache")
        import torch

        print(f"torch threads: {torch.get_num_threads()}")
        if not args.skip_export:
            bench_export(tmp)
        paths = make_images(tmp / "imgs", args.images)
        if not args.skip_yolo:
            bench_yolo(tmp, paths, args.repeat, args.batch)
        if not args.skip_detr:
            bench_detr(tmp, paths, args.repeat, args.batch)


if __name__ == "__main__":
    main()
