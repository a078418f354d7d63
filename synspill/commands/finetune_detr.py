"""``synspill finetune detr``: fine-tune (or train from random init) RF-DETR on COCO data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synspill.commands.options import DeviceOpt, ForceOpt, SeedOpt, batch_size


def register(app: typer.Typer) -> None:
    app.command("detr")(finetune_detr)


def finetune_detr(
    data: Annotated[Path, typer.Option("--data", help="Training COCO file, or a dataset folder with annotations.json (e.g. from `synspill inpaint`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to create (fresh per run; an interrupted run resumes).")],
    val: Annotated[Path | None, typer.Option("--val", help="Validation COCO; default: a seeded split of --data.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="nano (the default), small, medium, base, large (random init) or a local .pth checkpoint to fine-tune (e.g. rf-detr-nano.pth).", show_default=False)] = None,
    variant: Annotated[str | None, typer.Option("--variant", help="Size of a .pth whose file name does not say it.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Maximum epochs.", show_default=False)] = None,
    resolution: Annotated[int | None, typer.Option("--resolution", "--imgsz", help="Square input size (multiple of 32; Base: 56); default: the model's.")] = None,
    batch: Annotated[int | None, batch_size("Images per step per device.")] = None,
    grad_accum: Annotated[int | None, typer.Option("--grad-accum", help="Gradient accumulation steps (effective batch = batch size x grad-accum x GPUs).", show_default=False)] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Learning rate (encoder: 1.5x).", show_default=False)] = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    patience: Annotated[int | None, typer.Option("--patience", help="Early stopping patience in epochs (0: off).", show_default=False)] = None,
    val_fraction: Annotated[float | None, typer.Option("--val-fraction", help="Share split off --data for validation when --val is not given.", show_default=False)] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Data-loader worker processes per training process (default: the usable CPU cores shared among the torchrun processes, up to 8).", show_default=False)] = None,
    option: Annotated[list[str] | None, typer.Option("--option", help="Extra rfdetr model/train setting key=value (repeatable), e.g. --option num_queries=100.")] = None,
    negatives: Annotated[list[Path] | None, typer.Option("--negatives", help="Hard negatives (repeatable): a COCO file or a folder with annotations.json, e.g. from `synspill events false-alarm`; its images join the training split as background images (no boxes).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show rfdetr's own output (on stderr) instead of RUN/train.log.")] = False,
    force: ForceOpt = False,
) -> None:
    """Fine-tune RF-DETR (rfdetr's own training loop) on COCO data, fully offline.

    Multi-GPU: run this command under [bold]torchrun --nproc_per_node N -m synspill[/] (see docs/detectors.md).
    Unset options keep the defaults of [bold]synspill.detectors.detr.DetrTrainConfig[/].

    Example: [cyan]synspill finetune detr --data synth/annotations.json --model rf-detr-base.pth --epochs 30 --out runs/rfdetr-base[/]
    """
    from synspill.commands._train_progress import parse_options, training_progress
    from synspill.console import console, out_console
    from synspill.detectors import detr
    from synspill.params import given

    cfg = detr.DetrTrainConfig(data=str(data), out=str(out), force=force, verbose=verbose, options=parse_options(option),
                               negatives=tuple(str(p) for p in negatives or ()),
                               **given(val=str(val) if val else None, model=model, variant=variant, epochs=epochs,
                                       resolution=resolution, batch=batch, grad_accum=grad_accum, lr=lr, device=device,
                                       seed=seed, patience=patience, val_fraction=val_fraction, workers=workers))
    v, ckpt = detr.resolve_model(cfg.model, cfg.variant)
    console.print(f"[bold]RF-DETR {v}:[/] {'fine-tuning ' + ckpt if ckpt else 'training from random init'} -> {out}")
    with training_progress(f"rf-detr {v}") as on_progress:
        run = detr.train(cfg, on_progress=on_progress)
    console.print(f"[green]done:[/] {detr.run_summary(run)}")
    out_console.print(str(Path(out) / "run.json"), highlight=False)
