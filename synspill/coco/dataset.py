"""Typed COCO dataset model with validated load and atomic save.

Boxes are COCO ``[x, y, w, h]`` in absolute pixels of the original image throughout.
Image ``file_name`` is resolved against ``root`` (by default the folder of the JSON file;
``root/images/`` is tried as a fallback, as Roboflow and many exporters lay it out).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synspill import taxonomy
from synspill.errors import DatasetError
from synspill.io import write_json

BBOX_TOL = 1.0  # pixels a box may stick out of its image (rounding in exporters)


@dataclass
class ImageRecord:
    """One COCO image. ``extra`` keeps any other keys (e.g. ``manifest`` seeds)."""

    id: int
    file_name: str
    width: int
    height: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "file_name": self.file_name, "width": self.width, "height": self.height, **self.extra}


@dataclass
class Annotation:
    """One box. ``bbox`` is COCO ``xywh`` in absolute pixels.

    ``extra`` keeps other keys, e.g. ``{"auto": true}`` for machine-proposed boxes or
    ``{"attributes": {...}}`` imported from an annotation tool.
    """

    id: int
    image_id: int
    category_id: int
    bbox: list[float]
    area: float | None = None
    iscrowd: int = 0
    segmentation: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "image_id": self.image_id,
            "category_id": self.category_id,
            "bbox": [round(float(v), 2) for v in self.bbox],
            "area": float(self.area if self.area is not None else self.bbox[2] * self.bbox[3]),
            "iscrowd": self.iscrowd,
        }
        d["segmentation"] = self.segmentation if self.segmentation is not None else []
        d.update(self.extra)
        return d

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        """The box as absolute ``(x1, y1, x2, y2)``."""
        x, y, w, h = self.bbox
        return (x, y, x + w, y + h)


@dataclass
class Category:
    """One COCO category."""

    id: int
    name: str
    supercategory: str = "spill"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "supercategory": self.supercategory}


@dataclass
class CocoDataset:
    """A COCO detection dataset.

    Attributes:
        images: Image records.
        annotations: Boxes (``xywh`` absolute).
        categories: Categories; synspill's own datasets use :mod:`synspill.taxonomy` ids.
        root: Folder that ``file_name`` is relative to (None: not on disk yet).
        info: COCO ``info`` block (synspill stores provenance here).
        licenses: COCO ``licenses`` block, kept as is.
    """

    images: list[ImageRecord] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    categories: list[Category] = field(default_factory=lambda: [Category(**c) for c in taxonomy.coco_categories()])
    root: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)
    licenses: list[dict[str, Any]] = field(default_factory=list)

    # ---- lookups -----------------------------------------------------------------
    def image_by_id(self) -> dict[int, ImageRecord]:
        """Images keyed by id."""
        return {im.id: im for im in self.images}

    def anns_by_image(self) -> dict[int, list[Annotation]]:
        """Annotations grouped by image id (every image present, possibly empty)."""
        out: dict[int, list[Annotation]] = {im.id: [] for im in self.images}
        for a in self.annotations:
            out.setdefault(a.image_id, []).append(a)
        return out

    def category_names(self) -> dict[int, str]:
        """Category names keyed by id."""
        return {c.id: c.name for c in self.categories}

    def image_path(self, image: ImageRecord) -> Path:
        """Absolute path of an image's file (``root/file_name``, else ``root/images/file_name``)."""
        p = Path(image.file_name)
        if p.is_absolute():
            return p
        root = self.root or Path(".")
        cand = root / p
        if not cand.exists() and (root / "images" / p).exists():
            return root / "images" / p
        return cand

    def next_image_id(self) -> int:
        return max((im.id for im in self.images), default=0) + 1

    def next_ann_id(self) -> int:
        return max((a.id for a in self.annotations), default=0) + 1

    # ---- (de)serialisation ---------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The dataset as a COCO JSON object."""
        return {
            "info": self.info,
            "licenses": self.licenses,
            "images": [im.to_dict() for im in self.images],
            "annotations": [a.to_dict() for a in self.annotations],
            "categories": [c.to_dict() for c in self.categories],
        }

    @classmethod
    def from_dict(cls, d: Any, source: str = "<memory>", root: Path | None = None) -> CocoDataset:
        """Build and structurally check a dataset from a COCO JSON object.

        Raises:
            DatasetError: Naming ``source``, the record and the fix.
        """
        if not isinstance(d, dict):
            raise DatasetError(f"{source}: top level is {type(d).__name__}, expected a COCO object with 'images', 'annotations', 'categories'")
        for key in ("images", "annotations", "categories"):
            if key not in d:
                raise DatasetError(f"{source}: missing '{key}' list; a COCO detection file needs images, annotations and categories")
            if not isinstance(d[key], list):
                raise DatasetError(f"{source}: '{key}' is {type(d[key]).__name__}, expected a list")
        images = [_image(r, i, source) for i, r in enumerate(d["images"])]
        anns = [_ann(r, i, source) for i, r in enumerate(d["annotations"])]
        cats = [_cat(r, i, source) for i, r in enumerate(d["categories"])]
        return cls(images, anns, cats, root, dict(d.get("info") or {}), list(d.get("licenses") or []))

    # ---- validation ----------------------------------------------------------------
    def validate(self, source: str = "<memory>", check_images: bool = False) -> None:
        """Check referential integrity and box geometry.

        Checks: unique image/annotation/category ids; every annotation's image and category
        exist; boxes have positive size and lie inside their image (within 1 px); optionally
        that each image file exists and its header is readable.

        Raises:
            DatasetError: The first problem, naming ``source``, the record and the fix.
        """
        _unique([im.id for im in self.images], "image", source)
        _unique([a.id for a in self.annotations], "annotation", source)
        _unique([c.id for c in self.categories], "category", source)
        imgs = self.image_by_id()
        cats = {c.id for c in self.categories}
        for a in self.annotations:
            im = imgs.get(a.image_id)
            if im is None:
                raise DatasetError(f"{source}: annotation {a.id} refers to image_id {a.image_id}, which is not in 'images'; fix the id or add the image")
            if a.category_id not in cats:
                raise DatasetError(f"{source}: annotation {a.id} has category_id {a.category_id}, which is not a category; use one of {sorted(cats)}")
            x, y, w, h = a.bbox
            if not all(math.isfinite(v) for v in a.bbox):
                raise DatasetError(f"{source}: annotation {a.id} has a box with a non-finite coordinate {list(a.bbox)}; fix or remove it")
            if not (w > 0 and h > 0):
                raise DatasetError(f"{source}: annotation {a.id} has a box of non-positive size {list(a.bbox)} (COCO bbox is [x, y, w, h]); fix or remove it")
            if x < -BBOX_TOL or y < -BBOX_TOL or x + w > im.width + BBOX_TOL or y + h > im.height + BBOX_TOL:
                raise DatasetError(
                    f"{source}: annotation {a.id} box {list(a.bbox)} lies outside its image {im.id} "
                    f"({im.width}x{im.height}); clip it to the image or check the box format is [x, y, w, h]"
                )
        if check_images:
            self.check_image_files(source)

    def check_image_files(self, source: str = "<memory>") -> None:
        """Raise if any image file is missing or not a readable image."""
        from PIL import Image, UnidentifiedImageError

        for im in self.images:
            p = self.image_path(im)
            if not p.exists():
                raise DatasetError(f"{source}: image {im.id} file {str(p)!r} does not exist; fix file_name or pass the image folder (--images)")
            try:
                with Image.open(p) as f:
                    _ = f.size  # reads the header only
            except (UnidentifiedImageError, OSError) as e:
                raise DatasetError(f"{source}: image {im.id} file {str(p)!r} is not a readable image ({e}); replace or remove it") from None

    def stats(self) -> dict[str, Any]:
        """Counts: images, boxes, boxes per class, images without boxes, box-size quantiles."""
        names = self.category_names()
        per_class = Counter(names.get(a.category_id, str(a.category_id)) for a in self.annotations)
        with_boxes = {a.image_id for a in self.annotations}
        rel = []
        ims = self.image_by_id()
        for a in self.annotations:
            im = ims.get(a.image_id)
            if im and im.width and im.height:
                rel.append((a.bbox[2] * a.bbox[3]) / (im.width * im.height))
        rel.sort()

        def q(p: float) -> float:
            return rel[min(len(rel) - 1, int(p * len(rel)))] if rel else 0.0

        return {
            "images": len(self.images),
            "annotations": len(self.annotations),
            "images_without_boxes": len(self.images) - len(with_boxes & set(ims)),
            "per_class": dict(sorted(per_class.items())),
            "box_area_fraction": {"p10": q(0.1), "median": q(0.5), "p90": q(0.9)},
        }


def _unique(ids: list[int], what: str, source: str) -> None:
    dup = [i for i, n in Counter(ids).items() if n > 1]
    if dup:
        raise DatasetError(f"{source}: {what} id {dup[0]} is used {Counter(ids)[dup[0]]} times; {what} ids must be unique")


def _need(r: Any, keys: tuple[str, ...], what: str, i: int, source: str) -> None:
    if not isinstance(r, dict):
        raise DatasetError(f"{source}: {what} #{i} is {type(r).__name__}, expected an object")
    for k in keys:
        if k not in r or r[k] is None:
            rid = r.get("id", f"#{i}")
            raise DatasetError(f"{source}: {what} {rid} has no '{k}'; every {what} needs {', '.join(keys)}")


def _int(v: Any, what: str, rid: Any, key: str, source: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int | float) or int(v) != v:
        raise DatasetError(f"{source}: {what} {rid} has {key}={v!r}; it must be an integer")
    return int(v)


def _image(r: Any, i: int, source: str) -> ImageRecord:
    _need(r, ("id", "file_name", "width", "height"), "image", i, source)
    rid = r["id"]
    extra = {k: v for k, v in r.items() if k not in ("id", "file_name", "width", "height")}
    w, h = _int(r["width"], "image", rid, "width", source), _int(r["height"], "image", rid, "height", source)
    if w <= 0 or h <= 0:
        raise DatasetError(f"{source}: image {rid} has size {w}x{h}; width and height must be positive")
    return ImageRecord(_int(rid, "image", rid, "id", source), str(r["file_name"]), w, h, extra)


def _ann(r: Any, i: int, source: str) -> Annotation:
    _need(r, ("id", "image_id", "category_id", "bbox"), "annotation", i, source)
    rid = r["id"]
    bbox = r["bbox"]
    if not isinstance(bbox, list | tuple) or len(bbox) != 4 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox):
        raise DatasetError(f"{source}: annotation {rid} has bbox {bbox!r}; it must be 4 numbers [x, y, w, h]")
    extra = {k: v for k, v in r.items() if k not in ("id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation")}
    return Annotation(
        _int(rid, "annotation", rid, "id", source),
        _int(r["image_id"], "annotation", rid, "image_id", source),
        _int(r["category_id"], "annotation", rid, "category_id", source),
        [float(v) for v in bbox],
        float(r["area"]) if isinstance(r.get("area"), int | float) else None,
        int(r.get("iscrowd") or 0),
        r.get("segmentation"),
        extra,
    )


def _cat(r: Any, i: int, source: str) -> Category:
    _need(r, ("id", "name"), "category", i, source)
    return Category(_int(r["id"], "category", r["id"], "id", source), str(r["name"]), str(r.get("supercategory") or ""))


def read_json(path: str | os.PathLike, what: str = "JSON") -> Any:
    """Read a JSON file; a missing or malformed file is a :class:`DatasetError` naming it."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p}: no such {what} file; check the path")
    if p.is_dir():
        raise DatasetError(f"{p}: is a folder; pass the {what} file inside it")
    try:
        with open(p, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{p}: malformed JSON at line {e.lineno} column {e.colno} ({e.msg}); fix or re-export the file") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{p}: not UTF-8 text; is this really a {what} file?") from None


def find_coco_file(path: str | os.PathLike) -> Path:
    """Accept a COCO JSON file or a dataset folder holding ``annotations.json``/``_annotations.coco.json``."""
    p = Path(path)
    if p.is_dir():
        for name in ("annotations.json", "_annotations.coco.json", "instances.json", "coco.json"):
            if (p / name).exists():
                return p / name
        raise DatasetError(f"{p}: folder has no annotations.json or _annotations.coco.json; pass the COCO file itself")
    return p


def load_coco(path: str | os.PathLike, image_root: str | os.PathLike | None = None, check_images: bool = False) -> CocoDataset:
    """Load and validate a COCO detection file.

    Args:
        path: The JSON file, or a dataset folder containing ``annotations.json``.
        image_root: Folder that ``file_name`` is relative to (default: the JSON's folder).
        check_images: Also check that every image file exists and is readable.

    Raises:
        DatasetError: Missing/malformed file, duplicate or missing ids, unknown categories,
            bad boxes, missing images -- naming the file, the record and the fix.
    """
    p = find_coco_file(path)
    data = read_json(p, "COCO")
    root = Path(image_root) if image_root is not None else p.parent
    ds = CocoDataset.from_dict(data, str(p), root)
    ds.validate(str(p), check_images=check_images)
    return ds


def save_coco(ds: CocoDataset, path: str | os.PathLike, indent: int | None = None) -> Path:
    """Validate and write ``ds`` to ``path`` atomically; returns the path."""
    p = Path(path)
    ds.validate(str(p))
    write_json(p, ds.to_dict(), indent=indent)
    return p


def group_by(items: list, key) -> dict:  # small helper used by tools
    out: dict = defaultdict(list)
    for it in items:
        out[key(it)].append(it)
    return out
