"""``synspill icl``: Qwen2.5-VL with k solved examples in the prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synspill.commands.options import (
    ClassesOpt,
    DeviceOpt,
    DTypeOpt,
    ForceOpt,
    QuantOpt,
    SeedOpt,
    batch_size,
)
from synspill.vlm import SelectMethod


def icl(
    model: Annotated[str, typer.Option("--model", "-m", help="Qwen2.5-VL local folder or locally cached id (e.g. Qwen/Qwen2.5-VL-7B-Instruct).")],
    support: Annotated[Path, typer.Option("--support", help="COCO file of solved examples (images + boxes).")],
    images: Annotated[Path, typer.Option("--images", help="Folder of images or a COCO file to detect in.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="COCO results JSON to write (sidecar: <stem>.meta.json).")],
    k: Annotated[int | None, typer.Option("--k", help="Examples per query (the paper: 5, 10, 15; default 5).", show_default=False)] = None,
    select: Annotated[SelectMethod | None, typer.Option("--select", help="How examples are picked: random (the default), stratified (every class shown) or similar (colour histogram).", show_default=False)] = None,
    seed: SeedOpt = None,
    adapter: Annotated[str | None, typer.Option("--adapter", help="Optional LoRA adapter folder.")] = None,
    max_pixels: Annotated[int | None, typer.Option("--max-pixels", help="Pixel budget of query images.")] = None,
    support_max_pixels: Annotated[int | None, typer.Option("--support-max-pixels", help="Pixel budget of each example (default: fits --context-tokens).")] = None,
    context_tokens: Annotated[int | None, typer.Option("--context-tokens", help="Image tokens the k examples may use together.", show_default=False)] = None,
    prompt: Annotated[str | None, typer.Option("--prompt", help="Your own user prompt ({targets}, {definitions} are filled in).")] = None,
    classes: ClassesOpt = None,
    batch: Annotated[int | None, batch_size("Queries per generate call (default 1: k examples make long prompts).")] = None,
    max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens", help="Answer length cap.", show_default=False)] = None,
    device: DeviceOpt = None,
    dtype: DTypeOpt = None,
    quant: QuantOpt = None,
    allow_pixel_mismatch: Annotated[bool, typer.Option("--allow-pixel-mismatch", help="Accept a --max-pixels other than the adapter was trained at.")] = False,
    force: ForceOpt = False,
) -> None:
    """In-context learning: k solved examples (image + answer) before each query; writes COCO results."""
    from synspill.console import console, make_progress
    from synspill.models import PredictorConfig
    from synspill.params import given
    from synspill.taxonomy import parse_classes
    from synspill.vlm.icl import IclConfig, icl_to_results

    cfg = IclConfig(**given(k=k, select=select, seed=seed, context_tokens=context_tokens, support_max_pixels=support_max_pixels))
    ids = parse_classes(classes)
    options = {"allow_pixel_mismatch": allow_pixel_mismatch, **given(max_new_tokens=max_new_tokens)}
    pcfg = PredictorConfig(model=model, backend="vlm", conf=0.0, batch=batch or 1, classes=tuple(ids) if ids else None,
                           options=options, **given(device=device, adapter=adapter, prompt=prompt, max_pixels=max_pixels,
                                                    quant=quant, dtype=dtype))
    with make_progress() as progress:
        task = progress.add_task("icl", total=None)

        def on_start(i: dict[str, Any]) -> None:
            progress.console.print(f"ICL: {i['queries']} queries, k={cfg.k} ({cfg.select}, seed {cfg.seed}), support {i['support']} "
                                   f"images at <= {i['support_max_pixels']} px, query <= {i['max_pixels']} px")
            progress.update(task, total=i["queries"])

        res = icl_to_results(pcfg, support, images, out, cfg, force=force, on_start=on_start,
                             on_item=lambda n: progress.advance(task, n))
    console.print(f"wrote {res.n_detections} detections to {out} (meta: {res.sidecar}); parse drops: {res.dropped or 'none'}")


def register(app: typer.Typer) -> None:
    app.command("icl")(icl)
