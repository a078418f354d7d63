"""The job runner behind ``synspill scenes`` and ``synspill inpaint``.

Both jobs turn a list of *items* (scene index / scene image) into files under ``OUT``:

* ``OUT/images/NNNNNN.jpg`` -- written atomically (temp name + rename);
* ``OUT/manifest.jsonl`` -- one JSON record per finished image (seed, backend, prompt,
  parameters, package versions, the spills and their masks for ``inpaint``), appended
  **only after** its image is on disk, flushed per record and fsynced per batch;
* ``OUT/job.json`` -- the job's settings; a restart with different settings is refused;
* at the end, from the manifest alone: ``OUT/scenes.json`` (COCO images, no boxes) or
  ``OUT/annotations.json`` (COCO with one annotation per visible spill: class, tight box,
  RLE mask) and ``OUT/contact_sheet.png``.

**Resume.** A run killed at any point (``kill -9``, Ctrl-C, a crash in the backend) is
continued by running the same command again: records whose image file exists with the
recorded size are trusted and skipped; a torn last manifest line and stray temp files are
dropped; images without a record are re-made (same seed, same bytes).

**Several processes / GPUs.** ``shard=(i, n)`` (``--shard i/n``, or ``RANK`` /
``WORLD_SIZE`` as set by ``accelerate launch`` / ``torchrun``) makes a process take every
``n``-th item starting at ``i`` and append to its own ``manifest.{i}-of-{n}.jsonl``. When a
shard finishes it drops ``.done.{i}-of-{n}``; rank 0 waits for all shards and merges (or run
the command again with ``--merge-only``). Items, seeds and file names do not depend on
``n``, so a sharded run produces the same dataset as a single one.

**Workers.** ``workers > 1`` renders in a pool of processes (procedural backends; each
worker builds its backend once; forked on Linux, spawned elsewhere). Diffusion backends run
in the calling process.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synspill.errors import DatasetError, OutputExists, UsageError
from synspill.params import FromParams
from synspill.synth import MIN_BOX

log = logging.getLogger(__name__)

DEFAULT_QUALITY = 92
Progress = Callable[[int], None]


# ---------------------------------------------------------------------------------------
# small pieces shared by both jobs
# ---------------------------------------------------------------------------------------
def default_workers() -> int:
    """The CLI's worker processes when ``--workers`` is not given: two where the machine has them."""
    return max(1, min(2, os.cpu_count() or 1))


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
    """Read an image file as ``(H, W, 3)`` uint8 RGB (fast path for JPEG)."""
    data = path.read_bytes()
    if data[:3] == b"\xff\xd8\xff":
        import simplejpeg

        try:
            return simplejpeg.decode_jpeg(data, colorspace="RGB")
        except ValueError:
            pass
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")).copy()


def write_file_atomic(path: Path, data: bytes, tag: str = "s0of1") -> None:
    """Write ``data`` to a temp name beside ``path`` and rename it into place.

    ``tag`` (the shard) is part of the temp name so that a restarting shard removes only
    its own leftovers, never a live temp file of another shard.

    The rename makes a half-written image impossible under its final name; the manifest
    (fsynced per batch) is what a resume trusts, and it records the byte size.
    """
    tmp = path.with_name(f".{path.name}.{tag}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


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


def _prepare_out(out: Path, settings: dict[str, Any], force: bool, shard: tuple[int, int]) -> dict[int, dict[str, Any]]:
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
            if diff:
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

        keep = [r for r in mine if _record_file(out, r) == mf.name]
        write_text(mf, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in keep))
    (out / f".done.{shard[0]}-of-{shard[1]}").unlink(missing_ok=True)
    return done


def _record_file(out: Path, r: dict[str, Any]) -> str:
    return r.get("_manifest", "manifest.jsonl")


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class _ManifestWriter:
    """Appends records after their images exist; flush per record, fsync per batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.f = open(path, "a", encoding="utf-8")

    def add(self, records: Iterable[dict[str, Any]]) -> None:
        for r in records:
            r["_manifest"] = self.path.name
            self.f.write(json.dumps(r, separators=(",", ":")) + "\n")
            self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


def _run_items(worker: Callable[[list[Any]], list[dict[str, Any]]], batches: list[list[Any]], workers: int,
               initializer: Callable[..., None] | None, init_args: tuple, manifest: _ManifestWriter,
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
    pool = ctx.Pool(processes=workers, initializer=initializer, initargs=init_args)
    try:
        for recs in pool.imap_unordered(worker, batches):
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


def _finish_shard(out: Path, shard: tuple[int, int], merge: Callable[[], Any], wait_s: float) -> Any:
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


def _merge_manifests(out: Path, recs: dict[int, dict[str, Any]]) -> None:
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


def _check_complete(out: Path, recs: dict[int, dict[str, Any]], n: int, what: str) -> None:
    missing = [i for i in range(n) if i not in recs]
    if missing:
        raise DatasetError(
            f"{out}: {len(missing)} of {n} {what} are not finished yet (first missing item {missing[0]}); "
            "run the same command again (every shard) to finish them, then --merge-only")


# ---------------------------------------------------------------------------------------
# scenes
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScenesJob(FromParams):
    """Settings of one ``synspill scenes`` run (saved as ``OUT/job.json``).

    Attributes:
        out: Output folder.
        n: Number of scenes (ids 1..n, files ``images/000001.jpg`` ...).
        seed: Base seed; scene ``i`` uses :func:`derive_seed` ``(seed, "scene", i)``.
        backend: ``procedural``, ``backgrounds`` or ``sdxl``.
        width: Output width.
        height: Output height.
        scene_types: Scene types drawn from (uniformly, per image seed; empty: all of the
            backend's, see :meth:`types`).
        backgrounds: Folder of real photos (``backend="backgrounds"``).
        batch_size: Images per backend call / per pool task.
        workers: Processes for CPU backends (1: in this process).
        shard: ``(i, n)``: this process takes items ``i, i+n, ...``.
        quality: JPEG quality; None = per-image value sampled by the backend (CCTV-like), else 92.
        diffusion: SDXL options (``backend="sdxl"``).
        scene_prompts: Prompt set (``positive``, ``negative``, ``types.<t>.positive``).
    """

    out: Path
    n: int
    seed: int = 0
    backend: str = "procedural"
    width: int = 1024
    height: int = 1024
    scene_types: tuple[str, ...] = ()
    backgrounds: str | None = None
    batch_size: int = 8
    workers: int = 1
    shard: tuple[int, int] = (0, 1)
    quality: int | None = None
    diffusion: Any = None
    scene_prompts: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise UsageError(f"--n {self.n}: need at least one scene")
        if self.width < 32 or self.height < 32 or self.width % 8 or self.height % 8:
            raise UsageError(f"--size {self.width}x{self.height}: width and height must be multiples of 8, at least 32")
        if self.batch_size < 1 or self.workers < 1:
            raise UsageError("--batch-size and --workers must be at least 1")
        if self.scene_types:
            from synspill.synth.procedural import SCENE_TYPES

            known = set(SCENE_TYPES) | set((self.scene_prompts.get("types") or {}).keys())
            bad = [t for t in self.scene_types if t not in known and t.replace("_", "-") not in known]
            if bad:
                raise UsageError(f"--scene-types: {bad[0]!r} is not a scene type; use some of {', '.join(sorted(known))}")
        if self.backend not in ("procedural", "backgrounds", "sdxl"):
            raise UsageError(f"--backend {self.backend!r}: use auto, procedural or sdxl")
        if self.backend == "backgrounds" and not self.backgrounds:
            raise UsageError("the backgrounds backend needs --backgrounds DIR")
        if self.quality is not None and not 1 <= self.quality <= 100:
            raise UsageError(f"--quality {self.quality} must be within 1-100")

    def settings(self) -> dict[str, Any]:
        """What identifies the run (compared on resume)."""
        d: dict[str, Any] = {"job": "scenes", "n": self.n, "seed": self.seed, "backend": self.backend, "width": self.width,
             "height": self.height, "scene_types": list(self.types()), "backgrounds": self.backgrounds, "quality": self.quality}
        if self.diffusion is not None:
            d["diffusion"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.diffusion).items()
                              if k not in ("device", "dtype", "batch_size")}
        return d

    def types(self) -> tuple[str, ...]:
        """Scene types drawn from: ``scene_types``, else the prompt set's (sdxl), else the procedural ones."""
        from synspill.synth.procedural import SCENE_TYPES

        if self.scene_types:
            return self.scene_types
        if self.backend == "sdxl" and self.scene_prompts.get("types"):
            return tuple(self.scene_prompts["types"])
        return SCENE_TYPES

    def spec(self, index: int) -> Any:
        """The :class:`SceneSpec` of item ``index`` (0-based; image id ``index + 1``)."""
        from synspill.synth.base import SceneSpec

        s = derive_seed(self.seed, "scene", index)
        rng = np.random.default_rng(s)
        types = self.types()
        st = types[int(rng.integers(len(types)))]
        pos, neg = scene_prompt(self.scene_prompts, st, s)
        params: dict[str, Any] = {}
        if self.diffusion is not None:  # the diffusion backend adds what it sampled (LoRA scale, reference ...)
            params = {"steps": self.diffusion.steps, "cfg": self.diffusion.guidance, "scheduler": self.diffusion.scheduler}
        return SceneSpec(seed=s, scene_type=st, width=self.width, height=self.height, prompt=pos, negative_prompt=neg,
                         params=params)


def scene_prompt(prompts: dict[str, Any], scene_type: str, seed: int) -> tuple[str, str]:
    """``(positive, negative)`` for one scene from a ``scene.toml`` prompt set (``("", "")`` if none).

    Uses :func:`synspill.synth.prompting.scene_prompt` (the SDXL backend's own composition:
    ``"<variation>, <positive>"`` with the variation picked from ``seed``) when that module is
    installed; otherwise composes the same from ``[types.<t>] positive`` or ``variations``.
    """
    if not prompts:
        return "", ""
    types = prompts.get("types", {}) or {}
    try:
        from synspill.synth import prompting  # type: ignore[attr-defined]

        if scene_type in types or not types:
            pos, neg = prompting.scene_prompt(prompts, scene_type if types else None, seed)
            return str(pos), str(neg)
    except ImportError:
        pass
    pos = str(prompts.get("positive", "")).strip()
    neg = str(prompts.get("negative", "")).strip()
    var = types.get(scene_type) or {}
    extra = ""
    if isinstance(var, dict):
        if var.get("variations"):
            vs = list(var["variations"])
            extra = str(vs[int(np.random.default_rng([seed, 11]).integers(len(vs)))])
        else:
            extra = str(var.get("positive", ""))
    extra = extra.strip().rstrip(".")
    if extra:
        pos = f"{extra}, {pos}" if pos else extra
    return pos, neg


def load_scene_prompts() -> dict[str, Any]:
    """The shipped ``prompts/synth/scene.toml``, or ``{}`` when this install has none."""
    from synspill.templates import PROMPT_DIR, load_toml

    if not (PROMPT_DIR / "synth" / "scene.toml").is_file():
        return {}
    return load_toml("synth/scene.toml")


_WORKER: dict[str, Any] = {}


def _scene_worker_init(backend: str, backgrounds: str | None, diffusion: Any, prompts: dict[str, Any]) -> None:
    import cv2

    cv2.setNumThreads(1)
    if backend == "procedural":
        from synspill.synth.procedural import ProceduralSceneBackend

        _WORKER["scene"] = ProceduralSceneBackend()
    elif backend == "backgrounds":
        from synspill.synth.procedural import BackgroundSceneBackend

        _WORKER["scene"] = BackgroundSceneBackend(backgrounds or "")
    else:
        from synspill.synth import sdxl  # type: ignore[attr-defined]

        _WORKER["scene"] = sdxl.make_scene_backend(diffusion, prompts)
    _WORKER["versions"] = package_versions()


def _scene_worker(items: list[tuple[int, Any, str, int | None, str]]) -> list[dict[str, Any]]:
    """Render, encode and write one batch; return its manifest records."""
    be = _WORKER["scene"]
    specs = [it[1] for it in items]
    if hasattr(be, "render"):
        results = [be.render(s) for s in specs]
    else:
        results = [(im, None) for im in be.generate(specs)]
    recs = []
    for (index, spec, out, quality, tag), (img, layout) in zip(items, results, strict=True):
        img = np.asarray(img)
        if img.shape != (spec.height, spec.width, 3) or img.dtype != np.uint8:
            raise RuntimeError(f"backend {be.name} returned {img.shape} {img.dtype}, expected ({spec.height}, {spec.width}, 3) uint8")
        q = quality or int(((layout or {}).get("params") or {}).get("jpeg_quality", DEFAULT_QUALITY))
        data = encode_jpeg(img, q)
        name = f"images/{index + 1:06d}.jpg"
        write_file_atomic(Path(out) / name, data, tag)
        params = dict(spec.params)
        if layout and layout.get("params"):
            params.update(layout["params"])
        params["jpeg_quality"] = q
        lay = {k: v for k, v in (layout or {}).items() if k != "params"} or None
        prompt, negative = params.pop("prompt", spec.prompt), params.pop("negative_prompt", spec.negative_prompt)
        recs.append({"index": index, "id": index + 1, "file_name": name, "width": spec.width, "height": spec.height,
                     "seed": spec.seed, "scene_type": spec.scene_type, "backend": be.name, "prompt": prompt,
                     "negative_prompt": negative, "params": params, "layout": lay, "bytes": len(data),
                     "versions": _WORKER["versions"]})
    return recs


def run_scenes(job: ScenesJob, force: bool = False, on_progress: Progress | None = None,
               on_start: Callable[[int, int], None] | None = None, merge_wait_s: float = 1800.0) -> Path | None:
    """Generate (or resume) a scenes dataset.

    Args:
        job: Settings.
        force: Delete a previous run's outputs in ``job.out`` first.
        on_progress: Called with the number of images just finished.
        on_start: Called once with ``(already_done, to_do)`` for this shard.
        merge_wait_s: How long rank 0 waits for other shards before leaving the merge to ``--merge-only``.

    Returns:
        Path of ``scenes.json``, or None when this shard does not merge.
    """
    out = Path(job.out)
    done = _prepare_out(out, job.settings(), force, job.shard)
    i0, nsh = job.shard
    todo = [i for i in range(job.n) if i % nsh == i0 and i not in done]
    if on_start:
        on_start(sum(1 for i in done if i % nsh == i0 and i < job.n), len(todo))
    items = [(i, job.spec(i), str(out), job.quality, shard_tag(job.shard)) for i in todo]
    workers = job.workers if job.backend != "sdxl" else 1
    mw = _ManifestWriter(out / manifest_name(job.shard))
    try:
        _run_items(_scene_worker, list(_batches(items, job.batch_size)), workers, _scene_worker_init,
                   (job.backend, job.backgrounds, job.diffusion, job.scene_prompts), mw, on_progress)
    finally:
        mw.close()
    return _finish_shard(out, job.shard, lambda: merge_scenes(out, job.n), merge_wait_s)


def merge_scenes(out: Path, n: int | None = None) -> Path:
    """Build ``scenes.json`` (COCO images with ``seed``, ``scene_type``, ``layout``) from the manifests."""
    from synspill.coco.dataset import CocoDataset, ImageRecord, save_coco

    out = Path(out)
    settings = _read_settings(out)
    n = n if n is not None else int(settings.get("n", 0))
    recs = read_records(out)
    _check_complete(out, recs, n, "scenes")
    recs = {i: r for i, r in recs.items() if i < n}
    images = [ImageRecord(r["id"], r["file_name"], r["width"], r["height"],
                          {"seed": r["seed"], "scene_type": r["scene_type"], "backend": r["backend"],
                           **({"layout": r["layout"]} if r.get("layout") else {}),
                           **({"jpeg_quality": r["params"]["jpeg_quality"]} if "jpeg_quality" in r.get("params", {}) else {})})
              for _, r in sorted(recs.items())]
    ds = CocoDataset(images=images, annotations=[], root=out,
                     info={"description": "synspill scenes", "job": settings, "versions": package_versions()})
    _merge_manifests(out, recs)
    return save_coco(ds, out / "scenes.json")


def _read_settings(out: Path) -> dict[str, Any]:
    p = out / "job.json"
    if not p.exists():
        raise DatasetError(f"{out}: no job.json here; is this a synspill scenes/inpaint output folder?")
    return json.loads(p.read_text())


# ---------------------------------------------------------------------------------------
# scenes input (for propose / inpaint)
# ---------------------------------------------------------------------------------------
def load_scenes(path: str | os.PathLike) -> Any:
    """Scenes as a :class:`CocoDataset`: a ``synspill scenes`` folder (``scenes.json``), a COCO
    file/folder, or any folder of images (ids 1..N in sorted file-name order).

    Raises:
        DatasetError: The folder is missing or holds no images.
    """
    from synspill.coco.dataset import CocoDataset, ImageRecord, load_coco

    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p}: --scenes folder does not exist; run `synspill scenes --out {p}` first or pass a folder of images")
    if p.is_file():
        return load_coco(p)
    for name in ("scenes.json", "annotations.json", "_annotations.coco.json"):
        if (p / name).is_file():
            return load_coco(p / name)
    if (p / "manifest.jsonl").exists() or list(p.glob("manifest.*-of-*.jsonl")):
        raise DatasetError(f"{p}: a scenes run that has not been merged (no scenes.json); re-run `synspill scenes` with the same options, or --merge-only")
    from synspill.io import list_images

    files = list_images(p)
    if not files:
        raise DatasetError(f"{p}: no scenes.json and no images (.jpg/.png/...) in it; pass a scenes folder")
    from PIL import Image

    images = []
    for i, f in enumerate(files, start=1):
        try:
            with Image.open(f) as im:
                w, h = im.size
        except OSError as e:
            raise DatasetError(f"{f}: not a readable image ({e}); remove it from {p}") from None
        images.append(ImageRecord(i, str(f.relative_to(p)), w, h))
    return CocoDataset(images=images, annotations=[], root=p)


def match_boxes(scenes: Any, boxes: Any, source: str) -> dict[int, list[Any]]:
    """Boxes of a COCO file per *scene* image id (matched by file name, else by id).

    Raises:
        DatasetError: A box's image is not among the scenes, or lies outside it.
    """
    by_name: dict[str, int] = {}
    for im in scenes.images:
        by_name.setdefault(Path(im.file_name).name, im.id)
        by_name.setdefault(im.file_name, im.id)
    scene_ids = {im.id: im for im in scenes.images}
    bimgs = boxes.image_by_id()
    out: dict[int, list[Any]] = {}
    for a in boxes.annotations:
        bim = bimgs[a.image_id]
        sid = by_name.get(bim.file_name, by_name.get(Path(bim.file_name).name))
        if sid is None:
            raise DatasetError(
                f"{source}: annotation {a.id} is on image {bim.id} ({bim.file_name!r}), which is not among the scenes; "
                "boxes are matched to scene files by file name -- export the boxes over the same scenes folder")
        sim = scene_ids[sid]
        if (sim.width, sim.height) != (bim.width, bim.height):
            raise DatasetError(f"{source}: image {bim.id} ({bim.file_name!r}) is {bim.width}x{bim.height} in the boxes file but "
                               f"{sim.width}x{sim.height} among the scenes; re-export the boxes over these scenes")
        out.setdefault(sid, []).append(a)
    return out


# ---------------------------------------------------------------------------------------
# inpaint
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InpaintJob(FromParams):
    """Settings of one ``synspill inpaint`` run (saved as ``OUT/job.json``).

    Attributes:
        scenes: Scenes folder (``synspill scenes`` output, COCO, or a folder of images).
        out: Output folder.
        boxes: COCO file of boxes over the scenes (None with ``propose``).
        propose: Propose boxes on the fly (:mod:`synspill.synth.propose`) instead.
        per_image: ``(lo, hi)`` proposals per image.
        spill_scale: With ``propose``: multiplier on real-world spill sizes.
        min_box: With ``propose``: smallest box side, fraction of the shorter image side.
        classes: Taxonomy ids for proposals (None: all).
        seed: Base seed; spill ``k`` of image ``id`` uses :func:`derive_seed` ``(seed, "spill", id, k)``.
        backend: ``procedural`` or ``sdxl``.
        feather: Soft-mask feather, px (paper 50).
        opacity: Soft-mask opacity (paper 0.75).
        strength: ``(lo, hi)`` denoise strength range (diffusion; paper 0.5-0.6).
        batch_size: Images per pool task.
        workers: Processes for the procedural backend (1: in this process).
        shard: ``(i, n)``.
        quality: JPEG quality (None: the scene's own, else 92).
        diffusion: SDXL-Turbo options (``backend="sdxl"``).
        contact_sheet: Images on the contact sheet.
    """

    scenes: Path
    out: Path
    boxes: Path | None = None
    propose: bool = False
    per_image: tuple[int, int] = (1, 3)
    spill_scale: float = 1.0
    min_box: float = MIN_BOX
    classes: tuple[int, ...] | None = None
    seed: int = 0
    backend: str = "procedural"
    feather: float = 50.0
    opacity: float = 0.75
    strength: tuple[float, float] = (0.5, 0.6)
    batch_size: int = 8
    workers: int = 1
    shard: tuple[int, int] = (0, 1)
    quality: int | None = None
    diffusion: Any = None
    contact_sheet: int = 36

    def __post_init__(self) -> None:
        if self.boxes is not None and self.propose:
            raise UsageError("pass either --boxes COCO or --propose, not both")
        if self.boxes is None and not self.propose:
            raise UsageError("no boxes: pass --boxes COCO (from annotate-import or synspill propose) or --propose")
        if self.feather < 0:
            raise UsageError(f"--feather {self.feather} must be >= 0")
        if not 0 < self.opacity <= 1:
            raise UsageError(f"--opacity {self.opacity} must be in (0, 1]")
        if not 0.1 <= self.spill_scale <= 10:
            raise UsageError(f"--spill-scale {self.spill_scale} must be within 0.1-10 (1 = life-size)")
        if not 0 <= self.min_box <= 0.5:
            raise UsageError(f"--min-box {self.min_box} must be within 0-0.5 (a fraction of the shorter image side)")
        if not (0 <= self.per_image[0] <= self.per_image[1]):
            raise UsageError(f"--per-image {self.per_image}: need 0 <= LOW <= HIGH")
        if self.backend not in ("procedural", "sdxl"):
            raise UsageError(f"--backend {self.backend!r}: use auto, procedural or sdxl")
        if self.batch_size < 1 or self.workers < 1:
            raise UsageError("--batch-size and --workers must be at least 1")
        if Path(self.scenes).resolve() == Path(self.out).resolve():
            raise UsageError("--out must differ from --scenes (inpaint writes a new dataset)")

    def settings(self) -> dict[str, Any]:
        d: dict[str, Any] = {"job": "inpaint", "scenes": str(self.scenes), "boxes": str(self.boxes) if self.boxes else None,
             "propose": self.propose, "per_image": list(self.per_image), "classes": list(self.classes) if self.classes else None,
             "seed": self.seed, "backend": self.backend, "feather": self.feather, "opacity": self.opacity,
             "strength": list(self.strength), "quality": self.quality}
        if self.diffusion is not None:
            d["diffusion"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.diffusion).items()
                              if k not in ("device", "dtype", "batch_size")}
        if self.spill_scale != 1.0:
            d["spill_scale"] = self.spill_scale
        if self.min_box != MIN_BOX:
            d["min_box"] = self.min_box
        return d


def _spill_worker_init(backend: str, diffusion: Any) -> None:
    import cv2

    cv2.setNumThreads(1)
    if backend == "procedural":
        from synspill.synth.procedural import ProceduralSpillBackend

        _WORKER["spill"] = ProceduralSpillBackend()
    else:
        from synspill.synth import sdxl  # type: ignore[attr-defined]

        _WORKER["spill"] = sdxl.make_spill_backend(diffusion)
    _WORKER["versions"] = package_versions()


def rle_encode(mask: np.ndarray, box: tuple[float, float, float, float] | None = None) -> dict[str, Any]:
    """COCO compressed RLE of a ``(H, W)`` bool mask (``{"size": [H, W], "counts": str}``).

    Args:
        mask: The mask.
        box: Optional ``xyxy`` box known to contain every True pixel; only its columns are
            scanned (the rest of the column-major run is zeros), which is much faster for
            small spills on large images.
    """
    from pycocotools import mask as mask_utils

    h, w = mask.shape
    x1, x2 = (0, w) if box is None else (max(0, int(box[0])), min(w, int(np.ceil(box[2]))))
    band = np.ascontiguousarray(mask[:, x1:x2].T).ravel()  # column-major order of the band
    change = np.flatnonzero(band[1:] != band[:-1]) + 1
    runs = np.diff(np.concatenate(([0], change, [band.size]))).tolist()
    if band.size and band[0]:
        runs = [0, *runs]  # COCO RLE starts with a run of zeros
    if not runs:
        runs = [0]
    runs[0] += x1 * h
    tail = (w - x2) * h
    if tail:
        if len(runs) % 2 == 1:  # last run is zeros
            runs[-1] += tail
        else:
            runs.append(tail)
    r = mask_utils.frPyObjects({"counts": runs, "size": [h, w]}, h, w)
    return {"size": [int(h), int(w)], "counts": r["counts"].decode("ascii")}


def _spill_worker(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    be = _WORKER["spill"]
    recs = []
    for it in items:
        img = read_rgb(Path(it["scene_path"]))
        h, w = img.shape[:2]
        if (w, h) != (it["width"], it["height"]):
            raise DatasetError(f"{it['scene_path']}: image is {w}x{h} but its record says {it['width']}x{it['height']}; fix the scenes COCO")
        specs = it["specs"]
        if specs:
            res = be.inpaint(img, specs)
            out_img, masks, boxes, params = res.image, res.masks, res.boxes, res.params
        else:
            out_img, masks, boxes, params = img, [], [], []
        data = encode_jpeg(out_img, it["quality"])
        write_file_atomic(Path(it["out"]) / it["file_name"], data, it["tag"])
        spills = []
        for k, spec in enumerate(specs):
            m = masks[k] if k < len(masks) else None
            b = boxes[k] if k < len(boxes) else None
            s: dict[str, Any] = {"class_id": spec.class_id, "requested_box": [round(float(v), 2) for v in spec.box],
                                 "seed": spec.seed, "auto": it["auto"][k], "params": params[k] if k < len(params) else {}}
            if spec.strength is not None and be.name != "procedural":
                s["strength"] = spec.strength
            if b is not None and m is not None and m.any():
                x1, y1, x2, y2 = b
                s["bbox"] = [x1, y1, x2 - x1, y2 - y1]
                s["area"] = int(m.sum())
                s["segmentation"] = rle_encode(m, b)
            spills.append(s)
        recs.append({"index": it["index"], "id": it["id"], "file_name": it["file_name"], "width": w, "height": h,
                     "scene_file": it["scene_file"], "seed": it["seed"], "backend": be.name, "spills": spills,
                     "jpeg_quality": it["quality"], "bytes": len(data), "versions": _WORKER["versions"]})
    return recs


def _inpaint_items(job: InpaintJob) -> tuple[list[dict[str, Any]], Any]:
    """All items (one per scene image, sorted by id) with their spill specs."""
    from synspill.coco.dataset import load_coco
    from synspill.synth.base import SpillSpec
    from synspill.synth.propose import propose_boxes

    scenes = load_scenes(job.scenes)
    per_scene: dict[int, list[tuple[tuple[float, float, float, float], int, bool]]] = {}
    if job.boxes is not None:
        bpath = Path(job.boxes)
        boxes = load_coco(bpath)
        names = boxes.category_names()
        from synspill import taxonomy

        cat_map = {}
        for cid, nm in names.items():
            tn = taxonomy.normalize_name(nm)
            if tn is None:
                raise DatasetError(f"{bpath}: category {cid} {nm!r} is not a taxonomy class; rename it to one of {', '.join(taxonomy.NAMES)}")
            cat_map[cid] = taxonomy.BY_NAME[tn].id
        for sid, anns in match_boxes(scenes, boxes, str(bpath)).items():
            per_scene[sid] = [(a.xyxy, cat_map[a.category_id], bool(a.extra.get("auto", False))) for a in anns]
    items = []
    for index, im in enumerate(sorted(scenes.images, key=lambda r: r.id)):
        if job.propose:
            rng = np.random.default_rng([job.seed, im.id, 7])
            k = int(rng.integers(job.per_image[0], job.per_image[1] + 1))
            boxes_ = [(b, c, True) for b, c in propose_boxes(im.width, im.height, im.extra.get("layout"), rng, k,
                                                               list(job.classes) if job.classes else None,
                                                               job.spill_scale, job.min_box)]
        else:
            boxes_ = per_scene.get(im.id, [])
        img_seed = derive_seed(job.seed, "image", im.id)
        srng = np.random.default_rng(img_seed)
        specs = []
        for k, (box, cls, _auto) in enumerate(boxes_):
            st = float(srng.uniform(*job.strength))
            specs.append(SpillSpec(box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])), class_id=int(cls), seed=derive_seed(job.seed, "spill", im.id, k),
                                   feather=job.feather, opacity=job.opacity, strength=round(st, 4)))
        q = job.quality or int(im.extra.get("jpeg_quality", DEFAULT_QUALITY))
        items.append({"index": index, "id": im.id, "file_name": f"images/{im.id:06d}.jpg", "width": im.width, "height": im.height,
                      "scene_path": str(scenes.image_path(im)), "scene_file": im.file_name, "seed": img_seed, "specs": specs,
                      "auto": [b[2] for b in boxes_], "quality": q, "out": str(job.out)})
    return items, scenes


def run_inpaint(job: InpaintJob, force: bool = False, on_progress: Progress | None = None,
                on_start: Callable[[int, int], None] | None = None, merge_wait_s: float = 1800.0) -> Path | None:
    """Paint spills into every scene (or resume); write images, manifest, COCO, contact sheet.

    Returns:
        Path of ``annotations.json``, or None when this shard does not merge.
    """
    out = Path(job.out)
    items, scenes = _inpaint_items(job)  # validates inputs before anything is written
    missing = [it for it in items if not Path(it["scene_path"]).exists()]
    if missing:
        raise DatasetError(f"{job.scenes}: scene image {missing[0]['scene_path']!r} (id {missing[0]['id']}) does not exist; "
                           "fix the scenes folder or its scenes.json")
    done = _prepare_out(out, job.settings(), force, job.shard)
    i0, nsh = job.shard
    todo = [dict(it, tag=shard_tag(job.shard)) for it in items if it["index"] % nsh == i0 and it["index"] not in done]
    if on_start:
        on_start(sum(1 for i in done if i % nsh == i0 and i < len(items)), len(todo))
    workers = job.workers if job.backend != "sdxl" else 1
    mw = _ManifestWriter(out / manifest_name(job.shard))
    try:
        _run_items(_spill_worker, list(_batches(todo, job.batch_size)), workers, _spill_worker_init,
                   (job.backend, job.diffusion), mw, on_progress)
    finally:
        mw.close()
    return _finish_shard(out, job.shard, lambda: merge_inpaint(out, len(items), job.contact_sheet), merge_wait_s)


def merge_inpaint(out: Path, n: int | None = None, contact_sheet: int | None = None) -> Path:
    """Build ``annotations.json`` (and the contact sheet) from the manifests.

    Annotation ids run 1..N in (image id, spill order); spills with nothing visible are
    left out of the COCO file (they stay in the manifest). ``contact_sheet`` images go on
    the sheet (None: :class:`InpaintJob`'s default; 0: no sheet).
    """
    if contact_sheet is None:
        contact_sheet = InpaintJob.contact_sheet
    from synspill.coco.dataset import Annotation, CocoDataset, ImageRecord, save_coco

    out = Path(out)
    settings = _read_settings(out)
    recs = read_records(out)
    if n is None:
        n = len(load_scenes(settings["scenes"]).images)
    _check_complete(out, recs, n, "images")
    images: list[ImageRecord] = []
    anns: list[Annotation] = []
    for _, r in sorted(recs.items(), key=lambda kv: kv[1]["id"]):
        images.append(ImageRecord(r["id"], r["file_name"], r["width"], r["height"],
                                  {"seed": r["seed"], "scene_file": r["scene_file"], "backend": r["backend"]}))
        for k, s in enumerate(r["spills"]):
            if "bbox" not in s:
                continue
            anns.append(Annotation(len(anns) + 1, r["id"], s["class_id"], s["bbox"], float(s["area"]), 0, s["segmentation"],
                                   {"auto": bool(s["auto"]), "spill": k, "requested_box": s["requested_box"]}))
    ds = CocoDataset(images=images, annotations=anns, root=out,
                     info={"description": "synspill synthetic spills", "job": settings, "versions": package_versions()})
    _merge_manifests(out, recs)
    path = save_coco(ds, out / "annotations.json")
    if contact_sheet > 0:
        write_contact_sheet(ds, out / "contact_sheet.png", contact_sheet)
    return path


def write_contact_sheet(ds: Any, path: Path, n: int = 36, tile: int = 256, cols: int = 6) -> Path:
    """A PNG grid of the first ``n`` images with their boxes and class names drawn.

    Args:
        ds: :class:`CocoDataset` with ``root`` set.
        path: PNG to write (atomically).
        n: Images on the sheet.
        tile: Tile side in pixels.
        cols: Tiles per row.
    """
    import cv2

    from synspill import taxonomy
    from synspill.io import write_bytes

    ims = sorted(ds.images, key=lambda r: r.id)[:n]
    rows = max(1, (len(ims) + cols - 1) // cols)
    sheet = np.full((rows * tile, cols * tile, 3), 24, np.uint8)
    by_img = ds.anns_by_image()
    palette = [(230, 25, 75), (60, 180, 245), (255, 225, 25), (245, 130, 48), (60, 220, 75), (240, 50, 230),
               (170, 110, 40), (250, 250, 250)]
    for k, im in enumerate(ims):
        img = _read_small(ds.image_path(im), tile)
        s = tile / max(im.width, im.height)
        small = cv2.resize(img, (max(1, int(im.width * s)), max(1, int(im.height * s))), interpolation=cv2.INTER_AREA)
        for a in by_img.get(im.id, []):
            x, y, w, h = (v * s for v in a.bbox)
            col = palette[(a.category_id - 1) % len(palette)]
            cv2.rectangle(small, (int(x), int(y)), (int(x + w), int(y + h)), col, 1, cv2.LINE_AA)
            name = taxonomy.BY_ID[a.category_id].name if a.category_id in taxonomy.BY_ID else str(a.category_id)
            ty = int(y) - 3 if y > 12 else int(y + h) + 10
            cv2.putText(small, name, (int(x), ty), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 2, cv2.LINE_AA)
            cv2.putText(small, name, (int(x), ty), cv2.FONT_HERSHEY_SIMPLEX, 0.33, col, 1, cv2.LINE_AA)
        r, c = divmod(k, cols)
        sheet[r * tile:r * tile + small.shape[0], c * tile:c * tile + small.shape[1]] = small
        cv2.putText(sheet, str(im.id), (c * tile + 4, r * tile + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError(f"could not encode the contact sheet {path}")
    write_bytes(path, png.tobytes())
    return path


def _read_small(path: Path, tile: int) -> np.ndarray:
    """Decode an image at (at least) ``tile`` px on its short side; JPEGs use DCT scaling (fast)."""
    data = path.read_bytes()
    if data[:3] == b"\xff\xd8\xff":
        import simplejpeg

        try:
            return simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=tile, min_width=tile)
        except ValueError:
            pass
    return read_rgb(path)
