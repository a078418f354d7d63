"""Interfaces shared by the synthesis backends and the job runner.

Coordinates: spill boxes are absolute ``xyxy`` pixels of the scene image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class SceneSpec:
    """One scene to generate.

    Attributes:
        seed: Per-image seed; the same spec gives the same image.
        scene_type: ``corridor``, ``control-room``, ``pump-room``, ``walkway``, ``tank-farm``, ``loading-bay`` ...
        width: Output width in pixels.
        height: Output height in pixels.
        prompt: Positive prompt (diffusion backends; recorded by all).
        negative_prompt: Negative prompt.
        params: Backend parameters actually used (sampled LoRA scale, ...), for the manifest.
    """

    seed: int
    scene_type: str
    width: int = 1024
    height: int = 1024
    prompt: str = ""
    negative_prompt: str = ""
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SpillSpec:
    """One spill to paint into a scene.

    Attributes:
        box: ``(x1, y1, x2, y2)`` absolute pixels: where the spill may appear.
        class_id: Taxonomy id (1-8).
        seed: Per-spill seed.
        feather: Gaussian feathering of the soft mask, pixels (paper: 50).
        opacity: Peak opacity of the soft mask (paper: 0.75).
        strength: Denoise strength for diffusion (paper: sampled in 0.5-0.6).
        prompt: Material prompt (diffusion).
        negative_prompt: Negative prompt (diffusion).
    """

    box: tuple[float, float, float, float]
    class_id: int
    seed: int
    feather: float = 50.0
    opacity: float = 0.75
    strength: float = 0.55
    prompt: str = ""
    negative_prompt: str = ""


@dataclass
class SpillResult:
    """A scene with spills painted in.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        masks: One ``(H, W)`` bool mask per spill: where it is *visible*.
        boxes: One tight ``(x1, y1, x2, y2)`` per spill around its visible pixels (None if invisible).
        params: Parameters actually used per spill (for the manifest).
    """

    image: np.ndarray
    masks: list[np.ndarray]
    boxes: list[tuple[float, float, float, float] | None]
    params: list[dict[str, Any]] = field(default_factory=list)


class SceneBackend(Protocol):
    """Makes clean background scenes."""

    name: str

    def generate(self, specs: list[SceneSpec]) -> list[np.ndarray]:
        """Render one ``(H, W, 3)`` uint8 RGB image per spec (a batch)."""
        ...


class SpillBackend(Protocol):
    """Paints spills into a scene inside given boxes."""

    name: str

    def inpaint(self, image: np.ndarray, spills: list[SpillSpec]) -> SpillResult:
        """Paint every spill of ``spills`` into ``image`` (``(H, W, 3)`` uint8 RGB)."""
        ...
