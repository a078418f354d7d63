"""VLM performance: batched vs one-at-a-time generation, LoRA-(V+L) training throughput.

GPU (CUDA available): the real Qwen2.5-VL-3B and -7B architectures, built from their
configs with random bf16 weights (nothing downloaded), 1024x1024 images at the default
budget (980x980 input, 1225 image tokens each):

- images/s of ``generate`` on 8 images one at a time vs one batch of 8 (left padding),
  same ``max_new_tokens`` forced with ``min_new_tokens``; target ratio >= 4x;
- LoRA-(V+L) training tokens/s and peak memory at the paper's micro-batch 8 (gradient
  checkpointing on), averaged over a few steps.

CPU (always): the tiny random model of the tests -- inference time per image (batched and
single) and train-step time, as a regression guard.

Usage::

    PYTHONPATH=. python benchmarks/bench_vlm.py              # CPU part (+ GPU part if CUDA)
    PYTHONPATH=. python benchmarks/bench_vlm.py --gpu-only --sizes 3B
    PYTHONPATH=. python benchmarks/bench_vlm.py --gpu-only --sizes 3B --quant 4bit   # QLoRA: NF4 via load_vlm

Measured on one H100 (README, Performance): batched generation 2.4x single on 3B and 7B,
short of the 4x target above. Each generation line is followed by where the time of one call
goes (processor on the CPU, prefill = vision tower + prompt, decoding per token), and
``--profile FILE`` writes a torch.profiler table of one batched call per size, to find why.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ARCH = {
    "3B": {"text": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                        num_key_value_heads=2), "out_hidden": 2048},
    "7B": {"text": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                        num_key_value_heads=4), "out_hidden": 3584},
}


def _timeit(fn, repeat: int = 1) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeat


def _images(n: int, size: tuple[int, int]) -> list[np.ndarray]:
    return [np.random.default_rng(i).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8) for i in range(n)]


def bench_generation(vlm, n: int, max_pixels: int, size: tuple[int, int], new_tokens: int,
                     profile: Path | None = None) -> dict:
    from synspill.vlm.chat import PromptSet, build_chat
    from synspill.vlm.model import Decoding, encode, generate, prepare_image

    ps = PromptSet.default()
    ims = [prepare_image(a, max_pixels, 3136, vlm.factor)[0] for a in _images(n, size)]
    chats = [build_chat(ps, ps.render_user([1 + i % 8])) for i in range(n)]  # different prompt lengths
    dec = Decoding(max_new_tokens=new_tokens)
    orig = vlm.model.generate

    def forced(*a, **kw):  # random weights rarely stop on their own; force equal lengths
        return orig(*a, min_new_tokens=new_tokens, **kw)

    vlm.model.generate = forced
    # warm up both shapes: the first batch-8 call pays for allocator growth and kernel selection,
    # which once made the batched figure look 2x slower than its own time split
    generate(vlm, chats[:1], [ims[:1]], dec)
    generate(vlm, chats, [[im] for im in ims], dec)
    single = _timeit(lambda: [generate(vlm, [c], [[im]], dec) for c, im in zip(chats, ims, strict=True)])
    batched = _timeit(lambda: generate(vlm, chats, [[im] for im in ims], dec))
    # where a call's time goes: processor (CPU), prefill (vision tower + prompt, one new token), decoding
    parts = {}
    for name, cs, ps_ in (("single", chats[:1], [ims[:1]]), ("batched", chats, [[im] for im in ims])):
        t_enc = _timeit(lambda cs=cs, ps_=ps_: encode(vlm, cs, ps_, True, "left"))
        t_one = _timeit(lambda cs=cs, ps_=ps_: generate(vlm, cs, ps_, Decoding(max_new_tokens=1)))
        t_all = _timeit(lambda cs=cs, ps_=ps_: generate(vlm, cs, ps_, dec))
        parts[name] = {"encode_s": t_enc, "prefill_s": t_one - t_enc, "decode_s": t_all - t_one,
                       "decode_ms_per_token": 1000 * (t_all - t_one) / max(1, new_tokens - 1)}
    if profile is not None:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        with torch_profile(activities=acts) as prof:
            generate(vlm, chats, [[im] for im in ims], dec)
        key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
        profile.write_text(prof.key_averages().table(sort_by=key, row_limit=30), encoding="utf-8")
    vlm.model.generate = orig
    return {"single_img_s": n / single, "batched_img_s": n / batched, "ratio": single / batched, "parts": parts}


def _parts(g: dict) -> str:
    return "; ".join(f"{k}: processor {v['encode_s']:.2f} s, prefill {v['prefill_s']:.2f} s, "
                     f"decode {v['decode_s']:.2f} s ({v['decode_ms_per_token']:.1f} ms/token)" for k, v in g["parts"].items())


def bench_train(vlm, batch: int, max_pixels: int, size: tuple[int, int], steps: int, answer_boxes: int = 3) -> dict:
    from peft import LoraConfig, get_peft_model

    from synspill.vlm.chat import PromptSet, build_chat
    from synspill.vlm.model import VLM, encode, prepare_image
    from synspill.vlm.parse import format_answer
    from synspill.vlm.train import enable_checkpointing, mask_labels, target_regex

    model = vlm.model
    model.config.use_cache = False
    if getattr(model, "is_loaded_in_4bit", False):  # QLoRA: what `finetune vlm --quant 4bit` does
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        enable_checkpointing(model)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=1, target_modules=target_regex("v+l")))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5)
    ps = PromptSet.default()
    ims = [prepare_image(a, max_pixels, 3136, vlm.factor)[0] for a in _images(batch, size)]
    ans = format_answer([(10, 20, 300, 400)] * answer_boxes, [1] * answer_boxes)
    tvlm = VLM(model, vlm.processor, vlm.device, vlm.path, vlm.factor)
    enc = encode(tvlm, [build_chat(ps, ps.render_user(), answer=ans) for _ in ims], [[im] for im in ims], False, "right")
    tok = vlm.processor.tokenizer
    enc["labels"] = mask_labels(enc["input_ids"], enc["attention_mask"], tok.convert_tokens_to_ids("<|im_start|>"),
                                tok.convert_tokens_to_ids("<|im_end|>"), len(tok("assistant\n")["input_ids"]))
    enc = {k: v.to(vlm.device) for k, v in enc.items()}
    ntok = int(enc["attention_mask"].sum())
    model.train()

    def step():
        model(**enc).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    dt = _timeit(step, steps)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    return {"step_s": dt, "tokens_per_s": ntok / dt, "tokens_per_step": ntok, "peak_gib": peak, "trainable": trainable}


def build_real(size: str, tiny_dir: Path, device: str):
    """The real 3B/7B architecture with random bf16 weights, using the tiny tokenizer/processor."""
    from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from synspill.vlm.model import VLM

    proc = AutoProcessor.from_pretrained(tiny_dir)
    tok = proc.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    a = ARCH[size]
    cfg = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=151936, max_position_embeddings=128000, rope_parameters={
            "rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6}, **a["text"]),
        vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=a["out_hidden"],
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[7, 15, 23, 31]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.bfloat16)
    model.eval()
    model.generation_config.eos_token_id = [tok.convert_tokens_to_ids("<|im_end|>")]
    model.generation_config.pad_token_id = tok.pad_token_id
    return VLM(model, proc, device, str(tiny_dir), 28)


def nf4_model(build, tiny_dir: Path, folder: Path):
    """``build()``'s random bf16 model written as a checkpoint folder, then loaded back in NF4 by
    synspill's loader (the bf16 copy is freed first, so the two never share the GPU)."""
    import gc

    from transformers import AutoProcessor

    from synspill.vlm.model import load_vlm

    vlm = build()
    device = vlm.device
    folder.mkdir(parents=True, exist_ok=True)
    vlm.model.save_pretrained(folder)
    AutoProcessor.from_pretrained(tiny_dir).save_pretrained(folder)
    del vlm
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return load_vlm(str(folder), device, "bfloat16" if device.startswith("cuda") else "float32", "4bit")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu-only", action="store_true")
    ap.add_argument("--sizes", default="3B,7B")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--train-steps", type=int, default=3, help="LoRA training steps per size (0: skip training)")
    ap.add_argument("--quant", choices=("none", "4bit"), default="none",
                    help="4bit: save the random model, reload it through synspill's loader in NF4 (QLoRA)")
    ap.add_argument("--profile", type=Path, default=None,
                    help="write a torch.profiler table of one batched generate call here (one file per size)")
    ap.add_argument("--save", type=Path, default=None, help="with --quant 4bit: where the random bf16 model is written "
                                                             "(kept for a `finetune vlm --quant 4bit` run)")
    args = ap.parse_args()
    torch.manual_seed(0)
    from synspill.vlm.model import load_vlm
    from tests.vlm.tiny import build_tiny_qwen25vl

    with tempfile.TemporaryDirectory() as d:
        tiny = build_tiny_qwen25vl(Path(d) / "tiny")
        if not args.gpu_only:
            torch.set_num_threads(1)
            vlm = load_vlm(str(tiny), "cpu")
            g = bench_generation(vlm, 8, 56 * 56 * 4, (128, 96), new_tokens=32)
            print(f"[cpu tiny] generate 8 imgs x 32 tokens: single {g['single_img_s']:.1f} img/s, "
                  f"batched(8) {g['batched_img_s']:.1f} img/s, ratio {g['ratio']:.2f}x (baseline: one at a time)")
            print(f"[cpu tiny] {_parts(g)}")
            t = bench_train(load_vlm(str(tiny), "cpu"), 8, 56 * 56 * 4, (128, 96), steps=5)
            print(f"[cpu tiny] LoRA-(V+L) train step batch 8: {t['step_s'] * 1000:.0f} ms, {t['tokens_per_s']:.0f} tokens/s, "
                  f"{t['trainable']:,} trainable")
        if not torch.cuda.is_available():
            print("[gpu] no CUDA device here: the 3B/7B batched-vs-single and training numbers are UNMEASURED")
            return
        for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
            if args.quant == "4bit":
                vlm = nf4_model(lambda size=size: build_real(size, tiny, "cuda:0"), tiny, args.save or Path(d) / f"qwen-{size}")
                tag = f"{size} NF4"
            else:
                vlm = build_real(size, tiny, "cuda:0")
                tag = size
            g = bench_generation(vlm, 8, 1003520, (1024, 1024), new_tokens=args.new_tokens,
                                 profile=args.profile.with_name(f"{args.profile.stem}-{size}{args.profile.suffix}") if args.profile else None)
            print(f"[gpu {tag}] generate 8 imgs x {args.new_tokens} tokens: single {g['single_img_s']:.2f} img/s, "
                  f"batched(8) {g['batched_img_s']:.2f} img/s, ratio {g['ratio']:.2f}x (target >= 4x)")
            print(f"[gpu {tag}] {_parts(g)}")
            torch.cuda.empty_cache()
            if args.train_steps <= 0:
                del vlm
                continue
            t = bench_train(vlm, 8, 1003520, (1024, 1024), steps=args.train_steps)
            print(f"[gpu {tag}] LoRA-(V+L) micro-batch 8 (grad ckpt): {t['step_s']:.2f} s/step, {t['tokens_per_s']:.0f} tokens/s, "
                  f"peak {t['peak_gib']:.1f} GiB, {t['trainable'] / 1e6:.2f} M trainable")
            del vlm
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
