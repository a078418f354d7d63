"""Shared bits of the synthesis commands: backend choice, SDXL options, progress."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from synspill.synth import Scheduler, SynthBackend

ModelOpt = Annotated[str | None, typer.Option("--model", help="SDXL weights: local folder or cached hub id (selects the sdxl backend).")]
IPAdapterOpt = Annotated[str | None, typer.Option("--ip-adapter", help="IP-Adapter folder (with image_encoder/); needs reference images.")]
IPWeightOpt = Annotated[str | None, typer.Option("--ip-weight-name", help="IP-Adapter weight file inside --ip-adapter (default: the paper's plus adapter).", show_default=False)]
IPScaleOpt = Annotated[float | None, typer.Option("--ip-scale", help="IP-Adapter strength (paper: 0.6).", show_default=False)]
LoraOpt = Annotated[str | None, typer.Option("--lora", help="Style LoRA file or folder.")]
LoraScaleOpt = Annotated[str | None, typer.Option("--lora-scale", help="LoRA strength range LOW:HIGH, sampled per image (paper: 0.2:0.4).", show_default=False)]
StepsOpt = Annotated[int | None, typer.Option("--steps", help="Denoising steps (default: the stage's, see docs/synth-sdxl.md).")]
CfgOpt = Annotated[float | None, typer.Option("--cfg", help="Classifier-free guidance (default: the stage's; SDXL-Turbo 0).")]
SchedulerOpt = Annotated[Scheduler | None, typer.Option("--scheduler", help="Denoising scheduler (default: the stage's; the paper's dpmpp_2m_sde_karras for scenes).", show_default=False)]
SpillScaleOpt = Annotated[float | None, typer.Option("--spill-scale", help="Multiplier on real-world spill sizes (1 = life-size on CCTV; 2-3 = close-ups).", show_default=False)]
CloseUpOpt = Annotated[float | None, typer.Option("--close-up", help="Share of images whose first spill is seen close up, its box side 35-95% of the image's (0: off, the default).", show_default=False)]
MinBoxOpt = Annotated[float | None, typer.Option("--min-box", help="Smallest proposed box side, fraction of the shorter image side (raise for fast-to-learn data).", show_default=False)]
PerImageOpt = Annotated[str | None, typer.Option("--per-image", help="Boxes per image, LOW:HIGH (default 1:3).", show_default=False)]
BackendOpt = Annotated[SynthBackend, typer.Option("--backend", help="auto: sdxl if weights are configured, else procedural.")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="CPU processes for the procedural backend (default: one per CPU core, shared among torchrun's processes, up to 8).")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Images per backend call / per worker task.", show_default=False)]
ShardOpt = Annotated[str | None, typer.Option("--shard", help="I/N: this process does every N-th image from I (default: RANK/WORLD_SIZE from accelerate/torchrun, else 0/1).")]
MergeOnlyOpt = Annotated[bool, typer.Option("--merge-only", help="Only merge finished shards into the final COCO file.")]
QualityOpt = Annotated[int | None, typer.Option("--quality", help="JPEG quality (default: per image, CCTV-like 65-95 for procedural scenes; 92 otherwise).")]


def choose_backend(backend: SynthBackend, model: str | None, env_var: str) -> tuple[str, str | None]:
    """Resolve ``auto``: sdxl when ``--model`` or ``$env_var`` names weights, else procedural.

    Returns:
        ``(backend, model)``; announces the choice in one line when it was ``auto``.
    """
    from synspill.console import console
    from synspill.errors import UsageError

    b = backend.value
    model = model or os.environ.get(env_var) or None
    if b == SynthBackend.auto.value:
        b = SynthBackend.sdxl.value if model else SynthBackend.procedural.value
        why = f"weights {model}" if model else f"no --model or ${env_var}: built-in CPU renderer"
        console.print(f"backend: [bold]{b}[/] ({why})", highlight=False)
    if b == SynthBackend.sdxl.value and not model:
        raise UsageError(f"the sdxl backend needs weights: pass --model PATH_OR_HUB_ID or set ${env_var}")
    return b, model


def diffusion_params(**values: Any) -> dict[str, Any]:
    """The SDXL options a user set, as :class:`~synspill.synth.base.DiffusionOptions` fields.

    ``steps``/``cfg`` become ``steps``/``guidance``; ranges (``lora_scale``, ``strength``)
    arrive parsed.
    """
    from synspill.params import given

    kw = given(**values)
    if "cfg" in kw:
        kw["guidance"] = kw.pop("cfg")
    return kw


@contextmanager
def job_progress(description: str) -> Iterator[tuple[Callable[[int, int], None], Callable[[int], None]]]:
    """Yields ``(on_start, on_progress)`` callbacks drawing one rich bar with ETA."""
    from synspill.console import console, make_progress

    with make_progress() as progress:
        task = progress.add_task(description, total=None)

        def on_start(done: int, todo: int) -> None:
            if done:
                console.print(f"resuming: {done} finished image(s) kept, {todo} to make", highlight=False)
            progress.update(task, total=todo)

        def on_progress(n: int) -> None:
            progress.advance(task, n)

        yield on_start, on_progress
