"""``synspill watch``: live CCTV spill monitoring with confirmed alerts and an event log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synspill.commands.options import ClassesOpt, DeviceOpt
from synspill.watch import DEFAULT_DB


def register(app: typer.Typer) -> None:
    app.command("watch")(watch)


def _status_table(stats: list[Any]) -> Any:
    from rich.table import Table

    t = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("camera", "state", "fps", "latency", "model/frame", "dropped", "reconn.", "open", "events", "last detection"):
        t.add_column(col, justify="right" if col not in ("camera", "state", "last detection") else "left")
    colour = {"live": "green", "reconnecting": "yellow", "connecting": "yellow", "ended": "dim", "failed": "red"}
    for s in stats:
        t.add_row(s.name, f"[{colour.get(s.state, 'white')}]{s.state}[/]", f"{s.fps:.1f}", f"{s.latency_ms:.0f} ms",
                  f"{s.infer_ms:.0f} ms", str(s.dropped), str(s.reconnects), str(s.open_events), str(s.events),
                  s.last_detection)
    return t


def watch(
    source: Annotated[str | None, typer.Argument(help="RTSP/HTTP URL, video file, image folder or webcam index (single camera; or use --config).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML/YAML file with several cameras, zones, sinks (see docs/watch.md).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Weights file, run folder from `synspill finetune`, VLM folder, or py:MODULE:FACTORY.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="auto, yolo, detr or vlm.")] = "auto",
    classes: ClassesOpt = None,
    prompt: Annotated[str | None, typer.Option("--prompt", help="VLM user prompt (what to look for).")] = None,
    adapter: Annotated[str | None, typer.Option("--adapter", help="VLM LoRA adapter folder.")] = None,
    threshold: Annotated[float, typer.Option("--threshold", help="Minimum confidence of a sighting.")] = 0.5,
    fps: Annotated[float, typer.Option("--fps", help="Samples per second taken from the stream.")] = 2.0,
    k: Annotated[int, typer.Option("--k", help="Alert when seen in K of the last N samples.")] = 3,
    n: Annotated[int, typer.Option("--n", help="Window of the K-of-N rule.")] = 5,
    cooldown: Annotated[float, typer.Option("--cooldown", help="Seconds between growth re-alerts of one spill.")] = 300.0,
    close_after: Annotated[float, typer.Option("--close-after", help="Close a spill event unseen for this many seconds.")] = 60.0,
    imgsz: Annotated[int | None, typer.Option("--imgsz", help="Detector inference size.")] = None,
    device: DeviceOpt = "auto",
    name: Annotated[str | None, typer.Option("--name", help="Camera name (default: from the source).")] = None,
    loop: Annotated[bool, typer.Option("--loop", help="Replay a video file or folder forever (demos).")] = False,
    db: Annotated[Path | None, typer.Option("--db", help=f"Event database (SQLite) [default: {DEFAULT_DB}].")] = None,
    snapshots: Annotated[Path | None, typer.Option("--snapshots", help="Folder for one annotated JPEG per alert.")] = None,
    webhook: Annotated[str | None, typer.Option("--webhook", help="POST each alert as JSON to this URL (retries with back-off).")] = None,
    mqtt: Annotated[str | None, typer.Option("--mqtt", help="MQTT broker HOST:PORT; alerts on <prefix>/<camera>/events.")] = None,
    mqtt_prefix: Annotated[str | None, typer.Option("--mqtt-prefix", help="MQTT topic prefix [default: synspill].")] = None,
    json_lines: Annotated[bool | None, typer.Option("--json/--no-json", help="Print each alert as a JSON line on stdout [default: on].")] = None,
    once: Annotated[bool, typer.Option("--once", help="Process a file/folder to its end (every sampled frame, reproducible), then exit.")] = False,
) -> None:
    """Watch camera streams, raise confirmed spill alerts and log them (Ctrl-C stops cleanly).

    One camera: [bold]synspill watch rtsp://cam/stream --model runs/yolo --classes oil-spill[/].
    Many: [bold]synspill watch --config cams.toml[/]. Alerts go to stdout as JSON lines, to
    the SQLite log (--db) and optionally to a webhook, MQTT and annotated snapshots.
    """
    import dataclasses
    import signal
    import threading
    import time

    from synspill import taxonomy
    from synspill.console import console
    from synspill.errors import UsageError
    from synspill.watch.alerts import AlertPolicy
    from synspill.watch.config import (
        CameraConfig,
        SinkConfig,
        WatchConfig,
        camera_name_for,
        load_config,
    )
    from synspill.watch.loop import Watcher

    if config is not None:
        if source is not None or model is not None:
            raise UsageError("give either --config FILE or SOURCE --model M, not both (per-camera settings go in the file)")
        cfg = load_config(config)
        sink_over: dict[str, Any] = {}
        if snapshots is not None:
            sink_over["snapshots"] = str(snapshots)
        if webhook is not None:
            sink_over["webhook"] = webhook
        if mqtt is not None:
            sink_over["mqtt"] = mqtt
        if mqtt_prefix is not None:
            sink_over["mqtt_prefix"] = mqtt_prefix
        if json_lines is not None:
            sink_over["stdout"] = json_lines
        cfg = dataclasses.replace(cfg, sinks=dataclasses.replace(cfg.sinks, **sink_over),
                                  db=str(db) if db is not None else cfg.db)
    else:
        if source is None:
            raise UsageError("nothing to watch: give a SOURCE (URL, file, folder, webcam index) or --config FILE")
        if model is None:
            raise UsageError("--model is required with a SOURCE (weights, run folder, VLM folder or py:MODULE:FACTORY)")
        ids = taxonomy.parse_classes(classes)
        policy = AlertPolicy(threshold=threshold, k=k, n=n, cooldown=cooldown, close_after=close_after)
        cam = CameraConfig(name=name or camera_name_for(source), url=source, model=model, backend=backend,
                           device=device, imgsz=imgsz, adapter=adapter, prompt=prompt,
                           classes=tuple(ids) if ids else None, fps=fps, policy=policy, loop=loop)
        sinks = SinkConfig(stdout=True if json_lines is None else json_lines, webhook=webhook, mqtt=mqtt,
                           mqtt_prefix=mqtt_prefix or "synspill", snapshots=str(snapshots) if snapshots else None)
        cfg = WatchConfig(cameras=(cam,), db=str(db or DEFAULT_DB), sinks=sinks)

    watcher = Watcher(cfg, once=once)
    if threading.current_thread() is threading.main_thread():
        def _on_signal(signum: int, _frame: Any) -> None:
            if watcher.stopping:  # second Ctrl-C: stop waiting
                raise KeyboardInterrupt
            console.print(f"[yellow]{signal.Signals(signum).name}: stopping after the current frame...[/]")
            watcher.stop()

        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)

    live = None
    last_log = [time.monotonic()]
    if console.is_terminal:
        from rich.live import Live

        live = Live(_status_table([]), console=console, refresh_per_second=2, transient=False)
        live.start()

    def on_status(stats: list[Any]) -> None:
        if live is not None:
            live.update(_status_table(stats))
        elif not once and time.monotonic() - last_log[0] > 60:
            last_log[0] = time.monotonic()
            for s in stats:
                console.print(f"{s.name}: {s.state} {s.fps:.1f} fps, latency {s.latency_ms:.0f} ms, "
                              f"{s.open_events} open, {s.events} events, last {s.last_detection}", highlight=False)

    names = ", ".join(c.name for c in cfg.cameras)
    console.print(f"watching {names} -> {cfg.db}" + (" (once)" if once else " (Ctrl-C to stop)"), highlight=False)
    try:
        summary = watcher.run(on_status)
    finally:
        if live is not None:
            live.stop()
    console.print(f"[green]done[/]: {summary.samples} samples, {summary.events_opened} new events, "
                  f"{summary.alerts} alerts in {summary.wall_s:.1f} s -> {cfg.db}", highlight=False)
