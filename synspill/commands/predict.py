"""``synspill predict``: run a detector or the VLM over images and write COCO results."""

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
    ScalesOpt,
    batch_size,
    parse_scales,
)
from synspill.models import ModelBackend


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)


def predict(
    images: Annotated[Path, typer.Option("--images", help="Folder of images, or a COCO file (its image ids are kept for eval).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="COCO results file to write (plus the sidecar <stem>.meta.json).")],
    model: Annotated[str | None, typer.Option("--model", help="Run folder from `synspill finetune yolo|detr`, or a .pt / .pth file.")] = None,
    vlm: Annotated[str | None, typer.Option("--vlm", help="Use a Qwen2.5-VL model (local folder or cached hub id) instead of --model.")] = None,
    adapter: Annotated[Path | None, typer.Option("--adapter", help="VLM LoRA adapter folder from `synspill finetune vlm`.")] = None,
    prompt: Annotated[str | None, typer.Option("--prompt", help="VLM user prompt (default: the per-class detection prompt).")] = None,
    max_pixels: Annotated[int | None, typer.Option("--max-pixels", help="VLM image pixel budget.")] = None,
    quant: QuantOpt = None,
    dtype: DTypeOpt = None,
    backend: Annotated[ModelBackend | None, typer.Option("--backend", help="Which backend runs --model (default auto: from the run folder or file).", show_default=False)] = None,
    conf: Annotated[float | None, typer.Option("--conf", help="Drop detections scoring below this (keep it low for mAP).", show_default=False)] = None,
    imgsz: Annotated[int | None, typer.Option("--imgsz", help="Inference size (default: the size the model was trained at).")] = None,
    batch: Annotated[int | None, batch_size("Images per forward pass.")] = None,
    scales: ScalesOpt = None,
    classes: ClassesOpt = None,
    device: DeviceOpt = None,
    save_images: Annotated[Path | None, typer.Option("--save-images", help="Also write annotated pictures to this folder.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Image decoding threads (default: one per CPU core, up to 8).", show_default=False)] = None,
    force: ForceOpt = False,
) -> None:
    """Detect spills in images with a fine-tuned detector or the VLM; write COCO results for `synspill eval`.

    Resumable: after a crash, Ctrl-C or SIGTERM the same command skips the images already predicted.

    Example: [cyan]synspill predict --model runs/yolo11n --images test/annotations.json --out preds/yolo.json[/]
    """
    from synspill import taxonomy
    from synspill.console import console, make_progress, out_console
    from synspill.errors import UsageError
    from synspill.inference import predict_files
    from synspill.models import PredictorConfig
    from synspill.params import given

    if workers is not None and workers < 1:
        raise UsageError(f"--workers {workers} must be at least 1 (or leave it out: one per CPU core, up to 8)")
    if (model is None) == (vlm is None):
        raise UsageError("pass exactly one of --model (a detector run folder or weights) or --vlm (a Qwen2.5-VL model)")
    vlm_only = given(adapter=adapter, prompt=prompt, max_pixels=max_pixels, quant=quant)
    if vlm is None and {k: v for k, v in vlm_only.items() if (k, v) != ("quant", "none")}:
        raise UsageError("--adapter, --prompt, --max-pixels and --quant apply to --vlm only")
    ids = taxonomy.parse_classes(classes)
    kw: dict[str, Any] = given(backend=ModelBackend.vlm if vlm is not None else backend, device=device, conf=conf, imgsz=imgsz,
                               batch=batch, dtype=dtype)
    kw.update({k: str(v) if isinstance(v, Path) else v for k, v in vlm_only.items()})
    cfg = PredictorConfig(model=vlm if vlm is not None else str(model), classes=tuple(ids) if ids else None,
                          scales=parse_scales(scales), **kw)
    with make_progress() as progress:
        task = progress.add_task("predict", total=None)

        def on_start(be: str, n: int, done: int) -> None:
            progress.console.print(f"[bold]{be}[/] {cfg.model} on {n} images"
                                   + (f" (resuming: {done} already predicted)" if done else ""))
            progress.update(task, total=n, completed=done)

        summary = predict_files(cfg, images, out, save_images=save_images, force=force, on_start=on_start,
                                on_item=lambda *_: progress.advance(task), workers=workers)
    dropped = summary.meta_data.get("parse_dropped") or {}
    console.print(f"[green]{summary.n_detections} detections[/] on {summary.n_images} images "
                  f"({summary.images_per_s:.1f} images/s)" + (f"; dropped while parsing: {dropped}" if dropped else ""))
    out_console.print(str(summary.results), highlight=False)
