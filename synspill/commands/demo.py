"""``synspill demo``: the whole pipeline end to end on built-in defaults (CPU, no downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synspill.commands.options import DeviceOpt, ForceOpt, SeedOpt


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: synspill-demo).", show_default=False)] = None,
    n_images: Annotated[int | None, typer.Option("--n-images", help="Synthetic images (split 80/10/10).", show_default=False)] = None,
    size: Annotated[int | None, typer.Option("--size", help="Scene size in pixels.", show_default=False)] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Training epochs (more epochs: higher mAP, longer).", show_default=False)] = None,
    imgsz: Annotated[int | None, typer.Option("--imgsz", help="Training/inference size.", show_default=False)] = None,
    model: Annotated[str | None, typer.Option("--model", help="Detector: lite0 (ImageNet-pretrained backbone, default), yolo11n (from scratch) or a local .pt.", show_default=False)] = None,
    unfreeze_epochs: Annotated[int | None, typer.Option("--unfreeze-epochs", help="lite*: epochs with the backbone unfrozen after the frozen ones (default 0).", show_default=False)] = None,
    skip_real: Annotated[bool, typer.Option("--skip-real", help="Leave out the real-photo check.")] = False,
    detr: Annotated[bool, typer.Option("--detr", help="Also fine-tune RF-DETR Nano (slower on CPU).")] = False,
    skip_watch: Annotated[bool, typer.Option("--skip-watch", help="Leave out the watch stage.")] = False,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    force: ForceOpt = False,
) -> None:
    """Run the whole pipeline: synthesise -> train a detector -> evaluate (synthetic and real photos) -> watch a video.

    Re-running reuses finished stages; [bold]--force[/] redoes them. Unset options keep the
    defaults of [bold]synspill.demo.DemoConfig[/] (measured: README, demo section).
    """
    import time

    from rich.markup import escape
    from rich.table import Table

    from synspill.console import console, describe_epoch, make_progress, out_console
    from synspill.demo import DemoConfig, run_demo
    from synspill.params import given
    from synspill.watch import DEFAULT_DB

    cfg = DemoConfig(detr=detr, force=force, skip_watch=skip_watch, real_check=not skip_real,
                     **given(out=out, n_images=n_images, size=size, epochs=epochs, imgsz=imgsz, seed=seed, device=device,
                             model=model, unfreeze_epochs=unfreeze_epochs))
    how = "ImageNet-pretrained backbone, frozen" if cfg.model.lower().startswith("lite") else "from scratch"
    console.print(f"[bold]synspill demo[/] -> {cfg.out}  (procedural data, {cfg.model} {how}, CPU-friendly defaults)")
    t0 = time.perf_counter()
    tasks: dict[str, Any] = {}
    with make_progress() as progress:

        def on_progress(stage: str, done: int, total: int | None, info: dict[str, Any]) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            text = describe_epoch(info)
            label = escape(f"{stage} [{text}]" if text else stage)
            progress.update(tasks[stage], completed=done, total=total, description=label)

        def on_stage(stage: str, reused: bool) -> None:
            progress.console.print(f"  {'[dim]reused[/]' if reused else '[green]done[/]'}  {stage}")

        res = run_demo(cfg, progress=on_progress, on_stage=on_stage)

    t = Table(title="Held-out synthetic test split", show_lines=False)
    t.add_column("model")
    for thr in ("0.5", "0.6", "0.7", "0.8", "0.9"):
        t.add_column(f"HR@{thr}", justify="right")
    t.add_column("mAP@50", justify="right")
    t.add_column("mAP@50:95", justify="right")
    for name, m in res.metrics["methods"].items():
        hr = m["hit_rate"]
        t.add_row(name, *(f"{hr.get(k, float('nan')):.3f}" for k in ("0.5", "0.6", "0.7", "0.8", "0.9")),
                  f"{m['map50']:.3f}", f"{m['map50_95']:.3f}")
    out_console.print(t)
    out_console.print(f"test split: {res.metrics['n_test_images']} images, {res.metrics['n_test_boxes']} boxes")
    if res.real:
        r = Table(title="Real photos it never trained on (wet floors, CC BY 4.0; class-agnostic)")
        for col in ("model", "set", "photos", "boxes", "mAP@50", "95% interval", "HR@0.5", "precision@0.5"):
            r.add_column(col, justify="left" if col in ("model", "set") else "right")
        for name, scores in res.real["methods"].items():
            for sc in scores:
                ci = sc.get("map50_ci")
                r.add_row(name, sc["name"], str(sc["n_images"]), str(sc["n_boxes"]), f"{sc['map50']:.3f}",
                          f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "-", f"{sc['hit_rate50']:.3f}", f"{sc['precision50']:.3f}")
        out_console.print(r)
        out_console.print(f"(hit rate and precision count detections scoring >= {res.real['methods'][next(iter(res.real['methods']))][0]['min_score']}; "
                          "the interval: 95 % bootstrap over photos; small sets of web photos: judge a model on your own cameras' pictures too)")
    if res.watch:
        w = res.watch
        out_console.print(f"\n[bold]watch --once[/] on {w['video']}: {w['samples']} samples, {w['alerts']} alert(s), "
                          f"{len(w['events'])} event(s) logged (threshold {w['threshold']})")
        for e in w["events"]:
            out_console.print(f"  event {e.get('id')}: camera {e.get('camera')}, class {e.get('class_name') or e.get('class_id')}, "
                              f"severity {e.get('severity')}, max confidence {float(e.get('max_confidence') or 0):.2f}, "
                              f"area {float(e.get('area_frac') or 0) * 100:.1f}% of frame, seen {e.get('last_seen', 0) - e.get('first_seen', 0):.1f} s")
            if e.get("snapshot"):
                out_console.print(f"    snapshot: {e['snapshot']}")
    p = Table(title="Where everything is", show_header=False)
    for k, v in res.paths.items():
        p.add_row(k, str(v))
    out_console.print(p)
    out_console.print(
        "\n[bold]Next[/], with your own cameras (recommended; CPU is fine):\n"
        "  synspill harvest rtsp://camera/stream --out data/frames --dataset data/mycams\n"
        "  synspill finetune yolo --data data/mycams/spills --out runs/mycams\n"
        "\n[bold]Then[/], with real weights and a GPU (see README):\n"
        "  synspill scenes --model /weights/sdxl-base --style-refs plant_photos/ --n 2000 --out scenes/\n"
        "  synspill inpaint --scenes scenes/ --boxes expert_boxes.json --model /weights/sdxl-turbo --out synspill/\n"
        "  synspill finetune vlm --model /weights/Qwen2.5-VL-7B-Instruct --lora v+l --data synspill/annotations.json --out runs/vlm\n"
        f"  synspill watch rtsp://camera/stream --model runs/vlm --threshold 0.5 --db {DEFAULT_DB}"
    )
    console.print(f"demo finished in {time.perf_counter() - t0:.0f} s" + (f" (reused: {', '.join(res.reused)})" if res.reused else ""))
