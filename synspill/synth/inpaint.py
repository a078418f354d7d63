"""Stage 3 as a job: spills painted into scenes inside boxes (``synspill inpaint``).

An :class:`InpaintJob` runs on the resumable, shardable job runner
(:mod:`synspill.synth.jobrunner`): one item per scene image (sorted by id), with its
spill specs (boxes from a COCO file matched to the scenes by file name, or proposed on the
fly). ``annotations.json`` (one annotation per visible spill: class, tight ``xywh`` box,
RLE mask) and ``contact_sheet.png`` are merged from the manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synspill.errors import DatasetError, UsageError
from synspill.io import check_image_file
from synspill.params import FromParams
from synspill.synth import MIN_BOX, jobrunner
from synspill.synth.base import DiffusionOptions
from synspill.synth.scenes import load_scenes


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
        close_up: With ``propose``: share of images whose first spill is a close-up (box side
            35-95 % of the image's).
        classes: Taxonomy ids for proposals (None: all).
        seed: Base seed; spill ``k`` of image ``id`` uses :func:`~synspill.synth.jobrunner.derive_seed` ``(seed, "spill", id, k)``.
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
    close_up: float = 0.0
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
    diffusion: DiffusionOptions | None = None
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
        from synspill.synth.propose import check_options

        check_options(self.per_image, self.spill_scale, self.min_box, self.close_up)
        if self.backend not in ("procedural", "sdxl"):
            raise UsageError(f"--backend {self.backend!r}: use auto, procedural or sdxl")
        if self.backend == "sdxl" and self.diffusion is None:
            raise UsageError("the sdxl backend needs its diffusion options (weights: --model)")
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
        if self.close_up:
            d["close_up"] = self.close_up
        return d


def _spill_worker_init(backend: str, diffusion: DiffusionOptions | None) -> None:
    import cv2

    cv2.setNumThreads(1)
    if backend == "procedural":
        from synspill.synth.procedural import ProceduralSpillBackend

        jobrunner.WORKER["spill"] = ProceduralSpillBackend()
    else:
        from synspill.synth import sdxl  # type: ignore[attr-defined]

        assert diffusion is not None  # InpaintJob checks it
        jobrunner.WORKER["spill"] = sdxl.make_spill_backend(diffusion)
    jobrunner.WORKER["versions"] = jobrunner.package_versions()


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
    be = jobrunner.WORKER["spill"]
    recs = []
    for it in items:
        img = jobrunner.read_rgb(Path(it["scene_path"]))
        h, w = img.shape[:2]
        if (w, h) != (it["width"], it["height"]):
            raise DatasetError(f"{it['scene_path']}: image is {w}x{h} but its record says {it['width']}x{it['height']}; fix the scenes COCO")
        specs = it["specs"]
        if specs:
            res = be.inpaint(img, specs, layout=it.get("layout")) if getattr(be, "uses_layout", False) else be.inpaint(img, specs)
            out_img, masks, boxes, params = res.image, res.masks, res.boxes, res.params
        else:
            out_img, masks, boxes, params = img, [], [], []
        data = jobrunner.encode_jpeg(out_img, it["quality"])
        jobrunner.write_file_atomic(Path(it["out"]) / it["file_name"], data, it["tag"])
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
                     "jpeg_quality": it["quality"], "bytes": len(data), "versions": jobrunner.WORKER["versions"]})
    return recs


def _inpaint_items(job: InpaintJob) -> tuple[list[dict[str, Any]], Any]:
    """All items (one per scene image, sorted by id) with their spill specs."""
    from synspill.coco.dataset import load_coco
    from synspill.synth import room
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
        room_v = ((im.extra.get("layout") or {}).get("room") or {}).get("v")
        if room_v is not None and room_v != room.VERSION:
            raise DatasetError(f"{scenes.image_path(im)}: rendered by another synspill (place layout v{room_v}; this one "
                               f"rebuilds v{room.VERSION}); run `synspill scenes` again into a new folder")
        if job.propose:
            rng = np.random.default_rng([job.seed, im.id, 7])
            k = int(rng.integers(job.per_image[0], job.per_image[1] + 1))
            boxes_ = [(b, c, True) for b, c in propose_boxes(im.width, im.height, im.extra.get("layout"), rng, k,
                                                               list(job.classes) if job.classes else None,
                                                               job.spill_scale, job.min_box, job.close_up)]
        else:
            boxes_ = per_scene.get(im.id, [])
        img_seed = jobrunner.derive_seed(job.seed, "image", im.id)
        srng = np.random.default_rng(img_seed)
        specs = []
        for k, (box, cls, _auto) in enumerate(boxes_):
            st = float(srng.uniform(*job.strength))
            specs.append(SpillSpec(box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])), class_id=int(cls), seed=jobrunner.derive_seed(job.seed, "spill", im.id, k),
                                   feather=job.feather, opacity=job.opacity, strength=round(st, 4)))
        q = job.quality or int(im.extra.get("jpeg_quality", jobrunner.DEFAULT_QUALITY))
        items.append({"index": index, "id": im.id, "file_name": f"images/{im.id:06d}.jpg", "width": im.width, "height": im.height,
                      "scene_path": str(scenes.image_path(im)), "scene_file": im.file_name, "seed": img_seed, "specs": specs,
                      "auto": [b[2] for b in boxes_], "quality": q, "out": str(job.out), "layout": im.extra.get("layout")})
    return items, scenes


def run_inpaint(job: InpaintJob, force: bool = False, on_progress: jobrunner.Progress | None = None,
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
    if items and not any(it["specs"] for it in items):  # a dataset of clean scenes is not what inpaint makes
        if job.boxes is not None:
            raise DatasetError(f"{job.boxes}: no box over the {len(items)} scene(s) of {job.scenes}: nothing to paint; "
                               "draw boxes and import them (annotate-import), or propose some (synspill propose, --propose)")
        raise DatasetError(f"--propose: no box fits the {len(items)} scene(s) of {job.scenes}: nothing to paint; "
                           f"lower --min-box (now {job.min_box:g}) or --spill-scale (now {job.spill_scale:g}), or raise --per-image")
    for it in items:  # a truncated scene stops the run before any work, naming the file
        check_image_file(it["scene_path"])
    return jobrunner.run_job(out, job.settings(), len(items), lambda todo, tag: [dict(items[i], tag=tag) for i in todo],
                   _spill_worker, (_spill_worker_init, (job.backend, job.diffusion)),
                   lambda: merge_inpaint(out, len(items), job.contact_sheet), force=force, shard=job.shard,
                   workers=job.workers if job.backend != "sdxl" else 1, batch_size=job.batch_size,
                   on_progress=on_progress, on_start=on_start, merge_wait_s=merge_wait_s)


def merge_inpaint(out: Path, n: int | None = None, contact_sheet: int | None = None) -> Path:
    """Build ``annotations.json`` (and the contact sheet) from the manifests.

    Annotation ids run 1..N in (image id, spill order); spills with nothing visible are
    left out of the COCO file (they stay in the manifest). ``contact_sheet`` images go on
    the sheet (None: :class:`InpaintJob`'s default; 0: no sheet).
    """
    if contact_sheet is None:
        contact_sheet = InpaintJob.contact_sheet
    from synspill.coco.dataset import Annotation, ImageRecord

    def build(recs: dict[int, dict[str, Any]]) -> tuple[list[Any], list[Any]]:
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
        return images, anns

    out = Path(out)
    ds = jobrunner.merge_job(out, n if n is not None else lambda settings: len(load_scenes(settings["scenes"]).images), "images",
                   "annotations.json", "synspill synthetic spills", build)
    if contact_sheet > 0:
        write_contact_sheet(ds, out / "contact_sheet.png", contact_sheet)
    return out / "annotations.json"


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
    return jobrunner.read_rgb(path)
