"""Importers: annotation-tool exports -> :class:`~synspill.coco.dataset.CocoDataset`.

One module per format (``labelme``, ``cvat``, ``labelstudio``, ``voc``, ``yolo``, ``coco``);
each parses its files into raw items, and :func:`import_annotations` runs them through the
shared pass in :mod:`._common` (image lookup, label mapping, clipping, report).

Example:
    >>> from synspill.coco.importers import import_annotations
    >>> res = import_annotations(["exports/cvat.xml"], images=Path("scenes"))
    >>> res.dataset.stats(), res.report.skipped_by_reason()
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synspill.coco.dataset import CocoDataset, read_json
from synspill.coco.formats import FORMATS
from synspill.coco.importers import coco, cvat, labelme, labelstudio, voc, yolo
from synspill.coco.importers._common import (
    MALFORMED_FILE,
    STRICT_REASONS,
    UNKNOWN_LABEL,
    ImportReport,
    RawItem,
    Skip,
    build_dataset,
    parse_xml,
)
from synspill.errors import DatasetError, UsageError

_JSON = {"labelme": labelme, "labelstudio": labelstudio, "coco": coco}
_XML = {"cvat": cvat, "voc": voc}
_SUFFIX = {"labelme": ".json", "labelstudio": ".json", "coco": ".json", "cvat": ".xml", "voc": ".xml", "yolo": ".txt"}


@dataclass
class ImportResult:
    """The imported dataset (absolute ``file_name`` s, ``root`` None) and its report.

    Attributes:
        dataset: The dataset.
        report: What was imported, skipped and clipped, per item.
        path: The COCO file written (:func:`import_to_file` only).
        report_path: The per-item report written beside it (:func:`import_to_file` only).
    """

    dataset: CocoDataset
    report: ImportReport
    path: Path | None = None
    report_path: Path | None = None


def report_path(out: str | os.PathLike) -> Path:
    """The per-item import report written beside ``out`` (``x.json`` -> ``x.import-report.json``)."""
    p = Path(out)
    return p.with_name(f"{p.stem}.import-report.json")


def import_to_file(sources: Sequence[str | os.PathLike], out: str | os.PathLike, force: bool = False,
                   **options: Any) -> ImportResult:
    """Import exports (see :func:`import_annotations`) and write the dataset and its report.

    ``out`` gets the COCO file (``file_name`` relative to its folder where the images lie
    below it, see :func:`synspill.coco.tools.rebase`) and :func:`report_path` the per-item
    report; LabelMe-embedded images go to ``<out folder>/images``.

    Args:
        sources: Export files and/or folders.
        out: The COCO ``.json`` to write.
        force: Overwrite ``out`` and its report.
        **options: ``fmt``, ``images``, ``label_map``, ``strict``, ``min_size``, ``on_file``
            of :func:`import_annotations`.

    Raises:
        UsageError: ``out`` is not a ``.json`` file.
        OutputExists: ``out`` or its report exists and not ``force`` (checked before reading).
    """
    from synspill.coco.dataset import save_coco
    from synspill.coco.tools import rebase
    from synspill.errors import OutputExists
    from synspill.io import write_json

    out = Path(out)
    if out.suffix.lower() != ".json":
        raise UsageError(f"--out {out}: the output is a COCO .json file; e.g. --out spills.json")
    rpath = report_path(out)
    for p in (out, rpath):
        if p.exists() and not force:
            raise OutputExists(f"{p} exists; pass --force to overwrite it or choose another --out")
    res = import_annotations(sources, embed_dir=out.parent / "images", exclude=[out, rpath], **options)
    ds = rebase(res.dataset, out.parent)
    ds.check_image_files(str(out))
    save_coco(ds, out)
    write_json(rpath, res.report.to_dict(), indent=1)
    return ImportResult(ds, res.report, out, rpath)


def sniff_file(path: Path) -> tuple[str | None, Any]:
    """The format of one file (or None) and its parsed content (JSON object / XML root / None)."""
    return _sniff(path)[:2]


def _sniff(path: Path) -> tuple[str | None, Any, DatasetError | None]:
    """``(format or None, parsed content, why it cannot be parsed)`` of one file.

    The error is set for a ``.json``/``.xml`` file that does not parse (malformed, truncated,
    not UTF-8) and for a ``.txt`` that is clearly a YOLO label file but not UTF-8: such a file
    is broken, not of another format (:func:`import_annotations` decides which format it
    belonged to).
    """
    suf = path.suffix.lower()
    if suf == ".json":
        try:
            obj = read_json(path)
        except DatasetError as e:
            return None, None, e
        for name, mod in _JSON.items():
            if mod.sniff(obj):
                return name, obj, None
        return None, obj, None
    if suf == ".xml":
        try:
            root = parse_xml(path)
        except DatasetError as e:
            return None, None, e
        for name, mod in _XML.items():
            if mod.sniff_xml(root):
                return name, root, None
        return None, root, None
    if suf == ".txt":
        is_yolo, err = yolo.classify_txt(path)
        return ("yolo" if is_yolo else None), None, err
    return None, None, None


def _collect(sources: Sequence[Path], exclude: set[Path]) -> tuple[list[Path], set[Path]]:
    """Annotation-file candidates under ``sources`` (files given explicitly are flagged)."""
    files: list[Path] = []
    explicit: set[Path] = set()
    for src in sources:
        src = Path(src)
        if not src.exists():
            raise DatasetError(f"{src}: no such file or folder; pass an annotation export (file or folder)")
        if src.is_file():
            files.append(src)
            explicit.add(Path(os.path.abspath(src)))
            continue
        for p in sorted(src.rglob("*")):
            rel = p.relative_to(src).parts
            if p.suffix.lower() in (".json", ".xml", ".txt") and p.is_file() and not any(s.startswith(".") for s in rel):
                if Path(os.path.abspath(p)) not in exclude:
                    files.append(p)
    return files, explicit


def import_annotations(
    sources: Sequence[str | os.PathLike],
    fmt: str = "auto",
    images: str | os.PathLike | None = None,
    label_map: Mapping[str, str] | None = None,
    strict: bool = False,
    embed_dir: str | os.PathLike | None = None,
    exclude: Sequence[str | os.PathLike] = (),
    min_size: float = 1.0,
    on_file: Callable[[Path], None] | None = None,
) -> ImportResult:
    """Import annotation-tool exports into one dataset over the taxonomy.

    Args:
        sources: Export files and/or folders (searched recursively for .json/.xml/.txt).
        fmt: ``auto`` (detect per file; all files must agree) or one of :data:`FORMATS`.
        images: Folder of the scene images (searched first, then recursively by name).
        label_map: ``{tool label (lower case): taxonomy name}`` (see ``parse_label_map``);
            other labels go through ``taxonomy.normalize_name``.
        strict: Raise instead of skipping when a label is unknown or an image is missing,
            unreadable or of the wrong size.
        embed_dir: Where LabelMe ``imageData`` is written when its image file is not found.
        exclude: Files never to read (e.g. the output file inside a source folder).
        min_size: Boxes narrower or lower than this many pixels (after clipping) are skipped.
        on_file: Called with each annotation file before it is read (progress).

    Returns:
        :class:`ImportResult`; boxes are COCO ``xywh`` absolute pixels of the real image file.

    Raises:
        DatasetError: A malformed file (named, with line/record), no annotation files, mixed
            formats under ``auto``, nothing importable, or ``strict`` problems (each listed).
        UsageError: Unknown ``fmt``.
    """
    if fmt != "auto" and fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not supported; use auto or one of: {', '.join(FORMATS)}")
    srcs = [Path(s) for s in sources]
    if images is not None and not Path(images).is_dir():
        raise DatasetError(f"--images {images}: not a folder; pass the folder holding the scene images")
    if not srcs:
        raise UsageError("no source given; pass an annotation export file or folder")
    excl = {Path(os.path.abspath(p)) for p in exclude}
    files, explicit = _collect(srcs, excl)
    detected: list[tuple[Path, str, Any]] = []
    ignored: list[Path] = []
    broken: list[tuple[Path, DatasetError]] = []  # files found in folders that do not parse
    for f in files:
        is_explicit = Path(os.path.abspath(f)) in explicit
        if fmt != "auto" and f.suffix.lower() != _SUFFIX[fmt]:
            if is_explicit:
                raise DatasetError(f"{f}: a {fmt} export is a {_SUFFIX[fmt]} file; pick the right --format or file")
            continue
        name, parsed, err = _sniff(f)
        if err is not None:
            if is_explicit:
                raise err
            broken.append((f, err))
        elif fmt == "auto":
            if name is None:
                if is_explicit:
                    _explain_unknown(f)
                ignored.append(f)
                continue
            detected.append((f, name, parsed))
        else:
            if name != fmt and not is_explicit:
                ignored.append(f)  # e.g. notes.json / classes.txt inside a folder
                continue
            detected.append((f, fmt, parsed if name == fmt else None))
    where = ", ".join(map(str, srcs))
    if not detected:
        if broken:
            raise DatasetError(f"{where}: {len(broken)} file(s) could not be read and no other annotation file was found; "
                               f"the first: {broken[0][1]}")
        raise DatasetError(f"{where}: no {'' if fmt == 'auto' else fmt + ' '}annotation files found (looked for LabelMe/Label Studio/COCO .json, CVAT/VOC .xml, YOLO .txt); check the path or pass --format")
    kinds = Counter(n for _, n, _ in detected)
    if len(kinds) > 1:
        desc = ", ".join(f"{n} ({k} files, e.g. {next(f for f, m, _ in detected if m == n)})" for n, k in kinds.most_common())
        raise DatasetError(f"found several formats: {desc}; pass --format or point SRC at one export")
    the_fmt = next(iter(kinds))
    # a broken file with the format's suffix belongs to the export (a truncated LabelMe JSON
    # among LabelMe files): it is an item error, never "a file of another format"
    ignored += [f for f, _ in broken if f.suffix.lower() != _SUFFIX[the_fmt]]
    broken = [(f, e) for f, e in broken if f.suffix.lower() == _SUFFIX[the_fmt]]
    root = _common_root(srcs)
    report = ImportReport(the_fmt, files=len(detected) + len(broken))
    if ignored:
        report.notes.append(f"{len(ignored)} file(s) not in {the_fmt} format ignored, e.g. {ignored[0]}")
    is_explicit_file = {f: Path(os.path.abspath(f)) in explicit for f, _, _ in detected}

    def items() -> Any:
        for f, err in broken:
            yield _malformed(f, err)
        for f, name, parsed in detected:
            if on_file is not None:
                on_file(f)
            if is_explicit_file[f]:  # a file the user named: its error is the answer
                yield from _read(name, f, parsed)
                continue
            try:
                got = _read(name, f, parsed, tolerant=True)
            except DatasetError as e:  # one broken file of a folder: report it, import the rest
                yield _malformed(f, e)
                continue
            yield from got

    ds, rep = build_dataset(
        items(),
        the_fmt,
        images_dir=Path(images) if images is not None else None,
        label_map=label_map,
        embed_dir=Path(embed_dir) if embed_dir is not None else None,
        rel_to=root,
        min_size=min_size,
        report=report,
    )
    if strict:
        bad = [s for s in rep.skipped if s.reason in STRICT_REASONS]
        if bad:
            lines = "; ".join(_describe(s) for s in bad[:5])
            more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
            raise DatasetError(f"--strict: {len(bad)} problem(s): {lines}{more}; fix them or drop --strict to skip and report them")
    if not ds.images:
        reasons = ", ".join(f"{k}: {v}" for k, v in rep.skipped_by_reason().items()) or "no images"
        first = [s for s in rep.skipped if s.reason in STRICT_REASONS] or rep.skipped
        hint = first[0].detail if first else ""
        raise DatasetError(f"nothing imported from {where} ({reasons}); {hint or 'check --images'}")
    total = rep.imported + sum(s.boxes for s in rep.skipped)
    if rep.imported == 0 and total > 0:
        raise DatasetError(f"0 of {total} boxes imported from {where} "
                           f"({', '.join(f'{k}: {v}' for k, v in rep.skipped_by_reason().items())}); {_zero_hint(rep)}")
    ds.info["import"] = {"format": the_fmt, "sources": [str(s) for s in srcs], "imported": rep.imported, "skipped": rep.skipped_by_reason()}
    return ImportResult(ds, rep)


def _read(name: str, f: Path, parsed: Any, tolerant: bool = False) -> list[RawItem]:
    """Parse one file; ``tolerant``: keep what a partly broken file allows (YOLO: its valid lines)."""
    if name in _JSON:
        return _JSON[name].read(f, parsed)
    if name in _XML:
        return _XML[name].read(f, parsed)
    return yolo.read(f, tolerant=tolerant)


def _malformed(f: Path, err: DatasetError) -> RawItem:
    """A report-only item: ``f`` belongs to the export but cannot be parsed (none of its boxes is known)."""
    msg = str(err)
    detail = msg[len(str(f)) + 2:] if msg.startswith(f"{f}: ") else msg
    return RawItem(source_file=f, skipped=[(MALFORMED_FILE, detail, 0)])


def _describe(s: Skip) -> str:
    """One skip for an error line: file, item, reason, detail (and the labels of a skipped image)."""
    where = f"{s.file} {s.where}".strip()
    if s.whole_image:
        boxes = f" ({s.boxes} box(es): {s.label})" if s.boxes else ""
        return f"{where}: {s.reason}: {s.detail}{boxes}"
    return f"{where}: {s.reason} {s.label!r} ({s.detail})" if s.label else f"{where}: {s.reason} ({s.detail})"


def _zero_hint(rep: ImportReport) -> str:
    """How to fix an import that kept no box: map the unknown labels, else the first skip's advice."""
    unknown: Counter = Counter()
    for s in rep.skipped:
        if s.reason == UNKNOWN_LABEL:
            unknown[s.label] += s.boxes
    if unknown:
        from synspill import taxonomy

        top = ", ".join(f"{label!r} ({n})" for label, n in unknown.most_common(5))
        return (f"the labels are not spill classes: {top}; map them with --map '{unknown.most_common(1)[0][0]}=<class>' "
                f"(classes: {', '.join(taxonomy.NAMES)})")
    first = [s for s in rep.skipped if s.boxes]
    return f"first skipped: {_describe(first[0])}" if first else "check the export"


def _explain_unknown(f: Path) -> None:
    """Raise the most helpful error for an explicitly given file of unknown format."""
    suf = f.suffix.lower()
    if suf == ".json":
        obj = read_json(f)  # raises on malformed JSON, naming the file
        keys = list(obj)[:6] if isinstance(obj, dict) else f"a list of {type(obj[0]).__name__}" if isinstance(obj, list) and obj else type(obj).__name__
        raise DatasetError(f"{f}: cannot tell the format (top level: {keys}); expected LabelMe, Label Studio JSON (not JSON-MIN) or COCO -- pass --format")
    if suf == ".xml":
        root = parse_xml(f)
        raise DatasetError(f"{f}: XML with root <{root.tag}> is neither CVAT for images 1.1 (<annotations>) nor Pascal VOC (<annotation>); pass --format")
    if suf == ".txt":
        raise DatasetError(f"{f}: not a YOLO label file (lines 'class cx cy w h'); pass --format")
    raise DatasetError(f"{f}: unsupported file type {suf or '(no suffix)'}; pass a .json, .xml or .txt export or its folder")


def _common_root(srcs: Sequence[Path]) -> Path:
    dirs = [os.path.abspath(s if s.is_dir() else s.parent) for s in srcs]
    return Path(os.path.commonpath(dirs))


__all__ = ["FORMATS", "ImportReport", "ImportResult", "import_annotations", "import_to_file", "report_path", "sniff_file"]
