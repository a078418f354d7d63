"""The VLM path: Qwen2.5-VL zero-shot, in-context learning and LoRA fine-tuning.

One file per concern, each importable on its own (heavy libraries load inside functions):

- :mod:`~synspill.vlm.prompts`: system/user prompts rendered from the taxonomy, chat building.
- :mod:`~synspill.vlm.geometry`: original image <-> model-input box mapping, pixel budgets.
- :mod:`~synspill.vlm.parse`: tolerant answer parsing with per-reason drop counts.
- :mod:`~synspill.vlm.confidence`: per-box confidence from token probabilities.
- :mod:`~synspill.vlm.model`: loading weights, adapters, quantisation; batched generation.
- :mod:`~synspill.vlm.predictor`: the :class:`~synspill.detections.Predictor` for ``predict``.
- :mod:`~synspill.vlm.icl`: support-set selection and in-context prediction.
- :mod:`~synspill.vlm.train`: LoRA-L / LoRA-V / LoRA-(V+L) / QLoRA fine-tuning.
"""
