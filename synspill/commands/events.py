"""``synspill events``: list, acknowledge, export and report the spill event log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synspill.commands.options import JsonOpt
from synspill.watch import DEFAULT_DB, Bucket, EventStatus, ExportFormat, Severity

events_app = typer.Typer(
    help="The spill event log written by [bold]synspill watch[/]: list, ack, export, report.",
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


def register(app: typer.Typer) -> None:
    app.add_typer(events_app, name="events")


def _filter(camera: str | None, zone: str | None, cls: str | None, since: str | None, until: str | None,
            severity: Severity | None, unacked: bool, status: EventStatus | None) -> Any:
    from synspill import taxonomy
    from synspill.watch.report import parse_time
    from synspill.watch.store import EventFilter

    name = taxonomy.BY_ID[taxonomy.class_id(cls)].name if cls else None
    return EventFilter(camera=camera, zone=zone, class_name=name, since=parse_time(since) if since else None,
                       until=parse_time(until) if until else None, min_severity=severity.value if severity else None,
                       unacked=unacked, status=status.value if status else None)


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
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many (the newest).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List spill events (oldest first), filtered."""
    from synspill.console import out_console
    from synspill.watch.report import dumps_rows, iso
    from synspill.watch.store import EventStore

    with EventStore(db, existing=True) as store:
        rows = store.query(_filter(camera, zone, cls, since, until, severity, unacked, status))
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
                  r["status"], "yes" if r["acknowledged"] else "")
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
