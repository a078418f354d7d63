"""Resumable multi-stage jobs: each finished stage leaves a marker, re-runs reuse it.

Used by ``synspill demo`` and ``synspill experiment``. A stage's marker records a hash of
its configuration; a changed configuration re-runs the stage, an unchanged one is reused.
Markers are written atomically *after* the stage's outputs, so a crash mid-stage leaves
no marker and the stage runs again (the stage's own resumable jobs skip finished items).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synspill.io import write_json

log = logging.getLogger(__name__)


def config_hash(config: Any) -> str:
    """Stable short hash of a JSON-serialisable configuration."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class StageRunner:
    """Run named stages under ``root`` once each.

    Attributes:
        root: Folder holding ``.stages/<name>.json`` markers.
        force: Ignore markers and run every stage again.
    """

    root: Path
    force: bool = False

    def marker(self, name: str) -> Path:
        return self.root / ".stages" / f"{name}.json"

    def done(self, name: str, config: Any) -> dict[str, Any] | None:
        """The recorded result of ``name`` if it finished with this ``config``, else None."""
        m = self.marker(name)
        if self.force or not m.is_file():
            return None
        try:
            data = json.loads(m.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return data.get("result") if data.get("config_hash") == config_hash(config) else None

    def run(self, name: str, config: Any, fn: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """Run ``fn`` unless the stage already finished with the same ``config``.

        Returns:
            ``(result, reused)``.
        """
        prev = self.done(name, config)
        if prev is not None:
            log.info("stage %s: finished earlier, reusing its outputs", name)
            return prev, True
        t0 = time.perf_counter()
        result = fn()
        write_json(self.marker(name), {"config_hash": config_hash(config), "config": config, "result": result,
                                       "seconds": round(time.perf_counter() - t0, 2), "finished_at": time.time()}, indent=2)
        return result, False
