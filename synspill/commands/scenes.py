"""``synspill scenes``: clean industrial background scenes (stage 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synspill.commands import _synth as s
from synspill.commands.options import DeviceOpt, DTypeOpt, ForceOpt, OutDirOpt, SeedOpt


def register(app: typer.Typer) -> None:
    app.command("scenes")(scenes)


def scenes(
    out: OutDirOpt,
    n: Annotated[int, typer.Option("--n", "--num-images", help="Number of scenes (--num-images: the same, for torchrun, which takes --n for itself).")] = 2000,
    backend: s.BackendOpt = "auto",
    backgrounds: Annotated[Path | None, typer.Option("--backgrounds", help="Folder of your own plant photos to use as scenes (resized/cropped).")] = None,
    size: Annotated[int, typer.Option("--size", help="Image side in pixels (square; multiple of 8).")] = 1024,
    batch_size: s.BatchOpt = 8,
    seed: SeedOpt = 0,
    scene_types: Annotated[str | None, typer.Option("--scene-types", help="Comma-separated: corridor, pump-room, control-room, walkway, tank-farm, loading-bay, compressor-hall, workshop (default: all).")] = None,
    workers: s.WorkersOpt = None,
    shard: s.ShardOpt = None,
    merge_only: s.MergeOnlyOpt = False,
    quality: s.QualityOpt = None,
    force: ForceOpt = False,
    model: s.ModelOpt = None,
    style_refs: Annotated[Path | None, typer.Option("--style-refs", help="Folder of real plant photos for the IP-Adapter style (sdxl).")] = None,
    ip_adapter: s.IPAdapterOpt = None,
    ip_weight_name: s.IPWeightOpt = "ip-adapter-plus_sdxl_vit-h.safetensors",
    ip_scale: s.IPScaleOpt = 0.6,
    lora: s.LoraOpt = None,
    lora_scale: s.LoraScaleOpt = "0.2:0.4",
    steps: s.StepsOpt = None,
    cfg: s.CfgOpt = None,
    scheduler: s.SchedulerOpt = "dpmpp_2m_sde_karras",
    device: DeviceOpt = "auto",
    dtype: DTypeOpt = "auto",
) -> None:
    """Generate clean plant scenes: [bold]OUT/images/*.jpg[/], manifest.jsonl, scenes.json.

    Resumable: run the same command again after a crash or Ctrl-C. Spread over GPUs with
    [bold]accelerate launch -m synspill scenes ...[/] (see docs/synth.md).
    """
    from synspill.console import console
    from synspill.errors import UsageError
    from synspill.synth import jobs

    shard_t = jobs.parse_shard(shard)
    if merge_only:
        path = jobs.merge_scenes(out)
        console.print(f"merged {path}", highlight=False)
        typer.echo(str(path))
        return
    if backgrounds is not None:
        if backend not in ("auto", "procedural"):
            raise UsageError("--backgrounds uses your photos as scenes; it cannot be combined with --backend sdxl")
        be, mdl = "backgrounds", None
        console.print(f"backend: [bold]backgrounds[/] (photos from {backgrounds})", highlight=False)
    else:
        be, mdl = s.choose_backend(backend, model, "SYNSPILL_SDXL")
    from synspill.synth.procedural import SCENE_TYPES

    prompts = jobs.load_scene_prompts()
    types: tuple[str, ...] = ()
    if scene_types:
        known = set(SCENE_TYPES) | set((prompts.get("types") or {}).keys())
        types = tuple(t.strip() for t in scene_types.split(",") if t.strip())
        bad = [t for t in types if t not in known and t.replace("_", "-") not in known]
        if bad:
            raise UsageError(f"--scene-types: {bad[0]!r} is not a scene type; use some of {', '.join(sorted(known))}")
    diff = None
    if be == "sdxl":
        from synspill.synth.base import DiffusionOptions

        diff = DiffusionOptions(model=mdl or "", device=device, dtype=dtype,
                                steps=steps if steps is not None else 64, guidance=cfg if cfg is not None else 8.0,
                                scheduler=scheduler, refs=str(style_refs) if style_refs else None, ip_adapter=ip_adapter,
                                ip_weight_name=ip_weight_name, ip_scale=ip_scale, lora=lora,
                                lora_scale=jobs.parse_range(lora_scale, "--lora-scale", 0.0, 2.0), batch_size=batch_size)
    job = jobs.ScenesJob(out=out, n=n, seed=seed, backend=be, width=size, height=size, scene_types=types,
                         backgrounds=str(backgrounds) if backgrounds else None, batch_size=batch_size,
                         workers=s.default_workers(workers), shard=shard_t, quality=quality, diffusion=diff,
                         scene_prompts=prompts)
    with s.job_progress("scenes") as (on_start, on_progress):
        result = jobs.run_scenes(job, force=force, on_progress=on_progress, on_start=on_start)
    if result is None:
        console.print(f"shard {shard_t[0]}/{shard_t[1]} done; rank 0 merges", highlight=False)
        return
    console.print(f"{n} scenes in {out} ([bold]scenes.json[/], manifest.jsonl)", highlight=False)
    typer.echo(str(result))
