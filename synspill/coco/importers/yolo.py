"""YOLO txt: one ``<stem>.txt`` per image, a line ``class cx cy w h`` per box (normalised 0-1).

Segmentation lines ``class x1 y1 x2 y2 ...`` (ultralytics) become polygons; a sixth column
(``save_conf`` output) is kept as ``score`` and marks the box as machine-made (``auto``).
Class names come from the nearest ``classes.txt`` / ``obj.names`` (one per line) or
``data.yaml`` / ``dataset.yaml`` (``names:`` list or ``{index: name}``) in the label
folder or up to three folders above; without one, labels are the class indices (map them
with ``--map 0=oil-spill``). The image is ``<stem>.<jpg|png|...>`` in ``--images``, beside the
txt, or in the ``images/`` twin of a ``labels/`` folder (ultralytics layout).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from synspill.coco.importers._common import (
    MALFORMED_BOX,
    MALFORMED_LINE,
    RawItem,
    RawShape,
    negative_size,
)
from synspill.errors import DatasetError
from synspill.io import IMAGE_SUFFIXES

NAME = "yolo"
SUFFIXES = (".txt",)
NAMES_FILES = ("classes.txt", "obj.names")
YAML_FILES = ("data.yaml", "dataset.yaml", "data.yml")
NOT_LABELS = {*NAMES_FILES, "train.txt", "val.txt", "test.txt", "valid.txt", "readme.txt", "notes.txt"}


def _is_label_line(line: str) -> bool:
    parts = line.split()
    if not parts:
        return True
    if not parts[0].isdigit() or not (len(parts) in (5, 6) or (len(parts) >= 7 and len(parts) % 2 == 1)):
        return False
    try:
        [float(p) for p in parts[1:]]
    except ValueError:
        return False
    return True


def sniff_txt(path: Path) -> bool:
    """True for a YOLO label file: every line ``int float float float float [...]``, or one
    with some malformed lines that is clearly a label file (see :func:`classify_txt`)."""
    return classify_txt(path)[0]


def classify_txt(path: Path) -> tuple[bool, DatasetError | None]:
    """``(is a YOLO label file, why it cannot be read)`` for a ``.txt`` file.

    A file counts when every line is a label line, or -- with some malformed lines -- when
    it is clearly a label file all the same: it has at least one label line, lies in a
    ``labels/`` folder, or an image with its stem lies beside it or in the ``images/`` twin.
    ``(False, error)``: such a clearly-YOLO file is not UTF-8 text. ``(False, None)``: not
    a label file (e.g. a README).
    """
    if path.name.lower() in NOT_LABELS:
        return False, None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        if _yolo_place(path):
            return False, DatasetError(f"{path}: not UTF-8 text; re-export the label file (lines 'class cx cy w h')")
        return False, None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:  # an empty label file: an image without boxes, if it sits in a YOLO tree
        return "labels" in path.parts or find_names(path.parent)[0] is not None, None
    good = [_is_label_line(ln) for ln in lines[:50]]
    return all(good) or any(good) or _yolo_place(path), None


def _yolo_place(path: Path) -> bool:
    """The file sits where YOLO labels live: a ``labels/`` folder, or beside/twin of its image."""
    if "labels" in path.parent.parts:
        return True
    return any((d / (path.stem + e)).is_file() for d in _image_dirs(path) for e in IMAGE_SUFFIXES)


@lru_cache(maxsize=256)
def find_names(folder: Path) -> tuple[Path | None, tuple[str, ...]]:
    """``(names file, class names)`` from the nearest names file at or above ``folder`` (3 levels)."""
    for d in [folder, *list(folder.parents)[:3]]:
        for n in NAMES_FILES:
            p = d / n
            if p.is_file():
                return p, tuple(ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip())
        for n in YAML_FILES:
            p = d / n
            if p.is_file():
                return p, _yaml_names(p)
    return None, ()


def _yaml_names(p: Path) -> tuple[str, ...]:
    import yaml

    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DatasetError(f"{p}: malformed YAML ({e}); fix the file or remove it") from None
    names: Any = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        try:
            idx = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise DatasetError(f"{p}: 'names' keys must be class indices 0..N-1") from None
        return tuple(idx.get(i, str(i)) for i in range(max(idx) + 1 if idx else 0))
    if isinstance(names, list):
        return tuple(str(n) for n in names)
    raise DatasetError(f"{p}: no 'names' list; a YOLO data.yaml needs names: [class0, class1, ...]")


def _image_dirs(path: Path) -> list[Path]:
    dirs = [path.parent]
    parts = list(path.parent.parts)
    if "labels" in parts:
        i = len(parts) - 1 - parts[::-1].index("labels")
        dirs.append(Path(*parts[:i], "images", *parts[i + 1 :]))
    dirs.append(path.parent.parent / "images")
    return dirs


def read(path: Path, tolerant: bool = False) -> list[RawItem]:
    """Parse one YOLO label file into one :class:`RawItem` (normalised coordinates).

    Args:
        path: The label file.
        tolerant: Keep the valid lines of a file with malformed ones; each malformed line
            is reported (:data:`MALFORMED_LINE`) instead of failing the file. YOLO lines
            are independent boxes, so one bad line says nothing about the others.

    Raises:
        DatasetError: Not UTF-8, or (unless ``tolerant``) a malformed line, naming
            ``file:line`` and the expected layout.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not UTF-8 text; is this really a YOLO label file?") from None
    names_file, names = find_names(path.parent)
    shapes = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if not _is_label_line(line):
            if tolerant:
                shapes.append(RawShape("", f"line {lineno}", skip=(
                    MALFORMED_LINE, f"{line.strip()[:60]!r} is not a YOLO label line ('class cx cy w h', normalised 0-1); "
                                    "the other lines of the file were imported")))
                continue
            raise DatasetError(
                f"{path}:{lineno}: {line.strip()[:60]!r} is not a YOLO label line; expected 'class cx cy w h' "
                "(normalised 0-1) or 'class x1 y1 x2 y2 ...' for polygons"
            )
        cls = int(parts[0])
        vals = [float(p) for p in parts[1:]]
        label = names[cls] if cls < len(names) else str(cls)
        sh = RawShape(label, f"line {lineno}", normalized=True)
        if cls >= len(names) and names:
            sh.extra["class_index"] = cls
        if len(vals) in (4, 5):
            cx, cy, w, h = vals[:4]
            sh.xyxy = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            why = negative_size(w, h)
            if why:
                sh.skip = (MALFORMED_BOX, f"'{line.strip()[:60]}' has {why}")
            if len(vals) == 5:
                sh.extra.update(score=vals[4], auto=True)
        else:
            sh.polygon = vals
        shapes.append(sh)
    return [RawItem(source_file=path, shapes=shapes, stem=path.stem, search=_image_dirs(path))]
