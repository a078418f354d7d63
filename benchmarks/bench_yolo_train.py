"""YOLO training speed on a CPU: channels-last (synspill's default there) vs ultralytics' NCHW.

``synspill finetune yolo`` converts the model to channels-last (NHWC) on a CPU; ultralytics
does so only on CUDA. Both arms run ``synspill.detectors.yolo.train`` on the same procedural
dataset, same seed, same settings, interleaved, best of ``--repeat``; the baseline passes
``--option channels_last=False`` (ultralytics' own CPU behaviour). Reported: seconds per
epoch (ultralytics' results.csv, validation off) and the ratio baseline / ours.

    OMP_NUM_THREADS=2 python benchmarks/bench_yolo_train.py [--images 400] [--imgsz 160] [--epochs 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_data(root: Path, n: int, size: int) -> Path:
    from synspill.synth.inpaint import InpaintJob, run_inpaint
    from synspill.synth.scenes import ScenesJob, run_scenes

    run_scenes(ScenesJob(out=root / "scenes", n=n, seed=0, width=size, height=size, workers=2))
    ann = run_inpaint(InpaintJob(scenes=root / "scenes", out=root / "data", propose=True, per_image=(2, 4),
                                           spill_scale=6.0, min_box=0.08, feather=6.0, opacity=1.0, workers=2))
    assert ann is not None
    return Path(ann)


def epoch_seconds(run: Path) -> float:
    """Seconds of the last epoch from ultralytics' cumulative ``time`` column."""
    rows = list(csv.DictReader(open(run / "results.csv")))
    t = [float(r["time"]) for r in rows]
    return t[-1] - t[-2] if len(t) > 1 else t[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per run; the last one is timed (the first warms up)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    from synspill.detectors import yolo

    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp), args.images, args.imgsz)
        best: dict[str, float] = {}
        for r in range(args.repeat):
            for arm, extra in (("channels-last (synspill)", {}), ("NCHW (ultralytics on CPU)", {"channels_last": False})):
                run = Path(tmp) / f"run{r}-{len(best)}-{arm[:4]}"
                yolo.train(yolo.YoloTrainConfig(data=str(data), out=str(run), epochs=args.epochs, imgsz=args.imgsz,
                                                batch=args.batch, device="cpu", workers=2,
                                                options={"val": False, "plots": False, "nbs": args.batch, **extra}))
                s = epoch_seconds(run)
                best[arm] = min(best.get(arm, s), s)
                print(f"  repeat {r}: {arm:28s} {s:6.2f} s/epoch", flush=True)
    ours, base = best["channels-last (synspill)"], best["NCHW (ultralytics on CPU)"]
    n_train = round(args.images * 0.8)
    print(f"\nYOLO11n from scratch, {n_train} train images at {args.imgsz} px, batch {args.batch}, "
          f"{os.environ.get('OMP_NUM_THREADS', 'all')} threads (best of {args.repeat}):")
    print(f"  NCHW (baseline)  {base:6.2f} s/epoch  {n_train / base:6.1f} img/s")
    print(f"  channels-last    {ours:6.2f} s/epoch  {n_train / ours:6.1f} img/s")
    print(f"  speed-up: {base / ours:.2f}x")


if __name__ == "__main__":
    main()
