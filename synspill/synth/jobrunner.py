"""The generic resumable job runner behind ``synspill scenes`` and ``synspill inpaint``.

A job turns a list of *items* (indices 0..N-1) into files under ``OUT``:

* ``OUT/images/NNNNNN.jpg`` -- written atomically (temp name + rename, :func:`write_file_atomic`);
* ``OUT/manifest.jsonl`` -- one JSON record per finished item (seed, backend, parameters,
  package versions ...), appended **only after** its image is on disk, flushed per record
  and fsynced per batch (:class:`ManifestWriter`);
* ``OUT/job.json`` -- the job's settings; a restart with different settings is refused
  (:func:`prepare_out`);
* at the end, from the manifest alone, whatever the job merges (:mod:`synspill.synth.scenes`:
  ``scenes.json``; :mod:`synspill.synth.inpaint`: ``annotations.json`` and a contact sheet).

**Resume.** A run killed at any point (``kill -9``, Ctrl-C, a crash in the backend) is
continued by running the same command again: records whose image file exists with the
recorded size are trusted and skipped; a torn last manifest line and stray temp files are
dropped; items without a record are re-made (same seed, same bytes).

**Several processes / GPUs.** ``shard=(i, n)`` (``--shard i/n``, or ``RANK`` /
``WORLD_SIZE`` as set by ``accelerate launch`` / ``torchrun``) makes a process take every
``n``-th item starting at ``i`` and append to its own ``manifest.{i}-of-{n}.jsonl``. When a
shard finishes it drops ``.done.{i}-of-{n}``; rank 0 waits for all shards and merges (or run
the command again with ``--merge-only``). Items, seeds and file names do not depend on
``n``, so a sharded run produces the same dataset as a single one.

**Workers.** ``workers > 1`` runs the items in a pool of processes (procedural backends;
each worker builds its backend once, in :data:`WORKER`; forked on Linux, spawned
elsewhere). Diffusion backends run in the calling process.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from synspill.errors import DatasetError, OutputExists, UsageError

log = logging.getLogger(__name__)

DEFAULT_QUALITY = 92
Progress = Callable[[int], None]
#: What a pool worker builds once (its backend, the package versions), set by the job's initializer.
WORKER: dict[str, Any] = {}


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from a base seed and item keys (stable across runs, Python and NumPy versions)."""
    keys = [p if isinstance(p, int) else int.from_bytes(p.encode()[:8].ljust(8, b"\0"), "little") for p in parts]
    # the part count is mixed in: SeedSequence would treat [a, b] and [a, b, 0] alike
    ss = np.random.SeedSequence([k & 0xFFFFFFFFFFFFFFFF for k in keys] + [len(keys)])
    return int(ss.generate_state(1, np.uint64)[0]) & 0x7FFFFFFFFFFFFFFF


def parse_range(text: str | float | tuple[float, float], what: str, lo: float | None = None, hi: float | None = None) -> tuple[float, float]:
    """Parse ``"0.2:0.4"`` (or one number) into ``(lo, hi)``.

    Raises:
        UsageError: Not numbers, ``lo > hi``, or outside ``[lo, hi]`` bounds.
    """
    if isinstance(text, tuple):
        a, b = float(text[0]), float(text[1])
    else:
        parts = str(text).split(":")
        try:
            if len(parts) == 1:
                a = b = float(parts[0])
            elif len(parts) == 2:
                a, b = float(parts[0]), float(parts[1])
            else:
                raise ValueError
        except ValueError:
            raise UsageError(f"{what} {text!r} is not a number or a range like 0.2:0.4") from None
    if a > b:
        raise UsageError(f"{what} {text!r}: the low end is above the high end; write it as LOW:HIGH")
    if (lo is not None and a < lo) or (hi is not None and b > hi):
        raise UsageError(f"{what} {text!r} must lie within [{lo}, {hi}]")
    return a, b


def parse_count_range(text: str | tuple[int, int], what: str) -> tuple[int, int]:
    """Parse ``"1:3"`` (or one number) into whole ``(lo, hi)`` counts within 0-100.

    Raises:
        UsageError: Not whole numbers, ``lo > hi``, or outside 0-100.
    """
    lo, hi = parse_range(text if isinstance(text, str) else (float(text[0]), float(text[1])), what, 0, 100)
    if lo != int(lo) or hi != int(hi):
        raise UsageError(f"{what} {text!r}: use whole numbers, e.g. 1:3")
    return int(lo), int(hi)


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)``; None -> from ``RANK``/``WORLD_SIZE`` env vars, else ``(0, 1)``."""
    if text is None:
        from synspill.runtime import launched_shard

        launched = launched_shard()
        if launched is None:
            return 0, 1
        text = f"{launched[0]}/{launched[1]}"
    try:
        i_s, n_s = str(text).split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise UsageError(f"--shard {text!r} must look like I/N, e.g. 0/4 for the first of four processes") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {text!r}: need 0 <= I < N")
    return i, n


def package_versions() -> dict[str, str]:
    """Versions that decide the pixels: synspill, numpy, opencv, pillow, simplejpeg (+ diffusion stack if imported)."""
    import sys

    from synspill.envinfo import versions

    loaded = [m for m in ("torch", "diffusers", "transformers") if m in sys.modules]
    return versions(["synspill", "numpy", "opencv-python-headless", "pillow", "simplejpeg", *loaded])


def encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    """``(H, W, 3)`` uint8 RGB -> JPEG bytes (4:2:0, deterministic)."""
    import simplejpeg

    return simplejpeg.encode_jpeg(np.ascontiguousarray(img), quality=int(quality), colorspace="RGB", colorsubsampling="420")


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB (fast path for JPEG).

    Raises:
        DatasetError: The file cannot be decoded (truncated, corrupt); the message names it.
    """
    data = path.read_bytes()
    if data[:3] == b"\xff\xd8\xff":
        import simplejpeg

        try:
            return simplejpeg.decode_jpeg(data, colorspace="RGB")
        except ValueError:
            pass
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB")).copy()
    # not only OSError ("image file is truncated", UnidentifiedImageError): once ultralytics is
    # imported, its patched Image.open fails on an unknown file with an ImportError (pi_heif)
    except Exception as e:
        raise DatasetError(f"{path}: not a readable image ({type(e).__name__}: {e}); replace it with a readable copy, "
                           "then run the same command again (finished images are kept)") from None


def write_file_atomic(path: Path, data: bytes, tag: str = "s0of1") -> None:
    """Write ``data`` to a temp name beside ``path`` and rename it into place.

    ``tag`` (the shard) is part of the temp name so that a restarting shard removes only
    its own leftovers, never a live temp file of another shard.

    The rename makes a half-written image impossible under its final name; the manifest
    (fsynced per batch) is what a resume trusts, and it records the byte size.
    """
    tmp = path.with_name(f".{path.name}.{tag}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:  # a full disk: leave no partial file, name the target
        tmp.unlink(missing_ok=True)
        e.filename = str(path)
        raise


def shard_tag(shard: tuple[int, int]) -> str:
    return f"s{shard[0]}of{shard[1]}"


def manifest_name(shard: tuple[int, int]) -> str:
    return "manifest.jsonl" if shard[1] == 1 else f"manifest.{shard[0]}-of-{shard[1]}.jsonl"


def read_records(out: Path) -> dict[int, dict[str, Any]]:
    """All valid records of all manifest files in ``out``, keyed by item index.

    A record counts when it parses and its image exists with the recorded size; torn
    lines (a kill mid-write) and records of missing/changed files are ignored.
    """
    recs: dict[int, dict[str, Any]] = {}
    for mf in sorted(out.glob("manifest*.jsonl")):
        with open(mf, encoding="utf-8") as f:
            for line in f:
                try:
                    r = json.loads(line)
                    idx = int(r["index"])
                    p = out / r["file_name"]
                    if idx not in recs and p.stat().st_size == int(r["bytes"]):
                        recs[idx] = r
                except (ValueError, KeyError, TypeError, OSError):
                    continue
    return recs


def prepare_out(out: Path, settings: dict[str, Any], force: bool, shard: tuple[int, int]) -> dict[int, dict[str, Any]]:
    """Create/validate the output folder; return the finished records (resume)."""
    import shutil

    job_file = out / "job.json"
    if out.exists() and force and shard[0] == 0:
        for name in ("images", "job.json", "scenes.json", "annotations.json", "contact_sheet.png"):
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        for p in list(out.glob("manifest*.jsonl")) + list(out.glob(".done.*")):
            p.unlink()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder")
    if out.exists() and job_file.exists():
        try:
            old = json.loads(job_file.read_text())
        except ValueError:
            old = None
        if old is not None:
            diff = sorted(k for k in set(old) | set(settings) if k != "n" and old.get(k) != settings.get(k))
            if diff and not _has_work(out):  # a run that failed before finishing anything protects nothing
                log.info("%s: a run with other settings that finished no image; starting over with these settings", out)
            elif diff:
                raise OutputExists(
                    f"{out} holds a run with other settings ({', '.join(f'{k}: {old.get(k)!r} -> {settings.get(k)!r}' for k in diff[:3])}); "
                    "run with the same settings to resume, or pass --force to start over, or choose another --out")
    elif out.exists() and any(out.iterdir()) and not (out / "images").exists():
        raise OutputExists(f"{out} exists and is not a synspill output folder; choose another --out or pass --force")
    (out / "images").mkdir(parents=True, exist_ok=True)
    from synspill.io import write_json

    if shard[0] == 0 or not job_file.exists():
        write_json(job_file, settings, indent=2)
    # stray temp files of *this* shard's items (a kill mid-write); other shards may be live
    for tmp in (out / "images").glob(f".*.{shard_tag(shard)}.tmp"):
        tmp.unlink(missing_ok=True)
    done = read_records(out)
    # rewrite this shard's manifest without torn/invalid lines, so appends start on a clean line
    mf = out / manifest_name(shard)
    mine = [r for i, r in sorted(done.items()) if (i % shard[1] == shard[0] or shard[1] == 1)]
    if mf.exists():
        from synspill.io import write_text

        keep = [r for r in mine if record_file(out, r) == mf.name]
        write_text(mf, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in keep))
    (out / f".done.{shard[0]}-of-{shard[1]}").unlink(missing_ok=True)
    return done


def _has_work(out: Path) -> bool:
    """True when ``out`` holds a finished item or any image file (work a restart must not throw away)."""
    images = out / "images"
    return bool(read_records(out)) or (images.is_dir() and any(not p.name.startswith(".") for p in images.iterdir()))


def _remove_stub(out: Path) -> None:
    """Remove what :func:`prepare_out` made in a new ``out`` when the run finished nothing.

    Only the job's own files go (``job.json``, empty manifests, ``images/`` with nothing but
    temp files); ``out`` itself only if it is then empty. Anything else stays.
    """
    if _has_work(out):
        return
    for p in [out / "job.json", *out.glob("manifest*.jsonl"), *out.glob(".done.*")]:
        if p.is_file() and (p.name == "job.json" or p.stat().st_size == 0 or p.name.startswith(".done.")):
            p.unlink(missing_ok=True)
    images = out / "images"
    if images.is_dir():
        for tmp in images.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        if not any(images.iterdir()):
            images.rmdir()
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def record_file(out: Path, r: dict[str, Any]) -> str:
    return r.get("_manifest", "manifest.jsonl")


def batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class ManifestWriter:
    """Appends records after their images exist; flush per record, fsync per batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.f = open(path, "a", encoding="utf-8")

    def add(self, records: Iterable[dict[str, Any]]) -> None:
        try:
            for r in records:
                r["_manifest"] = self.path.name
                self.f.write(json.dumps(r, separators=(",", ":")) + "\n")
                self.f.flush()
            os.fsync(self.f.fileno())
        except OSError as e:  # a full disk names no file; a torn last line is dropped on resume
            e.filename = e.filename or str(self.path)
            raise

    def close(self) -> None:
        try:
            self.f.close()
        except OSError:  # only after a failed add (already raised): its torn line is dropped on resume
            pass


def run_items(worker: Callable[[list[Any]], list[dict[str, Any]]], batches: list[list[Any]], workers: int,
               initializer: Callable[..., None] | None, init_args: tuple, manifest: ManifestWriter,
               on_progress: Progress | None) -> int:
    """Run ``worker`` over batches (in-process or in a spawn pool); append records as they come."""
    n = 0
    if workers <= 1 or len(batches) <= 1:
        if initializer is not None:
            initializer(*init_args)
        for b in batches:
            recs = worker(b)
            manifest.add(recs)
            n += len(recs)
            if on_progress:
                on_progress(len(recs))
        return n
    import multiprocessing as mp
    import sys

    # fork on Linux: workers start in ~0.1 s instead of re-importing everything (~1 s each
    # with spawn). They only run NumPy/OpenCV and write files -- no console, no logging --
    # so the parent's progress-bar thread cannot leave them a held lock. Elsewhere: spawn.
    ctx = mp.get_context("fork" if sys.platform == "linux" else "spawn")
    with _cv2_single_threaded():
        pool = ctx.Pool(processes=workers, initializer=_pool_init, initargs=(initializer, init_args))
    try:
        for recs in pool.imap_unordered(functools.partial(_pool_call, worker, os.getpid()), batches):
            manifest.add(recs)
            n += len(recs)
            if on_progress:
                on_progress(len(recs))
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
    return n


@contextlib.contextmanager
def _cv2_single_threaded() -> Iterator[None]:
    """OpenCV without its worker threads while the pool forks.

    A child forked while OpenCV's thread pool has threads inherits the pool but not the
    threads: its first ``cv2.setNumThreads`` or parallel call then waits for them forever (a
    second job in one process, after the first job's contact sheet used the pool, hung).
    """
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def _pool_init(initializer: Callable[..., None] | None, init_args: tuple) -> None:
    """Pool workers leave signals to the parent: it stops them (``pool.terminate``) on Ctrl-C or SIGTERM.

    Ctrl-C reaches the whole process group; a worker ignoring it prints no traceback.
    SIGTERM (from ``pool.terminate``, ``timeout`` or systemd) ends a worker at once and
    quietly (the default action), not through the handler inherited from the parent.
    """
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform == "linux":  # the parent killed (kill -9, OOM): end now, not after the batch
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # _pool_call's check still stops an orphan after its batch
    if initializer is not None:
        initializer(*init_args)


def _pool_call(worker: Callable[[list[Any]], list[dict[str, Any]]], parent: int, batch: list[Any]) -> list[dict[str, Any]]:
    """Run one batch; a worker whose parent died (``kill -9``) leaves quietly instead of
    writing to a broken pipe (its finished image is re-made by the resume)."""
    if os.getppid() != parent:
        os._exit(0)
    recs = worker(batch)
    if os.getppid() != parent:
        os._exit(0)
    return recs


def finish_shard(out: Path, shard: tuple[int, int], merge: Callable[[], Any], wait_s: float) -> Any:
    """Mark this shard done; merge now (single run / rank 0 once every shard is done)."""
    from synspill.io import write_text

    if shard[1] == 1:
        return merge()
    write_text(out / f".done.{shard[0]}-of-{shard[1]}", "")
    if shard[0] != 0:
        log.info("shard %d/%d finished; rank 0 merges (or run again with --merge-only)", *shard)
        return None
    t0 = time.monotonic()
    while True:
        missing = [i for i in range(shard[1]) if not (out / f".done.{i}-of-{shard[1]}").exists()]
        if not missing:
            return merge()
        if time.monotonic() - t0 > wait_s:
            log.warning("shards %s are not finished after %.0f s; run the command again with --merge-only when they are",
                        missing, wait_s)
            return None
        time.sleep(2.0)


def merge_manifests(out: Path, recs: dict[int, dict[str, Any]]) -> None:
    """Rewrite ``manifest.jsonl`` as the sorted union and drop shard manifests/markers."""
    from synspill.io import write_text

    lines = []
    for _, r in sorted(recs.items()):
        r = dict(r)
        r["_manifest"] = "manifest.jsonl"
        lines.append(json.dumps(r, separators=(",", ":")) + "\n")
    write_text(out / "manifest.jsonl", "".join(lines))
    for p in out.glob("manifest.*-of-*.jsonl"):
        p.unlink()
    for p in out.glob(".done.*"):
        p.unlink()


def check_complete(out: Path, recs: dict[int, dict[str, Any]], n: int, what: str) -> None:
    missing = [i for i in range(n) if i not in recs]
    if missing:
        raise DatasetError(
            f"{out}: {len(missing)} of {n} {what} are not finished yet (first missing item {missing[0]}); "
            "run the same command again (every shard) to finish them, then --merge-only")


def read_settings(out: Path) -> dict[str, Any]:
    p = out / "job.json"
    if not p.exists():
        raise DatasetError(f"{out}: no job.json here; is this a synspill scenes/inpaint output folder?")
    return json.loads(p.read_text())


def run_job(out: Path, settings: dict[str, Any], n_items: int, make_items: Callable[[list[int], str], list[Any]],
            worker: Callable[[list[Any]], list[dict[str, Any]]], init: tuple[Callable[..., None], tuple[Any, ...]],
            merge: Callable[[], Any], *, force: bool = False, shard: tuple[int, int] = (0, 1), workers: int = 1,
            batch_size: int = 8, on_progress: Progress | None = None, on_start: Callable[[int, int], None] | None = None,
            merge_wait_s: float = 1800.0) -> Any:
    """Run (or resume) this shard's unfinished items of a job, then merge when it is the merging shard.

    Args:
        out: The output folder.
        settings: What identifies the job (``job.json``; compared on resume).
        n_items: Items of the whole job (indices ``0 .. n_items - 1``).
        make_items: ``(indices to do, shard tag) -> worker items``.
        worker: Does one batch of items; returns their manifest records (each with ``index``,
            ``file_name``, ``bytes``). Must be a module-level function (pool workers import it).
        init: ``(initializer, args)``: builds the worker's backend in :data:`WORKER`.
        merge: Builds the job's final files from the manifests (:func:`read_records`).
        force: Delete a previous run's outputs first.
        shard: ``(i, n)``: this process takes items ``i, i+n, ...``.
        workers: Processes (1: this one).
        batch_size: Items per worker call.
        on_progress: Called with the number of items just finished.
        on_start: Called once with ``(already_done, to_do)`` for this shard.
        merge_wait_s: How long rank 0 waits for other shards before leaving the merge to ``--merge-only``.

    Returns:
        What ``merge`` returns, or None when this shard does not merge.
    """
    new = not out.exists()
    done = prepare_out(out, settings, force, shard)
    i0, nsh = shard
    todo = [i for i in range(n_items) if i % nsh == i0 and i not in done]
    if on_start:
        on_start(sum(1 for i in done if i % nsh == i0 and i < n_items), len(todo))
    items = make_items(todo, shard_tag(shard))
    mw = ManifestWriter(out / manifest_name(shard))
    try:
        try:
            run_items(worker, list(batches(items, batch_size)), workers, init[0], init[1], mw, on_progress)
        finally:
            mw.close()
    except BaseException:
        # e.g. the backend could not load: a folder this run made and filled with nothing
        # must not stay behind to block the corrected command (other shards may share it)
        if new and nsh == 1:
            _remove_stub(out)
        raise
    return finish_shard(out, shard, merge, merge_wait_s)


def merge_job(out: Path, n: int | Callable[[dict[str, Any]], int] | None, what: str, file_name: str, description: str,
              build: Callable[[dict[int, dict[str, Any]]], tuple[list[Any], list[Any]]]) -> Any:
    """Check every item is finished, build the job's COCO file from the manifests, tidy them.

    Args:
        out: The output folder.
        n: Items of the whole job, or how to get it from the settings (``job.json``).
        what: What the items are, for the error message (``scenes``, ``images``).
        file_name: The COCO file to write in ``out``.
        description: Its ``info.description``.
        build: ``records by index -> (ImageRecords, Annotations)``.

    Returns:
        The :class:`~synspill.coco.dataset.CocoDataset` written to ``out/file_name``.

    Raises:
        DatasetError: Items are missing (a shard is not finished).
    """
    from synspill.coco.dataset import CocoDataset, save_coco

    settings = read_settings(out)
    n_items = n(settings) if callable(n) else n
    assert n_items is not None
    recs = read_records(out)
    check_complete(out, recs, n_items, what)
    recs = {i: r for i, r in recs.items() if i < n_items}
    images, anns = build(recs)
    ds = CocoDataset(images=images, annotations=anns, root=out,
                     info={"description": description, "job": settings, "versions": package_versions()})
    merge_manifests(out, recs)
    save_coco(ds, out / file_name)
    return ds
