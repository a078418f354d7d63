"""Soft mask maths against hand-computed values."""

from math import erf, sqrt

import numpy as np
import pytest

from synspill.synth.masks import combine, soft_mask


def test_hard_box_when_no_feather():
    m = soft_mask(10, 10, (2, 3, 6, 8), feather=0, opacity=1.0)
    assert m.sum() == 4 * 5  # pixel centres 2.5..5.5 x 3.5..7.5
    assert m[3, 2] == 1 and m[2, 2] == 0


def test_feathered_profile_matches_gaussian_cdf():
    f, op = 30.0, 0.75
    m = soft_mask(400, 400, (100, 100, 300, 300), feather=f, opacity=op)
    sigma = f / 3
    assert m[200, 200] == pytest.approx(op, abs=1e-4)  # deep inside
    # at the left edge pixel centre (x=100.5) along the middle row
    expect = op * 0.5 * (1 + erf(0.5 / (sigma * sqrt(2))))
    assert m[200, 100] == pytest.approx(expect, rel=1e-4)
    assert m[200, 100 - int(f) - 1] == 0.0  # beyond the feather: exactly zero
    assert np.all(np.diff(m[200, 60:200]) >= -1e-7)  # monotone ramp up
    assert m.max() <= op + 1e-6


def test_combine_is_max():
    a = soft_mask(20, 20, (0, 0, 10, 10), 0, 0.5)
    b = soft_mask(20, 20, (5, 5, 15, 15), 0, 0.9)
    c = combine([a, b])
    assert c[7, 7] == pytest.approx(0.9) and c[2, 2] == pytest.approx(0.5) and c[18, 18] == 0
