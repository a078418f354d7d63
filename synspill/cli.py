"""Root Typer app: registers the commands, ``--debug``, maps SynspillError -> exit code.

Each module in :data:`COMMANDS` lives in ``synspill/commands/`` and defines
``register(app)``. Command modules import only light things at module level so that
``synspill --help`` stays well under half a second.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from synspill import __version__

#: Command modules, in the order ``--help`` lists them.
COMMANDS: list[str] = [
    "demo",
    "harvest",
    "scenes",
    "propose",
    "annotate_import",
    "inpaint",
    "dataset",
    "finetune_yolo",
    "finetune_detr",
    "finetune_vlm",
    "predict",
    "icl",
    "eval",
    "experiment",
    "watch",
    "events",
    "ui",
    "env",
]

_state = {"debug": os.environ.get("SYNSPILL_DEBUG", "") not in ("", "0")}


class SynspillGroup(TyperGroup):
    """Turns library errors into one red line and an exit code (traceback only with --debug)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        import sys

        if sys.stderr.isatty():
            return super().main(*args, **kwargs)
        # Not a terminal (a log file, CI): typer would draw usage errors in an 80-column box
        # that breaks long paths; click's own plain message is never wrapped.
        from typer import rich_utils

        original = rich_utils.rich_format_error
        rich_utils.rich_format_error = _plain_usage_error  # type: ignore[assignment]
        try:
            return super().main(*args, **kwargs)
        finally:
            rich_utils.rich_format_error = original

    def invoke(self, ctx: Any) -> Any:
        from synspill.errors import ResourceError, SynspillError, Terminated
        from synspill.io import storage_error

        try:
            with _sigterm_as_interrupt():
                return super().invoke(ctx)
        except SynspillError as e:
            if _state["debug"]:
                raise
            _error_line(str(e))
            raise typer.Exit(e.exit_code) from None
        except BrokenPipeError:  # `synspill ... | head`: the reader left, nothing to report
            import os as _os
            import sys as _sys

            _os.dup2(_os.open(_os.devnull, _os.O_WRONLY), _sys.stdout.fileno())
            raise typer.Exit(0) from None
        except KeyboardInterrupt as e:
            if _state["debug"]:
                raise
            if isinstance(e, Terminated):
                _error_line("terminated (SIGTERM); finished work is kept -- run the same command again to resume")
                raise typer.Exit(Terminated.exit_code) from None
            _error_line("interrupted; finished work is kept -- run the same command again to resume")
            raise typer.Exit(130) from None
        except OSError as e:  # the machine, not the input: permissions, a full or read-only disk
            err = storage_error(e)
            if err is None or _state["debug"]:
                _internal(e)
            assert err is not None
            _error_line(str(err))
            raise typer.Exit(err.exit_code) from None
        except MemoryError:
            if _state["debug"]:
                raise
            err2 = ResourceError("out of memory; use smaller images or batches (--size, --batch-size, --imgsz), "
                                 "fewer --workers, or a machine with more memory")
            _error_line(str(err2))
            raise typer.Exit(err2.exit_code) from None
        except Exception as e:  # a bug, not bad input: say so, keep the traceback one flag away
            # click's own exceptions (usage errors, Exit, Abort; typer >= 0.29 vendors click)
            if _state["debug"] or type(e).__module__.split(".")[0] in ("click", "typer"):
                raise
            _internal(e)


def _internal(e: BaseException) -> NoReturn:
    """A bug, not bad input: say so in one line (the traceback with ``--debug``)."""
    if _state["debug"]:
        raise e
    _error_line(f"internal error: {type(e).__name__}: {e} (re-run with --debug for the traceback, and please report it)")
    raise typer.Exit(1) from None


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM raises :class:`~synspill.errors.Terminated` (a KeyboardInterrupt).

    So ``timeout``, systemd and schedulers stop a job as cleanly as Ctrl-C: the same clean-up
    runs (worker pools terminated, temp files removed, progress closed), finished work stays
    resumable, one line is printed and the exit code is 143. Commands may install their own
    handler meanwhile (``watch`` stops after the current frame); the previous one is restored.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, _frame: Any) -> None:
        from synspill.errors import Terminated

        raise Terminated(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _plain_usage_error(e: Any) -> None:
    if type(e).__name__ != "NoArgsIsHelpError":  # typer prints the help for those itself
        e.show()


def _error_line(msg: str) -> None:
    from rich.markup import escape

    from synspill.console import console

    # escape: messages quote user data such as "[x, y, w, h]", which is not rich markup
    console.print(f"[bold red]error:[/] {escape(msg)}", markup=True, highlight=False, soft_wrap=True)


app = typer.Typer(
    cls=SynspillGroup,
    name="synspill",
    help="Detect spills, leaks and stains on CCTV, trained on synthetic data (SynSpill).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"synspill {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks and debug logs.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, help="CPU threads for training and inference (default: OMP_NUM_THREADS, else every core "
                                 "this process may use, cgroup quota included).")] = None,
) -> None:
    """Detect spills, leaks and stains on CCTV, trained on synthetic data (SynSpill)."""
    from synspill.console import setup_logging

    _state["debug"] = _state["debug"] or debug
    setup_logging(_state["debug"])
    if threads is not None:
        from synspill.runtime import set_threads

        set_threads(threads)


def _register() -> None:
    from synspill.commands._groups import finetune_app

    for name in COMMANDS:
        importlib.import_module(f"synspill.commands.{name}").register(app)
    app.add_typer(finetune_app, name="finetune")


_register()


def main() -> None:
    """Console-script entry point."""
    app()
