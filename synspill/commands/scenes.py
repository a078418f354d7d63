"""``synspill scenes``: clean industrial background scenes (stage 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synspill.commands import _synth as s
from synspill.commands.options import DeviceOpt, DTypeOpt, ForceOpt, OutDirOpt, SeedOpt
from synspill.synth import SynthBackend


def register(app: typer.Typer) -> None:
    app.command("scenes")(scenes)


def scenes(
    out: OutDirOpt,
    n: Annotated[int, typer.Option("--n", "--num-images", help="Number of scenes (--num-images: the same, for torchrun, which takes --n for itself).")] = 2000,
    backend: s.BackendOpt = SynthBackend.auto,
    backgrounds: Annotated[Path | None, typer.Option("--backgrounds", help="Folder of your own plant photos to use as scenes (resized/cropped).")] = None,
    size: Annotated[int | None, typer.Option("--size", help="Image side in pixels (square; multiple of 8, 32-8192; default 1024).", show_default=False)] = None,
    batch_size: s.BatchOpt = None,
    seed: SeedOpt = None,
    scene_types: Annotated[str | None, typer.Option("--scene-types", help="Comma-separated: corridor, pump-room, control-room, walkway, tank-farm, loading-bay, compressor-hall, workshop (default: all).")] = None,
    workers: s.WorkersOpt = None,
    shard: s.ShardOpt = None,
    merge_only: s.MergeOnlyOpt = False,
    quality: s.QualityOpt = None,
    force: ForceOpt = False,
    model: s.ModelOpt = None,
    style_refs: Annotated[Path | None, typer.Option("--style-refs", help="Folder of real plant photos for the IP-Adapter style (sdxl).")] = None,
    ip_adapter: s.IPAdapterOpt = None,
    ip_weight_name: s.IPWeightOpt = None,
    ip_scale: s.IPScaleOpt = None,
    lora: s.LoraOpt = None,
    lora_scale: s.LoraScaleOpt = None,
    steps: s.StepsOpt = None,
    cfg: s.CfgOpt = None,
    scheduler: s.SchedulerOpt = None,
    device: DeviceOpt = None,
    dtype: DTypeOpt = None,
) -> None:
    """Generate clean plant scenes: [bold]OUT/images/*.jpg[/], manifest.jsonl, scenes.json.

    Resumable: run the same command again after a crash or Ctrl-C. Spread over GPUs with
    [bold]accelerate launch -m synspill scenes ...[/] (see docs/synth.md).
    """
    from synspill.console import console
    from synspill.errors import UsageError
    from synspill.params import given
    from synspill.runtime import default_workers
    from synspill.synth.jobrunner import parse_range, parse_shard
    from synspill.synth.scenes import ScenesJob, load_scene_prompts, merge_scenes, run_scenes

    shard_t = parse_shard(shard)
    if merge_only:
        path = merge_scenes(out)
        console.print(f"merged {path}", highlight=False)
        typer.echo(str(path))
        return
    if backgrounds is not None:
        if backend not in (SynthBackend.auto, SynthBackend.procedural):
            raise UsageError("--backgrounds uses your photos as scenes; it cannot be combined with --backend sdxl")
        be, mdl = "backgrounds", None
        console.print(f"backend: [bold]backgrounds[/] (photos from {backgrounds})", highlight=False)
    else:
        be, mdl = s.choose_backend(backend, model, "SYNSPILL_SDXL")
    diff = None
    if be == SynthBackend.sdxl.value:
        from synspill.synth.base import DiffusionOptions

        diff = DiffusionOptions(model=mdl or "", **s.diffusion_params(
            device=device, dtype=dtype, steps=steps, cfg=cfg, scheduler=scheduler, refs=str(style_refs) if style_refs else None,
            ip_adapter=ip_adapter, ip_weight_name=ip_weight_name, ip_scale=ip_scale, lora=lora,
            batch_size=batch_size or ScenesJob.batch_size,  # one pipeline call per job batch
            lora_scale=parse_range(lora_scale, "--lora-scale", 0.0, 2.0) if lora_scale else None))
    types = tuple(t.strip() for t in scene_types.split(",") if t.strip()) if scene_types else None
    job = ScenesJob(out=out, n=n, backend=be, shard=shard_t, diffusion=diff, scene_prompts=load_scene_prompts(),
                         **given(seed=seed, width=size, height=size, scene_types=types,
                                 backgrounds=str(backgrounds) if backgrounds else None, batch_size=batch_size,
                                 workers=workers or default_workers(), quality=quality))
    with s.job_progress("scenes") as (on_start, on_progress):
        result = run_scenes(job, force=force, on_progress=on_progress, on_start=on_start)
    if result is None:
        console.print(f"shard {shard_t[0]}/{shard_t[1]} done; rank 0 merges", highlight=False)
        return
    console.print(f"{n} scenes in {out} ([bold]scenes.json[/], manifest.jsonl)", highlight=False)
    typer.echo(str(result))
