"""Export COCO datasets to the training layouts of ultralytics YOLO and rfdetr. Never imports torch.

Both exports are *cached by content*: the folder name is a hash of the datasets (images,
annotations, categories) and of every image file's resolved path, size and mtime, so the
same data exported twice is a no-op and changed data gets a fresh folder. A folder is built
under a temporary name and renamed into place when complete, so a crash never leaves a
half-written export that a later run would trust.

Images are hard-linked (same filesystem), else symlinked, else copied -- never re-encoded.

Class ids follow :mod:`synspill.taxonomy` in both layouts:

- YOLO: ``labels/<split>/<name>.txt`` rows ``cls cx cy w h`` (normalised ``xywh`` centre
  format), ``cls = taxonomy id - 1``; ``data.yaml`` lists all eight names so an index means
  the same class whatever a dataset happens to contain.
- rfdetr (Roboflow-style COCO): ``DIR/{train,valid[,test]}/_annotations.coco.json`` with the
  images beside it, categories = the eight taxonomy classes (ids 1-8, supercategory
  ``"spill"``). rfdetr drops a Roboflow *parent* category (one that is named as another
  category's supercategory and has no boxes) and numbers the rest 0..N-1 in file order, so
  no parent is written and a predicted ``class_id`` ``k`` is taxonomy id ``k + 1``
  (see :func:`rfdetr_class_to_taxonomy`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from synspill import taxonomy
from synspill.coco.dataset import Annotation, CocoDataset, ImageRecord
from synspill.errors import DatasetError, UsageError
from synspill.io import write_json, write_text

log = logging.getLogger(__name__)

#: Bump when the layout written here changes, so old caches are not reused.
EXPORT_VERSION = 1
#: File suffixes ultralytics reads as images (``ultralytics.data.utils.IMG_FORMATS``).
YOLO_IMAGE_SUFFIXES = {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic"}
#: rfdetr's split folder names for our split names.
RFDETR_SPLITS = {"train": "train", "val": "valid", "test": "test"}

LinkMode = Literal["auto", "hardlink", "symlink", "copy"]


@dataclass(frozen=True)
class ExportResult:
    """Where an export lives and what it holds.

    Attributes:
        root: The export folder.
        data: What to hand the trainer: ``data.yaml`` (YOLO) or ``root`` (rfdetr).
        cached: True when an identical export already existed and nothing was written.
        counts: Images per split, e.g. ``{"train": 80, "val": 20}``.
        boxes: Boxes per split.
        link_mode: How images were placed: ``hardlink``, ``symlink``, ``copy`` (or ``cached``).
    """

    root: Path
    data: Path
    cached: bool
    counts: dict[str, int] = field(default_factory=dict)
    boxes: dict[str, int] = field(default_factory=dict)
    link_mode: str = "cached"


def cache_dir() -> Path:
    """synspill's cache folder: ``$SYNSPILL_CACHE``, else ``$XDG_CACHE_HOME/synspill`` or ``~/.cache/synspill``."""
    env = os.environ.get("SYNSPILL_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "synspill"


def taxonomy_map(ds: CocoDataset, source: str = "<dataset>") -> dict[int, int]:
    """Map a dataset's category ids to taxonomy ids (1-8), by category name.

    Names are matched case-insensitively with :func:`synspill.taxonomy.normalize_name`
    (so ``oil``, ``Oil Spill`` and ``oil-spill`` all mean id 1). Categories without boxes
    may be anything (e.g. a Roboflow parent category); a category *with* boxes whose name
    is not a taxonomy class is an error.

    Raises:
        DatasetError: A used category is not a taxonomy class; says how to map it.
    """
    used = {a.category_id for a in ds.annotations}
    out: dict[int, int] = {}
    for c in ds.categories:
        name = taxonomy.normalize_name(c.name)
        if name is not None:
            out[c.id] = taxonomy.BY_NAME[name].id
        elif c.id in used:
            raise DatasetError(
                f"{source}: category {c.id} {c.name!r} is not a synspill class ({', '.join(taxonomy.NAMES)}); "
                f"rename it, or re-import with `synspill annotate-import --map {c.name}=oil-spill`"
            )
    return out


def check_trainable(ds: CocoDataset, source: str, split: str = "train") -> None:
    """Raise a clear error when a split cannot be trained on (no images, or no boxes in ``train``)."""
    if not ds.images:
        raise DatasetError(f"{source}: the {split} split has no images; pass a COCO file with images and boxes")
    if split == "train" and not ds.annotations:
        raise DatasetError(f"{source}: the {split} split has {len(ds.images)} images but no boxes; a detector needs labelled boxes to learn from")


def training_splits(data: str | Path, val: str | Path | None, val_fraction: float, seed: int,
                    negatives: tuple[str, ...] | list[str] | None = None) -> tuple[CocoDataset, CocoDataset, str]:
    """The train and validation datasets of a fine-tune run, and where validation came from.

    Validation is ``val`` or a seeded ``val_fraction`` split of ``data``; the images of
    ``negatives`` (COCO files or folders) join the training split only, as background images.
    """
    from synspill.coco.dataset import load_coco
    from synspill.coco.tools import add_background

    train_ds = load_coco(data)
    if val:
        val_ds, val_src = load_coco(val), str(val)
    else:
        train_ds, val_ds = split_off_val(train_ds, val_fraction, seed)
        val_src = f"{data} (seeded {val_fraction:.0%} split, seed {seed})"
    if negatives:
        train_ds = add_background(train_ds, negatives)
    return train_ds, val_ds, val_src


def split_off_val(ds: CocoDataset, fraction: float = 0.2, seed: int = 0) -> tuple[CocoDataset, CocoDataset]:
    """Split a dataset into train and validation parts, reproducibly.

    Images with boxes and images without are split separately so both parts get some of
    each; at least one image goes to validation and at least one stays for training.

    Args:
        ds: The dataset (at least two images).
        fraction: Share of images for validation, in (0, 1).
        seed: Random seed; the same seed gives the same split.

    Returns:
        ``(train, val)``; both share ``ds.root``, categories and info.
    """
    if not 0.0 < fraction < 1.0:
        raise UsageError(f"validation fraction {fraction} must be between 0 and 1")
    if len(ds.images) < 2:
        raise DatasetError(f"the dataset has {len(ds.images)} image(s); at least 2 are needed to split off a validation set (or pass --val)")
    rng = random.Random(seed)
    with_boxes = {a.image_id for a in ds.annotations}
    val_ids: set[int] = set()
    groups = [[im.id for im in ds.images if im.id in with_boxes], [im.id for im in ds.images if im.id not in with_boxes]]
    for ids in groups:
        ids = sorted(ids)
        rng.shuffle(ids)
        val_ids.update(ids[: int(round(len(ids) * fraction))])
    if not val_ids:
        val_ids = {sorted(with_boxes or {im.id for im in ds.images})[0]}
    if len(val_ids) == len(ds.images):
        val_ids.discard(next(iter(val_ids)))
    return subset(ds, lambda im: im.id not in val_ids), subset(ds, lambda im: im.id in val_ids)


def subset(ds: CocoDataset, keep) -> CocoDataset:  # type: ignore[no-untyped-def]
    """A dataset with the images where ``keep(image)`` holds and their boxes (records shared, not copied)."""
    images = [im for im in ds.images if keep(im)]
    ids = {im.id for im in images}
    anns = [a for a in ds.annotations if a.image_id in ids]
    return CocoDataset(images, anns, list(ds.categories), ds.root, dict(ds.info), list(ds.licenses))


# ---- content key -----------------------------------------------------------------------
def _image_paths(ds: CocoDataset, source: str) -> list[tuple[ImageRecord, Path, os.stat_result]]:
    out = []
    root = ds.root or Path(".")
    for im in ds.images:
        p = Path(im.file_name)
        if not p.is_absolute():
            p = root / p
        try:
            st = os.stat(p)
        except OSError:
            alt = root / "images" / im.file_name
            try:
                st = os.stat(alt)
                p = alt
            except OSError:
                raise DatasetError(
                    f"{source}: image {im.id} file {str(p)!r} does not exist; fix file_name or put the images beside the COCO file"
                ) from None
        out.append((im, p.absolute(), st))
    return out


def content_key(kind: str, splits: Mapping[str, tuple[CocoDataset, list[tuple[ImageRecord, Path, os.stat_result]]]]) -> str:
    """Hash of the export kind, the datasets and their image files (path, size, mtime)."""
    h = hashlib.sha256(f"{kind}:{EXPORT_VERSION}".encode())
    for name in sorted(splits):
        ds, files = splits[name]
        h.update(f"\0split:{name}\0".encode())
        body = {"images": [im.to_dict() for im in ds.images], "annotations": [a.to_dict() for a in ds.annotations],
                "categories": [c.to_dict() for c in ds.categories]}
        h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
        h.update("\n".join(f"{p}\0{st.st_size}\0{st.st_mtime_ns}" for _, p, st in files).encode())
    return h.hexdigest()[:20]


# ---- placing files ---------------------------------------------------------------------
class _Linker:
    """Place a file by hard link, symlink or copy, falling back down that list once a mode fails."""

    ORDER = ("hardlink", "symlink", "copy")

    def __init__(self, mode: LinkMode = "auto") -> None:
        import threading

        self._lock = threading.Lock()
        if mode not in ("auto", *self.ORDER):
            raise UsageError(f"link mode {mode!r} is unknown; use auto, hardlink, symlink or copy")
        self.modes = list(self.ORDER) if mode == "auto" else [mode]
        self.used: set[str] = set()

    def place(self, src: Path, dst: str) -> None:
        while True:
            mode = self.modes[0]
            try:
                if mode == "hardlink":
                    os.link(src, dst)
                elif mode == "symlink":
                    os.symlink(src, dst)
                else:
                    shutil.copyfile(src, dst)
                self.used.add(mode)
                return
            except OSError as e:
                with self._lock:
                    if self.modes[0] != mode:  # another thread already fell back
                        continue
                    if len(self.modes) == 1:
                        raise DatasetError(f"cannot place image {str(src)!r} in the export ({mode}: {e}); check disk space and permissions") from None
                    log.debug("%s failed for %s (%s); falling back", mode, src, e)
                    self.modes.pop(0)


def _export_name(im: ImageRecord, src: Path) -> str:
    # The id keeps names unique when file_names repeat across sub-folders.
    return f"{im.id}_{src.name}"


def _prepare(splits: Mapping[str, CocoDataset], kind: str, sources: Mapping[str, str] | None):
    if "train" not in splits or "val" not in splits:
        raise UsageError(f"a {kind} export needs 'train' and 'val' splits, got {sorted(splits)}")
    unknown = set(splits) - set(RFDETR_SPLITS)
    if unknown:
        raise UsageError(f"unknown split name(s) {sorted(unknown)}; use train, val and test")
    sources = dict(sources or {})
    prepared = {}
    for name, ds in splits.items():
        src = sources.get(name, f"<{name} split>")
        check_trainable(ds, src, name)
        prepared[name] = (ds, _image_paths(ds, src))
    return prepared, sources


def _finish(tmp: Path, dest: Path) -> None:
    """Move a finished export into place; another process may have finished the same one first."""
    if (dest / "export.json").exists():  # identical content already exported (e.g. another DDP rank)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    if dest.exists():  # an incomplete leftover without its marker
        shutil.rmtree(dest, ignore_errors=True)
    try:
        os.replace(tmp, dest)
    except OSError:
        if (dest / "export.json").exists():  # lost the race to an identical export
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            raise


def export_yolo(
    splits: Mapping[str, CocoDataset],
    out_root: str | os.PathLike | None = None,
    link: LinkMode = "auto",
    sources: Mapping[str, str] | None = None,
) -> ExportResult:
    """Export COCO splits to the ultralytics YOLO layout (cached by content).

    Layout under ``out_root/yolo-<key>/``: ``images/<split>/<id>_<name>`` (links),
    ``labels/<split>/<id>_<stem>.txt`` with one ``cls cx cy w h`` row per box (normalised
    to [0, 1], ``cls = taxonomy id - 1``; an empty file for an image without boxes) and
    ``data.yaml`` naming all eight taxonomy classes.

    Args:
        splits: ``{"train": ds, "val": ds[, "test": ds]}``; ``train`` needs boxes.
        out_root: Cache folder (default ``<cache_dir()>/exports``).
        link: ``auto`` (hard link, else symlink, else copy) or one of them.
        sources: Names for error messages per split (e.g. the COCO file paths).

    Returns:
        An :class:`ExportResult` whose ``data`` is the ``data.yaml`` to train on.

    Raises:
        DatasetError: Empty split, missing image file, category outside the taxonomy.
    """
    prepared, sources = _prepare(splits, "YOLO", sources)
    root = Path(out_root) if out_root is not None else cache_dir() / "exports"
    key = content_key("yolo", prepared)
    dest = root / f"yolo-{key}"
    if (dest / "export.json").exists() and (dest / "data.yaml").exists():
        meta = json.loads((dest / "export.json").read_text())
        return ExportResult(dest.absolute(), (dest / "data.yaml").absolute(), True, meta.get("counts", {}), meta.get("boxes", {}))
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".yolo-{key}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    linker = _Linker(link)
    counts, nboxes = {}, {}
    jobs: list[tuple[Path, str, str, bytes]] = []
    for split, (ds, files) in prepared.items():
        for suffix in {p.suffix.lower() for _, p, _ in files} - YOLO_IMAGE_SUFFIXES:
            raise DatasetError(f"{sources.get(split, split)}: image files with suffix {suffix!r} are not readable by ultralytics; convert them to .jpg or .png")
        cmap = taxonomy_map(ds, sources.get(split, split))
        anns = ds.anns_by_image()
        img_dir, lbl_dir = tmp / "images" / split, tmp / "labels" / split
        img_dir.mkdir(parents=True)
        lbl_dir.mkdir(parents=True)
        n = 0
        for im, src, _ in files:
            name = _export_name(im, src)
            rows = [r for r in (_yolo_row(a, im, cmap) for a in anns.get(im.id, ())) if r]
            jobs.append((src, str(img_dir / name), str(lbl_dir / (name.rsplit(".", 1)[0] + ".txt")), "".join(rows).encode("ascii")))
            n += len(rows)
        counts[split], nboxes[split] = len(files), n
    _run_jobs(jobs, linker)
    yaml = [f"# written by synspill (export v{EXPORT_VERSION}); class index = taxonomy id - 1",
            f"path: {json.dumps(str(dest.absolute()))}"]
    yaml += [f"{s}: images/{s}" for s in ("train", "val", "test") if s in prepared]
    yaml += [f"nc: {len(taxonomy.NAMES)}", "names:"] + [f"  {i}: {json.dumps(n)}" for i, n in enumerate(taxonomy.NAMES)]
    write_text(tmp / "data.yaml", "\n".join(yaml) + "\n")
    mode = "+".join(m for m in _Linker.ORDER if m in linker.used) or "none"
    write_json(tmp / "export.json", {"kind": "yolo", "version": EXPORT_VERSION, "key": key, "counts": counts, "boxes": nboxes,
                                     "link_mode": mode, "sources": sources, "names": list(taxonomy.NAMES)}, indent=1)
    _finish(tmp, dest)
    log.info("exported %s to the YOLO layout at %s (%s)", counts, dest, mode)
    return ExportResult(dest.absolute(), (dest / "data.yaml").absolute(), False, counts, nboxes, mode)


def _write_new(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask decides, as for open(path, "w")
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _run_jobs(jobs: list[tuple[Path, str, str, bytes]], linker: _Linker) -> None:
    """Link images and write label files; a few threads hide filesystem latency (syscalls drop the GIL)."""
    if not jobs:
        return
    src, img, lbl, data = jobs[0]
    linker.place(src, img)  # settles the link mode before going parallel
    _write_new(lbl, data)

    def work(chunk: list[tuple[Path, str, str, bytes]]) -> None:
        for src, img, lbl, data in chunk:
            linker.place(src, img)
            _write_new(lbl, data)

    chunks = [jobs[i:i + 500] for i in range(1, len(jobs), 500)]
    if len(chunks) <= 1:
        for c in chunks:
            work(c)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        for f in [pool.submit(work, c) for c in chunks]:
            f.result()


def _yolo_row(a: Annotation, im: ImageRecord, cmap: dict[int, int]) -> str:
    x, y, w, h = a.bbox
    x1, y1 = max(0.0, x), max(0.0, y)
    x2, y2 = min(float(im.width), x + w), min(float(im.height), y + h)
    if x2 <= x1 or y2 <= y1 or a.iscrowd:
        return ""
    W, H = im.width, im.height
    return f"{cmap[a.category_id] - 1} {(x1 + x2) / 2 / W:.6f} {(y1 + y2) / 2 / H:.6f} {(x2 - x1) / W:.6f} {(y2 - y1) / H:.6f}\n"


def export_rfdetr(
    splits: Mapping[str, CocoDataset],
    out_root: str | os.PathLike | None = None,
    link: LinkMode = "auto",
    sources: Mapping[str, str] | None = None,
) -> ExportResult:
    """Export COCO splits to rfdetr's Roboflow-style COCO layout (cached by content).

    Layout under ``out_root/rfdetr-<key>/``: ``train/``, ``valid/`` (and ``test/``), each
    with ``_annotations.coco.json`` and the images (links) beside it. Categories are the
    eight taxonomy classes in order (ids 1-8) and no Roboflow parent category is written,
    so rfdetr's 0-based ``class_id`` ``k`` is taxonomy id ``k + 1``. Boxes stay COCO
    ``xywh`` absolute pixels.

    Args:
        splits: ``{"train": ds, "val": ds[, "test": ds]}``.
        out_root: Cache folder (default ``<cache_dir()>/exports``).
        link: ``auto`` (hard link, else symlink, else copy) or one of them.
        sources: Names for error messages per split.

    Returns:
        An :class:`ExportResult` whose ``data`` is the dataset folder for ``model.train``.
    """
    prepared, sources = _prepare(splits, "rfdetr", sources)
    root = Path(out_root) if out_root is not None else cache_dir() / "exports"
    key = content_key("rfdetr", prepared)
    dest = root / f"rfdetr-{key}"
    if (dest / "export.json").exists():
        meta = json.loads((dest / "export.json").read_text())
        return ExportResult(dest.absolute(), dest.absolute(), True, meta.get("counts", {}), meta.get("boxes", {}))
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".rfdetr-{key}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    linker = _Linker(link)
    counts, nboxes = {}, {}
    for split, (ds, files) in prepared.items():
        cmap = taxonomy_map(ds, sources.get(split, split))
        d = tmp / RFDETR_SPLITS[split]
        d.mkdir(parents=True)
        images, anns = [], []
        for im, src, _ in files:
            name = _export_name(im, src)
            linker.place(src, str(d / name))
            images.append({"id": im.id, "file_name": name, "width": im.width, "height": im.height})
        for a in ds.annotations:
            if a.iscrowd:
                continue
            r = a.to_dict()
            r["category_id"] = cmap[a.category_id]
            anns.append({k: r[k] for k in ("id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation")})
        write_json(d / "_annotations.coco.json", {"info": {"description": "synspill export for rfdetr"}, "licenses": [],
                                                  "images": images, "annotations": anns, "categories": taxonomy.coco_categories()})
        counts[split], nboxes[split] = len(images), len(anns)
    mode = "+".join(m for m in _Linker.ORDER if m in linker.used) or "none"
    write_json(tmp / "export.json", {"kind": "rfdetr", "version": EXPORT_VERSION, "key": key, "counts": counts, "boxes": nboxes,
                                     "link_mode": mode, "sources": sources, "names": list(taxonomy.NAMES)}, indent=1)
    _finish(tmp, dest)
    log.info("exported %s to the rfdetr layout at %s (%s)", counts, dest, mode)
    return ExportResult(dest.absolute(), dest.absolute(), False, counts, nboxes, mode)


def rfdetr_class_to_taxonomy(class_names: list[str] | None, n: int | None = None) -> list[int]:
    """Taxonomy id for each rfdetr 0-based ``class_id``.

    Mapped by name when the model's class names are taxonomy names (as every synspill
    export makes them); otherwise index ``k`` is taxonomy id ``k + 1`` and indices beyond
    the taxonomy map to 0 (= drop).

    Args:
        class_names: ``model.class_names`` (0-based order), or None.
        n: Number of class slots when ``class_names`` is None.
    """
    names = list(class_names or [])
    size = max(len(names), n or 0)
    out = []
    for k in range(size):
        name = taxonomy.normalize_name(names[k]) if k < len(names) else None
        out.append(taxonomy.BY_NAME[name].id if name else (k + 1 if k + 1 <= len(taxonomy.NAMES) else 0))
    return out
