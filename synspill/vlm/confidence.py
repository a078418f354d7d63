"""A confidence per box from the token probabilities of the generated answer.

For every generated token ``t_i`` we keep ``p_i = softmax(raw_logits_i)[t_i]``: the model's
own probability of the token it wrote, taken from the RAW logits (temperature 1, before
the repetition penalty, temperature 0.1 and top-p 0.001 reshape the distribution -- after
those, the chosen token's probability is always ~1 and says nothing).

A box's confidence is the geometric mean of ``p_i`` over the tokens that overlap the
characters of its coordinate array (``[x1, y1, x2, y2]``) and its label value::

    conf(box) = exp( mean_{i in box tokens} log p_i )

so it is in ``[0, 1]``, does not shrink with the number of digits, and is low as soon as
the model hesitated on any coordinate or on the class. NumPy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def token_offsets(pieces: Sequence[str]) -> np.ndarray:
    """Character start offsets of each token in the concatenated text.

    Args:
        pieces: The decoded text of each generated token, in order.

    Returns:
        ``(N + 1,)`` int64 offsets; token ``i`` covers ``[off[i], off[i+1])``.
    """
    off = np.zeros(len(pieces) + 1, dtype=np.int64)
    if pieces:
        off[1:] = np.cumsum([len(p) for p in pieces])
    return off


def span_confidence(logprobs: np.ndarray, offsets: np.ndarray, spans: Sequence[tuple[int, int]]) -> float:
    """Geometric-mean probability of the tokens overlapping any of ``spans``.

    Args:
        logprobs: ``(N,)`` natural-log probabilities of the generated tokens.
        offsets: ``(N + 1,)`` character offsets from :func:`token_offsets`.
        spans: Character spans ``(start, end)`` in the answer text.

    Returns:
        A confidence in ``[0, 1]``; NaN if no token overlaps (the caller then has no score).
    """
    lp = np.asarray(logprobs, dtype=np.float64)
    if len(lp) == 0:
        return math.nan
    starts, ends = offsets[:-1], offsets[1:]
    mask = np.zeros(len(lp), dtype=bool)
    for s, e in spans:
        mask |= (starts < e) & (ends > s) & (ends > starts)
    if not mask.any():
        return math.nan
    return float(min(1.0, max(0.0, math.exp(float(lp[mask].mean())))))
