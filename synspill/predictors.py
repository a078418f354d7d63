"""One entry point that turns a model spec into a :class:`~synspill.detections.Predictor`.

``predict``, ``eval`` and ``watch`` call :func:`load_predictor` and never care which
backend answers. Each backend lives in its own file and exposes
``load_predictor(cfg: PredictorConfig) -> Predictor``:

- ``yolo``: :mod:`synspill.detectors.yolo` (ultralytics ``.pt`` weights or a run folder)
- ``detr``: :mod:`synspill.detectors.detr` (rfdetr ``.pth`` checkpoint or a run folder)
- ``vlm``:  :mod:`synspill.vlm.predictor` (Qwen2.5-VL folder/id, optional LoRA adapter)

A *run folder* is what ``synspill finetune ...`` writes: it holds ``run.json`` with
``{"backend": "yolo"|"detr"|"vlm", "weights": <path relative to the folder>, ...}``.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synspill.detections import Predictor
from synspill.errors import ModelNotFound, UsageError

BACKENDS = {
    "yolo": "synspill.detectors.yolo",
    "detr": "synspill.detectors.detr",
    "vlm": "synspill.vlm.predictor",
}


@dataclass(frozen=True)
class PredictorConfig:
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
        options: Backend-specific extras.
    """

    model: str
    backend: str = "auto"
    device: str = "auto"
    conf: float = 0.001
    imgsz: int | None = None
    classes: tuple[int, ...] | None = None
    batch: int = 8
    adapter: str | None = None
    prompt: str | None = None
    max_pixels: int | None = None
    quant: str = "none"
    dtype: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend != "auto" and self.backend not in BACKENDS:
            raise UsageError(f"backend {self.backend!r} is unknown; use auto, {', '.join(BACKENDS)}")
        if not 0.0 <= self.conf <= 1.0:
            raise UsageError(f"--conf {self.conf} must be in [0, 1]")
        if self.batch < 1:
            raise UsageError(f"--batch {self.batch} must be at least 1")


def read_run(path: str | Path) -> dict[str, Any] | None:
    """``run.json`` of a run folder (or of the folder holding a weights file), else None."""
    p = Path(path)
    for cand in (p / "run.json", p.parent / "run.json", p.parent.parent / "run.json"):
        if cand.is_file():
            with open(cand, encoding="utf-8") as f:
                data = json.load(f)
            data["_dir"] = str(cand.parent)
            return data
    return None


def infer_backend(model: str) -> str:
    """Guess the backend from a model spec (run folder, file suffix, HF folder or id)."""
    p = Path(model)
    run = read_run(p) if p.exists() else None
    if run and run.get("backend") in BACKENDS:
        return str(run["backend"])
    if p.suffix == ".pt" or model.startswith("yolo"):
        return "yolo"
    if p.suffix == ".pth" or model.lower().startswith("rfdetr"):
        return "detr"
    if (p / "adapter_config.json").exists() or (p / "config.json").exists() or "qwen" in model.lower():
        return "vlm"
    if not p.exists():
        raise ModelNotFound(f"model {model!r}: no such file or folder; pass a run folder from `synspill finetune`, a .pt/.pth file, or --vlm MODEL")
    raise UsageError(f"model {model!r}: cannot tell which backend it is; pass --backend yolo|detr|vlm")


def load_predictor(cfg: PredictorConfig) -> Predictor:
    """Build the predictor ``cfg`` asks for (heavy libraries load here, not at import).

    Besides the built-in backends, ``model = "py:MODULE:FACTORY"`` imports ``MODULE`` and
    returns ``FACTORY(cfg)``: any object with ``name`` and
    ``predict(list[RGB uint8]) -> list[Detections]`` (your own model, a remote service ...).

    Raises:
        UsageError: A ``py:`` spec that cannot be imported or returns no predictor.
    """
    if cfg.model.startswith("py:"):
        return _load_py(cfg)
    backend = cfg.backend if cfg.backend != "auto" else infer_backend(cfg.model)
    module = importlib.import_module(BACKENDS[backend])
    return module.load_predictor(cfg)


def _load_py(cfg: PredictorConfig) -> Predictor:
    mod_name, _, attr = cfg.model[3:].partition(":")
    if not mod_name or not attr:
        raise UsageError(f"model {cfg.model!r}: write py:MODULE:FACTORY, e.g. py:my_models.spill:load")
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise UsageError(f"model {cfg.model!r}: {e}; check the module is importable (PYTHONPATH) and defines {attr}") from None
    pred = factory(cfg)
    if not isinstance(pred, Predictor):
        raise UsageError(f"model {cfg.model!r}: {attr}() returned {type(pred).__name__}, which has no name/predict()")
    return pred
