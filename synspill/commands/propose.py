"""``synspill propose``: automatic spill-box proposals over scenes (stage 2, bulk/demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synspill.commands import _synth as s
from synspill.commands.options import ClassesOpt, ForceOpt, SeedOpt


def register(app: typer.Typer) -> None:
    app.command("propose")(propose)


def propose(
    scenes: Annotated[Path, typer.Option("--scenes", help="Scenes folder (synspill scenes output) or a folder of images.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="COCO file to write (boxes.json).")],
    per_image: s.PerImageOpt = None,
    spill_scale: s.SpillScaleOpt = None,
    min_box: s.MinBoxOpt = None,
    close_up: s.CloseUpOpt = None,
    classes: ClassesOpt = None,
    seed: SeedOpt = None,
    force: ForceOpt = False,
) -> None:
    """Propose plausible spill boxes (floor, beneath valves/joints/pumps) as COCO, marked auto.

    Edit them in any COCO tool, then [bold]synspill inpaint --scenes DIR --boxes boxes.json[/].
    """
    from synspill import taxonomy
    from synspill.console import console
    from synspill.params import given
    from synspill.synth.jobrunner import parse_count_range
    from synspill.synth.propose import propose_to_file

    per = parse_count_range(per_image, "--per-image") if per_image else None
    props = propose_to_file(scenes, out, classes=taxonomy.parse_classes(classes), force=force,
                            **given(per_image=per, seed=seed, scale=spill_scale, min_size=min_box,
                                    close_up=close_up))
    console.print(f"{len(props.annotations)} proposals over {len(props.images)} scenes -> {out}", highlight=False)
    typer.echo(str(out))
