"""``synspill predict``: run a detector or the VLM over images and write COCO results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synspill.commands.options import ClassesOpt, DeviceOpt, DTypeOpt, ForceOpt, QuantOpt


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
    quant: QuantOpt = "none",
    dtype: DTypeOpt = "auto",
    backend: Annotated[str, typer.Option("--backend", help="auto (from the model), yolo or detr.")] = "auto",
    conf: Annotated[float, typer.Option("--conf", help="Drop detections scoring below this (keep it low for mAP).")] = 0.001,
    imgsz: Annotated[int | None, typer.Option("--imgsz", help="Inference size (default: the size the model was trained at).")] = None,
    batch: Annotated[int, typer.Option("--batch", help="Images per forward pass.")] = 8,
    classes: ClassesOpt = None,
    device: DeviceOpt = "auto",
    save_images: Annotated[Path | None, typer.Option("--save-images", help="Also write annotated pictures to this folder.")] = None,
    force: ForceOpt = False,
) -> None:
    """Detect spills in images with a fine-tuned detector or the VLM; write COCO results for `synspill eval`.

    Example: [cyan]synspill predict --model runs/yolo11n --images test/annotations.json --out preds/yolo.json[/]
    """
    from synspill import taxonomy
    from synspill.console import console, out_console, progress_task
    from synspill.errors import UsageError
    from synspill.inference import image_source, predict_to_results
    from synspill.predictors import PredictorConfig, infer_backend, load_predictor

    if (model is None) == (vlm is None):
        raise UsageError("pass exactly one of --model (a detector run folder or weights) or --vlm (a Qwen2.5-VL model)")
    if vlm is None and (adapter or prompt or max_pixels or quant != "none"):
        raise UsageError("--adapter, --prompt, --max-pixels and --quant apply to --vlm only")
    if Path(out).exists() and not force:
        from synspill.errors import OutputExists

        raise OutputExists(f"{out} exists; pass --force to overwrite it or choose another --out")
    ids = taxonomy.parse_classes(classes)
    spec = vlm if vlm is not None else str(model)
    be = "vlm" if vlm is not None else (backend if backend != "auto" else infer_backend(spec))
    cfg = PredictorConfig(model=spec, backend=be, device=device, conf=conf, imgsz=imgsz,
                          classes=tuple(ids) if ids else None, batch=batch, adapter=str(adapter) if adapter else None,
                          prompt=prompt, max_pixels=max_pixels, quant=quant, dtype=dtype)
    ds, _ = image_source(images)  # fail on a bad path before loading a model
    console.print(f"[bold]{be}[/] {spec} on {len(ds.images)} images")
    predictor = load_predictor(cfg)
    with progress_task("predict", len(ds.images)) as advance:
        summary = predict_to_results(predictor, images, out, batch=batch, backend=be, model=spec,
                                     save_images=save_images, force=force, on_item=lambda *_: advance(),
                                     extra_meta={"conf": conf, "imgsz": imgsz, "classes": ids, "device": device,
                                                 "adapter": cfg.adapter, "prompt": prompt})
    dropped = summary.meta_data.get("parse_dropped") or {}
    console.print(f"[green]{summary.n_detections} detections[/] on {summary.n_images} images "
                  f"({summary.images_per_s:.1f} images/s)" + (f"; dropped while parsing: {dropped}" if dropped else ""))
    out_console.print(str(summary.results), highlight=False)
