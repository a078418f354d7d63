"""YOLO training and inference speed on a CPU, each against a named baseline in the same run.

Three comparisons, all through ``synspill.detectors.yolo.train`` on the same procedural
dataset, same seed, same settings, arms interleaved, best of ``--repeat``; seconds per
epoch come from ultralytics' ``results.csv`` (validation off):

1. ``--compare detectors``: the pretrained-backbone detector ``lite0`` (EfficientNet-Lite0,
   ImageNet, frozen) and ``lite0`` unfrozen, against YOLO11n from scratch (the baseline):
   seconds per training epoch and images/s at inference (``synspill predict``'s predictor,
   batch 8, after a warm-up);
2. ``--compare threads``: all the cores this process may use (synspill's default) against
   one thread (what ultralytics gives a 2-core machine: ``cores - 1``);
3. ``--compare layout``: channels-last (synspill's default on a CPU) against ultralytics'
   NCHW (``--option channels_last=False``).

    python benchmarks/bench_yolo_train.py --compare detectors [--images 400] [--imgsz 160] [--epochs 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_data(root: Path, n: int, size: int) -> Path:
    from synspill.synth.inpaint import InpaintJob, run_inpaint
    from synspill.synth.scenes import ScenesJob, run_scenes

    run_scenes(ScenesJob(out=root / "scenes", n=n, seed=0, width=size, height=size, workers=2))
    ann = run_inpaint(InpaintJob(scenes=root / "scenes", out=root / "data", propose=True, per_image=(1, 3),
                                 spill_scale=2.0, min_box=0.08, feather=6.0, opacity=1.0, workers=2))
    assert ann is not None
    return Path(ann)


def epoch_seconds(run: Path) -> float:
    """Seconds of the last epoch from ultralytics' cumulative ``time`` column (of the last phase)."""
    if (run / "unfrozen" / "results.csv").exists():
        run = run / "unfrozen"
    rows = list(csv.DictReader(open(run / "results.csv")))
    t = [float(r["time"]) for r in rows]
    return t[-1] - t[-2] if len(t) > 1 else t[-1]


def inference_rate(run: Path, data: Path, imgsz: int, n: int = 64) -> float:
    """Images per second of the run's predictor on ``n`` dataset images (batch 8, warmed up)."""
    from synspill.coco.dataset import load_coco
    from synspill.inference import read_rgb
    from synspill.models import PredictorConfig
    from synspill.predictors import load_predictor

    ds = load_coco(data)
    imgs = [read_rgb(ds.image_path(im)) for im in ds.images[:n]]
    pred = load_predictor(PredictorConfig(model=str(run), device="cpu", imgsz=imgsz, batch=8))
    pred.predict(imgs[:8])
    t = time.perf_counter()
    for i in range(0, len(imgs), 8):
        pred.predict(imgs[i:i + 8])
    return len(imgs) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compare", choices=("detectors", "threads", "layout"), default="detectors")
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per run; the last one is timed (the first warms up)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    from synspill import runtime
    from synspill.detectors import yolo

    base_opts = {"val": False, "plots": False, "nbs": args.batch}
    arms: dict[str, dict[str, Any]]
    if args.compare == "detectors":
        arms = {"yolo11n from scratch (baseline)": {"model": "yolo11n"},
                "lite0, backbone frozen": {"model": "lite0"},
                "lite0, backbone unfrozen": {"model": "lite0", "epochs": 1, "unfreeze_epochs": args.epochs}}
    elif args.compare == "threads":
        cores = runtime.available_cpus()
        arms = {"1 thread (ultralytics on 2 cores; baseline)": {"threads": 1},
                f"{cores} threads (synspill: every core available)": {"threads": cores}}
    else:
        arms = {"NCHW (ultralytics on CPU; baseline)": {"options": {"channels_last": False}},
                "channels-last (synspill)": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp), args.images, args.imgsz)
        best: dict[str, float] = {}
        rate: dict[str, float] = {}
        for r in range(args.repeat):
            for k, (arm, spec) in enumerate(arms.items()):
                run = Path(tmp) / f"run{r}-{k}"
                runtime.set_threads(spec.get("threads"))
                cfg = yolo.YoloTrainConfig(data=str(data), out=str(run), epochs=spec.get("epochs", args.epochs),
                                           imgsz=args.imgsz, batch=args.batch, device="cpu", workers=0,
                                           model=spec.get("model", "yolo11n"), unfreeze_epochs=spec.get("unfreeze_epochs", 0),
                                           options={**base_opts, **spec.get("options", {})})
                yolo.train(cfg)
                s = epoch_seconds(run)
                best[arm] = min(best.get(arm, s), s)
                if args.compare == "detectors":
                    rate[arm] = max(rate.get(arm, 0.0), inference_rate(run, data, args.imgsz))
                print(f"  repeat {r}: {arm:45s} {s:6.2f} s/epoch" + (f"  {rate[arm]:6.1f} img/s inference" if rate else ""),
                      flush=True)
        runtime.set_threads(None)
    n_train = round(args.images * 0.8)
    base_arm = next(iter(arms))
    print(f"\n{args.compare}: {n_train} train images at {args.imgsz} px, batch {args.batch}, "
          f"{os.cpu_count()} cores, best of {args.repeat} ({time.strftime('%Y-%m-%d')}):")
    for arm in arms:
        extra = f"  inference {rate[arm]:6.1f} img/s ({rate[arm] / rate[base_arm]:.2f}x)" if rate else ""
        print(f"  {arm:45s} {best[arm]:6.2f} s/epoch ({best[base_arm] / best[arm]:.2f}x the baseline's speed){extra}")


if __name__ == "__main__":
    main()
