"""Shared bits of the synthesis commands: backend choice, SDXL options, progress."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import contextmanager
from typing import Annotated, Any

import typer

ModelOpt = Annotated[str | None, typer.Option("--model", help="SDXL weights: local folder or cached hub id (selects the sdxl backend).")]
IPAdapterOpt = Annotated[str | None, typer.Option("--ip-adapter", help="IP-Adapter folder (with image_encoder/); needs reference images.")]
IPWeightOpt = Annotated[str, typer.Option("--ip-weight-name", help="IP-Adapter weight file inside --ip-adapter.")]
IPScaleOpt = Annotated[float, typer.Option("--ip-scale", help="IP-Adapter strength (paper: 0.6).")]
LoraOpt = Annotated[str | None, typer.Option("--lora", help="Style LoRA file or folder.")]
LoraScaleOpt = Annotated[str, typer.Option("--lora-scale", help="LoRA strength range LOW:HIGH, sampled per image (paper: 0.2:0.4).")]
StepsOpt = Annotated[int | None, typer.Option("--steps", help="Denoising steps (default: scenes 64, inpaint 20).")]
CfgOpt = Annotated[float | None, typer.Option("--cfg", help="Classifier-free guidance (default: scenes 8, SDXL-Turbo 0).")]
SchedulerOpt = Annotated[str, typer.Option("--scheduler", help="dpmpp_2m_sde_karras (paper) or euler_a.")]
SpillScaleOpt = Annotated[float, typer.Option("--spill-scale", help="Multiplier on real-world spill sizes (1 = life-size on CCTV; 2-3 = close-ups).")]
MinBoxOpt = Annotated[float, typer.Option("--min-box", help="Smallest proposed box side, fraction of the shorter image side (raise for fast-to-learn data).")]
BackendOpt = Annotated[str, typer.Option("--backend", help="auto (sdxl if weights are configured, else procedural), procedural or sdxl.")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="CPU processes for the procedural backend (default: min(2, CPUs)).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Images per backend call / per worker task.")]
ShardOpt = Annotated[str | None, typer.Option("--shard", help="I/N: this process does every N-th image from I (default: RANK/WORLD_SIZE from accelerate/torchrun, else 0/1).")]
MergeOnlyOpt = Annotated[bool, typer.Option("--merge-only", help="Only merge finished shards into the final COCO file.")]
QualityOpt = Annotated[int | None, typer.Option("--quality", help="JPEG quality (default: per image, CCTV-like 65-95 for procedural scenes; 92 otherwise).")]


def choose_backend(backend: str, model: str | None, env_var: str) -> tuple[str, str | None]:
    """Resolve ``auto``: sdxl when ``--model`` or ``$env_var`` names weights, else procedural.

    Returns:
        ``(backend, model)``; announces the choice in one line when it was ``auto``.
    """
    from synspill.console import console
    from synspill.errors import UsageError

    b = backend.strip().lower()
    if b not in ("auto", "procedural", "sdxl"):
        raise UsageError(f"--backend {backend!r}: use auto, procedural or sdxl")
    model = model or os.environ.get(env_var) or None
    if b == "auto":
        b = "sdxl" if model else "procedural"
        why = f"weights {model}" if model else f"no --model or ${env_var}: built-in CPU renderer"
        console.print(f"backend: [bold]{b}[/] ({why})", highlight=False)
    if b == "sdxl" and not model:
        raise UsageError(f"the sdxl backend needs weights: pass --model PATH_OR_HUB_ID or set ${env_var}")
    return b, model


def default_workers(workers: int | None) -> int:
    return workers if workers is not None else max(1, min(2, os.cpu_count() or 1))


@contextmanager
def job_progress(description: str) -> Any:
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

        cb: tuple[Callable[[int, int], None], Callable[[int], None]] = (on_start, on_progress)
        yield cb
