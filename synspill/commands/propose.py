"""``synspill propose``: automatic spill-box proposals over scenes (stage 2, bulk/demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synspill.commands import _synth as s
from synspill.commands.options import ClassesOpt, ForceOpt, SeedOpt
from synspill.synth import MIN_BOX


def register(app: typer.Typer) -> None:
    app.command("propose")(propose)


def propose(
    scenes: Annotated[Path, typer.Option("--scenes", help="Scenes folder (synspill scenes output) or a folder of images.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="COCO file to write (boxes.json).")],
    per_image: Annotated[str, typer.Option("--per-image", help="Boxes per image, LOW:HIGH.")] = "1:3",
    spill_scale: s.SpillScaleOpt = 1.0,
    min_box: s.MinBoxOpt = MIN_BOX,
    classes: ClassesOpt = None,
    seed: SeedOpt = 0,
    force: ForceOpt = False,
) -> None:
    """Propose plausible spill boxes (floor, beneath valves/joints/pumps) as COCO, marked auto.

    Edit them in any COCO tool, then [bold]synspill inpaint --scenes DIR --boxes boxes.json[/].
    """
    from synspill import taxonomy
    from synspill.coco.dataset import save_coco
    from synspill.console import console
    from synspill.errors import OutputExists, UsageError
    from synspill.synth import jobs
    from synspill.synth.propose import propose_dataset

    if out.exists() and not force:
        raise OutputExists(f"{out} exists; pass --force to overwrite it or choose another --out")
    if out.suffix.lower() != ".json":
        raise UsageError(f"--out {out}: write the proposals to a .json file")
    lo, hi = jobs.parse_range(per_image, "--per-image", 0, 100)
    if lo != int(lo) or hi != int(hi):
        raise UsageError(f"--per-image {per_image!r}: use whole numbers, e.g. 1:3")
    ds = jobs.load_scenes(scenes)
    props = propose_dataset(ds, (int(lo), int(hi)), taxonomy.parse_classes(classes), seed, spill_scale, min_box)
    # file names relative to the boxes file, so that the COCO file opens with its images
    import os

    for im, src in zip(props.images, ds.images, strict=True):
        im.file_name = os.path.relpath(ds.image_path(src).resolve(), out.resolve().parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_coco(props, out)
    console.print(f"{len(props.annotations)} proposals over {len(props.images)} scenes -> {out}", highlight=False)
    typer.echo(str(out))
