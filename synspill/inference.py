"""Run any predictor over a folder of images or a COCO file and write COCO results.

``synspill predict`` is a thin shell over :func:`predict_files` (load the model a
:class:`~synspill.models.PredictorConfig` names, then :func:`predict_to_results`). The model comes from
:func:`synspill.predictors.load_predictor` (YOLO, RF-DETR or the VLM), so every backend is
driven the same way. Images are decoded by a pool of threads (``workers``) one batch ahead,
while the model works on the previous batch.

Outputs, next to ``OUT`` (a ``.json`` path):

- ``OUT``: COCO results, a list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``
  (absolute pixels of the original image, taxonomy ids; ``score`` omitted when a model gives none);
- the sidecar ``<stem>.meta.json`` (:func:`synspill.detections.sidecar_path`): ``{"model", "backend", "n_images", "n_detections", "unscored",
  "parse_dropped": {reason: count}, ...}`` -- what ``synspill eval`` reports beside the scores;
- ``<stem>.images.json`` when the images came from a folder: the generated COCO image list
  (ids, file names, sizes) that the results' ``image_id`` refer to.

**Resume.** While it runs, each image's results are appended to ``<stem>.partial.jsonl``
(first line: the run's settings; flushed per image, fsynced per batch). A run stopped at any
point (``kill -9``, Ctrl-C, SIGTERM) is continued by the same command: finished images are
skipped, a torn last line is dropped, other settings are refused (``--force`` starts over).
``OUT`` is written atomically at the end, from the per-image records in dataset order (the
same bytes as an uninterrupted run), and the partial file is removed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from synspill.coco.dataset import CocoDataset, ImageRecord, load_coco
from synspill.detections import Detections, Predictor, write_results, write_sidecar
from synspill.errors import DatasetError, OutputExists, UsageError
from synspill.io import IMAGE_SUFFIXES, check_image_file, list_images, write_json
from synspill.models import PredictorConfig

log = logging.getLogger(__name__)


def image_source(path: str | Path) -> tuple[CocoDataset, bool]:
    """The images to run on: a COCO file / dataset folder, or a plain folder of images.

    Args:
        path: A COCO JSON, a folder with ``annotations.json``, or a folder of image files
            (searched recursively, sorted by path; ids 1..N in that order).

    Returns:
        ``(dataset, generated)``; ``generated`` is True when the image list was made here.

    Raises:
        DatasetError: Missing path, or a folder with neither a COCO file nor images.
    """
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p}: no such file or folder; pass a folder of images or a COCO file (--images)")
    if p.is_file() or any((p / n).exists() for n in ("annotations.json", "_annotations.coco.json", "instances.json", "coco.json")):
        return load_coco(p), False
    files = list_images(p)
    if not files:
        raise DatasetError(f"{p}: folder has no images ({', '.join(IMAGE_SUFFIXES)}) and no annotations.json")
    from PIL import Image

    images = []
    for i, f in enumerate(files, 1):
        try:
            with Image.open(f) as im:
                w, h = im.size
        except Exception as e:  # also the ImportError of ultralytics' patched Image.open (pi_heif)
            raise DatasetError(f"{f}: not a readable image ({e}); remove it from {p}") from None
        images.append(ImageRecord(i, str(f.relative_to(p)), w, h))
    return CocoDataset(images=images, annotations=[], root=p.absolute()), True


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to an RGB ``uint8`` ``(H, W, 3)`` array (EXIF orientation not applied, as COCO tools do)."""
    import cv2

    a = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if a is None:  # formats OpenCV lacks: fall back to PIL
        from PIL import Image

        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        except Exception as e:  # also the ImportError of ultralytics' patched Image.open (pi_heif)
            raise DatasetError(f"{path}: not a readable image ({type(e).__name__}: {e}); replace it with a readable "
                               "copy, then run the same command again (finished images are kept)") from None
    return a[..., ::-1]


def decode_workers(workers: int | None = None) -> int:
    """Decoding threads: ``workers``, or by default one per usable CPU core up to 8 (JPEG decoding releases the GIL).

    Raises:
        UsageError: ``workers`` is below 1.
    """
    if workers is None:
        from synspill.runtime import default_workers

        return default_workers()
    if workers < 1:
        raise UsageError(f"--workers {workers} must be at least 1 (or leave it out: one per CPU core, up to 8)")
    return workers


def iter_predictions(predictor: Predictor, ds: CocoDataset, batch: int = 8, keep_images: bool = False,
                     workers: int | None = None) -> Iterator[tuple[ImageRecord, Detections, np.ndarray | None]]:
    """Run ``predictor`` over every image of ``ds`` in batches, decoding the next batch meanwhile.

    Args:
        predictor: Any predictor.
        ds: The images.
        batch: Images per ``predictor.predict`` call.
        keep_images: Yield each decoded image too (for drawing).
        workers: Decoding threads (:func:`decode_workers`; None: one per core, up to 8).

    Images of one size are taken one after the other (sizes in order of first appearance,
    dataset order within a size), so a folder where sizes repeat runs mostly one-shape
    batches, which a detector need not split or pad across images; batches stay full, so a
    folder of all-different sizes batches as before (a VLM pads text, not images).

    Yields:
        ``(image record, detections, RGB image or None)`` in that order; the image is kept
        only when ``keep_images`` (for drawing).

    Raises:
        DatasetError: A file is missing/unreadable, or its size differs from the record
            (boxes would be in the wrong coordinates).
    """
    by_size: dict[tuple[int, int], list[ImageRecord]] = {}  # insertion order: sizes by first appearance
    for im in ds.images:
        by_size.setdefault((im.width, im.height), []).append(im)
    records = [im for g in by_size.values() for im in g]
    chunks = [records[i:i + batch] for i in range(0, len(records), batch)]

    def load(im: ImageRecord) -> np.ndarray:
        p = ds.image_path(im)
        if not p.exists():
            raise DatasetError(f"image {im.id} file {str(p)!r} does not exist; fix file_name or the image folder")
        a = read_rgb(p)
        if a.shape[1] != im.width or a.shape[0] != im.height:
            raise DatasetError(f"image {im.id} {str(p)!r} is {a.shape[1]}x{a.shape[0]} but the COCO record says {im.width}x{im.height}; fix the record")
        return a

    if not chunks:
        return
    pool = ThreadPoolExecutor(max_workers=decode_workers(workers))
    try:
        pending = [pool.submit(load, im) for im in chunks[0]]
        for k, chunk in enumerate(chunks):
            arrays = [f.result() for f in pending]
            if k + 1 < len(chunks):
                pending = [pool.submit(load, im) for im in chunks[k + 1]]
            dets = predictor.predict(arrays)
            if len(dets) != len(arrays):
                raise RuntimeError(f"{predictor.name} returned {len(dets)} results for {len(arrays)} images")
            for im, d, a in zip(chunk, dets, arrays, strict=True):
                yield im, d, (a if keep_images else None)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def partial_path(out: str | Path) -> Path:
    """Where an unfinished run keeps its per-image results: ``preds.json`` -> ``preds.partial.jsonl``."""
    p = Path(out)
    return p.with_name(p.name.removesuffix(".json") + ".partial.jsonl")


def _run_settings(model: str, backend: str, images: str | Path, ds: CocoDataset, save_images: str | Path | None,
                  extra_meta: dict[str, Any] | None) -> dict[str, Any]:
    """What identifies a prediction run (compared on resume; the device may change).

    ``image_list`` fingerprints the images (ids, files, sizes): a folder that gained or lost
    a file numbers its images differently, so finished results would belong to other ids.
    """
    import hashlib

    meta = {k: v for k, v in (extra_meta or {}).items() if k != "device"}
    listing = json.dumps([[im.id, im.file_name, im.width, im.height] for im in ds.images]).encode()
    return json.loads(json.dumps({"model": model, "backend": backend, "images": str(Path(images).absolute()),
                                  "image_list": hashlib.sha1(listing).hexdigest()[:16],
                                  "save_images": str(Path(save_images).absolute()) if save_images else None, **meta},
                                 default=str))


def check_images(ds: CocoDataset) -> None:
    """Every image of ``ds`` exists and is not cut short (before any work; see :func:`synspill.io.check_image_file`).

    Raises:
        DatasetError: The first missing or truncated file, named.
    """
    for im in ds.images:
        p = ds.image_path(im)
        if not p.is_file():
            raise DatasetError(f"image {im.id} file {str(p)!r} does not exist; fix file_name or the image folder")
        check_image_file(p)


class _Partial:
    """The per-image results of an unfinished run (:func:`partial_path`), appended as they come.

    Args:
        out: The results path.
        settings: The run's settings (the file's first line).
        resume: Keep the finished images of a previous run with the same settings; False
            starts over.
        batch: Records between fsyncs.

    Raises:
        OutputExists: The file holds a run with other settings (and ``resume``).
    """

    def __init__(self, out: Path, settings: dict[str, Any], resume: bool, batch: int = 8) -> None:
        self.path, self.settings, self.batch = partial_path(out), settings, max(1, batch)
        self.done: dict[int, dict[str, Any]] = {}
        if resume and self.path.exists():
            self.done = self._read()
        self.f: Any = None
        self.n = 0

    def _read(self) -> dict[int, dict[str, Any]]:
        done: dict[int, dict[str, Any]] = {}
        with open(self.path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        try:
            head = json.loads(lines[0])["settings"] if lines else None
        except (ValueError, KeyError, TypeError):
            head = None
        if head is None:
            return done  # torn at the very start: nothing finished
        if head != self.settings:
            diff = [f"{k}: {head.get(k)!r} -> {self.settings.get(k)!r}" for k in sorted(set(head) | set(self.settings))
                    if head.get(k) != self.settings.get(k)]
            raise OutputExists(f"{self.path} holds an unfinished prediction run with other settings ({'; '.join(diff[:3])}); "
                               "run with the same settings to continue it, or pass --force to start over")
        for line in lines[1:]:
            try:
                r = json.loads(line)
                done[int(r["image_id"])] = r
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line (killed mid-write)
        return done

    def open(self, keep: set[int]) -> None:
        """Rewrite the file with the settings and the kept records, then append from there."""
        from synspill.io import write_text

        self.done = {i: r for i, r in self.done.items() if i in keep}
        head = json.dumps({"settings": self.settings}, separators=(",", ":"))
        write_text(self.path, head + "\n" + "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in self.done.values()))
        self.f = open(self.path, "a", encoding="utf-8")

    def add(self, image_id: int, d: Detections) -> None:
        """Append one image's results (flushed: a kill loses at most this line)."""
        line = json.dumps({"image_id": image_id, "results": d.to_results(image_id), "n_unscored": int(np.isnan(d.score).sum()),
                           "dropped": {str(k): int(v) for k, v in (d.meta.get("dropped") or {}).items()}},
                          separators=(",", ":"))
        try:
            self.f.write(line + "\n")
            self.f.flush()
            self.n += 1
            if self.n % self.batch == 0:
                os.fsync(self.f.fileno())
        except OSError as e:  # a full disk names no file
            e.filename = e.filename or str(self.path)
            raise
        self.done[image_id] = json.loads(line)  # as a resumed run reads it back: the same bytes either way

    def close(self) -> None:
        if self.f is not None:
            try:
                self.f.close()
            except OSError:  # only after a failed add (already raised)
                pass
            self.f = None


@dataclass
class PredictSummary:
    """What :func:`predict_to_results` wrote and how it went."""

    results: Path
    meta: Path
    images_list: Path | None
    n_images: int
    n_detections: int
    seconds: float
    meta_data: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.n_images / self.seconds if self.seconds > 0 else float("nan")


def predict_to_results(
    predictor: Predictor,
    images: str | Path,
    out: str | Path,
    batch: int = 8,
    backend: str = "",
    model: str = "",
    save_images: str | Path | None = None,
    force: bool = True,
    extra_meta: dict[str, Any] | None = None,
    on_item: Callable[[ImageRecord, Detections], None] | None = None,
    resume: bool = True,
    workers: int | None = None,
) -> PredictSummary:
    """Predict on every image and write COCO results plus the ``.meta.json`` sidecar.

    Resumable: images finished by an interrupted run with the same settings (their
    records in :func:`partial_path`) are not predicted again.

    Args:
        predictor: Any :class:`~synspill.detections.Predictor`.
        images: Folder of images, or a COCO file (its image ids are used).
        out: Results path (``.json``).
        batch: Images per ``predictor.predict`` call.
        backend: Backend name for the sidecar.
        model: Model spec for the sidecar.
        save_images: Folder for annotated copies of the images (None: none).
        force: Overwrite existing results.
        extra_meta: More keys for the sidecar (thresholds, sizes ...).
        on_item: Called after each image predicted now (progress).
        resume: Continue an interrupted run (False: start over).
        workers: Image decoding threads (None: one per core, up to 8).

    Raises:
        OutputExists: ``out`` exists and not ``force``, or an unfinished run with other
            settings is in the way (and ``resume``).
    """
    out = Path(out)
    if out.exists() and not force:
        raise OutputExists(f"{out} exists; pass --force to overwrite it or choose another --out")
    ds, generated = image_source(images)
    if not ds.images:
        raise DatasetError(f"{images}: no images to predict on")
    check_images(ds)
    t0 = time.perf_counter()
    part = _Partial(out, _run_settings(model or predictor.name, backend, images, ds, save_images, extra_meta), resume, batch)
    part.open({im.id for im in ds.images})
    resumed = len(part.done)
    if resumed:
        log.info("resuming: %d of %d images already predicted (%s)", resumed, len(ds.images), part.path)
    todo = replace(ds, images=[im for im in ds.images if im.id not in part.done])
    drawer = _Drawer(Path(save_images)) if save_images else None
    try:
        for im, d, arr in iter_predictions(predictor, todo, batch, keep_images=drawer is not None, workers=workers):
            part.add(im.id, d)
            if drawer is not None and arr is not None:
                drawer.draw(im, arr, d)
            if on_item is not None:
                on_item(im, d)
    finally:
        part.close()
    seconds = time.perf_counter() - t0
    records: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    unscored = 0
    for im in ds.images:  # dataset order, whichever run predicted the image
        r = part.done[im.id]
        records.extend(r["results"])
        unscored += int(r["n_unscored"])
        dropped.update({k: int(v) for k, v in r["dropped"].items()})
    images_list = None
    if generated:
        images_list = out.with_name(out.name.removesuffix(".json") + ".images.json")
        from synspill import taxonomy

        doc = {"info": {"description": f"image list for {out.name}", "image_root": str(ds.root)}, "licenses": [],
               "images": [im.to_dict() for im in ds.images], "annotations": [], "categories": taxonomy.coco_categories()}
        write_json(images_list, doc)
    write_results(out, records)
    meta = {
        "model": model or predictor.name,
        "backend": backend,
        "predictor": predictor.name,
        "n_images": len(ds.images),
        "n_detections": len(records),
        "unscored": unscored > 0,
        "n_unscored": unscored,
        "parse_dropped": dict(sorted(dropped.items())),
        "images": str(Path(images).absolute()),
        "images_list": str(images_list) if images_list else None,
        "seconds": round(seconds, 3),
        **({"resumed_images": resumed} if resumed else {}),
        **(extra_meta or {}),
    }
    meta_path = write_sidecar(out, meta)
    part.path.unlink(missing_ok=True)  # the results are complete: the per-image records have served
    return PredictSummary(out, meta_path, images_list, len(ds.images), len(records), seconds, meta)


def predict_files(
    cfg: PredictorConfig,
    images: str | Path,
    out: str | Path,
    save_images: str | Path | None = None,
    force: bool = False,
    extra_meta: dict[str, Any] | None = None,
    on_start: Callable[[str, int, int], None] | None = None,
    on_item: Callable[[ImageRecord, Detections], None] | None = None,
    workers: int | None = None,
) -> PredictSummary:
    """Load the model ``cfg`` names and write its COCO results on ``images`` (plus the sidecar).

    The output and the images are checked before the (slow) model load. The sidecar records
    ``cfg``'s ``conf``, ``imgsz``, ``classes``, ``device``, ``adapter`` and ``prompt``, then
    ``extra_meta``. An interrupted run with the same settings is continued (see
    :func:`predict_to_results`); ``force`` starts over.

    Args:
        cfg: The model and how to run it (``backend`` ``auto`` is resolved here).
        images: Folder of images, or a COCO file (its image ids are kept for eval).
        out: Results path (``.json``).
        save_images: Folder for annotated copies of the images (None: none).
        force: Overwrite existing results and discard an unfinished run's.
        extra_meta: More sidecar keys (the experiment runner's cell and evaluation hash).
        on_start: Called with ``(backend, n_images, n_already_done)`` once the inputs are known to be good.
        on_item: Called after each image predicted now (progress).
        workers: Image decoding threads (None: one per core, up to 8).

    Raises:
        OutputExists: ``out`` exists and not ``force``, or an unfinished run with other settings.
        DatasetError: No images, or a missing, truncated or unreadable one (named; checked
            before the model loads, except files that are complete but undecodable).
    """
    from synspill.predictors import load_predictor

    out = Path(out)
    if out.exists() and not force:
        raise OutputExists(f"{out} exists; pass --force to overwrite it or choose another --out")
    ds, _ = image_source(images)
    check_images(ds)
    backend = cfg.resolved_backend()
    meta = {"conf": cfg.conf, "imgsz": cfg.imgsz, "classes": list(cfg.classes) if cfg.classes else None,
            "device": cfg.device, "adapter": cfg.adapter, "prompt": cfg.prompt,
            **({"scales": list(cfg.scales)} if cfg.scales else {}), **(extra_meta or {})}
    # an unfinished run with other settings is refused before the (slow) model load
    part = _Partial(out, _run_settings(cfg.model, backend, images, ds, save_images, meta), resume=not force)
    ids = {im.id for im in ds.images}
    if on_start is not None:
        on_start(backend, len(ds.images), sum(1 for i in part.done if i in ids))
    predictor = load_predictor(cfg)
    return predict_to_results(predictor, images, out, batch=cfg.batch, backend=backend, model=cfg.model,
                              save_images=save_images, force=True, extra_meta=meta, on_item=on_item, resume=not force,
                              workers=workers)


class _Drawer:
    """Draws boxes, class names and scores on RGB images with supervision; writes ``<id>_<name>.jpg``."""

    def __init__(self, folder: Path) -> None:
        import supervision as sv

        from synspill import taxonomy

        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.sv = sv
        self.names = {c.id: c.name for c in taxonomy.CLASSES}
        self.box = sv.BoxAnnotator(thickness=2)
        self.label = sv.LabelAnnotator(text_scale=0.4, text_padding=3)

    def draw(self, im: ImageRecord, rgb: np.ndarray, d: Detections) -> Path:
        from synspill.io import save_image

        sv = self.sv
        scene = np.ascontiguousarray(rgb).copy()
        if len(d):
            det = sv.Detections(xyxy=d.xyxy.astype(np.float32), class_id=d.class_id.astype(int),
                                confidence=np.nan_to_num(d.score, nan=1.0))
            labels = [f"{self.names.get(int(c), c)}" + ("" if np.isnan(s) else f" {s:.2f}") for c, s in zip(d.class_id, d.score, strict=True)]
            scene = self.box.annotate(scene=scene, detections=det)
            scene = self.label.annotate(scene=scene, detections=det, labels=labels)
        path = self.folder / f"{im.id}_{Path(im.file_name).stem}.jpg"
        save_image(path, scene)
        return path
