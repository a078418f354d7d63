"""Benchmark: ``synspill eval`` metrics vs faster-coco-eval and pycocotools.

Data: random but realistic -- 5,000 images (1280x720), about 3 ground-truth boxes per
image over 8 classes, predictions = jittered copies of most ground-truth boxes (some with
the wrong class, some duplicated) plus low-scoring false positives, about 60,000 in all.

Measured in the same run, from the same in-memory COCO dict and results list:

* synspill: ``GroundTruth.from_dict`` + ``Predictions.from_records`` + ``evaluate``
  -> mAP@50, mAP@50:95 **and** the full hit-rate / precision / FP-per-image sweep at
  IoU 0.5:0.9:0.1;
* faster-coco-eval: ``COCO`` + ``loadRes`` + ``COCOeval_faster`` evaluate/accumulate/
  summarize -> mAP only (the baseline; the target is ratio <= 1);
* pycocotools: the same with ``COCOeval`` (reference; single run, it is slow).

Also times the same pipelines from JSON files on disk (synspill: ``load_coco`` with full
validation + ``read_results`` with per-record validation).

Run:  PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_eval.py [--images 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synspill.metrics import GroundTruth, Predictions, evaluate  # noqa: E402

W, H, N_CLASSES = 1280, 720, 8


def make_data(n_images: int = 5000, seed: int = 0, fp_per_image: float = 8.6) -> tuple[dict, list[dict]]:
    """A COCO ground-truth dict and a results list (see module docstring)."""
    rng = np.random.default_rng(seed)
    images, anns, res = [], [], []
    aid = 1
    for i in range(1, n_images + 1):
        images.append({"id": i, "file_name": f"frame_{i:05d}.jpg", "width": W, "height": H})
        for _ in range(rng.poisson(3.0)):
            w = float(rng.uniform(20, 400))
            h = float(rng.uniform(20, 300))
            x, y = float(rng.uniform(0, W - w)), float(rng.uniform(0, H - h))
            c = int(rng.integers(1, N_CLASSES + 1))
            anns.append({"id": aid, "image_id": i, "category_id": c, "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                         "area": round(w * h, 2), "iscrowd": 0})
            aid += 1
            for dup in range(1 + int(rng.random() < 0.25)):  # some NMS leftovers
                if rng.random() > 0.88:
                    continue
                jx, jy = rng.normal(0, 0.08, 2) * (w, h)
                sw, sh = np.exp(rng.normal(0, 0.12, 2))
                cc = c if rng.random() < 0.9 else int(rng.integers(1, N_CLASSES + 1))
                s = float(np.clip(rng.beta(5, 2) - 0.2 * dup, 0.01, 1.0))
                res.append({"image_id": i, "category_id": cc,
                            "bbox": [round(x + jx, 2), round(y + jy, 2), round(w * sw, 2), round(h * sh, 2)], "score": round(s, 4)})
        for _ in range(rng.poisson(fp_per_image)):
            w = float(rng.uniform(10, 300))
            h = float(rng.uniform(10, 250))
            res.append({"image_id": i, "category_id": int(rng.integers(1, N_CLASSES + 1)),
                        "bbox": [round(float(rng.uniform(0, W - w)), 2), round(float(rng.uniform(0, H - h)), 2), round(w, 2), round(h, 2)],
                        "score": round(float(rng.beta(1.2, 6)), 4)})
    cats = [{"id": c, "name": f"class-{c}", "supercategory": "spill"} for c in range(1, N_CLASSES + 1)]
    return {"images": images, "annotations": anns, "categories": cats}, res


def run_synspill(gt: dict, res: list[dict]) -> tuple[float, float]:
    m = evaluate(GroundTruth.from_dict(gt), Predictions.from_records(res), iou_thresholds="0.5:0.9:0.1")
    return m.map50_95, m.map50


def run_synspill_files(gt_path: Path, res_path: Path) -> tuple[float, float]:
    from synspill.coco.dataset import load_coco
    from synspill.detections import read_results

    ds = load_coco(gt_path)
    g = GroundTruth.from_dataset(ds, str(gt_path))
    recs = read_results(res_path, {im.id for im in ds.images}, {c.id for c in ds.categories})
    m = evaluate(g, Predictions.from_records(recs, str(res_path)), iou_thresholds="0.5:0.9:0.1")
    return m.map50_95, m.map50


def run_fce(gt: dict | str, res: list[dict] | str) -> tuple[float, float]:
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO(gt)
        d = g.loadRes(res)
        e = COCOeval_faster(g, d, "bbox", print_function=lambda *a, **k: None)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return float(e.stats[0]), float(e.stats[1])


def run_pycocotools(gt: dict | str, res: list[dict] | str) -> tuple[float, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        if isinstance(gt, dict):
            g = COCO()
            g.dataset = gt
            g.createIndex()
        else:
            g = COCO(gt)
        d = g.loadRes(res)
        e = COCOeval(g, d, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return float(e.stats[0]), float(e.stats[1])


def timed(fn, *args, fresh: bool = False, repeat: int = 1) -> tuple[list[float], tuple[float, float]]:
    """Run ``fn`` ``repeat`` times (fresh deep copies of dict/list args outside the timer)."""
    times, out = [], (float("nan"), float("nan"))
    for _ in range(repeat):
        a = copy.deepcopy(args) if fresh else args
        t = time.perf_counter()
        out = fn(*a)
        times.append(time.perf_counter() - t)
    return times, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5, help="runs of synspill and faster-coco-eval (median reported)")
    ap.add_argument("--no-pycocotools", action="store_true")
    args = ap.parse_args()

    gt, res = make_data(args.images)
    print(f"data: {len(gt['images'])} images, {len(gt['annotations'])} GT boxes, {len(res)} detections, {N_CLASSES} classes")

    # Interleave the runs so that load on a shared machine hits both alike.
    t_syn: list[float] = []
    t_fce: list[float] = []
    for _ in range(args.repeat):
        t, syn = timed(run_synspill, gt, res)
        t_syn += t
        t, fce = timed(run_fce, gt, res, fresh=True)
        t_fce += t
    rows = [("synspill (mAP + hit-rate sweep 0.5:0.9:0.1)", t_syn, syn), ("faster-coco-eval (mAP only)", t_fce, fce)]
    if not args.no_pycocotools:
        t, pyc = timed(run_pycocotools, gt, res, fresh=True)
        rows.append(("pycocotools (mAP only)", t, pyc))

    base = statistics.median(t_fce)
    print("\nin memory (COCO dict + results list -> metrics), median of runs:")
    print(f"{'pipeline':48s} {'time [s]':>9s} {'vs fce':>7s}  {'mAP@50:95':>10s} {'mAP@50':>8s}")
    for name, t, (m, m50) in rows:
        med = statistics.median(t)
        print(f"{name:48s} {med:9.3f} {med / base:7.2f}  {m:10.6f} {m50:8.6f}")
    same = abs(syn[0] - fce[0]) < 1e-9 and abs(syn[1] - fce[1]) < 1e-9
    print(f"\nratio synspill / faster-coco-eval = {statistics.median(t_syn) / base:.2f} (target <= 1.00); "
          f"mAP equal to faster-coco-eval: {same}")
    if not args.no_pycocotools:
        print(f"ratio pycocotools / faster-coco-eval = {statistics.median(rows[2][1]) / base:.2f}; "
              f"synspill mAP equal to pycocotools (1e-9): {abs(syn[0] - pyc[0]) < 1e-9 and abs(syn[1] - pyc[1]) < 1e-9}")

    with tempfile.TemporaryDirectory() as d:
        gp, rp = Path(d) / "gt.json", Path(d) / "pred.json"
        gp.write_text(json.dumps(gt))
        rp.write_text(json.dumps(res))
        tf_syn, tf_fce = [], []
        for _ in range(max(1, args.repeat // 2)):
            tf_syn += timed(run_synspill_files, gp, rp)[0]
            tf_fce += timed(run_fce, str(gp), str(rp))[0]
        print("\nfrom JSON files (synspill validates every record), median of runs:")
        print(f"{'synspill (validated load + full sweep)':48s} {statistics.median(tf_syn):9.3f} {statistics.median(tf_syn) / statistics.median(tf_fce):7.2f}")
        print(f"{'faster-coco-eval (mAP only)':48s} {statistics.median(tf_fce):9.3f} {1.0:7.2f}")


if __name__ == "__main__":
    main()
