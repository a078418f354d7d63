"""Procedural synthesis throughput: scenes + spills at 1024x1024, end to end, vs. the I/O floor.

End to end = ``run_scenes`` (render, JPEG-encode, write, manifest, scenes.json) followed by
``run_inpaint --propose`` (decode, propose 1-3 boxes, paint spills, encode, write, RLE masks,
manifest, annotations.json, contact sheet), both with the same process pool, pool start-up
included. Images per second = images / total wall time of both stages.

Baseline ("I/O floor", same run, same pool size): the JPEG work alone on pre-made frames --
encode + write a scene, read + decode it, encode + write it again -- i.e. what any pipeline
with these outputs must at least do.

Usage:
    PYTHONPATH=. python benchmarks/bench_synth.py [--n 200] [--workers 2] [--size 1024]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET = 10.0  # images/s (issue #3)


def _io_floor_batch(args: tuple[str, list[int], int]) -> int:
    import simplejpeg

    from synspill.synth.jobrunner import read_rgb, write_file_atomic

    out, idx, size = args
    frames = _frames(size)
    for i in idx:
        f = frames[i % len(frames)]
        p = Path(out) / f"{i:06d}.jpg"
        write_file_atomic(p, simplejpeg.encode_jpeg(f, quality=88, colorspace="RGB", colorsubsampling="420"))
        img = read_rgb(p)
        q = Path(out) / f"o{i:06d}.jpg"
        write_file_atomic(q, simplejpeg.encode_jpeg(img, quality=88, colorspace="RGB", colorsubsampling="420"))
    return len(idx)


_FR: dict[int, list[np.ndarray]] = {}


def _frames(size: int) -> list[np.ndarray]:
    if size not in _FR:  # realistic content (compresses like the real output), made once per worker
        from synspill.synth.base import SceneSpec
        from synspill.synth.procedural import ProceduralSceneBackend

        be = ProceduralSceneBackend()
        _FR[size] = [be.render(SceneSpec(seed=s, scene_type="", width=size, height=size))[0] for s in range(4)]
    return _FR[size]


def io_floor(n: int, workers: int, size: int, tmp: Path) -> float:
    import multiprocessing as mp

    out = tmp / "floor"
    out.mkdir()
    batches = [(str(out), list(range(i, min(n, i + 8))), size) for i in range(0, n, 8)]
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_frames, initargs=(size,)) as pool:
        pool.map(_io_floor_batch, batches[:workers])  # warm the frame bank, untimed (not I/O)
        t = time.perf_counter()
        sum(pool.imap_unordered(_io_floor_batch, batches))
        return time.perf_counter() - t


def end_to_end(n: int, workers: int, size: int, tmp: Path) -> tuple[float, float, int]:
    from synspill.synth.inpaint import InpaintJob, run_inpaint
    from synspill.synth.scenes import ScenesJob, run_scenes

    t0 = time.perf_counter()
    run_scenes(ScenesJob(out=tmp / "scenes", n=n, seed=0, width=size, height=size, workers=workers, batch_size=8))
    t1 = time.perf_counter()
    run_inpaint(InpaintJob(scenes=tmp / "scenes", out=tmp / "inp", propose=True, per_image=(1, 3), seed=0,
                                     workers=workers, batch_size=8))
    t2 = time.perf_counter()
    import json

    n_ann = len(json.loads((tmp / "inp" / "annotations.json").read_text())["annotations"])
    return t1 - t0, t2 - t1, n_ann


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=1024)
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"cpus={os.cpu_count()} workers={a.workers} n={a.n} size={a.size} load-avg before={os.getloadavg()[0]:.2f}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    try:
        t_floor = io_floor(a.n, a.workers, a.size, tmp)
        t_sc, t_in, n_ann = end_to_end(a.n, a.workers, a.size, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = t_sc + t_in
    rate, floor = a.n / total, a.n / t_floor
    print(f"baseline  I/O floor (encode+write, decode, encode+write): {floor:7.2f} images/s")
    print(f"stage     scenes : {a.n / t_sc:7.2f} images/s ({t_sc:.1f} s)")
    print(f"stage     inpaint: {a.n / t_in:7.2f} images/s ({t_in:.1f} s, {n_ann} spills)")
    print(f"end to end       : {rate:7.2f} images/s = {rate / TARGET:.2f}x the {TARGET:.0f} images/s target, "
          f"{rate / floor:.2f}x the I/O floor")
    print(f"load-avg after={os.getloadavg()[0]:.2f} (the machine is shared; a load above {os.cpu_count()} means other work competed)")


if __name__ == "__main__":
    main()
