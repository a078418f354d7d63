"""Qwen2.5-VL as a :class:`~synspill.detections.Predictor` (zero-shot or with a LoRA adapter).

``synspill predict --vlm MODEL [--adapter DIR]`` and ``--model RUN_DIR`` (a
``synspill finetune vlm`` output) both arrive at :func:`load_predictor`.

Run folder semantics (``run.json`` written by ``finetune vlm``):
``base_model`` is the base weights as given to finetune (a local folder, stored absolute,
or a hub id resolved from the local cache); ``adapter`` is the adapter folder relative to
the run folder (``"."``); ``weights`` is the merged model folder relative to the run
folder when ``--merge`` was used (it then wins over base + adapter), else null.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from synspill.detections import Detections
from synspill.errors import UsageError
from synspill.models import PredictorConfig, read_run
from synspill.vlm.chat import PromptSet, build_chat
from synspill.vlm.confidence import span_confidence, token_offsets
from synspill.vlm.geometry import DEFAULT_MIN_PIXELS, Resize, check_budget, to_original
from synspill.vlm.model import VLM, Decoding, Generation, generate, load_vlm, prepare_image
from synspill.vlm.parse import parse_answer

log = logging.getLogger(__name__)

#: What :func:`load_predictor` reads from :attr:`PredictorConfig.options`.
OPTION_KEYS = ("per_class", "allow_pixel_mismatch", "min_pixels", "max_new_tokens", "temperature", "top_p",
               "repetition_penalty", "system_prompt")
#: The :class:`~synspill.vlm.model.Decoding` fields among them.
DECODING_KEYS = ("temperature", "top_p", "repetition_penalty", "max_new_tokens")


def to_detections(gen: Generation, r: Resize, classes: set[int] | None, default_class: int | None,
                  conf: float = 0.0) -> Detections:
    """Parse one answer, score each box, map it back to the original image.

    Args:
        gen: The generated answer with token log-probabilities.
        r: How the query image was resized (answers are in its input pixels).
        classes: Taxonomy ids asked for (None: all).
        default_class: Class for unlabelled boxes (one class asked for), else None.
        conf: Drop boxes scoring below this (counted in ``meta["below_conf"]``, not a parse drop).

    Returns:
        :class:`Detections` in original-image ``xyxy``; ``meta`` holds ``raw`` (the answer),
        ``dropped`` ({reason: count}) and ``input_size`` ``(W_in, H_in)``.
    """
    pr = parse_answer(gen.text, r.in_w, r.in_h, classes=classes, default_class=default_class)
    offs = token_offsets(gen.pieces)
    scores = [span_confidence(gen.logprobs, offs, b.spans) for b in pr.boxes]
    dropped = Counter(pr.dropped)
    keep = [i for i, s in enumerate(scores) if math.isnan(s) or s >= conf]
    xyxy = to_original(np.array([pr.boxes[i].xyxy for i in keep], dtype=np.float64).reshape(-1, 4), r)
    meta = {"raw": gen.text, "dropped": {k: int(v) for k, v in dropped.items() if v}, "input_size": [r.in_w, r.in_h],
            "below_conf": len(scores) - len(keep)}
    return Detections(xyxy, np.array([pr.boxes[i].class_id for i in keep]), np.array([scores[i] for i in keep]), meta)


class VLMPredictor:
    """Batched Qwen2.5-VL detection.

    Attributes:
        name: For reports (base model name, plus the adapter's).
        vlm: The loaded model.
        prompts: System prompt and user template.
        min_pixels: Lower pixel budget of query images.
        max_pixels: Upper pixel budget of query images.
        decoding: Decoding settings.
        batch: Images per ``generate`` call.
        classes: Taxonomy ids to detect (None: all eight).
        conf: Score threshold.
        per_class: One prompt per class (the paper's protocol; 8 generations per image)
            instead of one prompt listing all requested classes.
    """

    def __init__(self, vlm: VLM, prompts: PromptSet, max_pixels: int, min_pixels: int = DEFAULT_MIN_PIXELS,
                 decoding: Decoding | None = None, batch: int = 8, classes: tuple[int, ...] | None = None,
                 conf: float = 0.0, per_class: bool = False, name: str = "qwen2.5-vl") -> None:
        self.vlm, self.prompts, self.decoding = vlm, prompts, decoding or Decoding()
        self.min_pixels, self.max_pixels, self.batch = min_pixels, max_pixels, batch
        self.classes, self.conf, self.per_class, self.name = classes, conf, per_class, name

    def _queries(self) -> list[tuple[str, set[int] | None, int | None]]:
        """(user text, classes accepted, default class) per generation of one image."""
        ids = list(self.classes) if self.classes else None
        if self.per_class:
            return [(self.prompts.render_user([c]), {c}, c) for c in (ids or range(1, 9))]
        return [(self.prompts.render_user(ids), set(ids) if ids else None, ids[0] if ids and len(ids) == 1 else None)]

    def predict(self, images: list[np.ndarray], on_item: Callable[[int], None] | None = None) -> list[Detections]:
        """Detect spills in RGB ``uint8`` images ``(H, W, 3)``; boxes in original-image ``xyxy``."""
        return self.predict_with_context(images, None, on_item)

    def predict_with_context(self, images: list[np.ndarray], context: list[tuple[list[Any], list[str]]] | None,
                             on_item: Callable[[int], None] | None = None) -> list[Detections]:
        """Like :meth:`predict`, optionally with in-context examples per image.

        Args:
            images: Query images (RGB uint8 ``(H, W, 3)``).
            context: Per query, ``(support PIL images already resized, their answers in
                THEIR input pixels)``, or None for zero-shot.
            on_item: Called with the number of finished images after each batch.
        """
        prepared = [prepare_image(im, self.max_pixels, self.min_pixels, self.vlm.factor) for im in images]
        queries = self._queries()
        jobs = [(i, q) for i in range(len(images)) for q in range(len(queries))]
        results: list[list[Detections]] = [[] for _ in images]
        for s in range(0, len(jobs), self.batch):
            chunk = jobs[s: s + self.batch]
            chats, ims = [], []
            for i, q in chunk:
                sup_ims, sup_ans = context[i] if context else ([], [])
                chats.append(build_chat(self.prompts, queries[q][0], examples=list(sup_ans)))
                ims.append(list(sup_ims) + [prepared[i][0]])
            gens = generate(self.vlm, chats, ims, self.decoding)
            for (i, q), g in zip(chunk, gens, strict=True):
                _, cls, default = queries[q]
                results[i].append(to_detections(g, prepared[i][1], cls, default, self.conf))
            if on_item:
                on_item(len({i for i, _ in chunk if len(results[i]) == len(queries)}))
        return [_merge(d) for d in results]


def _merge(parts: list[Detections]) -> Detections:
    if len(parts) == 1:
        return parts[0]
    dropped: Counter = Counter()
    for p in parts:
        dropped.update(p.meta.get("dropped", {}))
    meta = {"raw": [p.meta.get("raw") for p in parts], "dropped": dict(dropped), "input_size": parts[0].meta.get("input_size"),
            "below_conf": sum(int(p.meta.get("below_conf", 0)) for p in parts)}
    return Detections(np.concatenate([p.xyxy for p in parts]), np.concatenate([p.class_id for p in parts]),
                      np.concatenate([p.score for p in parts]), meta)


def resolve_run(model: str, adapter: str | None) -> tuple[str, str | None, dict[str, Any]]:
    """Turn ``--model`` (+ ``--adapter``) into ``(base weights, adapter folder or None, run.json)``."""
    p = Path(model)
    run = read_run(p) if p.is_dir() and (p / "run.json").is_file() else None
    if not run or run.get("backend") != "vlm":
        return model, adapter, {}
    d = Path(run["_dir"])
    if run.get("weights"):
        return str(d / run["weights"]), adapter, run
    if not run.get("base_model"):
        raise UsageError(f"{d / 'run.json'} has neither 'weights' nor 'base_model'; re-run `synspill finetune vlm`")
    return str(run["base_model"]), adapter or str(d / run.get("adapter", ".")), run


def load_predictor(cfg: PredictorConfig) -> VLMPredictor:
    """Build a :class:`VLMPredictor` from a :class:`synspill.models.PredictorConfig`.

    ``cfg.options`` understands ``per_class`` (bool), ``allow_pixel_mismatch`` (bool),
    ``min_pixels`` (int), ``max_new_tokens`` (int), ``temperature``, ``top_p``,
    ``repetition_penalty`` and ``system_prompt`` (str).

    Raises:
        UsageError: ``cfg.max_pixels`` differs from the budget the adapter was trained at
            (unless ``options["allow_pixel_mismatch"]``).
    """
    opts = dict(cfg.options or {})
    base, adapter, run = resolve_run(cfg.model, cfg.adapter)
    vlm = load_vlm(base, cfg.device, cfg.dtype, cfg.quant, adapter)
    meta = vlm.meta or ({k: run[k] for k in ("min_pixels", "max_pixels", "prompts") if k in run} if run else {})
    where = f"adapter {adapter}" if adapter else f"run {cfg.model}"
    min_px, max_px = check_budget(meta or None, opts.get("min_pixels"), cfg.max_pixels,
                                  bool(opts.get("allow_pixel_mismatch")), where)
    rec = meta.get("prompts") or {}
    prompts = PromptSet.default(user=cfg.prompt or rec.get("user"), system=opts.get("system_prompt") or rec.get("system"))
    unknown = sorted(set(opts) - set(OPTION_KEYS))
    if unknown:
        raise UsageError(f"VLM option {unknown[0]!r} is unknown; use {', '.join(OPTION_KEYS)}")
    dec = Decoding(**{k: opts[k] for k in DECODING_KEYS if k in opts})
    name = Path(base).name + (f"+{Path(adapter).resolve().name}" if adapter else "")
    return VLMPredictor(vlm, prompts, max_px, min_px, dec, cfg.batch, cfg.classes, cfg.conf,
                        bool(opts.get("per_class")), name)
