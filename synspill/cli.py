"""Root Typer app: lists the commands, ``--debug``, maps SynspillError -> exit code.

Each command in :data:`COMMANDS` comes from a module in ``synspill/commands/`` that
defines ``register(app)``; it is imported and built only when it runs, so that
``synspill --help`` stays fast (well under half a second).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer

from synspill import __version__
from synspill.commands._groups import LazyCommand, LazyGroup

#: The commands, in the order ``--help`` lists them: name -> module, first paragraph of the help.
COMMANDS: dict[str, LazyCommand] = {
    "demo": LazyCommand("demo", "Run the whole pipeline: synthesise -> train a detector -> evaluate (synthetic and "
                                "real photos) -> watch a video."),
    "harvest": LazyCommand("harvest", "Harvest clean background frames: [bold]OUT/images/<camera>/*.jpg[/], "
                                      "harvest.jsonl, harvest.json."),
    "scenes": LazyCommand("scenes", "Generate clean plant scenes: [bold]OUT/images/*.jpg[/], manifest.jsonl, scenes.json."),
    "propose": LazyCommand("propose", "Propose plausible spill boxes (floor, beneath valves/joints/pumps) as COCO, "
                                      "marked auto."),
    "annotate-import": LazyCommand("annotate_import", "Import expert boxes from annotation tools into a COCO dataset "
                                                      "over the scene images."),
    "inpaint": LazyCommand("inpaint", "Paint spills into scenes: [bold]OUT/images/*.jpg[/], annotations.json (class, "
                                      "tight box, RLE mask), contact_sheet.png."),
    "predict": LazyCommand("predict", "Detect spills in images with a fine-tuned detector or the VLM; write COCO "
                                      "results for `synspill eval`."),
    "icl": LazyCommand("icl", "In-context learning: k solved examples (image + answer) before each query; writes "
                              "COCO results."),
    "eval": LazyCommand("eval", "Compare prediction files against a COCO ground truth (the paper's Tables 2-5 and "
                                "Fig. 3a)."),
    "watch": LazyCommand("watch", "Watch camera streams, raise confirmed spill alerts and log them (Ctrl-C stops "
                                  "cleanly)."),
    "env": LazyCommand("env", "Show versions, CPU/CUDA/MPS availability and where model weights are looked up."),
    "dataset": LazyCommand("dataset", "Inspect, split and merge COCO datasets: [bold]stats[/], [bold]split[/], "
                                      "[bold]merge[/]."),
    "experiment": LazyCommand("experiment", "Run a study from a TOML file (every cell: train -> predict -> evaluate) "
                                            "and write the paper-style report."),
    "events": LazyCommand("events", "The spill event log written by [bold]synspill watch[/]: list, ack, close, "
                                    "export, report; false alarms."),
    "ui": LazyCommand("ui", "The web dashboard of an event log (read it from another machine, act on events)."),
    "finetune": LazyCommand("_groups", "Fine-tune a model on (synthetic) COCO data: [bold]yolo[/], [bold]detr[/] or "
                                       "[bold]vlm[/]."),
}

_state = {"debug": os.environ.get("SYNSPILL_DEBUG", "") not in ("", "0")}


class SynspillGroup(LazyGroup):
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


class RootGroup(SynspillGroup):
    """``synspill``: the commands of :data:`COMMANDS`."""

    lazy_commands = COMMANDS


app = typer.Typer(
    cls=RootGroup,
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


def main() -> None:
    """Console-script entry point."""
    app()
