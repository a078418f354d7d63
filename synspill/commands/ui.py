"""``synspill ui``: the watch dashboard for an event log, and ``ui hash-password``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synspill.watch import DEFAULT_DB

ui_app = typer.Typer(
    help="The web dashboard of an event log (read it from another machine, act on events).",
    rich_markup_mode="rich",
    invoke_without_command=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(ui_app, name="ui")


def build_ui_config(bind: str | None, auth: Path | None, base: Any = None) -> Any:
    """The :class:`UIConfig` of ``--auth FILE`` / ``--bind`` (over ``base``, a watch config's ``[ui]``)."""
    import dataclasses

    from synspill.watch.ui.auth import UIConfig, load_auth

    kw: dict[str, Any] = dataclasses.asdict(base) if base is not None else {}
    if auth is not None:
        kw.update(load_auth(str(auth)))
    if bind is not None:
        kw["bind"] = bind
    return UIConfig.from_params(kw, f"{auth}: ui" if auth else "ui")


@ui_app.callback()
def ui(
    ctx: typer.Context,
    db: Annotated[Path, typer.Option("--db", help="Event database written by `synspill watch`.")] = Path(DEFAULT_DB),
    bind: Annotated[str | None, typer.Option("--bind", help="HOST:PORT to listen on \\[default: 127.0.0.1:8080]; any non-loopback address needs --auth.", show_default=False)] = None,
    snapshots: Annotated[Path | None, typer.Option("--snapshots", help="Folder of watch's snapshots (the only folder images are served from) \\[default: the one watch recorded].", show_default=False)] = None,
    auth: Annotated[Path | None, typer.Option("--auth", help="TOML file with a \\[ui] table: username + password_hash and/or token_hash.")] = None,
    negatives: Annotated[Path | None, typer.Option("--negatives", help="Where 'false alarm' exports hard negatives \\[default: <db stem>.negatives].", show_default=False)] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="Show only: no acknowledge/close/false-alarm actions.")] = False,
) -> None:
    """Serve the dashboard of an event log (Ctrl-C stops): live grid, events, actions, report.

    [bold]synspill ui --db events.sqlite[/] opens http://127.0.0.1:8080/. To reach it from
    other machines: [bold]synspill ui hash-password > auth.toml[/], then
    [bold]synspill ui --db events.sqlite --bind 0.0.0.0:8080 --auth auth.toml[/].
    """
    if ctx.invoked_subcommand is not None:
        return
    from synspill.console import console
    from synspill.watch.store import EventStore
    from synspill.watch.ui.app import UIState, create_app
    from synspill.watch.ui.server import serve_forever

    cfg = build_ui_config(bind, auth)
    with EventStore(db, existing=True) as store:  # fails early, with the fix, on a wrong --db
        recorded = next((c["state"].get("snapshots") for c in store.cameras() if c["state"].get("snapshots")), None)
    snaps = snapshots if snapshots is not None else (Path(recorded) if recorded else None)
    host, port = cfg.host_port

    def announce() -> None:
        console.print(f"dashboard of {db} on http://{host}:{port}/" + (" (read-only)" if read_only else "") + " (Ctrl-C to stop)"
                      + (f"; images from {snaps}" if snaps else "; no snapshots folder: no images"), highlight=False)

    serve_forever(create_app(UIState(db=db, snapshots=snaps, ui=cfg, negatives=negatives, read_only=read_only)), host, port,
                  announce)


@ui_app.command("hash-password")
def hash_password(
    username: Annotated[str | None, typer.Option("--username", help="Login name for browsers (omit for a token only).")] = None,
    token: Annotated[bool, typer.Option("--token", help="Hash a bearer token for scripts instead of a password.")] = False,
) -> None:
    """Print a \\[ui] table with a hashed password (or token) to put in a watch config or --auth file.

    The secret is read from the terminal without echo, or from stdin when piped.
    """
    import json
    import sys

    from synspill.watch.ui.auth import hash_secret

    if sys.stdin.isatty():
        import getpass

        secret = getpass.getpass("token: " if token else "password: ")
        if getpass.getpass("again: ") != secret:
            from synspill.errors import UsageError

            raise UsageError("the two entries differ; nothing written")
    else:
        secret = sys.stdin.readline().rstrip("\n")
    lines = ["[ui]"]
    if token:
        lines.append(f'token_hash = "{hash_secret(secret)}"')
    else:
        if not username:
            from synspill.errors import UsageError

            raise UsageError("--username is required for a password (or use --token)")
        lines += [f"username = {json.dumps(username)}", f'password_hash = "{hash_secret(secret)}"']
    typer.echo("\n".join(lines))
