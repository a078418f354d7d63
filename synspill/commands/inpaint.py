"""``synspill inpaint``: paint spills into scenes inside boxes (stage 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synspill.commands import _synth as s
from synspill.commands.options import ClassesOpt, DeviceOpt, DTypeOpt, ForceOpt, OutDirOpt, SeedOpt
from synspill.synth import MIN_BOX


def register(app: typer.Typer) -> None:
    app.command("inpaint")(inpaint)


def inpaint(
    out: OutDirOpt,
    scenes: Annotated[Path | None, typer.Option("--scenes", help="Scenes folder (synspill scenes output, a COCO folder or a folder of images).")] = None,
    boxes: Annotated[Path | None, typer.Option("--boxes", help="COCO file of boxes over the scenes (annotate-import or propose).")] = None,
    propose: Annotated[bool, typer.Option("--propose", help="Propose boxes automatically instead of --boxes.")] = False,
    per_image: Annotated[str, typer.Option("--per-image", help="With --propose: boxes per image, LOW:HIGH.")] = "1:3",
    spill_scale: s.SpillScaleOpt = 1.0,
    min_box: s.MinBoxOpt = MIN_BOX,
    classes: ClassesOpt = None,
    backend: s.BackendOpt = "auto",
    feather: Annotated[float, typer.Option("--feather", help="Soft-mask Gaussian feathering, px (paper: 50).")] = 50.0,
    opacity: Annotated[float, typer.Option("--opacity", help="Soft-mask opacity (paper: 0.75).")] = 0.75,
    strength: Annotated[str, typer.Option("--strength", help="Denoise strength range LOW:HIGH, sampled per spill (sdxl; paper 0.5:0.6).")] = "0.5:0.6",
    seed: SeedOpt = 0,
    batch_size: s.BatchOpt = 8,
    workers: s.WorkersOpt = None,
    shard: s.ShardOpt = None,
    merge_only: s.MergeOnlyOpt = False,
    quality: s.QualityOpt = None,
    contact: Annotated[int, typer.Option("--contact-sheet", help="Images on contact_sheet.png (0: none).")] = 36,
    force: ForceOpt = False,
    model: s.ModelOpt = None,
    refs: Annotated[Path | None, typer.Option("--refs", help="Folder of real spill-texture photos for the IP-Adapter (sdxl).")] = None,
    ip_adapter: s.IPAdapterOpt = None,
    ip_weight_name: s.IPWeightOpt = "ip-adapter-plus_sdxl_vit-h.safetensors",
    ip_scale: s.IPScaleOpt = 0.6,
    lora: s.LoraOpt = None,
    lora_scale: s.LoraScaleOpt = "0.2:0.4",
    steps: s.StepsOpt = None,
    cfg: s.CfgOpt = None,
    scheduler: s.SchedulerOpt = "euler_a",
    device: DeviceOpt = "auto",
    dtype: DTypeOpt = "auto",
) -> None:
    """Paint spills into scenes: [bold]OUT/images/*.jpg[/], annotations.json (class, tight box, RLE mask), contact_sheet.png.

    Boxes come from [bold]--boxes[/] (expert, via annotate-import; or synspill propose) or
    [bold]--propose[/]. Resumable; spread over GPUs with accelerate launch (docs/synth.md).
    """
    from synspill import taxonomy
    from synspill.console import console
    from synspill.errors import UsageError
    from synspill.synth import jobs

    shard_t = jobs.parse_shard(shard)
    if merge_only:
        path = jobs.merge_inpaint(out, contact_sheet=contact)
        console.print(f"merged {path}", highlight=False)
        typer.echo(str(path))
        return
    if scenes is None:
        raise UsageError("--scenes DIR is required (the folder made by `synspill scenes`, or a folder of images)")
    if boxes is not None and propose:
        raise UsageError("pass either --boxes COCO or --propose, not both")
    if boxes is None and not propose:
        raise UsageError("no boxes: pass --boxes COCO (from annotate-import or synspill propose) or --propose")
    lo, hi = jobs.parse_range(per_image, "--per-image", 0, 100)
    st = jobs.parse_range(strength, "--strength", 0.0, 1.0)
    be, mdl = s.choose_backend(backend, model, "SYNSPILL_SDXL_INPAINT")
    diff = None
    if be == "sdxl":
        from synspill.synth.base import DiffusionOptions

        diff = DiffusionOptions(model=mdl or "", device=device, dtype=dtype,
                                steps=steps if steps is not None else 20, guidance=cfg if cfg is not None else 0.0,
                                scheduler=scheduler, refs=str(refs) if refs else None, ip_adapter=ip_adapter,
                                ip_weight_name=ip_weight_name, ip_scale=ip_scale, lora=lora,
                                lora_scale=jobs.parse_range(lora_scale, "--lora-scale", 0.0, 2.0), strength=st,
                                batch_size=batch_size)
    cls = taxonomy.parse_classes(classes)
    job = jobs.InpaintJob(scenes=scenes, out=out, boxes=boxes, propose=propose, per_image=(int(lo), int(hi)), spill_scale=spill_scale,
                          min_box=min_box,
                          classes=tuple(cls) if cls else None, seed=seed, backend=be, feather=feather, opacity=opacity,
                          strength=st, batch_size=batch_size, workers=s.default_workers(workers), shard=shard_t,
                          quality=quality, diffusion=diff, contact_sheet=contact)
    with s.job_progress("inpaint") as (on_start, on_progress):
        result = jobs.run_inpaint(job, force=force, on_progress=on_progress, on_start=on_start)
    if result is None:
        console.print(f"shard {shard_t[0]}/{shard_t[1]} done; rank 0 merges", highlight=False)
        return
    console.print(f"spills in {out}: [bold]annotations.json[/], manifest.jsonl, contact_sheet.png", highlight=False)
    typer.echo(str(result))
