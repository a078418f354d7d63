"""The written-out reductions give NumPy's values bit for bit (the renderer's outputs rely on it)."""

from __future__ import annotations

import numpy as np
import pytest

from synspill.synth.vec import dot3, mean3, norm3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5000, 3), (61, 47, 3)])
def test_reductions_equal_numpys(dtype, shape):
    rng = np.random.default_rng(3)
    x = (rng.normal(size=shape) * rng.uniform(0.1, 50, size=shape)).astype(dtype)
    y = rng.normal(size=shape).astype(dtype)
    for a, b in ((x, y), (x[::2], y[::2])):  # contiguous and strided
        assert np.array_equal(mean3(a), a.mean(axis=-1)) and mean3(a).dtype == dtype
        assert np.array_equal(mean3(a, keepdims=True), a.mean(axis=-1, keepdims=True))
        assert np.array_equal(dot3(a, b), np.sum(a * b, axis=-1))
        assert np.array_equal(norm3(a), np.linalg.norm(a, axis=-1))
        assert np.array_equal(norm3(a, keepdims=True), np.linalg.norm(a, axis=-1, keepdims=True))
