"""LoRA fine-tuning of Qwen2.5-VL for spill detection: LoRA-L, LoRA-V, LoRA-(V+L), QLoRA.

The paper's recipe as defaults: rank 8, scaling alpha = 1/r, AdamW, lr 5e-5, 800 steps,
batch 8 x gradient accumulation 4 (effective 32), early stopping on the validation split.

*Scaling.* The paper writes ``W' = W + alpha * A B`` with ``alpha = 1/r``. peft scales the
update by ``lora_alpha / r``, so ``alpha = 1/r`` is ``lora_alpha = 1`` at any rank
(``--alpha`` is peft's ``lora_alpha``; 1 at rank 8 gives the paper's 1/8).

*Which layers.* Chosen by EXACT module-name regexes (peft ``re.fullmatch``), because the
usual name list ``["q_proj", ..., "down_proj"]`` also hits the vision MLPs and
``"all-linear"`` also takes the merger:

- ``l``  : :data:`LANGUAGE_RE` -- the language model's attention and MLP projections.
- ``v``  : :data:`VISION_RE` -- the vision tower's blocks (``attn.qkv``, ``attn.proj``, MLP).
- ``v+l``: both.

The vision->language merger (``model.visual.merger.mlp.0/2``, the projector) is NOT
adapted by default (the paper adapts "the vision encoder"); ``merger=True`` adds it to
``v`` and ``v+l``.

*Targets.* The answer for an image is its boxes as ``[{"bbox_2d": [x1,y1,x2,y2], "label": ...}]``
in MODEL-INPUT pixels (through :func:`synspill.vlm.geometry.to_input`, the same mapping
inference inverts); labels mask everything but the answer and its ``<|im_end|>``.

*Crash safety.* ``OUT/checkpoint/`` (adapter + optimizer + scheduler + step + RNG) is
replaced atomically every ``save_every`` steps; running the same command again resumes.
``run.json`` is written last: its presence means the run finished.

*Multi-GPU.* The loop uses ``accelerate``: under ``accelerate launch`` (DDP) each process
takes its own slice of every batch; only the main process writes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synspill.boxes import iou_xyxy
from synspill.errors import DatasetError, OutputExists, UsageError
from synspill.io import write_json
from synspill.params import FromParams
from synspill.runtime import DType, Quant
from synspill.vlm import LoraMode
from synspill.vlm.geometry import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, Resize, to_input
from synspill.vlm.parse import format_answer

log = logging.getLogger(__name__)

LANGUAGE_RE = r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
VISION_RE = r"model\.visual\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(gate|up|down)_proj)"
MERGER_RE = r"model\.visual\.merger\.mlp\.(0|2)"
LORA_MODES = tuple(m.value for m in LoraMode)
CHECKPOINT = "checkpoint"
#: Config fields that may change when resuming (everything else must match the checkpoint).
RESUMABLE_CHANGES = {"steps", "early_stopping", "eval_every", "save_every", "val_gen", "merge", "force", "device"}


def target_regex(mode: str, merger: bool = False) -> str:
    """The peft ``target_modules`` regex (matched with ``re.fullmatch``) of a LoRA mode.

    Args:
        mode: ``l`` (language), ``v`` (vision) or ``v+l``.
        merger: Also adapt the vision->language merger (only with ``v`` / ``v+l``).
    """
    if mode not in LORA_MODES:
        raise UsageError(f"--lora {mode!r} is unknown; use l (language), v (vision) or v+l (both)")
    parts = []
    if "l" in mode:
        parts.append(LANGUAGE_RE)
    if "v" in mode:
        parts.append(VISION_RE)
        if merger:
            parts.append(MERGER_RE)
    return "|".join(f"(?:{p})" for p in parts)


@dataclass(frozen=True)
class VlmTrainConfig(FromParams):
    """One ``finetune vlm`` job (saved as ``OUT/train_config.json``).

    Attributes:
        model: Base Qwen2.5-VL (local folder or locally cached hub id).
        data: Training COCO file.
        out: Output folder (adapter, run.json, checkpoint).
        val: Validation COCO file (None: no validation, no early stopping).
        lora: ``l``, ``v`` or ``v+l``.
        merger: Adapt the merger too (``v`` / ``v+l``).
        rank: LoRA rank r.
        alpha: peft ``lora_alpha`` (scaling = alpha / r; 1 = the paper's 1/r).
        dropout: LoRA dropout.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup: Fraction of steps with linear warm-up (then cosine decay to 10 %).
        steps: Optimizer steps.
        batch: Examples per micro-batch (per process).
        grad_accum: Micro-batches per optimizer step.
        early_stopping: Stop after this many evaluations without a lower val loss (None: off).
        eval_every: Validate every N steps.
        val_gen: Val images generated for the hit rate at each evaluation (0: loss only).
        save_every: Write the resumable checkpoint every N steps.
        quant: ``none``, ``4bit`` (QLoRA) or ``8bit``.
        device: ``auto``, ``cpu``, ``cuda[:N]``.
        dtype: ``auto``, ``float32``, ``bfloat16``, ``float16``.
        max_pixels: Pixel budget of training images (recorded; inference must match).
        min_pixels: Lower pixel budget.
        prompt: User prompt template override (recorded with the adapter).
        gradient_checkpointing: Recompute activations in backward (less memory).
        seed: Seed for LoRA init and data order.
        merge: Also write a merged full model to ``OUT/merged``.
        max_new_tokens: Answer cap during validation.
        force: Start over even if ``OUT`` holds a finished run or a checkpoint.
    """

    model: str
    data: str
    out: str
    val: str | None = None
    lora: str = LoraMode.vl.value
    merger: bool = False
    rank: int = 8
    alpha: float = 1.0
    dropout: float = 0.05
    lr: float = 5e-5
    weight_decay: float = 0.0
    warmup: float = 0.03
    steps: int = 800
    batch: int = 8
    grad_accum: int = 4
    early_stopping: int | None = 5
    eval_every: int = 50
    val_gen: int = 32
    save_every: int = 50
    quant: str = Quant.none.value
    device: str = "auto"
    dtype: str = DType.auto.value
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_pixels: int = DEFAULT_MIN_PIXELS
    prompt: str | None = None
    gradient_checkpointing: bool = True
    seed: int = 0
    merge: bool = False
    max_new_tokens: int = 512
    force: bool = False

    def __post_init__(self) -> None:
        target_regex(self.lora, self.merger)
        if self.merger and self.lora == "l":
            raise UsageError("--lora-merger adapts the vision merger; use it with --lora v or v+l")
        for name in ("rank", "steps", "batch", "grad_accum", "eval_every", "save_every"):
            if int(getattr(self, name)) < 1:
                flag = "batch-size" if name == "batch" else name.replace("_", "-")
                raise UsageError(f"--{flag} {getattr(self, name)} must be at least 1")
        if self.lr <= 0 or self.alpha <= 0:
            raise UsageError(f"--lr {self.lr} and --alpha {self.alpha} must be positive")
        if self.early_stopping is not None and self.early_stopping < 1:
            raise UsageError(f"--early-stopping {self.early_stopping} must be at least 1 (evaluations without improvement)")
        if self.min_pixels > self.max_pixels:
            raise UsageError(f"--max-pixels {self.max_pixels} is below the minimum {self.min_pixels}")
        if self.quant not in {q.value for q in Quant}:
            raise UsageError(f"--quant {self.quant!r} is unknown; use {', '.join(q.value for q in Quant)}")
        if self.dtype not in {d.value for d in DType}:
            raise UsageError(f"--dtype {self.dtype!r} is unknown; use {', '.join(d.value for d in DType)}")


@dataclass
class Example:
    """One training image with its answer."""

    path: str
    answer: str
    boxes: np.ndarray  # (N, 4) original-image xyxy
    class_ids: np.ndarray  # (N,)


@dataclass
class TrainResult:
    """What a finished run reports."""

    out: Path
    steps: int
    trainable_params: int
    total_params: int
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


def load_examples(coco: str, max_pixels: int, min_pixels: int, factor: int = 28) -> list[Example]:
    """Read a COCO file into training examples; answers are in model-input pixels.

    Raises:
        DatasetError: The file is missing/invalid or has no images.
    """
    from synspill.vlm.outputs import solved_images

    out = []
    for s in solved_images(coco):
        r = Resize.for_image(s.width, s.height, max_pixels=max_pixels, min_pixels=min_pixels, factor=factor)
        ans = format_answer([tuple(b) for b in to_input(s.xyxy, r).tolist()], s.class_ids.tolist())
        out.append(Example(s.path, ans, s.xyxy, s.class_ids))
    if not out:
        raise DatasetError(f"{coco}: no images; a training set needs at least one image")
    return out


def enable_checkpointing(model: Any) -> None:
    """Turn on activation (gradient) checkpointing, non-reentrant, under either transformers name.

    transformers renamed ``gradient_checkpointing_enable`` to ``activation_checkpointing_enable``
    within 5.x (5.17 has only the old name, 5.24 deprecates it); both are supported.
    """
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def mask_labels(input_ids: Any, attention_mask: Any, im_start: int, im_end: int, header_len: int) -> Any:
    """Labels that keep only the last assistant answer and its ``<|im_end|>``.

    Args:
        input_ids: ``(B, T)`` token ids of full conversations.
        attention_mask: ``(B, T)``; padding is masked.
        im_start: Id of ``<|im_start|>``.
        im_end: Id of ``<|im_end|>``.
        header_len: Tokens of ``"assistant\\n"`` after the last ``<|im_start|>``.

    Returns:
        ``(B, T)`` labels with -100 everywhere except the answer.
    """
    import torch

    labels = input_ids.clone()
    labels[attention_mask == 0] = -100
    T = input_ids.shape[1]
    pos = torch.arange(T)
    for b in range(input_ids.shape[0]):
        starts = (input_ids[b] == im_start).nonzero().flatten()
        ends = (input_ids[b] == im_end).nonzero().flatten()
        if len(starts) == 0 or len(ends) == 0 or ends[-1] < starts[-1]:
            labels[b] = -100
            continue
        labels[b][pos <= starts[-1] + header_len] = -100
        labels[b][pos > ends[-1]] = -100
    return labels


def hit_rate(preds: list[tuple[np.ndarray, np.ndarray]], gts: list[tuple[np.ndarray, np.ndarray]], iou: float = 0.5) -> float:
    """Share of ground-truth boxes hit by a same-class prediction with IoU >= ``iou``, averaged over classes.

    Args:
        preds: Per image ``(xyxy (N, 4), class_ids (N,))``.
        gts: Per image ``(xyxy (M, 4), class_ids (M,))``.
    """
    hits: dict[int, list[int]] = {}
    for (pb, pc), (gb, gc) in zip(preds, gts, strict=True):
        for b, c in zip(gb, gc, strict=True):
            same = pb[pc == c]
            ok = int(len(same) > 0 and bool((iou_xyxy(same, b) >= iou).any()))
            hits.setdefault(int(c), []).append(ok)
    return float(np.mean([np.mean(v) for v in hits.values()])) if hits else math.nan


def _lr_lambda(steps: int, warmup: float) -> Callable[[int], float]:
    w = max(1, int(round(steps * warmup)))

    def f(s: int) -> float:
        if s < w:
            return (s + 1) / w
        p = (s - w) / max(1, steps - w)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))

    return f


def _sample_indices(n: int, seed: int, start: int, count: int) -> list[int]:
    """Positions ``start .. start+count`` of an endless stream of seeded permutations of ``range(n)``."""
    out = []
    for p in range(start, start + count):
        epoch, i = divmod(p, n)
        out.append(int(np.random.default_rng([seed, epoch]).permutation(n)[i]))
    return out


def _atomic_dir_replace(tmp: Path, final: Path) -> None:
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def _check_out(cfg: VlmTrainConfig, out: Path) -> bool:
    """Validate ``out``; return True when a checkpoint should be resumed."""
    ck = out / CHECKPOINT
    if not ck.exists() and (out / f".{CHECKPOINT}.old").exists():
        os.replace(out / f".{CHECKPOINT}.old", ck)  # crash between the two renames
    if cfg.force:
        for p in (ck, out / "run.json"):
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        return False
    if (out / "run.json").exists():
        raise OutputExists(f"{out} holds a finished run (run.json); pass --force to train again or choose another --out")
    saved_file = out / "train_config.json"
    if not ck.exists():
        # ours but stopped before the first checkpoint: start again, with the same settings only
        saved_ = _read_saved(saved_file) or {}
        diff = [k for k, v in asdict(cfg).items() if saved_ and k not in RESUMABLE_CHANGES and saved_.get(k) != v]
        if diff:
            raise OutputExists(f"{out} holds an unfinished run with other settings ({', '.join(f'{k}: {saved_.get(k)!r} -> {getattr(cfg, k)!r}' for k in diff[:3])}) "
                               "and no checkpoint yet; run with the same settings to start it again, pass --force to start over, "
                               "or choose another --out")
        return False
    saved = json.loads(saved_file.read_text(encoding="utf-8"))
    diff = [k for k, v in asdict(cfg).items() if k not in RESUMABLE_CHANGES and saved.get(k) != v]
    if diff:
        raise UsageError(f"{out}/{CHECKPOINT} was made with other settings ({', '.join(f'{k}: {saved.get(k)!r} -> {getattr(cfg, k)!r}' for k in diff)}); "
                         "use the same options to resume, or pass --force to start over")
    return True


def _read_saved(path: Path) -> dict[str, Any] | None:
    """A run's ``train_config.json``, or None when it is missing or unreadable (a kill while it was written)."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


StepFn = Callable[[int, int, dict[str, Any]], None]


def train(cfg: VlmTrainConfig, on_step: StepFn | None = None,
          on_info: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Fine-tune with LoRA; resumable; writes the adapter, its metadata and ``run.json`` to ``cfg.out``.

    Args:
        cfg: The job.
        on_step: Called after every optimizer step with ``(step, total, logs)``; ``logs``
            has ``loss`` and, after an evaluation, ``val_loss`` / ``val_hit_rate``.
        on_info: Called once before training with ``trainable_params``, ``total_params``,
            ``trainable_names`` (the adapted module names) and ``resumed_from``.

    Returns:
        A :class:`TrainResult`.
    """
    out = Path(cfg.out)
    new = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        run = _Trainer(cfg, out, resume=_check_out(cfg, out))
    except BaseException:
        if new and not any(out.iterdir()):  # e.g. weights not found: leave no empty run folder behind
            out.rmdir()
        raise
    if on_info:
        on_info(run.info())
    run.prepare()
    run.loop(on_step)
    return run.finish()


class _Trainer:
    """One LoRA run, step by step: set-up (model, data, optimiser, resumed state), the loop, the records."""

    def __init__(self, cfg: VlmTrainConfig, out: Path, resume: bool) -> None:
        from synspill.runtime import resolve_device, seed_everything, world_size
        from synspill.vlm.chat import PromptSet
        from synspill.vlm.model import load_vlm

        self.cfg, self.out, self.resume = cfg, out, resume
        self.dev, self.acc = self._accelerator(resolve_device(cfg.device), world_size() > 1)
        seed_everything(cfg.seed)
        self.vlm = load_vlm(cfg.model, self.dev, cfg.dtype, cfg.quant)
        self.train_ex = load_examples(cfg.data, cfg.max_pixels, cfg.min_pixels, self.vlm.factor)
        self.val_ex = load_examples(cfg.val, cfg.max_pixels, cfg.min_pixels, self.vlm.factor) if cfg.val else []
        self.prompts = PromptSet.default(user=cfg.prompt)
        self.user_text = self.prompts.render_user()
        self.regex = target_regex(cfg.lora, cfg.merger)
        self.model = self._adapted_model()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt, self.sched, self.state = self._optimiser()

    # ---- set-up --------------------------------------------------------------------------
    @staticmethod
    def _accelerator(dev: str, multi: bool) -> tuple[str, Any]:
        """Under ``accelerate launch`` each process gets its own device; alone, ``--device`` is honoured."""
        from accelerate import Accelerator

        acc = Accelerator(cpu=dev == "cpu", device_placement=multi)
        return (str(acc.device) if multi else dev), acc

    def _adapted_model(self) -> Any:
        """The base model prepared for training (k-bit / checkpointing) with the LoRA adapter on."""
        import torch
        from peft import LoraConfig, PeftModel, get_peft_model

        cfg = self.cfg
        model = self.vlm.model
        model.config.use_cache = False
        if cfg.quant != "none":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing,
                                                    gradient_checkpointing_kwargs={"use_reentrant": False})
        elif cfg.gradient_checkpointing:
            enable_checkpointing(model)
        torch.manual_seed(cfg.seed)
        if self.resume:
            model = PeftModel.from_pretrained(model, str(self.out / CHECKPOINT), is_trainable=True)
        else:
            # lora_alpha may be a float: peft only divides it by r
            lcfg = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,  # type: ignore[arg-type]
                              target_modules=self.regex, bias="none", task_type="CAUSAL_LM")
            model = get_peft_model(model, lcfg)
            write_json(self.out / "train_config.json", asdict(cfg), indent=2)
        if self.dev == "cpu" and cfg.quant == "4bit":
            from synspill.vlm.model import _fix_bnb_cpu

            _fix_bnb_cpu(model)
        return model

    def _optimiser(self) -> tuple[Any, Any, dict[str, Any]]:
        """AdamW, the warm-up + cosine schedule and the loop state (restored from the checkpoint on resume)."""
        import torch

        opt = torch.optim.AdamW(self.params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(self.cfg.steps, self.cfg.warmup))
        state: dict[str, Any] = {"step": 0, "best_val": math.inf, "bad_evals": 0, "history": []}
        if self.resume:
            ts = torch.load(self.out / CHECKPOINT / "trainer_state.pt", map_location="cpu", weights_only=False)
            opt.load_state_dict(ts["optimizer"])
            sched.load_state_dict(ts["scheduler"])
            state = ts["state"]
            torch.set_rng_state(ts["torch_rng"])
            log.info("resuming %s from step %d", self.out, state["step"])
        return opt, sched, state

    def info(self) -> dict[str, Any]:
        """What ``on_info`` reports: the adapted modules and parameter counts, images, resume step."""
        m = self.model
        return {"trainable_params": sum(p.numel() for p in m.parameters() if p.requires_grad),
                "total_params": sum(p.numel() for p in m.parameters()),
                "trainable_names": sorted({n.split(".lora_")[0].removeprefix("base_model.model.")
                                           for n, p in m.named_parameters() if p.requires_grad}),
                "resumed_from": self.state["step"] if self.resume else None, "target_regex": self.regex,
                "train_images": len(self.train_ex), "val_images": len(self.val_ex)}

    def prepare(self) -> None:
        """Hand the model to accelerate; note the chat-template tokens the labels are cut at."""
        from synspill.vlm.model import VLM

        self.trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.total = sum(p.numel() for p in self.model.parameters())
        self.model, self.opt = self.acc.prepare(self.model, self.opt)
        tok = self.vlm.processor.tokenizer
        self.im_start, self.im_end = tok.convert_tokens_to_ids("<|im_start|>"), tok.convert_tokens_to_ids("<|im_end|>")
        self.header_len = len(tok("assistant\n", add_special_tokens=False)["input_ids"])
        self.tvlm = VLM(self.model, self.vlm.processor, self.dev, self.vlm.path, self.vlm.factor)

    # ---- steps ---------------------------------------------------------------------------
    def batch_of(self, exs: list[Example]) -> dict[str, Any]:
        """Encoded conversations with their answers, labels masked to the answers, on the device."""
        from PIL import Image

        from synspill.vlm.chat import build_chat
        from synspill.vlm.model import encode, prepare_image

        cfg = self.cfg
        ims = [[prepare_image(Image.open(e.path), cfg.max_pixels, cfg.min_pixels, self.vlm.factor)[0]] for e in exs]
        chats = [build_chat(self.prompts, self.user_text, answer=e.answer) for e in exs]
        enc = encode(self.tvlm, chats, ims, add_generation_prompt=False, padding_side="right")
        enc["labels"] = mask_labels(enc["input_ids"], enc["attention_mask"], self.im_start, self.im_end, self.header_len)
        return {k: v.to(self.dev) for k, v in enc.items()}

    def evaluate(self) -> dict[str, float]:
        """Validation loss, and the hit rate of ``val_gen`` generated answers."""
        import torch

        cfg, model = self.cfg, self.model
        model.eval()
        losses = []
        with torch.no_grad():
            for s in range(0, len(self.val_ex), cfg.batch):
                losses.append(float(model(**self.batch_of(self.val_ex[s: s + cfg.batch])).loss))
        logs = {"val_loss": float(np.mean(losses))}
        if cfg.val_gen > 0:
            from PIL import Image

            from synspill.vlm.model import VLM, Decoding
            from synspill.vlm.predictor import VLMPredictor

            sub = self.val_ex[: cfg.val_gen]
            gvlm = VLM(self.acc.unwrap_model(model), self.vlm.processor, self.dev, self.vlm.path, self.vlm.factor)
            gvlm.model.config.use_cache = True
            pred = VLMPredictor(gvlm, self.prompts, cfg.max_pixels, cfg.min_pixels, Decoding(max_new_tokens=cfg.max_new_tokens), cfg.batch)
            dets = pred.predict([np.asarray(Image.open(e.path).convert("RGB")) for e in sub])
            gvlm.model.config.use_cache = False
            logs["val_hit_rate"] = hit_rate([(d.xyxy, d.class_id) for d in dets], [(e.boxes, e.class_ids) for e in sub])
        model.train()
        return logs

    def save_checkpoint(self) -> None:
        """Replace ``OUT/checkpoint`` (adapter, optimiser, scheduler, loop state, RNG) atomically."""
        import torch

        if not self.acc.is_main_process:
            return
        tmp = self.out / f".{CHECKPOINT}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        self.acc.unwrap_model(self.model).save_pretrained(str(tmp))
        torch.save({"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(), "state": self.state,
                    "torch_rng": torch.get_rng_state()}, tmp / "trainer_state.pt")
        _atomic_dir_replace(tmp, self.out / CHECKPOINT)

    def save_adapter(self) -> None:
        """The adapter and its metadata (pixel budgets, prompts ...) into ``OUT``."""
        from synspill.vlm.model import ADAPTER_META

        if not self.acc.is_main_process:
            return
        cfg, state = self.cfg, self.state
        self.acc.unwrap_model(self.model).save_pretrained(str(self.out))
        meta = {"base_model": _base_ref(cfg.model), "lora": cfg.lora, "merger": cfg.merger, "rank": cfg.rank,
                "lora_alpha": cfg.alpha, "target_modules": self.regex, "min_pixels": cfg.min_pixels,
                "max_pixels": cfg.max_pixels, "prompts": self.prompts.to_dict(), "step": state["step"],
                "best_val_loss": None if math.isinf(state["best_val"]) else state["best_val"],
                "trainable_params": self.trainable, "quant": cfg.quant}
        write_json(self.out / ADAPTER_META, meta, indent=2)

    def step(self, t0: float) -> dict[str, Any]:
        """One optimiser step over ``grad_accum`` micro-batches (each process its own slice)."""
        import torch

        cfg, model, state = self.cfg, self.model, self.state
        world, rank = self.acc.num_processes, self.acc.process_index
        s = state["step"]
        total_loss = 0.0
        for m in range(cfg.grad_accum):
            start = ((s * cfg.grad_accum + m) * world + rank) * cfg.batch
            exs = [self.train_ex[i] for i in _sample_indices(len(self.train_ex), cfg.seed, start, cfg.batch)]
            batch = self.batch_of(exs)
            ctx = self.acc.no_sync(model) if m < cfg.grad_accum - 1 else _null()
            with ctx:
                loss = model(**batch).loss / cfg.grad_accum
                self.acc.backward(loss)
            total_loss += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        state["step"] = s + 1
        return {"step": state["step"], "loss": total_loss, "lr": self.sched.get_last_lr()[0],
                "elapsed_s": round(time.perf_counter() - t0, 2)}

    def loop(self, on_step: StepFn | None) -> None:
        """Steps until ``steps`` or early stopping; validate, keep the best adapter, checkpoint."""
        cfg, state = self.cfg, self.state
        self.model.train()
        self.stopped = False
        t0 = time.perf_counter()
        while state["step"] < cfg.steps and not self.stopped:
            logs = self.step(t0)
            last = state["step"] >= cfg.steps
            if self.val_ex and (state["step"] % cfg.eval_every == 0 or last):
                logs.update(self.evaluate())
                if logs["val_loss"] < state["best_val"] - 1e-6:
                    state["best_val"], state["bad_evals"] = logs["val_loss"], 0
                    self.save_adapter()
                else:
                    state["bad_evals"] += 1
                    if cfg.early_stopping is not None and state["bad_evals"] >= cfg.early_stopping:
                        self.stopped = True
                        log.info("early stopping at step %d: no val-loss improvement in %d evaluations", state["step"], cfg.early_stopping)
            state["history"].append(logs)
            if state["step"] % cfg.save_every == 0 or last or self.stopped:
                self.save_checkpoint()
            if on_step:
                on_step(state["step"], cfg.steps, logs)

    def finish(self) -> TrainResult:
        """The adapter (without validation: the last one), merged weights, history and ``run.json``."""
        cfg, state = self.cfg, self.state
        if not self.val_ex:
            self.save_adapter()
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            if cfg.merge:
                merge_adapter(cfg.model, self.out, self.out / "merged", dtype=cfg.dtype)
            write_json(self.out / "history.json", state["history"], indent=1)
            run = {"backend": "vlm", "base_model": _base_ref(cfg.model), "adapter": ".",
                   "weights": "merged" if cfg.merge else None, "min_pixels": cfg.min_pixels,
                   "max_pixels": cfg.max_pixels, "lora": cfg.lora, "merger": cfg.merger, "rank": cfg.rank,
                   "lora_alpha": cfg.alpha, "steps": state["step"], "stopped_early": self.stopped,
                   "best_val_loss": None if math.isinf(state["best_val"]) else state["best_val"],
                   "trainable_params": self.trainable, "prompts": self.prompts.to_dict()}
            write_json(self.out / "run.json", run, indent=2)
        return TrainResult(self.out, state["step"], self.trainable, self.total, state["history"], self.stopped)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> None:
        return None


def _base_ref(model: str) -> str:
    """A local base path is stored absolute (the run folder may move); a hub id as is."""
    p = Path(model)
    return str(p.resolve()) if p.exists() else model


def merge_adapter(base: str, adapter: str | Path, dest: str | Path, dtype: str = "auto") -> Path:
    """Write base + adapter merged into one full model folder (loads the base unquantised on CPU).

    Args:
        base: Base weights (local folder or locally cached id).
        adapter: The adapter folder.
        dest: Output folder (replaced atomically).
        dtype: dtype of the merged weights (``auto``: the base's config dtype).
    """
    import torch
    from peft import PeftModel
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from synspill.runtime import resolve_weights

    path = resolve_weights(base, "Qwen2.5-VL")
    kw = {"dtype": getattr(torch, dtype)} if dtype not in ("auto", None) else {"dtype": "auto"}
    m = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, **kw)
    m = PeftModel.from_pretrained(m, str(adapter)).merge_and_unload()
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    m.save_pretrained(str(tmp))
    AutoProcessor.from_pretrained(path).save_pretrained(str(tmp))
    _atomic_dir_replace(tmp, dest)
    return dest
