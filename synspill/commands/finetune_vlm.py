"""``synspill finetune vlm``: LoRA-L / LoRA-V / LoRA-(V+L) / QLoRA on a COCO set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synspill.commands._groups import finetune_app
from synspill.commands.options import DeviceOpt, DTypeOpt, ForceOpt, QuantOpt, SeedOpt


def finetune_vlm(
    model: Annotated[str, typer.Option("--model", "-m", help="Base Qwen2.5-VL: local folder or locally cached id.")],
    data: Annotated[Path, typer.Option("--data", help="Training COCO file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (adapter, run.json, resumable checkpoint).")],
    val: Annotated[Path | None, typer.Option("--val", help="Validation COCO file (loss + hit rate, early stopping).")] = None,
    lora: Annotated[str, typer.Option("--lora", help="l (language), v (vision) or v+l (both).")] = "v+l",
    lora_merger: Annotated[bool, typer.Option("--lora-merger/--no-lora-merger", help="Also adapt the vision->language merger (v, v+l).")] = False,
    rank: Annotated[int, typer.Option("--rank", help="LoRA rank r.")] = 8,
    alpha: Annotated[float, typer.Option("--alpha", help="peft lora_alpha; scaling = alpha/r, so 1 is the paper's alpha = 1/r.")] = 1.0,
    dropout: Annotated[float, typer.Option("--dropout", help="LoRA dropout.")] = 0.05,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate.")] = 5e-5,
    steps: Annotated[int, typer.Option("--steps", help="Optimizer steps.")] = 800,
    batch: Annotated[int, typer.Option("--batch", help="Examples per micro-batch (per GPU).")] = 8,
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Micro-batches per optimizer step.")] = 4,
    early_stopping: Annotated[int | None, typer.Option("--early-stopping", help="Stop after this many evaluations without a lower val loss (0: off).")] = 5,
    eval_every: Annotated[int, typer.Option("--eval-every", help="Validate every N steps.")] = 50,
    val_gen: Annotated[int, typer.Option("--val-gen", help="Val images generated for the hit rate per evaluation (0: loss only).")] = 32,
    save_every: Annotated[int, typer.Option("--save-every", help="Resumable checkpoint every N steps.")] = 50,
    max_pixels: Annotated[int, typer.Option("--max-pixels", help="Pixel budget of training images (recorded; inference must match).")] = 1003520,
    min_pixels: Annotated[int, typer.Option("--min-pixels", help="Lower pixel budget.")] = 3136,
    prompt: Annotated[str | None, typer.Option("--prompt", help="Your own user prompt template (recorded with the adapter).")] = None,
    grad_ckpt: Annotated[bool, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help="Trade compute for memory.")] = True,
    merge: Annotated[bool, typer.Option("--merge", help="Also write OUT/merged: base + adapter as one model.")] = False,
    quant: QuantOpt = "none",
    device: DeviceOpt = "auto",
    dtype: DTypeOpt = "auto",
    seed: SeedOpt = 0,
    force: ForceOpt = False,
) -> None:
    """LoRA fine-tuning of Qwen2.5-VL (the paper: rank 8, alpha 1/r, lr 5e-5, 800 steps, batch 8 x 4).

    Re-running the same command after a crash resumes from OUT/checkpoint.
    """
    from synspill.console import console, make_progress
    from synspill.vlm.train import TrainConfig, train

    cfg = TrainConfig(model=model, data=str(data), out=str(out), val=str(val) if val else None, lora=lora,
                      merger=lora_merger, rank=rank, alpha=alpha, dropout=dropout, lr=lr, steps=steps, batch=batch,
                      grad_accum=grad_accum, early_stopping=early_stopping or None, eval_every=eval_every, val_gen=val_gen,
                      save_every=save_every, quant=quant, device=device, dtype=dtype, max_pixels=max_pixels,
                      min_pixels=min_pixels, prompt=prompt, gradient_checkpointing=grad_ckpt, seed=seed, merge=merge,
                      force=force)

    bar: dict = {}

    def info(i: dict) -> None:
        pct = 100.0 * i["trainable_params"] / max(i["total_params"], 1)
        console.print(f"LoRA-{lora.upper()}: {i['trainable_params']:,} trainable of {i['total_params']:,} parameters "
                      f"({pct:.3f} %) in {len(i['trainable_names'])} modules; {i['train_images']} train / {i['val_images']} val images")
        if i["resumed_from"] is not None:
            console.print(f"resuming from step {i['resumed_from']}")
            if bar:
                bar["progress"].update(bar["task"], completed=i["resumed_from"])

    with make_progress() as progress:
        task = progress.add_task("finetune vlm", total=steps)
        bar.update(progress=progress, task=task)

        def step(s: int, total: int, logs: dict) -> None:
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
    finetune_app.command("vlm")(finetune_vlm)
