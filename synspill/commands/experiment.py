"""``synspill experiment``: run a declarative study (datasets x methods x model sizes) and report it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synspill.commands.options import DeviceOpt

experiment_app = typer.Typer(
    name="experiment",
    help="Run a study from a TOML file (every cell: train -> predict -> evaluate) and write the paper-style report.",
    no_args_is_help=True,
)

FileArg = Annotated[Path, typer.Argument(help="Study file, e.g. experiments/cpu-smoke.toml.", show_default=False)]


def register(app: typer.Typer) -> None:
    app.add_typer(experiment_app, name="experiment")


@experiment_app.command("run")
def run(
    file: FileArg,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List every cell, its status and what it needs; run nothing.")] = False,
    only: Annotated[str | None, typer.Option("--only", help="Run only cells whose id matches these globs (comma-separated), e.g. 'icl-*__7B'.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Redo the selected cells from scratch (datasets are re-split; finished synthetic images are kept).")] = False,
    device: DeviceOpt = None,
) -> None:
    """Run (or resume) every cell of a study, then write OUT/report.md.

    Finished cells are skipped; a cell stopped part-way resumes from its checkpoints; a failing cell is recorded and the others go on.
    """
    import time

    from rich.markup import escape

    from synspill.console import console, describe_epoch, make_progress, out_console
    from synspill.experiment.runner import plan, run_study
    from synspill.experiment.spec import load_study
    from synspill.params import given

    study = load_study(file)
    if dry_run:
        _print_plan(study, plan(study, only), out_console)
        return
    from synspill.experiment.runner import select_cells

    cells = select_cells(study, only)
    console.print(f"[bold]synspill experiment[/] {escape(study.name)}: {len(cells)} cell(s) -> {escape(str(study.out))}")
    t0 = time.perf_counter()
    with make_progress() as progress:
        overall = progress.add_task("cells", total=len(cells))
        tasks: dict[str, Any] = {}

        def on_progress(task: str, done: int, total: int | None, info: dict[str, Any]) -> None:
            if task not in tasks:
                tasks[task] = progress.add_task(escape(task), total=total)
            text = describe_epoch(info)
            progress.update(tasks[task], completed=done, total=total, description=escape(f"{task} [{text}]" if text else task))

        def on_cell(event: str, cell_id: str, info: dict[str, Any]) -> None:
            if event == "start":
                progress.update(overall, description=escape(f"cells ({cell_id})"))
                return
            for t in list(tasks.values()):  # the finished cell's step bars go away
                progress.remove_task(t)
            tasks.clear()
            progress.advance(overall)
            if event == "skipped":
                progress.console.print(f"  [dim]done earlier[/]  {escape(cell_id)}")
            elif event == "done":
                progress.console.print(f"  [green]done[/]  {escape(cell_id)} ({info.get('seconds', 0):.0f} s)")
            else:
                progress.console.print(f"  [red]failed[/]  {escape(cell_id)}: {escape(str(info.get('error')))}")

        res = run_study(study, only=only, force=force, progress=on_progress, on_cell=on_cell, **given(device=device))
    _report(study, out_console)
    summary = f"{len(res.ran)} ran, {len(res.skipped)} done earlier, {len(res.failed)} failed in {time.perf_counter() - t0:.0f} s"
    console.print(("[yellow]" if res.failed else "[green]") + summary + "[/]")
    if res.failed:
        console.print(f"failed: {', '.join(res.failed)} (errors in the report and OUT/cells/<id>/failed.json; "
                      "re-run the same command to retry them)")
        raise typer.Exit(1)


@experiment_app.command("report")
def report(file: FileArg) -> None:
    """Rebuild OUT/report.md (+ report.json, PNGs) from the cells that have finished."""
    from synspill.console import out_console
    from synspill.experiment.spec import load_study

    _report(load_study(file), out_console)


def _report(study: Any, out_console: Any) -> None:
    from rich.markup import escape

    from synspill.experiment.report import build_report

    doc = build_report(study)
    done = sum(c["status"] == "done" for c in doc["cells"])
    out_console.print(f"report: {escape(str(study.out / 'report.md'))} ({done}/{len(doc['cells'])} cells with numbers)")
    for ref, f in (doc.get("figures") or {}).items():
        out_console.print(f"  Fig. 3a on {escape(ref)}: {escape(str(study.out / f))}")


def _print_plan(study: Any, states: list[Any], out_console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"{study.name}: {len(states)} cell(s) -> {study.out}", show_lines=False)
    for col in ("cell", "kind", "model", "status", "needs"):
        t.add_column(col, overflow="fold")
    colour = {"done": "green", "failed": "red", "partial": "yellow", "todo": "white"}
    for s in states:
        status = f"[{colour[s.status]}]{s.status}[/]" + (f": {escape(s.error)}" if s.error else "")
        t.add_row(escape(s.cell.id), s.cell.kind, escape(s.cell.model), status, escape("; ".join(s.cell.needs)))
    out_console.print(t)
    from synspill.experiment.runner import finished_datasets

    ready = finished_datasets(study)
    ds = ", ".join(f"{n} ({d.kind}, {'prepared' if n in ready else 'to prepare'})" for n, d in study.datasets.items())
    out_console.print(f"datasets: {escape(ds)}; evaluated on: {escape(', '.join(study.eval_on))} (IoU {study.iou})")
