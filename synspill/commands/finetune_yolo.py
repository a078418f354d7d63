"""``synspill finetune yolo``: fine-tune (or train from scratch) a YOLO detector on COCO data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synspill.commands.options import DeviceOpt, ForceOpt, SeedOpt, batch_size


def register(app: typer.Typer) -> None:
    app.command("yolo")(finetune_yolo)


def finetune_yolo(
    data: Annotated[Path, typer.Option("--data", help="Training COCO file, or a dataset folder with annotations.json (e.g. from `synspill inpaint`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to create (weights, curves, run.json).")],
    val: Annotated[Path | None, typer.Option("--val", help="Validation COCO; default: a seeded split of --data.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="lite0 (default: ImageNet-pretrained EfficientNet-Lite0 backbone, frozen; also lite1, lite2, lite0-s), a local .pt to fine-tune (e.g. yolo11n.pt), or an architecture to train from scratch (yolo11n ...).", show_default=False)] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Maximum epochs.", show_default=False)] = None,
    imgsz: Annotated[int | None, typer.Option("--imgsz", help="Training image size (multiple of 32).", show_default=False)] = None,
    batch: Annotated[int | None, batch_size("Images per batch (-1: AutoBatch on a GPU).")] = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    patience: Annotated[int | None, typer.Option("--patience", help="Stop after this many epochs without validation improvement.", show_default=False)] = None,
    val_fraction: Annotated[float | None, typer.Option("--val-fraction", help="Share split off --data for validation when --val is not given.", show_default=False)] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Data-loader worker processes on a GPU (default 8, capped at the CPU cores per GPU).", show_default=False)] = None,
    unfreeze_epochs: Annotated[int | None, typer.Option("--unfreeze-epochs", help="lite*: epochs with the backbone unfrozen after the frozen ones (default 0).", show_default=False)] = None,
    unfreeze_lr: Annotated[float | None, typer.Option("--unfreeze-lr", help="lite*: learning rate of the unfrozen epochs (default 1e-4).", show_default=False)] = None,
    option: Annotated[list[str] | None, typer.Option("--option", help="Extra ultralytics train setting key=value (repeatable), e.g. --option mosaic=0.0.")] = None,
    negatives: Annotated[list[Path] | None, typer.Option("--negatives", help="Hard negatives (repeatable): a COCO file or a folder with annotations.json, e.g. from `synspill events false-alarm`; its images join the training split as background images (no boxes).")] = None,
    single_class: Annotated[str | None, typer.Option("--single-class", help="Train one class-agnostic 'any spill' class and label its detections with this class (e.g. water-leak): finds more real spills when any spill is an alarm.", show_default=False)] = None,
    shared_head: Annotated[bool, typer.Option("--shared-head", help="lite*: YOLO11's head with one output per class, instead of the default split head (a class-agnostic spill score trained like --single-class, and a separate branch naming the class).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show ultralytics' own log output (on stderr).")] = False,
    force: ForceOpt = False,
) -> None:
    """Fine-tune YOLO (ultralytics) on COCO data, fully offline.

    [bold]--device[/] takes [bold]0,1,2,3[/] for multi-GPU (DDP) training. Unset options keep
    the defaults of [bold]synspill.detectors.yolo.YoloTrainConfig[/] (docs/detectors.md).

    Example: [cyan]synspill finetune yolo --data synth/annotations.json --model yolo11n.pt --epochs 50 --out runs/yolo11n[/]
    """
    from synspill.commands._train_progress import parse_options, training_progress
    from synspill.console import console, out_console
    from synspill.detectors import yolo
    from synspill.params import given

    cfg = yolo.YoloTrainConfig(data=str(data), out=str(out), force=force, verbose=verbose, options=parse_options(option),
                               split_head=not shared_head,
                               negatives=tuple(str(p) for p in negatives or ()),
                               **given(val=str(val) if val else None, model=model, epochs=epochs, imgsz=imgsz, batch=batch,
                                       device=device, seed=seed, patience=patience, val_fraction=val_fraction, workers=workers,
                                       unfreeze_epochs=unfreeze_epochs, unfreeze_lr=unfreeze_lr, single_class=single_class))
    source, scratch = yolo.resolve_model(cfg.model, cfg.split_head)
    how = ("training with a frozen ImageNet backbone" if yolo.is_pretrained_backbone(cfg.model) else
           "training from scratch" if scratch else "fine-tuning")
    console.print(f"[bold]{how}[/] {cfg.model if yolo.is_pretrained_backbone(cfg.model) else source} -> {out}")
    with training_progress("yolo") as on_progress:
        run = yolo.train(cfg, on_progress=on_progress)
    console.print(f"[green]done:[/] {yolo.run_summary(run)}")
    out_console.print(str(Path(out) / "run.json"), highlight=False)
