"""``synspill harvest``: clean background frames from your own cameras, videos and folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synspill.commands.options import ForceOpt, OutDirOpt
from synspill.synth.harvest import DEFAULTS, LIVE_DURATION, ImageFormat


def register(app: typer.Typer) -> None:
    app.command("harvest")(harvest)


def harvest(
    sources: Annotated[list[str], typer.Argument(
        help="RTSP/HTTP URLs, video files, image folders or webcam indices; NAME=SOURCE names the camera "
             "(default: file stem or stream host).", show_default=False)],
    out: OutDirOpt,
    every: Annotated[float | None, typer.Option(
        "--every", help=f"Seconds between samples: media time of a video, wall time of a live stream "
                        f"(default: {DEFAULTS['every']:g}).", show_default=False)] = None,
    per_source: Annotated[int | None, typer.Option(
        "--per-source", help=f"Most frames kept per source, spread evenly over the video or --duration "
                             f"(default: {DEFAULTS['per_source']}).", show_default=False)] = None,
    duration: Annotated[float | None, typer.Option(
        "--duration", help="Seconds read per source: the start of each video (default: all of it), or a live "
                           f"stream/webcam (default: {LIVE_DURATION:g}).", show_default=False)] = None,
    motion: Annotated[float | None, typer.Option(
        "--motion", help=f"Skip a sample when more than this fraction of the picture changed against both "
                         f"neighbouring samples (default: {DEFAULTS['motion']:g}).", show_default=False)] = None,
    dedupe: Annotated[int | None, typer.Option(
        "--dedupe", help=f"Skip a frame whose 64-bit dHash is within this many bits of a frame kept for the "
                         f"same camera under the same light; 0: only identical (default: {DEFAULTS['dedupe']}).",
        show_default=False)] = None,
    people_check: Annotated[bool, typer.Option(
        "--people-check/--no-people-check", help="Skip frames where OpenCV's HOG people detector fires "
                                                 "(OpenCV 4.x; unavailable in OpenCV 5).")] = True,
    image_format: Annotated[ImageFormat | None, typer.Option(
        "--format", help="Format of the kept frames (default: jpg).", show_default=False)] = None,
    quality: Annotated[int | None, typer.Option(
        "--quality", help=f"JPEG quality (default: {DEFAULTS['quality']}).", show_default=False)] = None,
    dataset: Annotated[Path | None, typer.Option(
        "--dataset", help="Also make the training set: DATASET/scenes (crops of the kept frames) and "
                          "DATASET/spills (spills painted in, annotations.json) for finetune.", show_default=False)] = None,
    n: Annotated[int, typer.Option("--n", help="Training images made with --dataset.")] = 2000,
    size: Annotated[int, typer.Option("--size", help="Side of the square training images with --dataset (px).")] = 640,
    seed: Annotated[int, typer.Option("--seed", help="Seed of crops, spill placements and spills (--dataset).")] = 0,
    force: ForceOpt = False,
) -> None:
    """Harvest clean background frames: [bold]OUT/images/<camera>/*.jpg[/], harvest.jsonl, harvest.json.

    Samples each source over time and skips frames with motion, near-duplicates, dark,
    blank or corrupt frames and (OpenCV 4.x) frames with people. Then paint spills into
    your views: [bold]--dataset DIR[/] does it in the same command (or run synspill scenes
    --backgrounds OUT, then inpaint; see docs/synth.md). Resumable: run the same command
    again after Ctrl-C.
    """
    from synspill.console import console
    from synspill.synth import harvest as hv

    given: dict[str, Any] = {k: v for k, v in {"every": every, "per_source": per_source, "duration": duration,
                                               "motion": motion, "dedupe": dedupe, "image_format": image_format,
                                               "quality": quality}.items() if v is not None}
    cfg = hv.HarvestConfig(sources=tuple(sources), out=str(out), people_check=people_check, **given)
    with _progress() as on_progress:
        result = hv.harvest(cfg, on_progress=on_progress, force=force)
    for s in result.sources:
        reasons = ", ".join(f"{k} {v}" for k, v in s.skipped.items() if v) or "none"
        state = {"already done": " (already done)", "failed": f" (failed: {s.error})"}.get(s.status, "")
        colour = "red" if s.status == "failed" else "green"
        console.print(f"[{colour}]{s.camera}[/]{state}: kept {s.kept} of {s.samples} samples; skipped {reasons} "
                      f"-> {s.folder}", highlight=False)
    console.print(f"{result.kept} frames in {result.out} ({hv.SUMMARY}, {hv.MANIFEST}) in {result.seconds:.1f} s; "
                  f"next: synspill scenes --backgrounds {result.out} --out SCENES", highlight=False)
    if result.failed:
        from synspill.errors import DatasetError

        bad = result.failed[0]
        raise DatasetError(f"{len(result.failed)} of {len(result.sources)} sources gave no frame ({bad.camera}: {bad.source}: "
                           f"{bad.error}); check the URL/camera and run the same command again to retry")
    if dataset is None:
        typer.echo(str(result.out))
        return
    _training_set(result.out, dataset, n, size, seed, force)


def _training_set(frames: Path, dataset: Path, n: int, size: int, seed: int, force: bool) -> None:
    """Scenes from the harvested frames, then spills painted into them (both resumable)."""
    from synspill.commands._synth import job_progress
    from synspill.console import console
    from synspill.runtime import default_workers
    from synspill.synth import harvest as hv
    from synspill.synth.inpaint import run_inpaint
    from synspill.synth.scenes import run_scenes

    scenes, spills = hv.training_set_jobs(frames, dataset, n=n, size=size, seed=seed, workers=default_workers())
    if not force and hv.frames_changed(scenes):
        console.print(f"the frames in {frames} changed since {dataset} was made from them: making it again", highlight=False)
        force = True
    with job_progress("scenes") as (on_start, on_progress):
        run_scenes(scenes, force=force, on_progress=on_progress, on_start=on_start)
    with job_progress("inpaint") as (on_start, on_progress):
        ann = run_inpaint(spills, force=force, on_progress=on_progress, on_start=on_start)
    console.print(f"training set: {ann} ({n} of your views with spills; look at {spills.out / 'contact_sheet.png'}); "
                  f"next: synspill finetune yolo --data {spills.out} --out runs/mycams", highlight=False)
    typer.echo(str(spills.out))


def _progress() -> Any:
    """A context yielding an ``on_progress`` callback that draws one bar per source."""
    from contextlib import contextmanager

    from synspill.console import make_progress

    @contextmanager
    def ctx() -> Any:
        with make_progress() as progress:
            tasks: dict[str, Any] = {}

            def on_progress(p: Any) -> None:
                if p.camera not in tasks:
                    tasks[p.camera] = progress.add_task(f"harvest {p.camera}", total=p.total)
                desc = f"harvest {p.camera} (kept {p.kept}, skipped {p.skipped})"
                progress.update(tasks[p.camera], completed=p.total if p.finished and p.total else p.done,
                                description=desc)

            yield on_progress

    return ctx()
