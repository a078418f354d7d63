"""The one rich Console (stderr), logging set-up and the progress helper.

Only the CLI calls :func:`setup_logging`; the library logs through
``logging.getLogger(__name__)`` and never adds handlers.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console, ConsoleDimensions
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: Width given to output that is not a terminal (a log file, a pipe, CI): wide enough that
#: rich never hard-breaks a path or a command; tables are only as wide as their content.
PLAIN_WIDTH = 1000


class _Console(Console):
    """A rich Console that never hard-wraps when its stream is not a terminal.

    On a terminal it behaves as usual (the terminal's width). Elsewhere rich would break
    every line at ``COLUMNS`` or 80, cutting paths and commands mid-word; here the width is
    :data:`PLAIN_WIDTH` and plain prints are soft-wrapped (never broken by rich). Whether the
    stream is a terminal is checked on every use, since tests and notebooks swap the streams.
    """

    @property
    def size(self) -> ConsoleDimensions:
        if self.is_terminal:
            return super().size
        return ConsoleDimensions(PLAIN_WIDTH, super().size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


#: People read stderr; stdout is kept for data (JSON lines, results).
console = _Console(stderr=True, soft_wrap=True)
#: For data on stdout (tables a user asked for, JSON lines).
out_console = _Console(soft_wrap=True)

T = TypeVar("T")


def setup_logging(debug: bool = False) -> None:
    """Route library logging to the rich console.

    Args:
        debug: Log at DEBUG level (with tracebacks) instead of INFO.
    """
    level = logging.DEBUG if debug else logging.INFO
    handler = _LogHandler(console=console, show_path=debug, show_time=False, markup=False)
    root = logging.getLogger("synspill")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class _LogHandler(RichHandler):
    """rich's log layout on a terminal; one plain ``LEVEL message`` line elsewhere.

    (rich's layout pads every line to the console width, which is :data:`PLAIN_WIDTH`
    when the output is a log file.)
    """

    def emit(self, record: logging.LogRecord) -> None:
        if self.console.is_terminal:
            super().emit(record)
            return
        try:
            msg = self.format(record)
            if record.exc_info and self.formatter is None:
                msg += "\n" + logging.Formatter().formatException(record.exc_info)
            self.console.file.write(f"{record.levelname} {msg}\n")
            self.console.file.flush()
        except Exception:
            self.handleError(record)


class _LiveProgress(Progress):
    """rich's progress bars; on an error the bars are cleared so the error line stands alone."""

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if exc_type is not None:
            self.live.transient = True
        super().__exit__(exc_type, exc_val, exc_tb)


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("SYNSPILL_PROGRESS_INTERVAL", "30")))
    except ValueError:
        return 30.0


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class PlainProgress:
    """Progress as plain periodic lines, for output that is not a terminal (logs, CI, ``nohup``).

    Same calls as the subset of :class:`rich.progress.Progress` that synspill uses
    (``add_task``, ``update``, ``advance``, ``remove_task``, ``console``). A task prints a
    line when it starts, at most every ``interval`` seconds while it runs (default 30,
    ``SYNSPILL_PROGRESS_INTERVAL``), and when it completes::

        [progress] train yolo [epoch 3, loss 4.210] 120/400 (30%) elapsed 0:01:02 eta 0:02:25

    Args:
        console: Where lines go (the stderr console).
        interval: Seconds between lines of one task.
    """

    def __init__(self, console: Console, interval: float | None = None) -> None:
        self.console = console
        self.interval = _interval() if interval is None else interval
        self._tasks: dict[TaskID, dict[str, Any]] = {}
        self._next = 0

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if exc_type is None:  # the final state of tasks that ended without reaching their total
            for t in self._tasks.values():
                if not t["finished"] and t["completed"] > t["shown"]:
                    self._line(t)

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **_: Any) -> TaskID:
        tid = TaskID(self._next)
        self._next += 1
        now = time.monotonic()
        self._tasks[tid] = {"description": description, "total": total, "completed": completed, "start": now,
                            "last": None, "shown": -1.0, "finished": False}
        return tid

    def remove_task(self, task_id: TaskID) -> None:
        self._tasks.pop(task_id, None)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        t = self._tasks.get(task_id)
        if t is not None:
            self.update(task_id, completed=t["completed"] + advance)

    def update(self, task_id: TaskID, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, **_: Any) -> None:
        t = self._tasks.get(task_id)
        if t is None:
            return
        if total is not None:
            t["total"] = total
        if description is not None:
            t["description"] = description
        if completed is not None:
            t["completed"] = completed
        if advance is not None:
            t["completed"] += advance
        now = time.monotonic()
        done = t["total"] is not None and t["completed"] >= t["total"] > 0
        if done and not t["finished"]:
            t["finished"] = True
            self._line(t)
        elif not done and (t["last"] is None or now - t["last"] >= self.interval) and t["completed"] > t["shown"]:
            self._line(t)

    def _line(self, t: dict[str, Any]) -> None:
        from rich.text import Text

        now = time.monotonic()
        t["last"], t["shown"] = now, t["completed"]
        elapsed = now - t["start"]
        desc = Text.from_markup(str(t["description"])).plain
        done, total = t["completed"], t["total"]
        parts = [f"[progress] {desc}"]
        if total:
            parts.append(f"{done:g}/{total:g} ({100.0 * done / total:.0f}%)")
        elif done:
            parts.append(f"{done:g}")
        parts.append(f"elapsed {_hms(elapsed)}")
        if total and 0 < done < total:
            parts.append(f"eta {_hms(elapsed * (total - done) / done)}")
        self.console.file.write(" ".join(parts) + "\n")
        self.console.file.flush()


def make_progress(transient: bool = False) -> Progress | PlainProgress:
    """Progress on stderr: rich bars with count, elapsed time and ETA on a terminal,
    :class:`PlainProgress` lines (every ~30 s, with ETA) when stderr is a file or a pipe."""
    if not console.is_terminal:
        return PlainProgress(console)
    return _LiveProgress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over ``items`` with a rich progress bar (count, elapsed, ETA).

    Args:
        items: What to iterate over.
        description: Bar label.
        total: Item count when ``items`` has no ``len``.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress() as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


@contextmanager
def progress_task(description: str, total: int | None) -> Iterator[callable]:  # type: ignore[valid-type]
    """Context manager yielding ``advance(n=1)`` for library callbacks.

    Example:
        >>> with progress_task("scenes", 10) as advance:
        ...     generate(..., on_item=lambda *_: advance())
    """
    with make_progress() as progress:
        task = progress.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            progress.advance(task, n)

        yield advance


def describe_epoch(info: dict[str, Any]) -> str:
    """One line for a training callback's ``info``: ``epoch 3, loss 4.210, mAP50 0.310``."""
    parts = [f"epoch {info['epoch']}"] if "epoch" in info else []
    parts += [f"{k} {info[k]:.3f}" for k in ("loss", "mAP50", "mAP50-95") if isinstance(info.get(k), float)]
    return ", ".join(parts)
