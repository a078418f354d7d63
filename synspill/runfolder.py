"""The marker of a training run folder: a folder synspill started is always recognised.

``finetune yolo|detr|vlm`` write ``OUT/.synspill-run.json`` (the backend and the job's
settings) before training starts. A later run of the same command on that folder then
knows it is its own, even when it was stopped before the first checkpoint (Ctrl-C,
``kill -9`` in epoch 1): with a checkpoint it resumes, without one it restarts cleanly,
and with other settings it refuses (``--force`` starts over).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: File name of the marker, inside the run folder.
MARKER = ".synspill-run.json"


def read_marker(out: Path) -> dict[str, Any] | None:
    """The marker of ``out`` (``{"backend", "settings"}``), or None when there is none or it is unreadable."""
    try:
        d = json.loads((Path(out) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and isinstance(d.get("settings"), dict) else None


def write_marker(out: Path, backend: str, settings: dict[str, Any]) -> None:
    """Write the marker (atomically; creates ``out``)."""
    from synspill.io import write_json

    write_json(Path(out) / MARKER, {"backend": backend, "settings": _plain(settings)}, indent=2)


def changes(marker: dict[str, Any], backend: str, settings: dict[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """What differs between a marker and this job: ``["epochs: 3 -> 5", ...]`` (empty: the same job).

    Args:
        marker: From :func:`read_marker`.
        backend: This job's backend (another backend's folder differs as a whole).
        settings: This job's settings.
        ignore: Keys that may change between runs (device, workers ...).
    """
    if marker.get("backend") != backend:
        return [f"backend: {marker.get('backend')!r} -> {backend!r}"]
    old, new, skip = marker["settings"], _plain(settings), set(ignore)
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if k not in skip and old.get(k) != new.get(k)]


def _plain(settings: dict[str, Any]) -> dict[str, Any]:
    """JSON-normalised (tuples -> lists, paths -> strings) so a saved marker compares equal."""
    return json.loads(json.dumps(settings, default=str))
