"""Loading Qwen2.5-VL (local folders / local HF cache only), adapters, quantisation, and
batched generation with per-token probabilities.

Heavy libraries (torch, transformers, peft) are imported inside the functions.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synspill.errors import DeviceError, ModelNotFound, UsageError
from synspill.vlm.geometry import FACTOR, Resize

log = logging.getLogger(__name__)

#: Written next to every adapter: base model, prompts, pixel budgets, LoRA mode, classes.
ADAPTER_META = "synspill_vlm.json"


@dataclass(frozen=True)
class Decoding:
    """Decoding settings (the paper's defaults).

    Attributes:
        temperature: 0.1 (``do_sample=True`` so that transformers does not ignore it).
        top_p: 0.001 (in effect greedy, but exactly the paper's setting).
        repetition_penalty: 1.2, applied to GENERATED tokens only (the prompt and the
            in-context answers are not penalised).
        max_new_tokens: Answer length cap (a truncated answer keeps its complete boxes).
    """

    temperature: float = 0.1
    top_p: float = 0.001
    repetition_penalty: float = 1.2
    max_new_tokens: int = 512

    def __post_init__(self) -> None:
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0 or self.max_new_tokens < 1:
            raise UsageError(f"decoding settings {self} are invalid: temperature > 0, 0 < top-p <= 1, "
                             "repetition penalty > 0, max new tokens >= 1")


@dataclass
class VLM:
    """A loaded model with its processor.

    Attributes:
        model: ``Qwen2_5_VLForConditionalGeneration`` (possibly a ``PeftModel``).
        processor: The matching ``Qwen2_5_VLProcessor``.
        device: Resolved device string.
        path: Local folder of the base weights.
        factor: Input sides are multiples of this (patch size x merge size).
        meta: The adapter's recorded :data:`ADAPTER_META` (empty without adapter).
    """

    model: Any
    processor: Any
    device: str
    path: str
    factor: int = FACTOR
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Generation:
    """One generated answer.

    Attributes:
        text: The answer as the concatenation of ``pieces`` (special tokens removed).
        pieces: Decoded text of each generated token.
        logprobs: ``(N,)`` log-probabilities of the generated tokens under the RAW logits.
    """

    text: str
    pieces: list[str]
    logprobs: np.ndarray


def read_adapter_meta(adapter: str | Path) -> dict[str, Any]:
    """The :data:`ADAPTER_META` of an adapter folder ({} if it has none)."""
    p = Path(adapter) / ADAPTER_META
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UsageError(f"{p}: malformed JSON ({e}); re-save the adapter with `synspill finetune vlm`") from None


def _fix_bnb_cpu(model: Any) -> None:
    """bitsandbytes on CPUs with AVX512-BF16 repacks 4-bit weights on an eval forward, which
    breaks later training (leaf/in-place error) and needs aligned shapes; switch it off."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        return
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit) and hasattr(m, "support_avx512bf16_for_cpu"):
            m.support_avx512bf16_for_cpu = False


def load_vlm(model: str, device: str = "auto", dtype: str = "auto", quant: str = "none",
             adapter: str | None = None, trainable_adapter: bool = False) -> VLM:
    """Load Qwen2.5-VL weights and processor from a local folder or the local HF cache.

    Args:
        model: Local folder or a hub id already in the local cache (never downloaded).
        device: ``auto``, ``cpu``, ``cuda[:N]``.
        dtype: ``auto`` (bf16 on recent GPUs, fp32 on CPU), ``float32``, ``bfloat16``, ``float16``.
        quant: ``none``, ``4bit`` (NF4) or ``8bit`` (CUDA only).
        adapter: A LoRA adapter folder to apply (or None).
        trainable_adapter: Keep the adapter's weights trainable (resume training).

    Raises:
        ModelNotFound: The weights are not local, or the folder is not a Qwen2.5-VL model.
        DeviceError: Device / quantisation unavailable here.
    """
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from synspill.runtime import (
        apply_threads,
        quant_config,
        resolve_device,
        resolve_dtype,
        resolve_weights,
    )

    apply_threads()
    path = resolve_weights(model, "Qwen2.5-VL")
    if not (Path(path) / "config.json").is_file():
        raise ModelNotFound(f"Qwen2.5-VL {model!r}: {path} has no config.json; pass the folder of a "
                            "Hugging Face Qwen2.5-VL checkpoint (config.json, *.safetensors, tokenizer, processor)")
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    qc = quant_config(quant, dev)
    if qc is not None and getattr(qc, "load_in_4bit", False):
        qc.bnb_4bit_compute_dtype = torch_dtype if torch_dtype != torch.float16 or dev.startswith("cuda") else torch.float32
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if qc is not None:
        kwargs.update(quantization_config=qc, device_map={"": dev})
    m: Any
    try:
        m = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, **kwargs)
        processor = AutoProcessor.from_pretrained(path)
    except OSError as e:
        raise ModelNotFound(f"Qwen2.5-VL {model!r} at {path}: cannot load ({e}); check the folder is a complete checkpoint") from None
    except (RuntimeError, ValueError) as e:
        if qc is not None:
            raise DeviceError(f"--quant {quant} failed on {dev}: {e}; try --quant none") from None
        raise
    if qc is None:
        m = m.to(dev)
    elif dev == "cpu":
        _fix_bnb_cpu(m)
    meta: dict[str, Any] = {}
    if adapter:
        from peft import PeftModel

        ad = Path(adapter)
        if not (ad / "adapter_config.json").is_file():
            raise ModelNotFound(f"adapter {adapter!r}: no adapter_config.json there; pass the --out folder of `synspill finetune vlm`")
        meta = read_adapter_meta(ad)
        m = PeftModel.from_pretrained(m, str(ad), is_trainable=trainable_adapter)
    m.eval()
    vc = m.config.vision_config
    factor = int(getattr(vc, "patch_size", 14)) * int(getattr(vc, "spatial_merge_size", 2))
    return VLM(m, processor, dev, str(path), factor, meta)


def prepare_image(image: Any, max_pixels: int, min_pixels: int, factor: int = FACTOR) -> tuple[Any, Resize]:
    """Resize an image exactly as Qwen2.5-VL would at this budget.

    We resize ourselves (bicubic) so that every image of a multi-image chat can have its own
    budget and so the :class:`Resize` used for box mapping is known before the forward pass.

    Args:
        image: RGB ``uint8`` array ``(H, W, 3)`` or a PIL image.
        max_pixels: Upper area bound of the model input.
        min_pixels: Lower area bound.
        factor: Side multiple (28 for Qwen2.5-VL).

    Returns:
        ``(PIL image of size (W_in, H_in), Resize)``.
    """
    from PIL import Image

    if not isinstance(image, Image.Image):
        arr = np.asarray(image)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise UsageError(f"image array has shape {arr.shape} dtype {arr.dtype}; expected RGB uint8 (H, W, 3)")
        image = Image.fromarray(arr)
    image = image.convert("RGB")
    r = Resize.for_image(image.width, image.height, max_pixels=max_pixels, min_pixels=min_pixels, factor=factor)
    if (r.in_w, r.in_h) != image.size:
        image = image.resize((r.in_w, r.in_h), Image.Resampling.BICUBIC)
    return image, r


def encode(vlm: VLM, chats: list[list[dict[str, Any]]], images: list[list[Any]],
           add_generation_prompt: bool, padding_side: str = "left") -> Any:
    """Tokenise a batch of conversations with their (already resized) images.

    Args:
        vlm: The loaded model.
        chats: One message list per sample (see :func:`synspill.vlm.chat.build_chat`).
        images: PIL images per sample, in placeholder order, sized by :func:`prepare_image`.
        add_generation_prompt: End with the assistant header (generation) or not (training).
        padding_side: ``left`` for generation, ``right`` for training.

    Returns:
        A ``BatchFeature`` with ``input_ids``, ``attention_mask``, ``pixel_values``,
        ``image_grid_thw`` and ``mm_token_type_ids``.
    """
    proc = vlm.processor
    texts = [proc.apply_chat_template(c, tokenize=False, add_generation_prompt=add_generation_prompt) for c in chats]
    flat = [im for ims in images for im in ims]
    areas = [im.width * im.height for im in flat]
    proc.tokenizer.padding_side = padding_side
    batch = proc(text=texts, images=flat or None, padding=True, return_tensors="pt",
                 size={"shortest_edge": min(areas) if areas else vlm.factor ** 2,
                       "longest_edge": max(areas) if areas else vlm.factor ** 2})
    if flat:
        patch = vlm.factor // int(getattr(vlm.model.config.vision_config, "spatial_merge_size", 2))
        got = [(int(g[2]) * patch, int(g[1]) * patch) for g in batch["image_grid_thw"]]
        want = [im.size for im in flat]
        if got != want:  # a processor with other resize rules would silently break box mapping
            raise UsageError(f"the processor resized images to {got[:3]}..., expected {want[:3]}...; "
                             "its patch/merge sizes do not match the model's vision config")
    return batch


def generate(vlm: VLM, chats: list[list[dict[str, Any]]], images: list[list[Any]],
             decoding: Decoding | None = None) -> list[Generation]:
    """Batched generation (left padding) with per-token log-probabilities.

    The repetition penalty is a ``RepetitionPenaltyLogitsProcessor`` with
    ``prompt_ignore_length`` = the padded prompt length, so only generated tokens count.
    Log-probabilities come from ``output_logits`` (raw logits), see
    :mod:`synspill.vlm.confidence`.
    """
    import torch
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    dec = decoding or Decoding()
    batch = encode(vlm, chats, images, add_generation_prompt=True, padding_side="left").to(vlm.device)
    plen = int(batch["input_ids"].shape[1])
    procs = LogitsProcessorList()
    if dec.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(float(dec.repetition_penalty), prompt_ignore_length=plen))
    tok = vlm.processor.tokenizer
    gc = vlm.model.generation_config
    eos = gc.eos_token_id if gc.eos_token_id is not None else tok.eos_token_id
    with torch.inference_mode():
        out = vlm.model.generate(
            **batch, do_sample=True, temperature=dec.temperature, top_p=dec.top_p, top_k=None,
            repetition_penalty=1.0, max_new_tokens=dec.max_new_tokens, logits_processor=procs,
            output_logits=True, return_dict_in_generate=True,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else (eos[0] if isinstance(eos, list) else eos),
        )
    seq = out.sequences[:, plen:].cpu()
    if out.logits:  # raw logits per step, (B, V) each; one step at a time keeps memory at one (B, V) float copy
        lp = torch.stack([torch.log_softmax(step.float(), dim=-1).gather(-1, seq[:, i: i + 1].to(step.device)).squeeze(-1)
                          for i, step in enumerate(out.logits)], dim=1).cpu().numpy()
    else:
        lp = np.zeros(seq.shape, dtype=np.float32)
    stop = set(eos if isinstance(eos, list) else [eos]) | {tok.pad_token_id}
    res = []
    for b in range(seq.shape[0]):
        ids = seq[b].tolist()
        n = next((i for i, t in enumerate(ids) if t in stop), len(ids))
        pieces = [tok.decode([t], skip_special_tokens=True) for t in ids[:n]]
        res.append(Generation("".join(pieces), pieces, np.asarray(lp[b, :n], dtype=np.float64)))
    return res


def score_answer(vlm: VLM, chat: list[dict[str, Any]], images: list[Any]) -> Generation:
    """Teacher-force a given answer and return its per-token log-probabilities.

    ``chat`` must end with the assistant's answer (see ``build_chat(..., answer=...)``).
    The log-probabilities are what :func:`generate` would report had the model written
    exactly this answer, so this scores a forced answer (and checks a generated one).
    """
    import torch

    batch = encode(vlm, [chat], [images], add_generation_prompt=False, padding_side="right").to(vlm.device)
    tok = vlm.processor.tokenizer
    ids = batch["input_ids"][0]
    im_start, im_end = tok.convert_tokens_to_ids("<|im_start|>"), tok.convert_tokens_to_ids("<|im_end|>")
    header = len(tok("assistant\n", add_special_tokens=False)["input_ids"])
    start = int((ids == im_start).nonzero().flatten()[-1]) + header + 1
    end = int((ids == im_end).nonzero().flatten()[-1])
    with torch.inference_mode():
        logits = vlm.model(**batch).logits[0].float()
    lp = torch.log_softmax(logits[start - 1: end - 1], dim=-1).gather(-1, ids[start:end].unsqueeze(-1)).squeeze(-1)
    pieces = [tok.decode([t], skip_special_tokens=True) for t in ids[start:end].tolist()]
    return Generation("".join(pieces), pieces, lp.cpu().numpy().astype(np.float64))
