"""Coordinate guardrails: smart_resize parity, the round trip, separate x/y scales, budgets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synspill.errors import UsageError
from synspill.vlm.geometry import Resize, check_budget, smart_resize, to_input, to_original


@settings(max_examples=200, deadline=None)
@given(h=st.integers(10, 5000), w=st.integers(10, 5000), mx=st.sampled_from([3136, 200704, 1003520, 12845056]))
def test_smart_resize_matches_transformers(h, w, mx):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as ref

    if max(h, w) / min(h, w) > 200:
        return
    assert smart_resize(h, w, 28, 3136, mx) == ref(h, w, factor=28, min_pixels=3136, max_pixels=mx)


def test_known_sizes_and_separate_scales():
    r = Resize.for_image(4000, 3000, max_pixels=1003520)
    # hand-computed: beta = sqrt(12e6 / 1003520) = 3.458; floor(1156.7 / 28) * 28, floor(867.5 / 28) * 28
    assert (r.in_w, r.in_h) == (1148, 840)
    assert r.sx != pytest.approx(r.sy, abs=1e-4)
    # a box at the bottom-right corner of the original maps to the corner of the input
    np.testing.assert_allclose(to_input([[0, 0, 4000, 3000]], r), [[0, 0, 1148, 840]])
    # 1024^2 (the SynSpill size) at the default budget -> 980^2 (1225 tokens)
    assert (Resize.for_image(1024, 1024).in_w, Resize.for_image(1024, 1024).in_h) == (980, 980)


@settings(max_examples=200, deadline=None)
@given(w=st.integers(20, 3000), h=st.integers(20, 3000), mx=st.sampled_from([3136, 50176, 1003520]),
       box=st.tuples(*[st.floats(0, 1)] * 4))
def test_round_trip(w, h, mx, box):
    if max(h, w) / min(h, w) > 200:
        return
    r = Resize.for_image(w, h, max_pixels=mx)
    x1, x2 = sorted([box[0] * w, box[2] * w])
    y1, y2 = sorted([box[1] * h, box[3] * h])
    b = np.array([[x1, y1, x2, y2]])
    np.testing.assert_allclose(to_original(to_input(b, r), r), b, rtol=1e-9, atol=1e-6)
    inp = to_input(b, r)
    assert (inp[:, [0, 2]] <= r.in_w + 1e-6).all() and (inp[:, [1, 3]] <= r.in_h + 1e-6).all()


def test_to_original_clips():
    r = Resize(100, 50, 112, 56)
    np.testing.assert_allclose(to_original([[-10, -5, 200, 100]], r), [[0, 0, 100, 50]])


def test_budget_mismatch_refused_and_override():
    rec = {"min_pixels": 3136, "max_pixels": 200704}
    assert check_budget(rec, None, None) == (3136, 200704)
    with pytest.raises(UsageError, match=r"--max-pixels 1003520 differs from the 200704.*allow-pixel-mismatch"):
        check_budget(rec, None, 1003520, where="adapter x")
    assert check_budget(rec, None, 1003520, allow_mismatch=True) == (3136, 1003520)
    assert check_budget(None, None, 50176) == (3136, 50176)
    with pytest.raises(UsageError, match="aspect ratio"):
        smart_resize(10, 5000)
