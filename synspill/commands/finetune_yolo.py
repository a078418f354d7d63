"""``synspill finetune yolo``: fine-tune (or train from scratch) a YOLO detector on COCO data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synspill.commands.options import DeviceOpt, ForceOpt, SeedOpt


def register(app: typer.Typer) -> None:
    from synspill.commands._groups import finetune_app

    finetune_app.command("yolo")(finetune_yolo)


def finetune_yolo(
    data: Annotated[Path, typer.Option("--data", help="Training COCO file, or a dataset folder with annotations.json (e.g. from `synspill inpaint`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to create (weights, curves, run.json).")],
    val: Annotated[Path | None, typer.Option("--val", help="Validation COCO; default: a seeded split of --data.")] = None,
    model: Annotated[str, typer.Option("--model", help="Local .pt to fine-tune (e.g. yolo11n.pt), or an architecture to train from scratch (yolo11n, yolo11s ...).")] = "yolo11n",
    epochs: Annotated[int, typer.Option("--epochs", help="Maximum epochs.")] = 100,
    imgsz: Annotated[int, typer.Option("--imgsz", help="Training image size (multiple of 32).")] = 640,
    batch: Annotated[int, typer.Option("--batch", help="Images per batch (-1: AutoBatch on a GPU).")] = 16,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    patience: Annotated[int, typer.Option("--patience", help="Stop after this many epochs without validation improvement.")] = 50,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Share split off --data for validation when --val is not given.")] = 0.2,
    workers: Annotated[int, typer.Option("--workers", help="Data-loader worker processes.")] = 2,
    option: Annotated[list[str] | None, typer.Option("--option", help="Extra ultralytics train setting key=value (repeatable), e.g. --option mosaic=0.0.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show ultralytics' own log output (on stderr).")] = False,
    force: ForceOpt = False,
) -> None:
    """Fine-tune YOLO (ultralytics) on COCO data, fully offline.

    [bold]--device[/] takes [bold]0,1,2,3[/] for multi-GPU (DDP) training.

    Example: [cyan]synspill finetune yolo --data synth/annotations.json --model yolo11n.pt --epochs 50 --out runs/yolo11n[/]
    """
    from synspill.commands._train_progress import parse_options, training_progress
    from synspill.console import console, out_console
    from synspill.detectors import yolo

    cfg = yolo.YoloTrainConfig(data=str(data), out=str(out), val=str(val) if val else None, model=model, epochs=epochs,
                               imgsz=imgsz, batch=batch, device=device, seed=seed, patience=patience,
                               val_fraction=val_fraction, workers=workers, force=force, verbose=verbose,
                               options=parse_options(option))
    source, scratch = yolo.resolve_model(model)
    console.print(f"[bold]{'training from scratch' if scratch else 'fine-tuning'}[/] {source} -> {out}")
    with training_progress("yolo") as on_progress:
        run = yolo.train(cfg, on_progress=on_progress)
    console.print(f"[green]done:[/] {yolo.run_summary(run)}")
    out_console.print(str(Path(out) / "run.json"), highlight=False)
