"""Procedural synthesis throughput, end to end, this checkout against the renderer before
the physically based rewrite (same run, same machine, same pool size).

End to end = ``run_scenes`` (render, JPEG-encode, write, manifest, scenes.json) followed by
``run_inpaint --propose`` (decode, propose 1-3 boxes, pour/paint spills, encode, write, RLE
masks, manifest, annotations.json, contact sheet), pool start-up included. Images per second
= images / total wall time of both stages.

Baseline ("before"): the same two stages from git revision ``--baseline`` (default
``aa9ba42``: painted blobs on plant rooms), checked out into a temporary worktree and run in
a subprocess, interleaved with this checkout's runs. Sizes: 1024x1024 (the paper's) and the
demo's 160x160.

Usage:
    python benchmarks/bench_synth.py [--n 100] [--workers 2] [--sizes 1024,160] [--baseline aa9ba42]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs in a subprocess with PYTHONPATH set to the checkout under test; handles both the
# current API (synspill.synth.scenes / .inpaint) and the one before the jobs split (synth.jobs).
CHILD = r"""
import json, sys, time
from pathlib import Path
n, workers, size, tmp = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
try:
    from synspill.synth.scenes import ScenesJob, run_scenes
    from synspill.synth.inpaint import InpaintJob, run_inpaint
except ImportError:
    from synspill.synth.jobs import ScenesJob, run_scenes, InpaintJob, run_inpaint
t0 = time.perf_counter()
run_scenes(ScenesJob(out=tmp / "scenes", n=n, seed=0, width=size, height=size, workers=workers, batch_size=8))
t1 = time.perf_counter()
run_inpaint(InpaintJob(scenes=tmp / "scenes", out=tmp / "inp", propose=True, per_image=(1, 3), seed=0, workers=workers,
                       batch_size=8))
t2 = time.perf_counter()
n_ann = len(json.loads((tmp / "inp" / "annotations.json").read_text())["annotations"])
import synspill
print(json.dumps({"scenes_s": t1 - t0, "inpaint_s": t2 - t1, "spills": n_ann, "module": synspill.__file__}))
"""


def run(checkout: Path, n: int, workers: int, size: int, tmp: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    # run in the checkout: `python -c` puts the working directory first on sys.path, so from anywhere
    # else both arms would import whichever synspill that directory holds
    out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(workers), str(size), str(tmp)], env=env, cwd=checkout,
                         capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(res["module"]).resolve().is_relative_to(checkout.resolve()):
        raise SystemExit(f"the {checkout} arm imported synspill from {res['module']}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sizes", default="1024,160")
    ap.add_argument("--baseline", default="aa9ba42", help="git revision of the 'before' renderer")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    print(f"cpus={os.cpu_count()} workers={a.workers} n={a.n} sizes={sizes} baseline={a.baseline} "
          f"load-avg before={os.getloadavg()[0]:.2f}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    base = tmp / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), a.baseline], check=True,
                   capture_output=True)
    try:
        for size in sizes:
            best: dict[str, dict[str, float]] = {}
            for r in range(a.repeat):
                for arm, checkout in (("before", base), ("after", ROOT)):
                    work = tmp / f"{arm}-{size}-{r}"
                    res = run(checkout, a.n, a.workers, size, work)
                    shutil.rmtree(work, ignore_errors=True)
                    total = res["scenes_s"] + res["inpaint_s"]
                    if arm not in best or total < best[arm]["scenes_s"] + best[arm]["inpaint_s"]:
                        best[arm] = res
            print(f"\n{size}x{size}, {a.n} images, {a.workers} workers (best of {a.repeat}):")
            rates = {}
            for arm in ("before", "after"):
                b = best[arm]
                rates[arm] = a.n / (b["scenes_s"] + b["inpaint_s"])
                print(f"  {arm:6s} scenes {a.n / b['scenes_s']:6.2f} img/s, spills {a.n / b['inpaint_s']:6.2f} img/s "
                      f"({b['spills']} spills), end to end {rates[arm]:6.2f} img/s")
            print(f"  after / before: {rates['after'] / rates['before']:.2f}x")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load-avg after={os.getloadavg()[0]:.2f} (the machine is shared; a load above {os.cpu_count()} means other work competed); "
          f"{time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
