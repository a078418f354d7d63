"""``synspill inpaint``: paint spills into scenes inside given boxes (stage 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synspill.commands import _synth as s
from synspill.commands.options import ClassesOpt, DeviceOpt, DTypeOpt, ForceOpt, OutDirOpt, SeedOpt
from synspill.synth import SynthBackend


def register(app: typer.Typer) -> None:
    app.command("inpaint")(inpaint)


def inpaint(
    out: OutDirOpt,
    scenes: Annotated[Path | None, typer.Option("--scenes", help="Scenes folder (synspill scenes output, a COCO folder or a folder of images).")] = None,
    boxes: Annotated[Path | None, typer.Option("--boxes", help="COCO file of boxes over the scenes (annotate-import or propose).")] = None,
    propose: Annotated[bool, typer.Option("--propose", help="Propose boxes automatically instead of --boxes.")] = False,
    per_image: s.PerImageOpt = None,
    spill_scale: s.SpillScaleOpt = None,
    min_box: s.MinBoxOpt = None,
    close_up: s.CloseUpOpt = None,
    classes: ClassesOpt = None,
    backend: s.BackendOpt = SynthBackend.auto,
    feather: Annotated[float | None, typer.Option("--feather", help="Soft-mask Gaussian feathering, px (paper: 50).", show_default=False)] = None,
    opacity: Annotated[float | None, typer.Option("--opacity", help="Soft-mask opacity (paper: 0.75).", show_default=False)] = None,
    strength: Annotated[str | None, typer.Option("--strength", help="Denoise strength range LOW:HIGH, sampled per spill (sdxl; paper 0.5:0.6).", show_default=False)] = None,
    seed: SeedOpt = None,
    batch_size: s.BatchOpt = None,
    workers: s.WorkersOpt = None,
    shard: s.ShardOpt = None,
    merge_only: s.MergeOnlyOpt = False,
    quality: s.QualityOpt = None,
    contact: Annotated[int | None, typer.Option("--contact-sheet", help="Images on contact_sheet.png (0: none).", show_default=False)] = None,
    force: ForceOpt = False,
    model: s.ModelOpt = None,
    refs: Annotated[Path | None, typer.Option("--refs", help="Folder of real spill-texture photos for the IP-Adapter (sdxl).")] = None,
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
    """Paint spills into scenes: [bold]OUT/images/*.jpg[/], annotations.json (class, tight box, RLE mask), contact_sheet.png.

    Boxes come from [bold]--boxes[/] (expert, via annotate-import; or synspill propose) or
    [bold]--propose[/]. Resumable; spread over GPUs with accelerate launch (docs/synth.md).
    """
    from synspill import taxonomy
    from synspill.console import console
    from synspill.errors import UsageError
    from synspill.params import given
    from synspill.runtime import default_workers
    from synspill.synth.inpaint import InpaintJob, merge_inpaint, run_inpaint
    from synspill.synth.jobrunner import parse_count_range, parse_range, parse_shard

    shard_t = parse_shard(shard)
    if merge_only:
        path = merge_inpaint(out, contact_sheet=contact)
        console.print(f"merged {path}", highlight=False)
        typer.echo(str(path))
        return
    if scenes is None:
        raise UsageError("--scenes DIR is required (the folder made by `synspill scenes`, or a folder of images)")
    per = parse_count_range(per_image, "--per-image") if per_image else None
    st = parse_range(strength, "--strength", 0.0, 1.0) if strength else None
    be, mdl = s.choose_backend(backend, model, "SYNSPILL_SDXL_INPAINT")
    diff = None
    if be == SynthBackend.sdxl.value:
        from synspill.synth.base import DiffusionOptions

        diff = DiffusionOptions.for_inpaint(s.diffusion_params(
            device=device, dtype=dtype, steps=steps, cfg=cfg, scheduler=scheduler, refs=str(refs) if refs else None,
            ip_adapter=ip_adapter, ip_weight_name=ip_weight_name, ip_scale=ip_scale, lora=lora, strength=st,
            batch_size=batch_size or InpaintJob.batch_size,  # one pipeline call per job batch
            lora_scale=parse_range(lora_scale, "--lora-scale", 0.0, 2.0) if lora_scale else None), model=mdl or "")
    ids = taxonomy.parse_classes(classes)
    job = InpaintJob(scenes=scenes, out=out, boxes=boxes, propose=propose, backend=be, shard=shard_t, diffusion=diff,
                          classes=tuple(ids) if ids else None,
                          **given(per_image=per, spill_scale=spill_scale, min_box=min_box, close_up=close_up, seed=seed, feather=feather,
                                  opacity=opacity, strength=st, batch_size=batch_size, workers=workers or default_workers(), quality=quality,
                                  contact_sheet=contact))
    with s.job_progress("inpaint") as (on_start, on_progress):
        result = run_inpaint(job, force=force, on_progress=on_progress, on_start=on_start)
    if result is None:
        console.print(f"shard {shard_t[0]}/{shard_t[1]} done; rank 0 merges", highlight=False)
        return
    import json

    n_spills = len(json.loads(result.read_text(encoding="utf-8"))["annotations"])
    sheet = ", contact_sheet.png" if job.contact_sheet > 0 else ""
    console.print(f"{n_spills} spills in {out}: [bold]annotations.json[/], manifest.jsonl{sheet}", highlight=False)
    if not n_spills:
        console.print("[yellow]note:[/] no spill is visible in any image (every painted spill came out empty); "
                      "check the boxes and --opacity", highlight=False)
    typer.echo(str(result))
