"""``synspill watch``: live CCTV spill monitoring with confirmed alerts and an event log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from synspill.commands.options import ClassesOpt, DeviceOpt, ScalesOpt
from synspill.models import ModelBackend
from synspill.watch import DEFAULT_DB, BaselineMode


def register(app: typer.Typer) -> None:
    app.command("watch")(watch)


def watch(
    source: Annotated[str | None, typer.Argument(help="RTSP/HTTP URL, video file, image folder or webcam index (single camera; or use --config).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML/YAML file with several cameras, zones, sinks (see docs/watch.md).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Weights file, run folder from `synspill finetune`, VLM folder, or py:MODULE:FACTORY.")] = None,
    backend: Annotated[ModelBackend | None, typer.Option("--backend", help="Which backend runs --model (default auto: from the run folder or file).", show_default=False)] = None,
    classes: ClassesOpt = None,
    prompt: Annotated[str | None, typer.Option("--prompt", help="VLM user prompt (what to look for).")] = None,
    adapter: Annotated[str | None, typer.Option("--adapter", help="VLM LoRA adapter folder.")] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Minimum confidence of a sighting.", show_default=False)] = None,
    fps: Annotated[float | None, typer.Option("--fps", help="Samples per second taken from the stream.", show_default=False)] = None,
    k: Annotated[int | None, typer.Option("--k", help="Alert when seen in K of the last N samples.", show_default=False)] = None,
    n: Annotated[int | None, typer.Option("--n", help="Window of the K-of-N rule.", show_default=False)] = None,
    cooldown: Annotated[float | None, typer.Option("--cooldown", help="Seconds between growth re-alerts of one spill.", show_default=False)] = None,
    close_after: Annotated[float | None, typer.Option("--close-after", help="Close a spill event unseen for this many seconds.", show_default=False)] = None,
    imgsz: Annotated[int | None, typer.Option("--imgsz", help="Detector inference size.")] = None,
    scales: ScalesOpt = None,
    device: DeviceOpt = None,
    name: Annotated[str | None, typer.Option("--name", help="Camera name (default: from the source).")] = None,
    loop: Annotated[bool | None, typer.Option("--loop", help="Replay a video file or folder forever (demos).", show_default=False)] = None,
    db: Annotated[Path | None, typer.Option("--db", help=f"Event database (SQLite) \\[default: {DEFAULT_DB}].")] = None,
    snapshots: Annotated[Path | None, typer.Option("--snapshots", help="Folder for one annotated JPEG per alert.")] = None,
    webhook: Annotated[str | None, typer.Option("--webhook", help="POST each alert as JSON to this URL (retries with back-off).")] = None,
    mqtt: Annotated[str | None, typer.Option("--mqtt", help="MQTT broker HOST:PORT; alerts on <prefix>/<camera>/events.")] = None,
    mqtt_prefix: Annotated[str | None, typer.Option("--mqtt-prefix", help="MQTT topic prefix \\[default: synspill].")] = None,
    json_lines: Annotated[bool | None, typer.Option("--json/--no-json", help="Print each alert as a JSON line on stdout \\[default: on].")] = None,
    ui: Annotated[str | None, typer.Option("--ui", help="Serve the web dashboard on HOST:PORT (e.g. 127.0.0.1:8080) while watching; non-loopback needs credentials (--ui-auth or \\[ui] in --config).", show_default=False)] = None,
    ui_auth: Annotated[Path | None, typer.Option("--ui-auth", help="TOML file with a \\[ui] table: username + password_hash and/or token_hash (`synspill ui hash-password`).")] = None,
    baseline: Annotated[BaselineMode | None, typer.Option("--baseline", help="Suppress sightings whose region is unchanged since the camera's clean-scene reference: learn it from detection-free frames, or capture it from the first samples \\[default: off] (docs/watch.md).", show_default=False)] = None,
    capture_baseline: Annotated[bool, typer.Option("--capture-baseline", help="The scene is clean now: capture a new reference for every camera from its first samples (= --baseline capture; allowed with --config), stored next to --db.")] = False,
    once: Annotated[bool, typer.Option("--once", help="Process a file/folder to its end (every sampled frame, reproducible), then exit (1 if alerts could not be delivered: they are sent on the next start).")] = False,
) -> None:
    """Watch camera streams, raise confirmed spill alerts and log them (Ctrl-C stops cleanly).

    One camera: [bold]synspill watch rtsp://cam/stream --model runs/yolo --classes oil-spill[/].
    Many: [bold]synspill watch --config cams.toml[/]. Alerts go to stdout as JSON lines, to
    the SQLite log (--db) and optionally to a webhook, MQTT and annotated snapshots.
    Unset options keep the defaults of [bold]synspill.watch.alerts.AlertPolicy[/] (docs/watch.md).
    """
    from synspill.commands.options import parse_scales
    from synspill.console import console
    from synspill.params import given
    from synspill.watch.config import config_from_flags
    from synspill.watch.loop import Watcher

    cfg = config_from_flags(
        source, model, config,
        camera=given(name=name, backend=backend, device=device, imgsz=imgsz, scales=parse_scales(scales), adapter=adapter, prompt=prompt, classes=classes,
                     fps=fps, loop=loop, baseline=baseline),
        policy=given(threshold=threshold, k=k, n=n, cooldown=cooldown, close_after=close_after),
        sinks=given(stdout=json_lines, webhook=webhook, mqtt=mqtt, mqtt_prefix=mqtt_prefix,
                    snapshots=str(snapshots) if snapshots else None),
        db=str(db) if db is not None else None, capture_baseline=capture_baseline)
    watcher = Watcher(cfg, once=once)
    server = _start_ui(cfg, watcher, ui, ui_auth, console) if ui is not None or ui_auth is not None else None
    stopped_by = _stop_on_signals(watcher, console)
    console.print(f"watching {', '.join(c.name for c in cfg.cameras)} -> {cfg.db}" + (" (once)" if once else " (Ctrl-C to stop)"),
                  highlight=False)
    try:
        with _status_display(console, once) as on_status:
            summary = watcher.run(on_status)
    finally:
        if server is not None:
            server.stop()
    resent = f", {summary.resent} alerts of earlier runs sent again" if summary.resent else ""
    suppressed = sum(s.suppressed_baseline for s in summary.cameras.values())
    suppr = f", {suppressed} sightings suppressed (unchanged since baseline)" if suppressed else ""
    quiet = sum(s.suppressed_false_alarm for s in summary.cameras.values())
    resent += f", {quiet} detections suppressed as known false alarms" if quiet else ""
    console.print(f"[green]done[/]: {summary.samples} samples, {summary.events_opened} new events, "
                  f"{summary.alerts} alerts{resent}{suppr} in {summary.wall_s:.1f} s -> {cfg.db}", highlight=False)
    if summary.undelivered:
        from synspill.errors import DeliveryError

        err = DeliveryError("; ".join(
            f"{n} alert(s) not delivered to {key} ({reason}) within the {cfg.sinks.delivery_grace:g} s grace period"
            for key, (n, reason) in summary.undelivered.items())
            + f"; they are kept in {cfg.db} and sent again when watch next starts with this --db")
        if not stopped_by:
            raise err
        console.print(f"[yellow]warning:[/] {err}", highlight=False)
    if stopped_by:  # a clean stop on a signal still reports it: 130 for Ctrl-C, 143 for SIGTERM (128 + signal)
        raise typer.Exit(128 + stopped_by[0])


def _start_ui(cfg: Any, watcher: Any, bind: str | None, auth: Path | None, console: Any) -> Any:
    """Start the dashboard next to the loop (same process, its own thread); returns the server."""
    import dataclasses

    from synspill.commands.ui import build_ui_config
    from synspill.watch.store import EventStore
    from synspill.watch.ui.app import UIState, create_app
    from synspill.watch.ui.server import UIServer

    ui_cfg = build_ui_config(bind, auth, base=cfg.ui)
    EventStore(cfg.db).close()  # create (or migrate) the log before the first page asks for it
    snaps = Path(cfg.sinks.snapshots) if cfg.sinks.snapshots else None
    state = UIState(db=Path(cfg.db), snapshots=snaps, ui=ui_cfg, live=watcher.live)
    host, port = ui_cfg.host_port
    server = UIServer(create_app(state), host, port).start()
    watcher.cfg = dataclasses.replace(cfg, ui=ui_cfg)
    watcher.live.interval = ui_cfg.live_interval
    console.print(f"dashboard on {server.url}" + (" (login required)" if ui_cfg.has_credentials else ""), highlight=False)
    return server


def _stop_on_signals(watcher: Any, console: Any) -> list[int]:
    """SIGINT/SIGTERM: stop after the current frame; a second one stops waiting.

    Returns:
        The signals received so far (filled in by the handler).
    """
    import signal
    import threading

    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        return got

    def on_signal(signum: int, _frame: Any) -> None:
        got.append(signum)
        if watcher.stopping:
            from synspill.errors import Terminated

            raise Terminated(f"signal {signum}") if signum == signal.SIGTERM else KeyboardInterrupt
        console.print(f"[yellow]{signal.Signals(signum).name}: stopping after the current frame...[/]")
        watcher.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return got


@contextmanager
def _status_display(console: Any, once: bool) -> Iterator[Callable[[list[Any]], None]]:
    """Yield the watcher's ``on_status``: a live table on a terminal, else a line per camera a minute."""
    import time

    if console.is_terminal:
        from rich.live import Live

        with Live(_status_table([]), console=console, refresh_per_second=2, transient=False) as live:
            yield lambda stats: live.update(_status_table(stats))
        return
    last_log = [time.monotonic()]

    def log_lines(stats: list[Any]) -> None:
        if once or time.monotonic() - last_log[0] <= 60:
            return
        last_log[0] = time.monotonic()
        for s in stats:
            console.print(f"{s.name}: {s.state} {s.fps:.1f} fps, latency {s.latency_ms:.0f} ms, "
                          f"{s.open_events} open, {s.events} events, last {s.last_detection}"
                          + (f", baseline {s.baseline}, {s.suppressed_baseline} suppressed" if s.baseline != "-" else "")
                          + (f", {s.suppressed_false_alarm} in false-alarm regions" if s.suppressed_false_alarm else ""),
                          highlight=False)

    yield log_lines


def _status_table(stats: list[Any]) -> Any:
    from rich.table import Table

    t = Table(box=None, pad_edge=False, header_style="bold")
    # suppr.: sightings dropped as unchanged since the baseline (+ inside false-alarm regions)
    for col in ("camera", "state", "fps", "latency", "model/frame", "dropped", "reconn.", "open", "events", "baseline",
                "suppr.", "last detection"):
        t.add_column(col, justify="right" if col not in ("camera", "state", "baseline", "last detection") else "left")
    colour = {"live": "green", "reconnecting": "yellow", "connecting": "yellow", "ended": "dim", "failed": "red"}
    for s in stats:
        t.add_row(s.name, f"[{colour.get(s.state, 'white')}]{s.state}[/]", f"{s.fps:.1f}", f"{s.latency_ms:.0f} ms",
                  f"{s.infer_ms:.0f} ms", str(s.dropped), str(s.reconnects), str(s.open_events), str(s.events),
                  s.baseline, f"{s.suppressed_baseline}+{s.suppressed_false_alarm}" if s.suppressed_false_alarm
                  else str(s.suppressed_baseline), s.last_detection)
    return t
