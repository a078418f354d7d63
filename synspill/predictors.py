"""One entry point that turns a model spec into a :class:`~synspill.detections.Predictor`.

``predict``, ``eval`` and ``watch`` call :func:`load_predictor` and never care which
backend answers. Each backend lives in its own file and exposes
``load_predictor(cfg: PredictorConfig) -> Predictor``:

- ``yolo``: :mod:`synspill.detectors.yolo` (ultralytics ``.pt`` weights or a run folder)
- ``detr``: :mod:`synspill.detectors.detr` (rfdetr ``.pth`` checkpoint or a run folder)
- ``vlm``:  :mod:`synspill.vlm.predictor` (Qwen2.5-VL folder/id, optional LoRA adapter)

The backends depend only on :mod:`synspill.models` (run folders, :class:`PredictorConfig`),
never on this module, which imports them by name when asked.
"""

from __future__ import annotations

import importlib

from synspill.detections import Predictor
from synspill.errors import UsageError
from synspill.models import ModelBackend, PredictorConfig, infer_backend, read_run

__all__ = ["BACKENDS", "ModelBackend", "PredictorConfig", "infer_backend", "load_predictor", "read_run"]

BACKENDS = {
    ModelBackend.yolo.value: "synspill.detectors.yolo",
    ModelBackend.detr.value: "synspill.detectors.detr",
    ModelBackend.vlm.value: "synspill.vlm.predictor",
}


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
    module = importlib.import_module(BACKENDS[cfg.resolved_backend()])
    pred: Predictor = module.load_predictor(cfg)
    return pred


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
