"""``synspill events``: list, acknowledge, close, export and report the spill event log; false alarms."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synspill.commands.options import JsonOpt
from synspill.errors import UsageError
from synspill.watch import DEFAULT_DB, Bucket, EventStatus, ExportFormat, Severity

events_app = typer.Typer(
    help="The spill event log written by [bold]synspill watch[/]: list, ack, close, export, report; false alarms.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

DbOpt = Annotated[Path, typer.Option("--db", help="Event database written by `synspill watch`.")]
CameraOpt = Annotated[str | None, typer.Option("--camera", help="Only this camera.")]
ZoneOpt = Annotated[str | None, typer.Option("--zone", help="Only this zone.")]
ClassOpt = Annotated[str | None, typer.Option("--class", help="Only this class (name, alias or id).")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="First seen at/after: ISO date/time or a span back (24h, 7d).")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="First seen before: ISO date/time or a span back.")]
SeverityOpt = Annotated[Severity | None, typer.Option("--severity", help="This level and above.")]
UnackedOpt = Annotated[bool, typer.Option("--unacked", help="Only events nobody acknowledged.")]
StatusOpt = Annotated[EventStatus | None, typer.Option("--status", help="Only open or only closed events.")]
FalseAlarmOpt = Annotated[bool | None, typer.Option("--false-alarms/--no-false-alarms",
                                                    help="Only events marked as false alarms / only the others (default: all).",
                                                    show_default=False)]


def register(app: typer.Typer) -> None:
    app.add_typer(events_app, name="events")


def _filter(camera: str | None, zone: str | None, cls: str | None, since: str | None, until: str | None,
            severity: Severity | None, unacked: bool, status: EventStatus | None, false_alarm: bool | None = None) -> Any:
    from synspill import taxonomy
    from synspill.watch.report import parse_time
    from synspill.watch.store import EventFilter

    name = taxonomy.BY_ID[taxonomy.class_id(cls)].name if cls else None
    return EventFilter(camera=camera, zone=zone, class_name=name, since=parse_time(since) if since else None,
                       until=parse_time(until) if until else None, min_severity=severity.value if severity else None,
                       unacked=unacked, status=status.value if status else None, false_alarm=false_alarm)


@events_app.command("list")
def list_events(
    db: DbOpt = Path(DEFAULT_DB),
    camera: CameraOpt = None,
    zone: ZoneOpt = None,
    cls: ClassOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    severity: SeverityOpt = None,
    unacked: UnackedOpt = False,
    status: StatusOpt = None,
    false_alarms: FalseAlarmOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many (the newest).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List spill events (oldest first), filtered; [bold]FA[/] marks false alarms."""
    from synspill.console import out_console
    from synspill.watch.report import dumps_rows, iso
    from synspill.watch.store import EventStore

    with EventStore(db, existing=True) as store:
        rows = store.query(_filter(camera, zone, cls, since, until, severity, unacked, status, false_alarms))
    if limit:
        rows = rows[-limit:]
    if json_out:
        typer.echo(dumps_rows(rows), nl=False)
        return
    from rich.table import Table

    t = Table(title=f"{len(rows)} spill events in {db}")
    for col in ("id", "camera", "zone", "class", "first seen (UTC)", "last seen (UTC)", "max conf", "area", "severity", "status", "ack"):
        t.add_column(col)
    colour = {"low": "green", "medium": "yellow", "high": "dark_orange", "critical": "bold red"}
    for r in rows:
        t.add_row(str(r["id"]), r["camera"], r["zone"] or "-", r["class_name"], iso(r["first_seen"]), iso(r["last_seen"]),
                  f"{r['max_confidence']:.2f}", f"{100 * r['area_frac']:.1f} %", f"[{colour[r['severity']]}]{r['severity']}[/]",
                  r["status"] + (" FA" if r["false_alarm"] else ""), "yes" if r["acknowledged"] else "")
    out_console.print(t)


@events_app.command("ack")
def ack(
    ids: Annotated[list[int], typer.Argument(help="Event ids to acknowledge.")],
    db: DbOpt = Path(DEFAULT_DB),
) -> None:
    """Acknowledge events (someone looked at them)."""
    from synspill.console import console
    from synspill.watch.store import EventStore

    with EventStore(db, existing=True) as store:
        store.ack(ids)
    console.print(f"acknowledged {len(ids)} event(s): {', '.join(map(str, ids))}", highlight=False)


@events_app.command("close")
def close(
    ids: Annotated[list[int], typer.Argument(help="Event ids to close.")],
    db: DbOpt = Path(DEFAULT_DB),
) -> None:
    """Close open events by hand (reason [bold]manual[/]); closed ones are left as they are."""
    from synspill.console import console
    from synspill.watch.store import EventStore

    with EventStore(db, existing=True) as store:
        store.close_events(ids)
    console.print(f"closed {len(ids)} event(s): {', '.join(map(str, ids))}", highlight=False)


@events_app.command("false-alarm")
def false_alarm(
    ids: Annotated[list[int], typer.Argument(help="Event ids that were no spill.")],
    db: DbOpt = Path(DEFAULT_DB),
    tolerance: Annotated[float, typer.Option("--tolerance", help="Margin of the suppressed region around the event box, as a fraction of its size.")] = 0.25,
    negatives: Annotated[Path | None, typer.Option("--negatives", help="Hard-negative dataset folder (default: <db stem>.negatives beside --db).", show_default=False)] = None,
    note: Annotated[str | None, typer.Option("--note", help="Why (kept with the suppression).")] = None,
    undo: Annotated[bool, typer.Option("--undo", help="The events were spills after all: clear the flag, remove their suppressions and take their crops out of the hard negatives.")] = False,
) -> None:
    """Mark events as false alarms: suppress that class at that place, save hard negatives.

    Each event is closed and acknowledged; detections of its class inside its box (plus
    [bold]--tolerance[/]) on its camera are dropped from then on (a running watch notices
    within ~2 s); its frame crop is added to the [bold]--negatives[/] COCO folder as a
    background image for [bold]synspill finetune yolo|detr --negatives[/].

    Example: [cyan]synspill events false-alarm 12 --note "shadow of the crane"[/]
    (undo: [cyan]synspill events false-alarm 12 --undo[/]; the events stay closed)
    """
    from synspill.console import console
    from synspill.watch.negatives import export_negative, remove_negative
    from synspill.watch.store import EventStore

    out = negatives or db.with_name(f"{db.stem}.negatives")
    with EventStore(db, existing=True) as store:
        rows = {i: store.event(i) for i in ids}
        missing = [i for i, r in rows.items() if r is None]
        if missing:  # checked first: nothing is changed when one is unknown
            raise UsageError(f"{db}: no event with id {', '.join(map(str, missing))}; see `synspill events list`")
        if undo:
            unflagged = [i for i, r in rows.items() if not (r or {}).get("false_alarm")]
            if unflagged:
                raise UsageError(f"{db}: event {', '.join(map(str, unflagged))} is not marked as a false alarm; "
                                 "see `synspill events list --false-alarms`")
            for i in ids:
                n = store.unmark_false_alarm(i)
                img = remove_negative(i, out)
                console.print(f"event {i}: no longer a false alarm; {n} suppression(s) removed; "
                              + (f"hard negative {img} removed" if img else "no hard negative to remove"), highlight=False)
            return
        for i in ids:
            sid = store.mark_false_alarm(i, tolerance=tolerance, note=note)
            row = store.event(i)
            assert row is not None
            img = export_negative(row, out)
            console.print(f"event {i}: false alarm; {row['class_name']} suppressed on {row['camera']} (suppression {sid}); "
                          + (f"hard negative {img}" if img else "no clean frame (watch ran without --snapshots): no hard negative"),
                          highlight=False)


@events_app.command("suppressions")
def suppressions(
    db: DbOpt = Path(DEFAULT_DB),
    camera: CameraOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the false-alarm suppressions (boxes normalised 0-1 of the frame)."""
    import json

    from synspill.console import out_console
    from synspill.watch.report import iso
    from synspill.watch.store import EventStore

    with EventStore(db, existing=True) as store:
        rows = store.suppressions(camera)
    if json_out:
        typer.echo("".join(json.dumps({**r, "created": iso(r["created"])}) + "\n" for r in rows), nl=False)
        return
    from rich.table import Table

    t = Table(title=f"{len(rows)} suppressions in {db}")
    for col in ("id", "camera", "class", "box x1 y1 x2 y2 (0-1)", "tolerance", "event", "created (UTC)", "note"):
        t.add_column(col)
    for r in rows:
        box = " ".join(f"{r[k]:.3f}" for k in ("x1", "y1", "x2", "y2"))
        t.add_row(str(r["id"]), r["camera"], r["class_name"], box, f"{r['tolerance']:g}",
                  str(r["event_id"]) if r["event_id"] is not None else "-", iso(r["created"]), r["note"] or "")
    out_console.print(t)


@events_app.command("unsuppress")
def unsuppress(
    sids: Annotated[list[int], typer.Argument(help="Suppression ids (see `synspill events suppressions`).")],
    db: DbOpt = Path(DEFAULT_DB),
) -> None:
    """Remove false-alarm suppressions: that class alerts at that place again (a running watch notices within ~2 s)."""
    from synspill.console import console
    from synspill.watch.store import EventStore

    with EventStore(db, existing=True) as store:
        missing = sorted(set(sids) - {r["id"] for r in store.suppressions()})
        if missing:  # checked first: nothing is removed when one is unknown
            raise UsageError(f"{db}: no suppression with id {', '.join(map(str, missing))}; see `synspill events suppressions`")
        for sid in sids:
            store.remove_suppression(sid)
    console.print(f"removed {len(sids)} suppression(s): {', '.join(map(str, sids))}", highlight=False)


@events_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file.")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="File format.")] = ExportFormat.csv,
    db: DbOpt = Path(DEFAULT_DB),
    camera: CameraOpt = None,
    zone: ZoneOpt = None,
    cls: ClassOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    severity: SeverityOpt = None,
    unacked: UnackedOpt = False,
    status: StatusOpt = None,
) -> None:
    """Export events to CSV or JSON (ISO UTC times, boxes as absolute x1 y1 x2 y2)."""
    from synspill.console import console
    from synspill.watch.report import export as do_export
    from synspill.watch.store import EventStore

    with EventStore(db, existing=True) as store:
        rows = store.query(_filter(camera, zone, cls, since, until, severity, unacked, status))
    do_export(rows, fmt.value, out)
    console.print(f"wrote {len(rows)} events to {out}", highlight=False)


@events_app.command("report")
def report(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    db: DbOpt = Path(DEFAULT_DB),
    bucket: Annotated[Bucket | None, typer.Option("--bucket", help="Time bucket of the counts (default: day).", show_default=False)] = None,
    camera: CameraOpt = None,
    zone: ZoneOpt = None,
    cls: ClassOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    severity: SeverityOpt = None,
) -> None:
    """Counts over time per camera/zone/class and a heatmap of where spills occur per camera."""
    from synspill.console import console
    from synspill.params import given
    from synspill.watch.report import build_report
    from synspill.watch.store import EventStore

    with EventStore(db, existing=True) as store:
        rows = store.query(_filter(camera, zone, cls, since, until, severity, False, None))
    summary = build_report(rows, out, **given(bucket=bucket))
    console.print(f"{summary['events']} events; by camera {summary['by_camera']}; wrote:", highlight=False)
    for f in summary["files"]:
        console.print(f"  {f}", highlight=False)
