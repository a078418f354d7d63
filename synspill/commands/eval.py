"""``synspill eval``: hit rate over IoU thresholds, precision, FP/image and COCO mAP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synspill.commands.options import ClassesOpt, ForceOpt


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)


def eval_cmd(
    gt: Annotated[Path, typer.Option("--gt", help="Ground-truth COCO JSON (or a dataset folder with annotations.json).")],
    pred: Annotated[list[Path], typer.Option("--pred", help="COCO results JSON: a list of {image_id, category_id, bbox (x, y, w, h), score (optional)}; repeat for several methods.")],
    name: Annotated[list[str] | None, typer.Option("--name", help="Row label for each --pred, in the same order (default: file name).")] = None,
    iou: Annotated[str | None, typer.Option("--iou", help="Hit-rate IoU thresholds: 0.5, a list 0.5,0.75 or a range start:stop:step (default: the paper's 0.5 to 0.9).", show_default=False)] = None,
    classes: ClassesOpt = None,
    agnostic: Annotated[bool, typer.Option("--agnostic", help="Class-agnostic: any predicted spill class counts for any ground-truth spill (one class, 'any spill').")] = False,
    min_score: Annotated[float | None, typer.Option("--min-score", help="Leave predictions below this score out of hit rate, precision and FP/img (mAP uses all; default: keep all).", show_default=False)] = None,
    n_boot: Annotated[int, typer.Option("--bootstrap", help="Add 95% confidence intervals of mAP@50 and the first hit rate: this many bootstrap draws of the images (1000 is usual; 0: none). Small test sets need them.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the report: a .json, .csv or .md file, or a folder (gets all three).")] = None,
    plots: Annotated[Path | None, typer.Option("--plots", help="Folder for PNG plots: hit rate vs IoU, precision-recall at IoU 0.5.")] = None,
    force: ForceOpt = False,
) -> None:
    """Compare prediction files against a COCO ground truth (the paper's Tables 2-5 and Fig. 3a).

    Hit rate at IoU t: the share of ground-truth boxes hit by a prediction of their class with IoU >= t (one-to-one, greedy by score), averaged over classes. Next to it: mAP@50 and mAP@50:95 (identical to pycocotools), precision and false positives per image. Predictions without scores (VLM output) are accepted and flagged.
    """
    from rich.table import Table

    from synspill.console import console, out_console, progress_task
    from synspill.evaluation import evaluate_files, plot_targets, report_targets
    from synspill.params import given

    if out is not None:  # bad or taken outputs fail before the work, not after the table
        report_targets(out, force)
    if plots is not None:
        plot_targets(plots, force)
    with progress_task("evaluating", len(pred)) as advance:
        report = evaluate_files(gt, pred, names=name, classes=classes, on_file=lambda _p: advance(), agnostic=agnostic,
                                n_boot=n_boot, **given(iou_thresholds=iou, min_score=min_score))

    table = Table(title=f"synspill eval - {report.n_images} images, {report.n_gt} boxes, {len(report.category_ids)} classes")
    for i, h in enumerate(report.comparison_header()):
        table.add_column(h, justify="left" if i in (0,) or h == "Notes" else "right", style="bold" if i == 0 else None)
    for row in report.comparison_rows():
        table.add_row(*row)
    out_console.print(table)
    for r in report.results:
        if r.dropped:
            console.print(f"[yellow]note:[/] {r.name}: {r.dropped_note()}", highlight=False)
        for w in r.metrics.warnings:
            console.print(f"[yellow]note:[/] {r.name}: {w}", highlight=False)
        drops = r.parse_dropped
        if drops:
            console.print(f"[yellow]note:[/] {r.name}: VLM answers dropped while parsing: "
                          + ", ".join(f"{k} {v}" for k, v in sorted(drops.items())), highlight=False)

    written: list[Path] = []
    if out is not None:
        written += report.write(out, force=force)
    if plots is not None:
        written += report.plot(plots, force=force)
    for p in written:
        console.print(f"wrote {p}", highlight=False)
