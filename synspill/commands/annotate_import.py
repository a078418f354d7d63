"""``synspill annotate-import``: boxes drawn in annotation tools -> one COCO dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synspill.coco.formats import ImportFormat
from synspill.commands.options import ForceOpt


def register(app: typer.Typer) -> None:
    app.command("annotate-import")(annotate_import)


def annotate_import(
    src: Annotated[list[Path], typer.Argument(help="Export file(s) or folder(s) from LabelMe, CVAT, Label Studio, VOC, YOLO or COCO.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output COCO JSON file.", show_default=False)],
    images: Annotated[Path | None, typer.Option("--images", help="Folder of the scene images (default: look beside the exports).")] = None,
    fmt: Annotated[ImportFormat | None, typer.Option("--format", help="Export format; auto (the default) detects it from the files.")] = None,
    mapping: Annotated[list[str] | None, typer.Option("--map", help="Map a tool label to a class: --map 'oil puddle=oil-spill' (repeatable).")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on unknown labels, missing images and malformed files, lines or boxes instead of skipping them.")] = False,
    min_size: Annotated[float | None, typer.Option("--min-size", help="Skip boxes narrower or lower than this many pixels.")] = None,
    force: ForceOpt = False,
) -> None:
    """Import expert boxes from annotation tools into a COCO dataset over the scene images.

    Labels are mapped onto the eight spill classes (--map, then built-in aliases); unknown labels, missing images, malformed files and boxes are skipped and reported per item (errors with --strict). Boxes sticking out of the image are clipped and reported. An import that keeps no box of a non-empty export fails.
    """
    from synspill.coco.importers import import_to_file
    from synspill.coco.tools import parse_label_map
    from synspill.console import console, progress_task
    from synspill.params import given

    with progress_task("reading exports", None) as advance:
        res = import_to_file(src, out, force=force, label_map=parse_label_map(mapping), strict=strict,
                             on_file=lambda _f: advance(), **given(fmt=fmt, images=images, min_size=min_size))
    assert res.report_path is not None
    print_summary(res.report, out, res.report_path, console)


def print_summary(rep, out: Path, rpath: Path, console) -> None:  # noqa: ANN001 - rich types stay lazy
    """Summary tables on stderr: totals, skips per reason, per-class counts, unknown labels."""
    from rich.markup import escape
    from rich.table import Table

    from synspill import taxonomy

    console.print(f"[bold]annotate-import[/] ({rep.format}) -> {escape(str(out))}")
    t = Table(show_header=False)
    t.add_row("files", str(rep.files))
    t.add_row("images", str(rep.images))
    t.add_row("[green]boxes imported[/]", f"{rep.imported} boxes")
    if rep.clipped:
        t.add_row("[yellow]clipped to the image[/]", f"{len(rep.clipped)} boxes")
    whole = rep.images_skipped_by_reason()
    files = rep.files_skipped_by_reason()
    for reason, n in rep.skipped_by_reason().items():
        if reason in files:  # a file that cannot be parsed: its boxes are unknown
            t.add_row(f"[red]skipped: {reason}[/]", f"{files[reason]} file(s), not read")
            continue
        t.add_row(f"[red]skipped: {reason}[/]", f"{n} boxes" + (f" ({whole[reason]} images)" if reason in whole else ""))
    console.print(t)
    c = Table()
    c.add_column("class")
    c.add_column("boxes", justify="right")
    for name in taxonomy.NAMES:
        if rep.per_class.get(name):
            c.add_row(name, str(rep.per_class[name]))
    if rep.per_class:
        console.print(c)
    unknown = rep.unknown_labels()
    if unknown:
        console.print("unknown labels -- map them with [bold]--map 'LABEL=CLASS'[/]:")
        u = Table()
        for col in ("file", "unknown label", "boxes"):
            u.add_column(col)
        for (f, label), n in unknown.items():
            u.add_row(escape(f), escape(label), str(n))
        console.print(u)
    others = [s for s in rep.skipped if s.reason != "unknown label"] + rep.clipped
    if others:
        d = Table(title="skipped / clipped items", title_justify="left")
        for col in ("file", "item", "label", "what", "detail"):
            d.add_column(col, overflow="fold")
        for s in others[:25]:
            d.add_row(*(escape(v) for v in (s.file, s.where, s.label, s.reason, s.detail)))
        console.print(d)
        if len(others) > 25:
            console.print(f"... {len(others) - 25} more")
    for n in rep.notes[:10]:
        console.print(f"[dim]note: {escape(n)}[/]")
    console.print(f"full per-item report: {escape(str(rpath))}")
