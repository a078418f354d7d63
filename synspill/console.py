"""The one rich Console (stderr), logging set-up and the progress helper.

Only the CLI calls :func:`setup_logging`; the library logs through
``logging.getLogger(__name__)`` and never adds handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: People read stderr; stdout is kept for data (JSON lines, results).
console = Console(stderr=True)
#: For data on stdout (tables a user asked for, JSON lines).
out_console = Console()

T = TypeVar("T")


def setup_logging(debug: bool = False) -> None:
    """Route library logging to the rich console.

    Args:
        debug: Log at DEBUG level (with tracebacks) instead of INFO.
    """
    level = logging.DEBUG if debug else logging.INFO
    handler = RichHandler(console=console, show_path=debug, show_time=False, markup=False)
    root = logging.getLogger("synspill")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def make_progress(transient: bool = False) -> Progress:
    """A progress bar with count, elapsed time and ETA, drawn on stderr."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=not console.is_terminal and False,
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
