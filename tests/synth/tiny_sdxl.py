"""Tiny random SDXL components built offline (diffusers ``get_dummy_components`` style).

Used by the tests and by ``benchmarks/bench_sdxl.py --tiny``. Nothing is downloaded: the
CLIP tokenizer is a byte-level BPE vocabulary built in memory. Sizes follow the SDXL
wiring: UNet ``cross_attention_dim`` = sum of the two text encoders' hidden sizes,
``projection_class_embeddings_input_dim`` = 6 x ``addition_time_embed_dim`` + second
encoder ``projection_dim``; ``in_channels=9`` for a true inpainting UNet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable-unicode table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def tiny_tokenizer() -> Any:
    """A CLIP tokenizer over a 514-token byte-level vocabulary (no merges), built in memory."""
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    return tok


def tiny_unet(inpaint: bool = False, seed: int = 0) -> Any:
    """The tiny SDXL UNet (two blocks, cross-attention 64 = 32 + 32)."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32,
        in_channels=9 if inpaint else 4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64, norm_num_groups=1,
    )


def tiny_components(inpaint: bool = False, seed: int = 0) -> dict[str, Any]:
    """Random tiny SDXL components (UNet, VAE with scale factor 2, two CLIP text encoders).

    Args:
        inpaint: Build a 9-channel inpainting UNet.
        seed: Weight init seed.
    """
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    unet = tiny_unet(inpaint, seed)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1, beta_schedule="scaled_linear",
                                       timestep_spacing="leading")
    torch.manual_seed(seed)
    vae = AutoencoderKL(block_out_channels=[32, 64], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        latent_channels=4, sample_size=128, force_upcast=False)
    cfg = CLIPTextConfig(bos_token_id=0, eos_token_id=2, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-5,
                         num_attention_heads=4, num_hidden_layers=5, pad_token_id=1, vocab_size=1000,
                         hidden_act="gelu", projection_dim=32)
    torch.manual_seed(seed)
    te = CLIPTextModel(cfg)
    torch.manual_seed(seed)
    te2 = CLIPTextModelWithProjection(cfg)
    return {"unet": unet, "scheduler": scheduler, "vae": vae, "text_encoder": te, "tokenizer": tiny_tokenizer(),
            "text_encoder_2": te2, "tokenizer_2": tiny_tokenizer(), "image_encoder": None, "feature_extractor": None}


def save_tiny_pipeline(folder: Path, inpaint: bool = False, seed: int = 0) -> Path:
    """Save a tiny SDXL pipeline folder (``model_index.json`` + components) for ``from_pretrained``."""
    from diffusers import StableDiffusionXLInpaintPipeline, StableDiffusionXLPipeline

    cls = StableDiffusionXLInpaintPipeline if inpaint else StableDiffusionXLPipeline
    cls(**tiny_components(inpaint=inpaint, seed=seed)).save_pretrained(folder)
    return folder


def save_tiny_ip_adapter(folder: Path, weight_name: str = "ip-adapter-plus_sdxl_vit-h.safetensors", seed: int = 0) -> Path:
    """A tiny random "plus" IP-Adapter (resampler projection) and ``image_encoder/`` for the tiny UNet.

    Keys follow the IP-Adapter checkpoint layout: ``image_proj.*`` (a Resampler) and
    ``ip_adapter.N.to_{k,v}_ip.weight`` for every cross-attention layer, numbered like
    diffusers' ``attn_processors`` (odd indices are the cross-attentions).
    """
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    vcfg = CLIPVisionConfig(hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4,
                            image_size=32, patch_size=4, intermediate_size=37, num_channels=3)
    CLIPVisionModelWithProjection(vcfg).save_pretrained(folder / "image_encoder")
    from diffusers.models.embeddings import IPAdapterPlusImageProjection

    # Resampler: embed_dims = image encoder hidden size, output_dims = UNet cross_attention_dim.
    # diffusers' loader infers heads from to_q rows // 64 and uses depth 4, dim_head 64, ffn 4.
    torch.manual_seed(seed)
    proj = IPAdapterPlusImageProjection(embed_dims=32, output_dims=64, hidden_dims=32, heads=1, num_queries=4)
    sd = {f"image_proj.{k}": v for k, v in _resampler_to_checkpoint(proj.state_dict()).items()}
    # One to_k_ip/to_v_ip pair per cross-attention, numbered 1, 3, 5 ... like the loader expects.
    unet = tiny_unet()
    key_id = 1
    for name in unet.attn_processors:
        if not name.endswith("attn2.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = unet.config.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(unet.config.block_out_channels))[int(name[len("up_blocks.")])]
        else:
            hidden = unet.config.block_out_channels[int(name[len("down_blocks.")])]
        sd[f"ip_adapter.{key_id}.to_k_ip.weight"] = torch.randn(hidden, 64) * 0.1
        sd[f"ip_adapter.{key_id}.to_v_ip.weight"] = torch.randn(hidden, 64) * 0.1
        key_id += 2
    save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / weight_name))
    return folder


def _resampler_to_checkpoint(sd: dict[str, Any]) -> dict[str, Any]:
    """Rename diffusers' Resampler keys to the original IP-Adapter "plus" checkpoint names."""
    import re

    import torch

    out: dict[str, Any] = {}
    for k, v in sd.items():
        m = re.match(r"layers\.(\d+)\.(.+)$", k)
        if not m:
            out[k] = v
            continue
        i, rest = m.group(1), m.group(2)
        if rest.startswith("attn.to_k."):
            continue  # merged with to_v below
        if rest.startswith("attn.to_v."):
            kk = sd[f"layers.{i}.attn.to_k.{rest.split('.')[-1]}"]
            out[f"layers.{i}.0.to_kv.{rest.split('.')[-1]}"] = torch.cat([kk, v], 0)
            continue
        rest = (rest.replace("ln0.", "0.norm1.").replace("ln1.", "0.norm2.").replace("attn.to_q.", "0.to_q.")
                .replace("attn.to_out.0.", "0.to_out.").replace("ff.1.net.0.proj.", "1.1.")
                .replace("ff.1.net.2.", "1.3.").replace("ff.0.", "1.0."))
        out[f"layers.{i}.{rest}"] = v
    return out


def save_tiny_lora(folder: Path, rank: int = 4, seed: int = 0) -> Path:
    """A random UNet LoRA made with peft and saved with ``save_lora_weights`` (non-zero B so it acts)."""
    import torch
    from diffusers import StableDiffusionXLPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = tiny_unet()
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn_like(p) * 0.3)
    StableDiffusionXLPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(unet))
    return folder


_DIRS: dict[str, Path] = {}


def tiny_sdxl_dirs(root: Path) -> dict[str, Path]:
    """Build (once per process) tiny model folders under ``root``.

    Returns:
        ``base`` (4-channel SDXL pipeline), ``inpaint`` (9-channel), ``ip`` (plus adapter +
        ``image_encoder/``), ``lora`` (``pytorch_lora_weights.safetensors``), ``refs`` (3 images).
    """
    if not _DIRS:
        import numpy as np
        import torch
        from PIL import Image

        torch.set_num_threads(1)
        save_tiny_pipeline(root / "base")
        save_tiny_pipeline(root / "inpaint", inpaint=True)
        (root / "ip").mkdir(parents=True)
        save_tiny_ip_adapter(root / "ip")
        save_tiny_lora(root / "lora")
        rng = np.random.default_rng(0)
        (root / "refs").mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / "refs" / f"ref{i}.png")
        _DIRS.update({k: root / k for k in ("base", "inpaint", "ip", "lora", "refs")})
    return dict(_DIRS)


def scene_image(h: int = 64, w: int = 64, seed: int = 0) -> Any:
    """A smooth synthetic scene (gradients + stripes + sensor noise), ``(h, w, 3)`` uint8 RGB."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w, y / h, 0.5 + 0.2 * np.sin(x / 5)], -1) * 200 + 20
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)
