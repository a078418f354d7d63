"""Loading the versioned prompt templates shipped in the wheel under ``synspill/prompts/``.

Files are plain text (``.txt``) or TOML (``.toml``); a user may point any command at
their own file instead. What the templates become: :mod:`synspill.vlm.chat` (the VLM's
system/user messages) and :mod:`synspill.synth.prompting` (SDXL scene and spill prompts).
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from synspill.errors import UsageError

PROMPT_DIR = Path(__file__).parent / "prompts"


def prompt_path(name: str) -> Path:
    """Path of a shipped prompt file (``name`` relative to ``synspill/prompts``) or a user file."""
    p = Path(name)
    if p.is_file():
        return p
    q = PROMPT_DIR / name
    if q.is_file():
        return q
    raise UsageError(f"prompt file {name!r} not found (looked in {PROMPT_DIR}); pass an existing .txt or .toml file")


@cache
def load_text(name: str) -> str:
    """A text prompt, stripped."""
    return prompt_path(name).read_text(encoding="utf-8").strip()


@cache
def load_toml(name: str) -> dict[str, Any]:
    """A TOML prompt set."""
    p = prompt_path(name)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{p}: malformed TOML ({e}); fix the prompt file") from None
