"""``synspill icl``: Qwen2.5-VL with k solved examples in the prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synspill.commands.options import ClassesOpt, DeviceOpt, DTypeOpt, ForceOpt, QuantOpt, SeedOpt


def icl(
    model: Annotated[str, typer.Option("--model", "-m", help="Qwen2.5-VL local folder or locally cached id (e.g. Qwen/Qwen2.5-VL-7B-Instruct).")],
    support: Annotated[Path, typer.Option("--support", help="COCO file of solved examples (images + boxes).")],
    images: Annotated[Path, typer.Option("--images", help="Folder of images or a COCO file to detect in.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="COCO results JSON to write (sidecar: <stem>.meta.json).")],
    k: Annotated[int, typer.Option("--k", help="Examples per query (the paper: 5, 10, 15).")] = 5,
    select: Annotated[str, typer.Option("--select", help="random, stratified (every class shown) or similar (colour histogram).")] = "random",
    seed: SeedOpt = 0,
    adapter: Annotated[str | None, typer.Option("--adapter", help="Optional LoRA adapter folder.")] = None,
    max_pixels: Annotated[int | None, typer.Option("--max-pixels", help="Pixel budget of query images.")] = None,
    support_max_pixels: Annotated[int | None, typer.Option("--support-max-pixels", help="Pixel budget of each example (default: fits --context-tokens).")] = None,
    context_tokens: Annotated[int, typer.Option("--context-tokens", help="Image tokens the k examples may use together.")] = 8192,
    prompt: Annotated[str | None, typer.Option("--prompt", help="Your own user prompt ({targets}, {definitions} are filled in).")] = None,
    classes: ClassesOpt = None,
    batch: Annotated[int, typer.Option("--batch", help="Queries per generate call.")] = 1,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Answer length cap.")] = 512,
    device: DeviceOpt = "auto",
    dtype: DTypeOpt = "auto",
    quant: QuantOpt = "none",
    allow_pixel_mismatch: Annotated[bool, typer.Option("--allow-pixel-mismatch", help="Accept a --max-pixels other than the adapter was trained at.")] = False,
    force: ForceOpt = False,
) -> None:
    """In-context learning: k solved examples (image + answer) before each query; writes COCO results."""
    from synspill.errors import OutputExists, UsageError

    if k < 1:
        raise UsageError(f"--k {k} must be at least 1 (zero-shot is `synspill predict --vlm`)")
    if out.exists() and not force:
        raise OutputExists(f"{out} exists; pass --force to overwrite or choose another --out")
    from synspill.console import console, progress_task
    from synspill.detections import write_results
    from synspill.predictors import PredictorConfig
    from synspill.taxonomy import parse_classes
    from synspill.vlm.icl import load_support, run_icl, support_budget
    from synspill.vlm.outputs import list_queries, write_sidecar
    from synspill.vlm.predictor import load_predictor

    queries, _ = list_queries(images)
    items = load_support(support)
    ids = parse_classes(classes)
    cfg = PredictorConfig(model=model, backend="vlm", device=device, batch=batch, adapter=adapter, prompt=prompt,
                          max_pixels=max_pixels, quant=quant, dtype=dtype, conf=0.0,
                          classes=tuple(ids) if ids else None, options={"max_new_tokens": max_new_tokens, "allow_pixel_mismatch": allow_pixel_mismatch})
    pred = load_predictor(cfg)
    sup_px = support_max_pixels or support_budget(pred.max_pixels, k, context_tokens, pred.min_pixels)
    console.print(f"ICL: {len(queries)} queries, k={k} ({select}, seed {seed}), support {len(items)} images at <= {sup_px} px, query <= {pred.max_pixels} px")
    with progress_task("icl", len(queries)) as advance:
        records, dropped, chosen = run_icl(pred, items, queries, k, select, seed, sup_px, on_item=advance)
    write_results(out, records)
    side = write_sidecar(out, pred.name, dropped, method="icl", k=k, select=select, seed=seed,
                         support=str(support), support_max_pixels=sup_px, max_pixels=pred.max_pixels,
                         support_images={str(i): v for i, v in chosen.items()})
    console.print(f"wrote {len(records)} detections to {out} (meta: {side}); parse drops: {dict(dropped) or 'none'}")


def register(app: typer.Typer) -> None:
    app.command("icl")(icl)
