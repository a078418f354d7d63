"""The VLM path: Qwen2.5-VL zero-shot, in-context learning and LoRA fine-tuning.

One file per concern, each importable on its own (heavy libraries load inside functions):

- :mod:`~synspill.vlm.chat`: the system/user prompts (rendered from the taxonomy) and chat building.
- :mod:`~synspill.vlm.geometry`: original image <-> model-input box mapping, pixel budgets.
- :mod:`~synspill.vlm.parse`: tolerant answer parsing with per-reason drop counts.
- :mod:`~synspill.vlm.confidence`: per-box confidence from token probabilities.
- :mod:`~synspill.vlm.model`: loading weights, adapters, quantisation; batched generation.
- :mod:`~synspill.vlm.predictor`: the :class:`~synspill.detections.Predictor` for ``predict``.
- :mod:`~synspill.vlm.icl`: support-set selection and in-context prediction.
- :mod:`~synspill.vlm.train`: LoRA-L / LoRA-V / LoRA-(V+L) / QLoRA fine-tuning.

The choices a user picks from are defined here (nothing is imported), for the CLI and the
modules above alike.
"""

from enum import Enum


class LoraMode(str, Enum):
    """Which part of Qwen2.5-VL LoRA adapts: the language model, the vision tower, or both."""

    l = "l"  # noqa: E741 - the paper's name
    v = "v"
    vl = "v+l"


class SelectMethod(str, Enum):
    """How in-context examples are picked for a query (see :mod:`synspill.vlm.icl`)."""

    random = "random"
    stratified = "stratified"
    similar = "similar"
