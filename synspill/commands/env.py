"""``synspill env``: versions, accelerators and where weights are looked up."""

from __future__ import annotations

from typing import Annotated

import typer

from synspill.commands.options import JsonOpt


def register(app: typer.Typer) -> None:
    app.command("env")(env)


def env(
    json_out: JsonOpt = False,
    no_torch: Annotated[bool, typer.Option("--no-torch", help="Skip importing torch (no accelerator probe).")] = False,
) -> None:
    """Show versions, CPU/CUDA/MPS availability and where model weights are looked up."""
    import json

    from synspill.console import out_console
    from synspill.envinfo import collect

    info = collect(probe_torch=not no_torch)
    if json_out:
        typer.echo(json.dumps(info, indent=2))
        return
    from rich.table import Table

    t = Table(title="synspill environment", show_header=False)
    for k, v in info.items():
        t.add_row(k, ", ".join(map(str, v)) if isinstance(v, list) else str(v))
    out_console.print(t)
