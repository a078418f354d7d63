"""Deterministic prompt selection for the diffusion backends.

Prompt sets live in ``synspill/prompts/synth/scene.toml`` (the paper's scene prompt and
negative plus scene-type variations) and ``synspill/prompts/synth/spills.toml`` (one
prompt list and one negative per taxonomy class; the paper's oil prompts as the
``oil-spill`` default). A user may pass their own TOML file with the same layout.

Every choice is a pure function of ``(seed, salt)``: the same seed always gives the same
prompt, scene type or sampled strength, independent of call order, process or machine
(no global RNG; the sub-stream is derived with SHA-256, not Python's salted ``hash``).
No heavy imports.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from synspill import taxonomy
from synspill.errors import UsageError
from synspill.templates import load_toml

SCENE_FILE = "synth/scene.toml"
SPILL_FILE = "synth/spills.toml"


def rng_for(seed: int, salt: str) -> np.random.Generator:
    """A NumPy generator that depends only on ``seed`` and the text ``salt``.

    Different salts give independent streams for the same seed, so choosing a prompt
    never shifts the choice of a LoRA strength or a reference image.
    """
    digest = hashlib.sha256(f"{int(seed)}:{salt}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def sample_uniform(bounds: tuple[float, float], seed: int, salt: str) -> float:
    """Uniform sample in ``[lo, hi]`` from ``(seed, salt)``; ``lo == hi`` returns ``lo`` exactly.

    Raises:
        UsageError: ``lo > hi``.
    """
    lo, hi = float(bounds[0]), float(bounds[1])
    if lo > hi:
        raise UsageError(f"range {bounds!r}: the low end is above the high end; write it as (low, high)")
    if lo == hi:
        return lo
    return float(lo + (hi - lo) * rng_for(seed, salt).random())


def choose(items: list[Any], seed: int, salt: str) -> Any:
    """One element of ``items`` picked from ``(seed, salt)``."""
    if not items:
        raise UsageError(f"nothing to choose from for {salt!r}; the prompt file has an empty list")
    return items[int(rng_for(seed, salt).integers(len(items)))]


def load_scene_prompts(path: str | None = None) -> dict[str, Any]:
    """The scene prompt set (the shipped ``synth/scene.toml`` unless ``path`` is given).

    Raises:
        UsageError: The file is missing, malformed or lacks ``positive``/``negative``.
    """
    name = path or SCENE_FILE
    data = load_toml(name)
    for key in ("positive", "negative"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise UsageError(f"{name}: needs a non-empty string `{key} = \"...\"` (see {SCENE_FILE})")
    for t, spec in data.get("types", {}).items():
        if not isinstance(spec, dict) or not isinstance(spec.get("variations"), list) or not spec["variations"]:
            raise UsageError(f"{name}: [types.{t}] needs a non-empty `variations = [...]` list")
    return data


def load_spill_prompts(path: str | None = None) -> dict[str, Any]:
    """The spill prompt set (the shipped ``synth/spills.toml`` unless ``path`` is given).

    Tables are keyed by taxonomy name; classes missing from a user file fall back to the
    shipped prompts so every class always has one.

    Raises:
        UsageError: A table is not a taxonomy class or lacks ``positive``/``negative``.
    """
    name = path or SPILL_FILE
    data = {k: dict(v) for k, v in load_toml(name).items() if isinstance(v, dict)}
    for key, spec in data.items():
        if key not in taxonomy.BY_NAME:
            raise UsageError(f"{name}: [{key}] is not a taxonomy class; use one of {', '.join(taxonomy.NAMES)}")
        pos = spec.get("positive")
        if isinstance(pos, str):
            spec["positive"] = pos = [pos]
        if not isinstance(pos, list) or not pos or not all(isinstance(p, str) and p.strip() for p in pos):
            raise UsageError(f"{name}: [{key}] needs `positive = [\"...\", ...]` (non-empty strings)")
        if not isinstance(spec.get("negative", ""), str):
            raise UsageError(f"{name}: [{key}] `negative` must be one string")
    if path is not None:
        shipped = load_spill_prompts(None)
        data = {**shipped, **data}
    return data


def scene_types(prompts: dict[str, Any]) -> list[str]:
    """Scene-type names of a scene prompt set, in file order."""
    return list(prompts.get("types", {}))


def pick_scene_type(prompts: dict[str, Any], seed: int) -> str:
    """A scene type chosen from ``seed`` (salt ``"scene-type"``); ``""`` if the set has none."""
    types = scene_types(prompts)
    return choose(types, seed, "scene-type") if types else ""


def scene_prompt(prompts: dict[str, Any], scene_type: str | None, seed: int) -> tuple[str, str]:
    """Compose ``(positive, negative)`` for one scene.

    The positive is ``"<variation>, <base positive>"`` with the variation of
    ``scene_type`` picked from ``seed``; the variation comes first because CLIP reads only
    77 tokens and the scene type must survive truncation. With ``scene_type`` empty or
    None the base prompt is returned unchanged.

    Raises:
        UsageError: ``scene_type`` is not in the prompt set.
    """
    base, neg = prompts["positive"].strip(), prompts["negative"].strip()
    if not scene_type:
        return base, neg
    types = prompts.get("types", {})
    if scene_type not in types:
        raise UsageError(f"scene type {scene_type!r} is not in the scene prompts; use one of {', '.join(types) or '(none)'}")
    variation = choose(types[scene_type]["variations"], seed, f"scene-variation:{scene_type}").strip().rstrip(".")
    return f"{variation}, {base}", neg


def spill_prompt(prompts: dict[str, Any], cls: int | str, seed: int) -> tuple[str, str]:
    """``(positive, negative)`` for one spill of class ``cls`` (taxonomy id, name or alias).

    The positive is one of the class's prompts picked from ``seed`` (salt
    ``"spill-prompt:<class>"``).

    Raises:
        UsageError: ``cls`` is not a taxonomy class, or the set has no prompts for it.
    """
    name = taxonomy.BY_ID[taxonomy.class_id(cls)].name
    if name not in prompts:
        raise UsageError(f"the spill prompts have no [{name}] table; add one (see {SPILL_FILE})")
    spec = prompts[name]
    return choose(spec["positive"], seed, f"spill-prompt:{name}").strip(), str(spec.get("negative", "")).strip()
