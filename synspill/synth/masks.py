"""Soft masks: a box becomes a feathered, semi-opaque per-pixel change map.

The paper: Gaussian feathering of 50 px and 75 % opacity. The map is 0 outside the
feathered box, ``opacity`` deep inside it, with a Gaussian fall-off across the edge
(sigma = feather / 3, so the fall-off is ~done within ``feather`` pixels).
"""

from __future__ import annotations

import numpy as np


def soft_mask(height: int, width: int, box: tuple[float, float, float, float],
              feather: float = 50.0, opacity: float = 0.75) -> np.ndarray:
    """Feathered box mask.

    Args:
        height: Image height.
        width: Image width.
        box: ``(x1, y1, x2, y2)`` absolute pixels.
        feather: Feather width in pixels (Gaussian sigma = feather / 3); 0 gives a hard box.
        opacity: Value in the box's interior, in [0, 1].

    Returns:
        ``(height, width)`` float32 map in [0, opacity]. It is exactly 0 farther than
        ``feather`` pixels outside the box, and symmetric about the box edges: the edge
        itself sits at ``opacity / 2``.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity {opacity} must be in [0, 1]")
    if feather < 0:
        raise ValueError(f"feather {feather} must be >= 0")
    x1, y1, x2, y2 = box
    xs = np.arange(width, dtype=np.float32) + 0.5
    ys = np.arange(height, dtype=np.float32) + 0.5
    fx = _edge_profile(xs, x1, x2, feather)
    fy = _edge_profile(ys, y1, y2, feather)
    return (opacity * fy[:, None] * fx[None, :]).astype(np.float32)


def _edge_profile(t: np.ndarray, a: float, b: float, feather: float) -> np.ndarray:
    """1-D separable profile: Gaussian-CDF ramps at ``a`` and ``b``, cut to 0 beyond ``feather``."""
    if feather <= 0:
        return ((t >= a) & (t <= b)).astype(np.float32)
    from math import erf, sqrt

    sigma = feather / 3.0
    verf = np.vectorize(erf, otypes=[np.float64])
    ramp_in = 0.5 * (1 + verf((t - a) / (sigma * sqrt(2))))
    ramp_out = 0.5 * (1 + verf((b - t) / (sigma * sqrt(2))))
    prof = ramp_in * ramp_out
    prof[(t < a - feather) | (t > b + feather)] = 0.0
    return prof.astype(np.float32)


def combine(masks: list[np.ndarray]) -> np.ndarray:
    """Union of soft masks (pixel-wise max), float32."""
    if not masks:
        raise ValueError("combine() needs at least one mask")
    return np.maximum.reduce([np.asarray(m, dtype=np.float32) for m in masks])
