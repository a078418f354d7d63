"""What every importer shares: the raw item/shape model, image lookup, and the one pass that
turns raw items into a :class:`CocoDataset` with a report of everything skipped or clipped.

Importers only parse their format into :class:`RawItem` s; mapping labels, finding images,
rescaling, clipping and skipping happen here, identically for every format.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from synspill import taxonomy
from synspill.coco.dataset import Annotation, CocoDataset, ImageRecord
from synspill.coco.tools import map_label
from synspill.errors import DatasetError
from synspill.io import IMAGE_SUFFIXES, list_images

log = logging.getLogger(__name__)


# Skip reasons (the summary groups by these).
UNKNOWN_LABEL = "unknown label"
NO_LABEL = "no label"
NO_IMAGE = "image not found"
AMBIGUOUS_IMAGE = "ambiguous image name"
BAD_IMAGE = "unreadable image"
SIZE_MISMATCH = "image size mismatch"
DEGENERATE = "degenerate box"
OUTSIDE = "box outside image"
NOT_A_BOX = "not a box shape"
CANCELLED = "cancelled annotation"
PREDICTION = "model prediction"
SUPERSEDED = "other annotation of the task"
MISSING_REF = "refers to a missing image"
MALFORMED_FILE = "malformed file"  # a file of the export's format that cannot be parsed (0 boxes counted)
MALFORMED_LINE = "malformed line"  # a YOLO line that is not a label line (the file's other lines are kept)
MALFORMED_BOX = "malformed box"  # a box with a negative width or height

#: Reasons that ``strict`` turns into an error (everything else is a judgement call a tool
#: user expects: a stray point or a zero-size box is not a spill).
STRICT_REASONS = (UNKNOWN_LABEL, NO_LABEL, NO_IMAGE, AMBIGUOUS_IMAGE, BAD_IMAGE, SIZE_MISMATCH, MALFORMED_FILE,
                  MALFORMED_LINE, MALFORMED_BOX)


@dataclass
class RawShape:
    """One drawn shape, in the frame of its item (tool pixels, or fractions if normalised).

    Attributes:
        label: The tool's label text.
        where: Where in the file (``"shape 3"``, ``"line 7"``) for reports.
        xyxy: Box ``(x1, y1, x2, y2)``; None for polygons (box = polygon bounds).
        polygon: Flat ``[x1, y1, x2, y2, ...]`` vertices of a polygon shape.
        normalized: Coordinates are fractions of the image width/height (YOLO).
        skip: Set by the importer when the shape cannot become a box (reason, detail).
        segmentation: COCO segmentation to carry unchanged when no rescaling is needed.
        iscrowd: COCO ``iscrowd``.
        extra: Tool attributes kept in ``Annotation.extra`` (``auto`` flags a machine box).
    """

    label: str
    where: str
    xyxy: tuple[float, float, float, float] | None = None
    polygon: list[float] | None = None
    normalized: bool = False
    skip: tuple[str, str] | None = None
    segmentation: Any = None
    iscrowd: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RawItem:
    """One image's worth of shapes as a tool exported them.

    Attributes:
        source_file: The annotation file.
        where: The item within the file (``"image 'a.jpg'"``, ``"task 12"``), "" if the file is the item.
        image_ref: The image name or path the tool wrote (relative paths are tried against
            ``--images`` and ``search``), or None (then ``alt_names``/``stem`` only).
        width, height: The tool's image size (None: read it from the file).
        shapes: The shapes.
        search: Folders to try after ``--images``.
        alt_names: Other file names to try (e.g. Label Studio's upload name without prefix).
        stem: Match any image whose name without extension is this (YOLO).
        image_data: Embedded image bytes (LabelMe ``imageData``), used when no file is found.
        skipped: Whole-annotation skips the importer already decided (reason, detail, boxes).
    """

    source_file: Path
    where: str = ""
    image_ref: str | None = None
    width: int | None = None
    height: int | None = None
    shapes: list[RawShape] = field(default_factory=list)
    search: list[Path] = field(default_factory=list)
    alt_names: list[str] = field(default_factory=list)
    stem: str | None = None
    image_data: bytes | None = None
    skipped: list[tuple[str, str, int]] = field(default_factory=list)


@dataclass
class Skip:
    """A box (or a whole image's boxes) that was not imported, or one that was clipped."""

    file: str
    where: str
    label: str
    reason: str
    detail: str = ""
    boxes: int = 1
    whole_image: bool = False  # the image itself was skipped (with its ``boxes`` boxes)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "where": self.where, "label": self.label, "reason": self.reason, "detail": self.detail, "boxes": self.boxes, "whole_image": self.whole_image}


@dataclass
class ImportReport:
    """What an import did. ``skipped`` and ``clipped`` name file, item and label."""

    format: str
    files: int = 0
    images: int = 0
    imported: int = 0
    per_class: Counter = field(default_factory=Counter)
    skipped: list[Skip] = field(default_factory=list)
    clipped: list[Skip] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skipped_by_reason(self) -> dict[str, int]:
        """Number of boxes skipped per reason."""
        c: Counter = Counter()
        for s in self.skipped:
            c[s.reason] += s.boxes
        return dict(c.most_common())

    def images_skipped_by_reason(self) -> dict[str, int]:
        """Number of whole images skipped per reason (missing, ambiguous, unreadable, wrong size)."""
        return dict(Counter(s.reason for s in self.skipped if s.whole_image).most_common())

    def files_skipped_by_reason(self) -> dict[str, int]:
        """Number of whole files not read, per reason (:data:`MALFORMED_FILE`)."""
        return dict(Counter(s.reason for s in self.skipped if s.reason == MALFORMED_FILE).most_common())

    def unknown_labels(self) -> dict[tuple[str, str], int]:
        """``{(file, label): boxes}`` for every label that is not a taxonomy class."""
        c: Counter = Counter()
        for s in self.skipped:
            if s.reason == UNKNOWN_LABEL:
                c[(s.file, s.label)] += s.boxes
        return dict(sorted(c.items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "files": self.files,
            "images": self.images,
            "imported": self.imported,
            "per_class": dict(sorted(self.per_class.items())),
            "skipped_by_reason": self.skipped_by_reason(),
            "images_skipped_by_reason": self.images_skipped_by_reason(),
            "files_skipped_by_reason": self.files_skipped_by_reason(),
            "skipped": [s.to_dict() for s in self.skipped],
            "clipped": [s.to_dict() for s in self.clipped],
            "notes": self.notes,
        }


# ---- small parsing helpers shared by importers -------------------------------------------------
def num(v: Any, file: Path, where: str, what: str) -> float:
    """A finite float from a tool value, or a :class:`DatasetError` naming file and item."""
    try:
        if isinstance(v, bool):
            raise ValueError
        f = float(v)
    except (TypeError, ValueError):
        raise DatasetError(f"{file}: {where} has {what}={v!r}, which is not a number; fix or re-export the file") from None
    if not math.isfinite(f):
        raise DatasetError(f"{file}: {where} has {what}={v!r}; coordinates must be finite numbers")
    return f


def negative_size(w: float, h: float) -> str | None:
    """Why a box ``w`` wide and ``h`` high is malformed (a negative side), or None.

    Formats that write a corner and a size (COCO, YOLO, Label Studio) or named corners
    (VOC ``xmin/xmax``, CVAT ``xtl/xbr``) never have a negative side in a valid export;
    swapping the corners would import a different box than the one drawn.
    """
    bad = [f"{n} {v:g}" for n, v in (("width", w), ("height", h)) if v < 0]
    return f"negative {' and '.join(bad)}; fix the box in the tool" if bad else None


def opt_int(v: Any) -> int | None:
    """A positive int from a tool's size field, or None when absent/zero/garbage."""
    try:
        i = int(float(v))
    except (TypeError, ValueError):
        return None
    return i if i > 0 else None


def parse_xml(path: Path) -> ET.Element:
    """Parse an XML file; malformed XML is a :class:`DatasetError` naming the file and line."""
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as e:
        line, col = e.position
        raise DatasetError(f"{path}: malformed XML at line {line} column {col} ({e}); fix or re-export the file") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror}); check the path and permissions") from None


def rotated_rect_bounds(x: float, y: float, w: float, h: float, deg: float, about: str = "center") -> tuple[float, float, float, float]:
    """Axis-aligned ``xyxy`` bounds of a rectangle rotated by ``deg`` (clockwise on screen).

    Args:
        x, y, w, h: The unrotated rectangle, top-left corner and size (absolute pixels).
        deg: Rotation in degrees, clockwise in image coordinates (y down).
        about: ``"center"`` (CVAT) or ``"topleft"`` (Label Studio) rotation anchor.
    """
    if not deg:
        return (x, y, x + w, y + h)
    t = math.radians(deg)
    c, s = math.cos(t), math.sin(t)
    ax, ay = (x + w / 2, y + h / 2) if about == "center" else (x, y)
    xs, ys = [], []
    for px, py in ((x, y), (x + w, y), (x + w, y + h), (x, y + h)):
        dx, dy = px - ax, py - ay
        xs.append(ax + dx * c - dy * s)
        ys.append(ay + dx * s + dy * c)
    return (min(xs), min(ys), max(xs), max(ys))


def ellipse_bounds(cx: float, cy: float, rx: float, ry: float, deg: float = 0.0) -> tuple[float, float, float, float]:
    """Axis-aligned ``xyxy`` bounds of an ellipse (radii ``rx, ry``) rotated by ``deg``."""
    t = math.radians(deg)
    hx = math.hypot(rx * math.cos(t), ry * math.sin(t))
    hy = math.hypot(rx * math.sin(t), ry * math.cos(t))
    return (cx - hx, cy - hy, cx + hx, cy + hy)


def decode_base64(data: str, file: Path, what: str) -> bytes:
    """Decode a base64 string (an optional ``data:...;base64,`` prefix is allowed)."""
    if data.startswith("data:") and "," in data:
        data = data.split(",", 1)[1]
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        raise DatasetError(f"{file}: {what} is not valid base64; re-save the file in the tool or remove the field") from None


def clean_ref(ref: str) -> str:
    """A tool's image path with Windows separators turned into ``/``."""
    return ref.replace("\\", "/") if "\\" in ref else ref


def basename(ref: str) -> str:
    """Last path component of a POSIX or Windows path."""
    return PureWindowsPath(ref).name if "\\" in ref else PurePosixPath(ref).name


# ---- image lookup ------------------------------------------------------------------------
class ImageFinder:
    """Finds the image file of a :class:`RawItem`.

    Order: an absolute ``image_ref`` that exists; then for ``--images`` and each search
    folder, ``folder/image_ref``, ``folder/<basename>``, ``folder/<alt name>`` (and for YOLO
    ``folder/<stem>.<any image ext>``); finally a recursive index of ``--images`` by file name
    (or stem). Two different files matching in the recursive index is an ambiguity, not a guess.
    """

    def __init__(self, images_dir: Path | None):
        self.images_dir = images_dir
        self._by_name: dict[str, list[Path]] | None = None
        self._by_stem: dict[str, list[Path]] | None = None

    def _index(self) -> None:
        self._by_name, self._by_stem = {}, {}
        if self.images_dir is None:
            return
        for p in list_images(self.images_dir):
            self._by_name.setdefault(p.name, []).append(p)
            self._by_stem.setdefault(p.stem, []).append(p)

    def find(self, item: RawItem) -> tuple[Path | None, str, str]:
        """``(path, "", "")`` or ``(None, reason, detail)`` with reason :data:`NO_IMAGE` or :data:`AMBIGUOUS_IMAGE`."""
        ref = clean_ref(item.image_ref) if item.image_ref else None
        if ref and os.path.isabs(ref) and Path(ref).is_file():
            return Path(ref), "", ""
        names = [n for n in dict.fromkeys(([ref, basename(ref)] if ref else []) + item.alt_names) if n]
        folders = ([self.images_dir] if self.images_dir else []) + item.search
        for d in folders:
            for n in names:
                if not os.path.isabs(n) and (d / n).is_file():
                    return d / n, "", ""
            if item.stem:
                for ext in IMAGE_SUFFIXES:
                    for e in (ext, ext.upper()):
                        if (d / (item.stem + e)).is_file():
                            return d / (item.stem + e), "", ""
        if self.images_dir is not None:
            if self._by_name is None:
                self._index()
            assert self._by_name is not None and self._by_stem is not None
            hits: list[Path] = []
            for n in names:
                hits = self._by_name.get(basename(n), [])
                if hits:
                    break
            if not hits and item.stem:
                hits = self._by_stem.get(item.stem, [])
            if len(hits) == 1:
                return hits[0], "", ""
            if len(hits) > 1:
                return None, AMBIGUOUS_IMAGE, f"{len(hits)} files named {hits[0].name!r} under {self.images_dir} ({hits[0]}, {hits[1]}); keep one or pass a narrower --images"
        wanted = ref or (item.alt_names[0] if item.alt_names else None) or (f"{item.stem}.*" if item.stem else "(no image name)")
        where = ", ".join(str(d) for d in folders) or "(no folder; pass --images)"
        return None, NO_IMAGE, f"{wanted!r} not found in {where}"


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the image header; raises OSError-like errors as DatasetError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as f:
            return f.size
    except (UnidentifiedImageError, OSError) as e:
        raise DatasetError(f"{path}: not a readable image ({e})") from None


def write_embedded(data: bytes, ref: str | None, fallback_stem: str, out_dir: Path) -> Path:
    """Write embedded image bytes under ``out_dir`` (atomically), named after ``ref``.

    The extension follows the real format of the bytes. An existing file with the same
    bytes is reused; a different one gets a ``-<hash>`` suffix instead of being overwritten.
    """
    import io

    from PIL import Image, UnidentifiedImageError

    from synspill.io import write_bytes

    try:
        with Image.open(io.BytesIO(data)) as f:
            fmt = (f.format or "PNG").lower()
    except (UnidentifiedImageError, OSError) as e:
        raise DatasetError(f"embedded image for {ref or fallback_stem!r} is not a readable image ({e})") from None
    ext = {"jpeg": ".jpg", "tiff": ".tif"}.get(fmt, f".{fmt}")
    stem = PurePosixPath(basename(ref)).stem if ref else fallback_stem
    path = out_dir / f"{stem}{ext}"
    if path.exists() and path.read_bytes() != data:
        path = out_dir / f"{stem}-{hashlib.sha1(data).hexdigest()[:8]}{ext}"
    if not path.exists():
        write_bytes(path, data)
    return path


# ---- the one pass ------------------------------------------------------------------------
def _polygon_area(flat: list[float]) -> float:
    xs, ys = flat[0::2], flat[1::2]
    n = len(xs)
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2.0


def _fmt_box(b: Iterable[float]) -> str:
    return "[" + ", ".join(f"{v:.1f}" for v in b) + "]"


def build_dataset(
    items: Iterable[RawItem],
    fmt: str,
    images_dir: Path | None = None,
    label_map: Mapping[str, str] | None = None,
    embed_dir: Path | None = None,
    rel_to: Path | None = None,
    min_size: float = 1.0,
    report: ImportReport | None = None,
    on_item: Callable[[RawItem], None] | None = None,
) -> tuple[CocoDataset, ImportReport]:
    """Turn raw items into a dataset over the taxonomy; record every skip and clip.

    For each item: find its image (``--images``, then the item's folders; embedded bytes are
    written to ``embed_dir`` when no file is found); read the real size; rescale boxes if
    the tool's size differs but the aspect ratio agrees (else skip the item); map labels;
    clip boxes to the image; skip boxes smaller than ``min_size`` px. The same image file
    met twice becomes one image.

    Returns:
        ``(dataset, report)``; dataset ``file_name`` s are absolute and ``root`` is None
        (use :func:`synspill.coco.tools.rebase` before saving).
    """
    b = _Builder(fmt, ImageFinder(images_dir), label_map, embed_dir, rel_to, min_size, report or ImportReport(fmt))
    for item in items:
        if on_item is not None:
            on_item(item)
        b.add(item)
    b.rep.images = len(b.ds.images)
    b.rep.imported = len(b.ds.annotations)
    return b.ds, b.rep


@dataclass
class _Placed:
    """Where an item's boxes go: its image record and the scale from tool to file pixels."""

    image: ImageRecord
    sx: float
    sy: float
    rescaled: bool


class _Builder:
    """The state of one :func:`build_dataset` pass: the dataset, the report and the images met."""

    def __init__(self, fmt: str, finder: ImageFinder, label_map: Mapping[str, str] | None, embed_dir: Path | None,
                 rel_to: Path | None, min_size: float, rep: ImportReport) -> None:
        self.fmt, self.finder, self.label_map, self.embed_dir = fmt, finder, label_map, embed_dir
        self.rel_to, self.min_size, self.rep = rel_to, min_size, rep
        self.ds = CocoDataset(info={"description": f"imported from {fmt} by synspill annotate-import"})
        self.by_path: dict[Path, ImageRecord] = {}
        self.sizes: dict[Path, tuple[int, int]] = {}

    def rel(self, p: Path) -> str:
        """``p`` relative to the exports' common folder where it lies below it (for the report)."""
        if self.rel_to is not None:
            try:
                return Path(os.path.abspath(p)).relative_to(self.rel_to).as_posix()
            except ValueError:
                pass
        return str(p)

    def add(self, item: RawItem) -> None:
        """One raw item: its image, then each of its shapes (or the reason it is skipped)."""
        fname = self.rel(item.source_file)
        for reason, detail, n in item.skipped:
            self.rep.skipped.append(Skip(fname, item.where, "", reason, detail, n))
        if not item.shapes and item.image_ref is None and item.stem is None and not item.alt_names and item.image_data is None:
            return  # a report-only item
        placed = self._place(item, fname)
        if placed is None:
            return
        for sh in item.shapes:
            self._add_shape(item, sh, fname, placed)

    def _skip_item(self, item: RawItem, fname: str, reason: str, detail: str) -> None:
        labels = ", ".join(sorted({s.label for s in item.shapes})) if item.shapes else ""
        self.rep.skipped.append(Skip(fname, item.where, labels, reason, detail, len(item.shapes), whole_image=True))

    def _place(self, item: RawItem, fname: str) -> _Placed | None:
        """Find the item's image file, read its size, reconcile the tool's size (None: skipped)."""
        path, reason, why = self.finder.find(item)
        if path is None and reason == NO_IMAGE and item.image_data is not None and self.embed_dir is not None:
            path = write_embedded(item.image_data, item.image_ref, item.source_file.stem, self.embed_dir)
            self.rep.notes.append(f"{fname}: embedded imageData written to {path}")
        if path is None:
            self._skip_item(item, fname, reason, why)
            return None
        path = Path(os.path.abspath(path))
        if path not in self.sizes:
            try:
                self.sizes[path] = image_size(path)
            except DatasetError as e:
                self._skip_item(item, fname, BAD_IMAGE, str(e))
                return None
        W, H = self.sizes[path]
        sx = sy = 1.0
        rescaled = False
        if item.width and item.height and (item.width, item.height) != (W, H):
            if abs(item.width / item.height - W / H) > 0.01 * (W / H):
                self._skip_item(item, fname, SIZE_MISMATCH, f"the tool says {item.width}x{item.height} but {path.name} is {W}x{H} (different aspect ratio); re-export with the right image")
                return None
            sx, sy, rescaled = W / item.width, H / item.height, True
            self.rep.notes.append(f"{fname}{' ' + item.where if item.where else ''}: tool size {item.width}x{item.height} != file {W}x{H}; boxes rescaled")
        im = self.by_path.get(path)
        if im is None:  # the same image file met twice becomes one image
            im = ImageRecord(len(self.ds.images) + 1, str(path), W, H)
            self.by_path[path] = im
            self.ds.images.append(im)
        return _Placed(im, sx, sy, rescaled)

    def _add_shape(self, item: RawItem, sh: RawShape, fname: str, placed: _Placed) -> None:
        """Map the label, scale and clip the box, record it (or why it is skipped / clipped)."""
        rep, W, H = self.rep, placed.image.width, placed.image.height
        where = f"{item.where} {sh.where}".strip()
        if sh.skip is not None:
            rep.skipped.append(Skip(fname, where, sh.label, sh.skip[0], sh.skip[1]))
            return
        if not sh.label or not sh.label.strip():
            rep.skipped.append(Skip(fname, where, "", NO_LABEL, "shape has no label; label it in the tool"))
            return
        name = map_label(sh.label, self.label_map)
        if name is None:
            rep.skipped.append(Skip(fname, where, sh.label, UNKNOWN_LABEL, f"map it with --map '{sh.label}=<class>'"))
            return
        fx, fy = (W, H) if sh.normalized else (placed.sx, placed.sy)
        (x1, y1, x2, y2), poly = _shape_box(sh, fx, fy)
        if x2 <= 0 or y2 <= 0 or x1 >= W or y1 >= H:
            rep.skipped.append(Skip(fname, where, sh.label, OUTSIDE, f"{_fmt_box((x1, y1, x2, y2))} (xyxy) is outside the {W}x{H} image"))
            return
        cx1, cy1, cx2, cy2 = max(0.0, x1), max(0.0, y1), min(float(W), x2), min(float(H), y2)
        if cx2 - cx1 < self.min_size or cy2 - cy1 < self.min_size:
            rep.skipped.append(Skip(fname, where, sh.label, DEGENERATE, f"{cx2 - cx1:.2f}x{cy2 - cy1:.2f} px (< {self.min_size:g} px)"))
            return
        # report clipping that moves an edge by half a pixel or more (not exporter rounding)
        if max(abs(cx1 - x1), abs(cy1 - y1), abs(cx2 - x2), abs(cy2 - y2)) >= 0.5:
            rep.clipped.append(Skip(fname, where, sh.label, "clipped to image", f"{_fmt_box((x1, y1, x2, y2))} -> {_fmt_box((cx1, cy1, cx2, cy2))} (xyxy, {W}x{H})"))
        seg: Any = None
        area = None
        if poly is not None:
            poly = [min(max(v, 0.0), float(W if k % 2 == 0 else H)) for k, v in enumerate(poly)]
            seg = [[round(v, 2) for v in poly]]
            area = _polygon_area(poly) or None
        elif sh.segmentation and not placed.rescaled and not sh.normalized:
            seg = sh.segmentation
        extra = {"source": self.fmt, "auto": bool(sh.extra.pop("auto", False)), "source_file": fname}
        if item.where:
            extra["source_item"] = item.where
        if sh.label != name:
            extra["source_label"] = sh.label
        extra.update(sh.extra)
        cid = taxonomy.BY_NAME[name].id
        self.ds.annotations.append(Annotation(len(self.ds.annotations) + 1, placed.image.id, cid, [cx1, cy1, cx2 - cx1, cy2 - cy1],
                                              area, sh.iscrowd, seg, extra))
        rep.per_class[name] += 1


def _shape_box(sh: RawShape, fx: float, fy: float) -> tuple[tuple[float, float, float, float], list[float] | None]:
    """A shape's ``xyxy`` box in file pixels (scaled by ``fx``, ``fy``) and its scaled polygon, if any."""
    if sh.polygon is not None:
        poly = [v * (fx if k % 2 == 0 else fy) for k, v in enumerate(sh.polygon)]
        return (min(poly[0::2]), min(poly[1::2]), max(poly[0::2]), max(poly[1::2])), poly
    assert sh.xyxy is not None
    a, b, c, d = sh.xyxy
    return (min(a, c) * fx, min(b, d) * fy, max(a, c) * fx, max(b, d) * fy), None
