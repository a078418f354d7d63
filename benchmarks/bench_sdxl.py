"""Seconds per SDXL scene image at the paper's settings: synspill's path vs the plain diffusers pipeline.

Both run in the same process on the same random-weight SDXL 1.0 architecture, built from
the published configs written below (random weights cost the same compute as real ones;
nothing is downloaded). Settings: 1024 x 1024, DPM++ 2M SDE Karras, 64 steps, CFG 8.

- baseline: ``StableDiffusionXLPipeline`` as its docs load it (``torch_dtype=float16``,
  ``.to("cuda")``), one prompt per call.
- synspill: :class:`synspill.synth.sdxl.SDXLSceneBackend` on the same components, set up
  by :func:`synspill.synth.sdxl.configure_pipeline` (bf16, SDPA, TF32, channels-last UNet,
  batched prompts, VAE slicing; ``--compile`` adds ``torch.compile`` of the UNet, timed
  after a warm-up call that is reported separately).

A second section times the differential-diffusion callback against plain img2img with the
same steps (the overhead of the per-step latent resets).

    python benchmarks/bench_sdxl.py                      # GPU, paper settings
    python benchmarks/bench_sdxl.py --batch 4 --compile  # bigger batches, compiled UNet
    python benchmarks/bench_sdxl.py --tiny               # CPU smoke run: tiny random SDXL, 64 px, 4 steps
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Published configs of stabilityai/stable-diffusion-xl-base-1.0 (unet/, vae/, text_encoder/, text_encoder_2/).
SDXL_UNET = {
    "act_fn": "silu", "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280],
    "center_input_sample": False, "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"], "downsample_padding": 1,
    "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816, "sample_size": 128, "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "use_linear_projection": True,
}
SDXL_VAE = {
    "act_fn": "silu", "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
    "sample_size": 1024, "scaling_factor": 0.13025, "up_block_types": ["UpDecoderBlock2D"] * 4, "force_upcast": True,
}
CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
          "max_position_embeddings": 77, "vocab_size": 49408, "hidden_act": "quick_gelu", "projection_dim": 768,
          "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}
CLIP_BIGG = {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 20,
             "max_position_embeddings": 77, "vocab_size": 49408, "hidden_act": "gelu", "projection_dim": 1280,
             "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}
SDXL_SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                  "num_train_timesteps": 1000, "steps_offset": 1, "timestep_spacing": "leading",
                  "prediction_type": "epsilon"}


def build_sdxl(device: str, dtype) -> dict:
    """Random-weight SDXL 1.0 components, initialised directly on ``device`` in ``dtype``."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from tests.synth.tiny_sdxl import tiny_tokenizer  # byte-level CLIP BPE built in memory

    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**SDXL_UNET).to(dtype)
        vae = AutoencoderKL(**SDXL_VAE).to(dtype)
        te = CLIPTextModel(CLIPTextConfig(**CLIP_L)).to(dtype)
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIGG)).to(dtype)
    return {"unet": unet, "vae": vae, "text_encoder": te, "text_encoder_2": te2, "tokenizer": tiny_tokenizer(),
            "tokenizer_2": tiny_tokenizer(), "scheduler": EulerDiscreteScheduler(**SDXL_SCHEDULER),
            "image_encoder": None, "feature_extractor": None}


def build_tiny(device: str, dtype) -> dict:
    from tests.synth.tiny_sdxl import tiny_components

    comps = tiny_components()
    for k in ("unet", "vae", "text_encoder", "text_encoder_2"):
        comps[k] = comps[k].to(device=device, dtype=dtype)
    return comps


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny random SDXL on the CPU (checks the script's logic)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--size", type=int, default=None, help="image side (default 1024; 64 with --tiny)")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default 64; 4 with --tiny)")
    ap.add_argument("--guidance", type=float, default=8.0)
    ap.add_argument("--images", type=int, default=4, help="images timed per side")
    ap.add_argument("--batch", type=int, default=2, help="synspill batch size")
    ap.add_argument("--compile", action="store_true", help="torch.compile the UNet on the synspill side")
    ap.add_argument("--vae-tiling", action="store_true")
    ap.add_argument("--skip-diff", action="store_true", help="skip the differential-diffusion overhead section")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
    from diffusers.utils import logging as dlogging

    dlogging.set_verbosity_error()

    from synspill.synth.base import DiffusionOptions, SceneSpec
    from synspill.synth.differential import DifferentialDiffusion
    from synspill.synth.masks import soft_mask
    from synspill.synth.sdxl import SDXLSceneBackend, configure_pipeline, make_scheduler

    device = args.device or ("cpu" if args.tiny or not torch.cuda.is_available() else "cuda:0")
    size = args.size or (64 if args.tiny else 1024)
    steps = args.steps or (4 if args.tiny else 64)
    cuda = device.startswith("cuda")
    if not cuda and not args.tiny and args.device is None:
        sys.exit("no CUDA device: the full-size benchmark needs a GPU; run with --tiny to check the logic on a CPU")
    if not cuda:
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    base_dtype = torch.float16 if cuda else torch.float32  # what the diffusers docs use
    our_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else base_dtype
    build = build_tiny if args.tiny else build_sdxl
    info = {"device": torch.cuda.get_device_name(device) if cuda else "cpu", "size": size, "steps": steps,
            "guidance": args.guidance, "images": args.images, "batch": args.batch, "compile": args.compile,
            "torch": torch.__version__, "arch": "tiny" if args.tiny else "sdxl-1.0 (random weights)"}
    print(json.dumps(info))
    prompts = [f"A factory interior, pump room, view {i}" for i in range(args.images)]

    # ---- baseline: plain diffusers, fp16, one prompt per call
    t0 = time.perf_counter()
    comps = build(device, base_dtype)
    print(f"built components in {time.perf_counter() - t0:.1f} s")
    base = StableDiffusionXLPipeline(**comps, add_watermarker=False)
    base.scheduler = make_scheduler("dpmpp_2m_sde_karras", base.scheduler.config)
    base.set_progress_bar_config(disable=True)
    base_pipe = base

    def run_base(n: int) -> None:
        for i in range(n):
            base_pipe(prompt=prompts[i % len(prompts)], height=size, width=size, num_inference_steps=steps,
                 guidance_scale=args.guidance, generator=torch.Generator("cpu").manual_seed(i), output_type="np")

    run_base(1)  # warm-up (cuDNN autotune, allocator)
    sync(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    run_base(args.images)
    sync(device)
    t_base = (time.perf_counter() - t0) / args.images
    mem_base = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    label = f"baseline  diffusers {str(base_dtype).removeprefix('torch.')}, 1 prompt/call"
    print(f"{label:40s}: {t_base:8.3f} s/image  peak {mem_base:.1f} GiB")

    # ---- synspill: same components in bf16, batched, configured by configure_pipeline
    # The baseline is done: reuse its components (cast to our dtype in place) to keep one copy in memory.
    ours_comps = dict(comps)
    del base
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    opts = DiffusionOptions(model="(in memory)", device=device, dtype=str(our_dtype).removeprefix("torch."),
                            steps=steps, guidance=args.guidance, batch_size=args.batch, vae_slicing=True,
                            vae_tiling=args.vae_tiling, compile=args.compile)
    pipe = configure_pipeline(StableDiffusionXLPipeline(**ours_comps, add_watermarker=False), opts, device, our_dtype)
    backend = SDXLSceneBackend(pipe, opts, {}, device)

    def specs(n: int, off: int = 0) -> list[SceneSpec]:
        return [SceneSpec(seed=off + i, scene_type="pump-room", width=size, height=size, prompt=prompts[i % len(prompts)])
                for i in range(n)]

    t0 = time.perf_counter()
    backend.generate(specs(args.batch, 1000))  # warm-up (and compilation with --compile)
    sync(device)
    t_warm = time.perf_counter() - t0
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    backend.generate(specs(args.images))
    sync(device)
    t_ours = (time.perf_counter() - t0) / args.images
    mem_ours = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    label = f"synspill  {str(our_dtype).removeprefix('torch.')}, batch {args.batch}{', compiled' if args.compile else ''}"
    print(f"{label:40s}: {t_ours:8.3f} s/image  peak {mem_ours:.1f} GiB  (warm-up {t_warm:.1f} s)")
    print(f"speed-up vs plain diffusers: {t_base / t_ours:.2f}x")
    result = {**info, "baseline_s_per_image": t_base, "synspill_s_per_image": t_ours, "speedup": t_base / t_ours,
              "baseline_peak_gib": mem_base, "synspill_peak_gib": mem_ours, "synspill_warmup_s": t_warm}

    if not args.skip_diff:
        # ---- differential diffusion overhead: same img2img pipeline, same steps, with/without the callback
        i2i = StableDiffusionXLImg2ImgPipeline(**{k: v for k, v in pipe.components.items()
                                                  if k not in ("image_encoder", "feature_extractor")},
                                               add_watermarker=False)
        i2i.set_progress_bar_config(disable=True)
        import numpy as np

        img = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
        cmap = soft_mask(size, size, (size / 4, size / 4, 3 * size / 4, 3 * size / 4), feather=size / 20, opacity=0.75)
        dsteps = max(4, steps // 4)
        dd = DifferentialDiffusion(i2i)

        def plain() -> None:
            i2i(image=img.astype(np.float32)[None] / 255.0, strength=0.55, num_inference_steps=dsteps, prompt=prompts[0],
                guidance_scale=args.guidance, generator=torch.Generator("cpu").manual_seed(0), output_type="np")

        def diff() -> None:
            dd(img, cmap, strength=0.55, num_inference_steps=dsteps, prompt=prompts[0], guidance_scale=args.guidance,
               generator=torch.Generator("cpu").manual_seed(0))

        plain()
        diff()
        times = {}
        for name, fn in (("plain img2img", plain), ("differential", diff)):
            sync(device)
            t0 = time.perf_counter()
            for _ in range(2):
                fn()
            sync(device)
            times[name] = (time.perf_counter() - t0) / 2
        print(f"img2img {dsteps} steps x 0.55: plain {times['plain img2img']:.3f} s, differential "
              f"{times['differential']:.3f} s ({times['differential'] / times['plain img2img']:.2f}x)")
        result.update(diff_plain_s=times["plain img2img"], diff_ours_s=times["differential"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
