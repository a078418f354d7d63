"""``synspill finetune vlm``: LoRA-L / LoRA-V / LoRA-(V+L) / QLoRA on a COCO set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synspill.commands.options import DeviceOpt, DTypeOpt, ForceOpt, QuantOpt, SeedOpt, batch_size
from synspill.vlm import LoraMode


def finetune_vlm(
    model: Annotated[str, typer.Option("--model", "-m", help="Base Qwen2.5-VL: local folder or locally cached id.")],
    data: Annotated[Path, typer.Option("--data", help="Training COCO file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (adapter, run.json, resumable checkpoint).")],
    val: Annotated[Path | None, typer.Option("--val", help="Validation COCO file (loss + hit rate, early stopping).")] = None,
    lora: Annotated[LoraMode | None, typer.Option("--lora", help="Adapt l (language), v (vision) or v+l (both; the default).", show_default=False)] = None,
    lora_merger: Annotated[bool | None, typer.Option("--lora-merger/--no-lora-merger", help="Also adapt the vision->language merger (v, v+l).", show_default=False)] = None,
    rank: Annotated[int | None, typer.Option("--rank", help="LoRA rank r.", show_default=False)] = None,
    alpha: Annotated[float | None, typer.Option("--alpha", help="peft lora_alpha; scaling = alpha/r, so 1 is the paper's alpha = 1/r.", show_default=False)] = None,
    dropout: Annotated[float | None, typer.Option("--dropout", help="LoRA dropout.", show_default=False)] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="AdamW learning rate.", show_default=False)] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Optimizer steps.", show_default=False)] = None,
    batch: Annotated[int | None, batch_size("Examples per micro-batch (per GPU).")] = None,
    grad_accum: Annotated[int | None, typer.Option("--grad-accum", help="Micro-batches per optimizer step.", show_default=False)] = None,
    early_stopping: Annotated[int | None, typer.Option("--early-stopping", help="Stop after this many evaluations without a lower val loss (0: off).", show_default=False)] = None,
    eval_every: Annotated[int | None, typer.Option("--eval-every", help="Validate every N steps.", show_default=False)] = None,
    val_gen: Annotated[int | None, typer.Option("--val-gen", help="Val images generated for the hit rate per evaluation (0: loss only).", show_default=False)] = None,
    save_every: Annotated[int | None, typer.Option("--save-every", help="Resumable checkpoint every N steps.", show_default=False)] = None,
    max_pixels: Annotated[int | None, typer.Option("--max-pixels", help="Pixel budget of training images (recorded; inference must match).", show_default=False)] = None,
    min_pixels: Annotated[int | None, typer.Option("--min-pixels", help="Lower pixel budget.", show_default=False)] = None,
    prompt: Annotated[str | None, typer.Option("--prompt", help="Your own user prompt template (recorded with the adapter).")] = None,
    grad_ckpt: Annotated[bool | None, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help="Trade compute for memory (on by default).", show_default=False)] = None,
    merge: Annotated[bool, typer.Option("--merge", help="Also write OUT/merged: base + adapter as one model.")] = False,
    quant: QuantOpt = None,
    device: DeviceOpt = None,
    dtype: DTypeOpt = None,
    seed: SeedOpt = None,
    force: ForceOpt = False,
) -> None:
    """LoRA fine-tuning of Qwen2.5-VL (the paper: rank 8, alpha 1/r, lr 5e-5, 800 steps, batch 8 x 4).

    Unset options keep the paper's settings, the defaults of [bold]synspill.vlm.train.VlmTrainConfig[/].
    Re-running the same command after a crash resumes from OUT/checkpoint.
    """
    from synspill.console import console, make_progress
    from synspill.params import given
    from synspill.vlm.train import VlmTrainConfig, train

    kw = given(val=str(val) if val else None, lora=lora, merger=lora_merger, rank=rank, alpha=alpha, dropout=dropout, lr=lr,
               steps=steps, batch=batch, grad_accum=grad_accum, eval_every=eval_every, val_gen=val_gen, save_every=save_every,
               quant=quant, device=device, dtype=dtype, max_pixels=max_pixels, min_pixels=min_pixels, prompt=prompt,
               gradient_checkpointing=grad_ckpt, seed=seed)
    if early_stopping is not None:
        kw["early_stopping"] = early_stopping or None  # 0: off
    cfg = VlmTrainConfig(model=model, data=str(data), out=str(out), merge=merge, force=force, **kw)

    bar: dict[str, Any] = {}

    def info(i: dict[str, Any]) -> None:
        pct = 100.0 * i["trainable_params"] / max(i["total_params"], 1)
        console.print(f"LoRA-{cfg.lora.upper()}: {i['trainable_params']:,} trainable of {i['total_params']:,} parameters "
                      f"({pct:.3f} %) in {len(i['trainable_names'])} modules; {i['train_images']} train / {i['val_images']} val images")
        if i["resumed_from"] is not None:
            console.print(f"resuming from step {i['resumed_from']}")
            if bar:
                bar["progress"].update(bar["task"], completed=i["resumed_from"])

    with make_progress() as progress:
        task = progress.add_task("finetune vlm", total=cfg.steps)
        bar.update(progress=progress, task=task)

        def step(s: int, total: int, logs: dict[str, Any]) -> None:
            desc = f"loss {logs['loss']:.4f}"
            if "val_loss" in logs:
                desc += f" val {logs['val_loss']:.4f}"
                if logs.get("val_hit_rate") == logs.get("val_hit_rate") and "val_hit_rate" in logs:
                    desc += f" hit@.5 {logs['val_hit_rate']:.3f}"
                console.print(f"step {s}: {desc}")
            progress.update(task, completed=s, description=desc)

        res = train(cfg, on_step=step, on_info=info)
    console.print(f"done: {res.steps} steps{' (early stop)' if res.stopped_early else ''}; run folder {res.out} "
                  f"(use: synspill predict --model {res.out} ...)")


def register(app: typer.Typer) -> None:
    app.command("vlm")(finetune_vlm)
