"""Stage 1 as a job: clean background scenes (``synspill scenes``), and reading scenes back.

A :class:`ScenesJob` runs on the resumable, shardable job runner
(:mod:`synspill.synth.jobrunner`): item ``i`` is image id ``i + 1``, file
``images/{i+1:06d}.jpg``; ``scenes.json`` (COCO images with ``seed``, ``scene_type`` and
``layout``) is merged from the manifest. :func:`load_scenes` reads any scenes folder for
``propose`` and ``inpaint``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synspill.errors import DatasetError, UsageError
from synspill.params import FromParams
from synspill.synth.base import DiffusionOptions
from synspill.synth.jobrunner import (
    DEFAULT_QUALITY,
    WORKER,
    Progress,
    derive_seed,
    encode_jpeg,
    merge_job,
    package_versions,
    run_job,
    write_file_atomic,
)

#: Largest scene side (px): 8192^2 RGB is 200 MB per image before the renderer's own buffers.
MAX_SIDE = 8192


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
    diffusion: DiffusionOptions | None = None
    scene_prompts: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise UsageError(f"--n {self.n}: need at least one scene")
        if self.width < 32 or self.height < 32 or self.width % 8 or self.height % 8:
            raise UsageError(f"--size {self.width}x{self.height}: width and height must be multiples of 8, at least 32")
        if max(self.width, self.height) > MAX_SIDE:
            raise UsageError(f"--size {max(self.width, self.height)} is larger than {MAX_SIDE} px, more than a scene needs "
                             "(SDXL works at 1024); use e.g. --size 1024")
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
        if self.backend == "sdxl" and self.diffusion is None:
            raise UsageError("the sdxl backend needs its diffusion options (weights: --model)")
        if self.backend == "backgrounds" and not self.backgrounds:
            raise UsageError("the backgrounds backend needs --backgrounds DIR")
        if self.quality is not None and not 1 <= self.quality <= 100:
            raise UsageError(f"--quality {self.quality} must be within 1-100")

    def settings(self) -> dict[str, Any]:
        """What identifies the run (compared on resume)."""
        d: dict[str, Any] = {"job": "scenes", "n": self.n, "seed": self.seed, "backend": self.backend, "width": self.width,
             "height": self.height, "scene_types": list(self.types()), "backgrounds": self.backgrounds, "quality": self.quality}
        if self.backgrounds and Path(self.backgrounds).is_dir():
            d["backgrounds_files"] = backgrounds_fingerprint(self.backgrounds)
        if self.diffusion is not None:
            d["diffusion"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.diffusion).items()
                              if k not in ("device", "dtype", "batch_size")}
        return d

    def types(self) -> tuple[str, ...]:
        """Scene types drawn from: ``scene_types``, else the prompt set's (sdxl), else the procedural ones."""
        from synspill.synth.procedural import DEFAULT_TYPES

        if self.scene_types:
            return self.scene_types
        if self.backend == "sdxl" and self.scene_prompts.get("types"):
            return tuple(self.scene_prompts["types"])
        return DEFAULT_TYPES

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


def _scene_worker_init(backend: str, backgrounds: str | None, diffusion: DiffusionOptions | None, prompts: dict[str, Any]) -> None:
    import cv2

    cv2.setNumThreads(1)
    if backend == "procedural":
        from synspill.synth.procedural import ProceduralSceneBackend

        WORKER["scene"] = ProceduralSceneBackend()
    elif backend == "backgrounds":
        from synspill.synth.procedural import BackgroundSceneBackend

        WORKER["scene"] = BackgroundSceneBackend(backgrounds or "")
    else:
        from synspill.synth import sdxl  # type: ignore[attr-defined]

        assert diffusion is not None  # ScenesJob checks it
        WORKER["scene"] = sdxl.make_scene_backend(diffusion, prompts)
    WORKER["versions"] = package_versions()


def _scene_worker(items: list[tuple[int, Any, str, int | None, str]]) -> list[dict[str, Any]]:
    """Render, encode and write one batch; return its manifest records."""
    be = WORKER["scene"]
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
                     "versions": WORKER["versions"]})
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

    Raises:
        DatasetError: ``--backgrounds`` is not a folder of images (checked before ``out`` is made).
    """
    out = Path(job.out)
    if job.backend == "backgrounds":
        check_backgrounds(job.backgrounds or "")
    if job.backgrounds and Path(job.backgrounds).is_dir():  # a truncated photo stops the run before any work, named
        from synspill.io import check_image_file, list_images

        for f in list_images(job.backgrounds):
            check_image_file(f)
    return run_job(out, job.settings(), job.n, lambda todo, tag: [(i, job.spec(i), str(out), job.quality, tag) for i in todo],
                   _scene_worker, (_scene_worker_init, (job.backend, job.backgrounds, job.diffusion, job.scene_prompts)),
                   lambda: merge_scenes(out, job.n), force=force, shard=job.shard,
                   workers=job.workers if job.backend != "sdxl" else 1, batch_size=job.batch_size,
                   on_progress=on_progress, on_start=on_start, merge_wait_s=merge_wait_s)


def merge_scenes(out: Path, n: int | None = None) -> Path:
    """Build ``scenes.json`` (COCO images with ``seed``, ``scene_type``, ``layout``) from the manifests."""
    from synspill.coco.dataset import ImageRecord

    def build(recs: dict[int, dict[str, Any]]) -> tuple[list[Any], list[Any]]:
        images = [ImageRecord(r["id"], r["file_name"], r["width"], r["height"],
                              {"seed": r["seed"], "scene_type": r["scene_type"], "backend": r["backend"],
                               **({"layout": r["layout"]} if r.get("layout") else {}),
                               **({"jpeg_quality": r["params"]["jpeg_quality"]} if "jpeg_quality" in r.get("params", {}) else {})})
                  for _, r in sorted(recs.items())]
        return images, []

    out = Path(out)
    merge_job(out, n if n is not None else lambda settings: int(settings.get("n", 0)), "scenes", "scenes.json",
              "synspill scenes", build)
    return out / "scenes.json"


def backgrounds_fingerprint(folder: str | os.PathLike) -> str:
    """``"<count> images <hash>"`` of the photo names under ``folder``.

    A scene picks its photo by index into the sorted list, so the same seed means the same
    photo only for the same list: resuming ``scenes --backgrounds`` after photos were added or
    removed would mix two draws. The fingerprint is part of the job's settings, which makes
    that a clear "other settings" error instead.
    """
    import hashlib

    from synspill.io import list_images

    root = Path(folder)
    names = [p.relative_to(root).as_posix() for p in list_images(root)]
    return f"{len(names)} images {hashlib.sha256(chr(10).join(names).encode()).hexdigest()[:12]}"


def check_backgrounds(folder: str | os.PathLike) -> None:
    """Raise unless ``folder`` is a folder holding at least one image (``--backgrounds``).

    Raises:
        DatasetError: Missing, a file, or no images in it -- each said as such.
    """
    from synspill.io import IMAGE_SUFFIXES, list_images

    p = Path(folder)
    if p.is_file():
        raise DatasetError(f"{p}: --backgrounds is a file, not a folder; pass the folder that holds your plant photos "
                           f"(e.g. --backgrounds {p.parent})")
    if not p.is_dir():
        raise DatasetError(f"{p}: --backgrounds folder does not exist; pass a folder of plant photos")
    if not list_images(p):
        raise DatasetError(f"{p}: no images ({', '.join(IMAGE_SUFFIXES)}) in the --backgrounds folder; pass a folder of plant photos")


# ---- scenes input (for propose / inpaint) ---------------------------------------------
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
        except Exception as e:  # OSError; or the ImportError of ultralytics' patched Image.open (pi_heif)
            raise DatasetError(f"{f}: not a readable image ({e}); remove it from {p}") from None
        images.append(ImageRecord(i, str(f.relative_to(p)), w, h))
    return CocoDataset(images=images, annotations=[], root=p)
