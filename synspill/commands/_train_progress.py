"""Rich progress for detector training callbacks (shared by ``finetune yolo`` and ``finetune detr``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def training_progress(title: str) -> Iterator[Callable[[int, int, dict[str, Any]], None]]:
    """Yield an ``on_progress(done, total, info)`` callback drawing one bar with epoch, mAP and ETA."""
    from rich.markup import escape

    from synspill.console import describe_epoch, make_progress

    with make_progress() as progress:
        task = progress.add_task(title, total=None)

        def on_progress(done: int, total: int, info: dict[str, Any]) -> None:
            progress.update(task, completed=done, total=total or None, description=escape(f"{title} [{describe_epoch(info)}]"))

        yield on_progress


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """Parse repeated ``--option key=value`` (JSON values, True/False/None, else strings)."""
    import json

    from synspill.errors import UsageError

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"--option {item!r} must look like key=value (e.g. --option mosaic=0.0)")
        k, v = item.split("=", 1)
        python_words = {"True": True, "False": False, "None": None}  # as in ultralytics' own CLI
        if v.strip() in python_words:
            out[k.strip()] = python_words[v.strip()]
            continue
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out
