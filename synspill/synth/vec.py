"""Reductions over a last axis of three (RGB, xyz), written out.

NumPy's ``reduce`` over an axis of length 3 runs a strided inner loop per element and is
5-10x slower than three whole-array operations. These give the same values, bit for bit,
as ``x.mean(-1)``, ``np.linalg.norm(x, axis=-1)`` and ``np.sum(a * b, axis=-1)``: NumPy adds
the three terms in the same order, ``(x0 + x1) + x2`` (checked in ``tests/synth/test_vec.py``).
"""

from __future__ import annotations

import numpy as np


def mean3(x: np.ndarray, keepdims: bool = False) -> np.ndarray:
    """``x.mean(axis=-1)`` for ``x.shape[-1] == 3``."""
    m = (x[..., 0] + x[..., 1] + x[..., 2]) / x.dtype.type(3)
    return m[..., None] if keepdims else m


def dot3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.sum(a * b, axis=-1)`` for vectors of three along the last axis."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def norm3(x: np.ndarray, keepdims: bool = False) -> np.ndarray:
    """``np.linalg.norm(x, axis=-1)`` for vectors of three along the last axis."""
    n = np.sqrt(dot3(x, x))
    return n[..., None] if keepdims else n
