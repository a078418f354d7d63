"""Boxes between original images and Qwen2.5-VL's resized input (the one mapping).

Qwen2.5-VL resizes every image with ``smart_resize`` (both sides a multiple of
``factor = patch_size * merge_size = 28``, area within ``[min_pixels, max_pixels]``,
aspect ratio kept as closely as possible) and answers in ABSOLUTE pixels of that resized
input. The x and y scales differ slightly because each side is rounded separately, so a
box is mapped with two scales: ``x_in = x * W_in / W0`` and ``y_in = y * H_in / H0``.

:func:`to_input` / :func:`to_original` are the only functions that convert boxes; training
targets (original -> input) and inference (input -> original) both go through them.
Pure Python + NumPy (no torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from synspill.errors import UsageError

#: ``patch_size (14) * spatial_merge_size (2)`` of every Qwen2.5-VL size.
FACTOR = 28
#: Qwen2.5-VL's own minimum (4 image tokens).
DEFAULT_MIN_PIXELS = 4 * FACTOR * FACTOR
#: synspill's default budget: 1280 image tokens (a 1024x1024 image becomes 980x980).
DEFAULT_MAX_PIXELS = 1280 * FACTOR * FACTOR


def smart_resize(height: int, width: int, factor: int = FACTOR, min_pixels: int = DEFAULT_MIN_PIXELS,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Qwen2-VL's resize rule (identical to ``transformers``' ``smart_resize``; tested against it).

    Args:
        height: Original height in pixels.
        width: Original width in pixels.
        factor: Both output sides are multiples of this.
        min_pixels: Lower bound of the output area.
        max_pixels: Upper bound of the output area.

    Returns:
        ``(H_in, W_in)`` of the model input.

    Raises:
        UsageError: The aspect ratio exceeds 200 (the model cannot take such images).
    """
    if min(height, width) <= 0:
        raise UsageError(f"image size {width}x{height} is empty; every image needs at least one pixel")
    if max(height, width) / min(height, width) > 200:
        raise UsageError(f"image size {width}x{height}: aspect ratio above 200 is not supported by Qwen2.5-VL; crop the image")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class Resize:
    """How one image was resized for the model.

    Attributes:
        orig_w: Original width ``W0``.
        orig_h: Original height ``H0``.
        in_w: Model-input width ``W_in`` (multiple of 28).
        in_h: Model-input height ``H_in`` (multiple of 28).
    """

    orig_w: int
    orig_h: int
    in_w: int
    in_h: int

    @classmethod
    def for_image(cls, width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS,
                  min_pixels: int = DEFAULT_MIN_PIXELS, factor: int = FACTOR) -> Resize:
        """The resize Qwen2.5-VL applies to a ``width x height`` image at this budget."""
        h, w = smart_resize(height, width, factor, min_pixels, max_pixels)
        return cls(int(width), int(height), w, h)

    @property
    def sx(self) -> float:
        """Horizontal scale original -> input."""
        return self.in_w / self.orig_w

    @property
    def sy(self) -> float:
        """Vertical scale original -> input."""
        return self.in_h / self.orig_h


def to_input(xyxy: np.ndarray, r: Resize) -> np.ndarray:
    """Original-image absolute ``xyxy`` -> model-input absolute ``xyxy`` (float, unrounded).

    Args:
        xyxy: ``(N, 4)`` boxes, absolute pixels of the original image.
        r: The image's :class:`Resize`.

    Returns:
        ``(N, 4)`` float64 boxes in the model's input pixels.
    """
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    return b * np.array([r.sx, r.sy, r.sx, r.sy])


def to_original(xyxy: np.ndarray, r: Resize, clip: bool = True) -> np.ndarray:
    """Model-input absolute ``xyxy`` -> original-image absolute ``xyxy`` (the inverse of :func:`to_input`).

    Args:
        xyxy: ``(N, 4)`` boxes in the model's input pixels (what Qwen2.5-VL answers).
        r: The image's :class:`Resize`.
        clip: Clip to ``[0, W0] x [0, H0]``.

    Returns:
        ``(N, 4)`` float64 boxes, absolute pixels of the original image.
    """
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4) / np.array([r.sx, r.sy, r.sx, r.sy])
    if clip:
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, r.orig_w)
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, r.orig_h)
    return b


def check_budget(recorded: dict | None, min_pixels: int | None, max_pixels: int | None,
                 allow_mismatch: bool = False, where: str = "the adapter") -> tuple[int, int]:
    """Reconcile the inference pixel budget with the one an adapter was trained at.

    A LoRA adapter learns boxes in the coordinates of the inputs it saw; another budget
    changes the input size the model sees and silently degrades it. A mismatch is refused
    unless ``allow_mismatch``.

    Args:
        recorded: ``{"min_pixels": ..., "max_pixels": ...}`` saved with the adapter, or None.
        min_pixels: Requested minimum (None: the recorded one or the default).
        max_pixels: Requested maximum (None: the recorded one or the default).
        allow_mismatch: Accept a budget different from the recorded one.
        where: Words for the error message (e.g. the adapter folder).

    Returns:
        ``(min_pixels, max_pixels)`` to use.

    Raises:
        UsageError: The requested budget differs from the recorded one.
    """
    rec_min = int(recorded["min_pixels"]) if recorded and recorded.get("min_pixels") else None
    rec_max = int(recorded["max_pixels"]) if recorded and recorded.get("max_pixels") else None
    use_min = min_pixels or rec_min or DEFAULT_MIN_PIXELS
    use_max = max_pixels or rec_max or DEFAULT_MAX_PIXELS
    for name, want, rec in (("max-pixels", use_max, rec_max), ("min-pixels", use_min, rec_min)):
        if rec is not None and want != rec and not allow_mismatch:
            raise UsageError(
                f"--{name} {want} differs from the {rec} that {where} was trained at; boxes would be "
                f"learned and predicted at different input sizes. Drop --{name} to use {rec}, or pass "
                f"--allow-pixel-mismatch (options['allow_pixel_mismatch']=True) to override")
    if use_min > use_max:
        raise UsageError(f"pixel budget: min {use_min} > max {use_max}; pass --max-pixels >= {use_min}")
    return use_min, use_max
