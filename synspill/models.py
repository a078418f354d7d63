"""What names a model: the backends, run folders and :class:`PredictorConfig`.

The layer *below* the backends (:mod:`synspill.detectors.yolo`, :mod:`synspill.detectors.detr`,
:mod:`synspill.vlm.predictor`): each imports :func:`read_run` and takes a
:class:`PredictorConfig`, and :func:`synspill.predictors.load_predictor` (above them)
picks one. Light to import (no NumPy): the CLI takes :class:`ModelBackend` from here.

A *run folder* is what ``synspill finetune ...`` writes: it holds ``run.json`` with
``{"backend": "yolo"|"detr"|"vlm", "weights": <path relative to the folder>, ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from synspill.errors import ModelNotFound, UsageError
from synspill.params import FromParams
from synspill.runtime import DType, Quant

RUN_FILE = "run.json"


class ModelBackend(str, Enum):
    """Which code runs a model; ``auto`` reads it from the run folder or the file name."""

    auto = "auto"
    yolo = "yolo"
    detr = "detr"
    vlm = "vlm"


#: The concrete backends (``auto`` resolved).
BACKEND_NAMES: tuple[str, ...] = tuple(b.value for b in ModelBackend if b is not ModelBackend.auto)


@dataclass(frozen=True)
class PredictorConfig(FromParams):
    """Everything a backend needs to build a predictor.

    Attributes:
        model: Weights file, run folder, or (VLM) a local model folder / cached hub id.
        backend: ``auto`` (infer from ``model``), ``yolo``, ``detr`` or ``vlm``.
        device: ``auto``, ``cpu``, ``cuda[:N]``, ``mps``.
        conf: Drop detections scoring below this.
        imgsz: Inference size for detectors (None: the size it was trained at).
        classes: Keep only these taxonomy ids (None: all).
        batch: Images per forward pass.
        adapter: VLM LoRA adapter folder.
        prompt: VLM user prompt override (the deployed system takes user text).
        max_pixels: VLM pixel budget (None: the adapter's recorded budget or the default).
        quant: ``none``, ``4bit`` or ``8bit`` (VLM).
        dtype: ``auto``, ``float32``, ``bfloat16``, ``float16``.
        scales: Detectors: inference sizes as multiples of ``imgsz``, whose boxes are merged
            (multi-scale inference; ``(1.0, 0.8)`` also finds spills larger than those trained on).
            None: what the run recorded (``infer_scales``), else ``(1.0,)``.
        options: Backend-specific extras.
    """

    model: str
    backend: str = ModelBackend.auto.value
    device: str = "auto"
    conf: float = 0.001
    imgsz: int | None = None
    classes: tuple[int, ...] | None = None
    batch: int = 8
    adapter: str | None = None
    prompt: str | None = None
    max_pixels: int | None = None
    quant: str = Quant.none.value
    dtype: str = DType.auto.value
    scales: tuple[float, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in {b.value for b in ModelBackend}:
            raise UsageError(f"backend {self.backend!r} is unknown; use auto, {', '.join(BACKEND_NAMES)}")
        if not 0.0 <= self.conf <= 1.0:
            raise UsageError(f"--conf {self.conf} must be in [0, 1]")
        if self.batch < 1:
            raise UsageError(f"--batch-size {self.batch} must be at least 1")
        if self.quant not in {q.value for q in Quant}:
            raise UsageError(f"--quant {self.quant!r} is unknown; use {', '.join(q.value for q in Quant)}")
        if self.dtype not in {d.value for d in DType}:
            raise UsageError(f"--dtype {self.dtype!r} is unknown; use {', '.join(d.value for d in DType)}")
        if self.scales is not None and (not 1 <= len(self.scales) <= 4 or any(not 0.25 <= v <= 2.0 for v in self.scales)):
            raise UsageError(f"--scales {','.join(map(str, self.scales))}: give 1 to 4 multiples of the inference size in "
                             "[0.25, 2], e.g. 1,0.8")

    def resolved_backend(self) -> str:
        """``backend``, with ``auto`` inferred from ``model`` (see :func:`infer_backend`); ``py`` for ``py:`` specs."""
        if self.model.startswith("py:"):
            return "py"
        return self.backend if self.backend != ModelBackend.auto.value else infer_backend(self.model)


def read_run(path: str | Path) -> dict[str, Any] | None:
    """``run.json`` of a run folder (or of the folder holding a weights file), else None.

    The record gets ``"_dir"``: the folder it was found in (weights are relative to it).
    """
    import json

    p = Path(path)
    for cand in (p / RUN_FILE, p.parent / RUN_FILE, p.parent.parent / RUN_FILE):
        if cand.is_file():
            with open(cand, encoding="utf-8") as f:
                data = json.load(f)
            data["_dir"] = str(cand.parent)
            return data
    return None


def infer_backend(model: str) -> str:
    """Guess the backend from a model spec (run folder, file suffix, HF folder or id).

    Raises:
        ModelNotFound: Nothing at ``model`` and no name that says what it is.
        UsageError: The path exists but is none of the known kinds.
    """
    p = Path(model)
    run = read_run(p) if p.exists() else None
    if run and run.get("backend") in BACKEND_NAMES:
        return str(run["backend"])
    if p.suffix == ".pt" or model.startswith("yolo"):
        return ModelBackend.yolo.value
    if p.suffix == ".pth" or model.lower().startswith("rfdetr"):
        return ModelBackend.detr.value
    if (p / "adapter_config.json").exists() or (p / "config.json").exists() or "qwen" in model.lower():
        return ModelBackend.vlm.value
    if not p.exists():
        raise ModelNotFound(f"model {model!r}: no such file or folder; pass a run folder from `synspill finetune`, a .pt/.pth file, or --vlm MODEL")
    raise UsageError(f"model {model!r}: cannot tell which backend it is; pass --backend yolo|detr|vlm")
