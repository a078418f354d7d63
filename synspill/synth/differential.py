"""Differential diffusion (Levin & Fried, "Differential Diffusion", 2023) over stock SDXL pipelines.

diffusers has no core differential-diffusion pipeline, so this module adds it to the
stock :class:`~diffusers.StableDiffusionXLImg2ImgPipeline` (any 4-channel UNet: SDXL,
SDXL-Turbo) or :class:`~diffusers.StableDiffusionXLInpaintPipeline` (9-channel
inpainting UNets) without copying either: a ``callback_on_step_end`` plus a thin hook
on the pipeline's ``prepare_latents`` that records the clean image latents and the
noise the pipeline drew.

The algorithm. A change map ``c`` in [0, 1] per pixel says how much each pixel may change
(1 = as much as plain img2img at this strength, 0 = not at all). It is averaged down to
latent size. With ``k`` denoising steps actually run (``int(steps * strength)``), the
release thresholds are ``tau_m = 1 - m / k`` for ``m = 1..k``. After step ``m - 1``
every latent pixel with ``c <= tau_m`` is reset to the original latents noised to the
timestep of step ``m`` (the same noise tensor the pipeline started from), and after the
last step (``tau_k = 0``) pixels with ``c == 0`` are reset to the clean original. A pixel
is therefore free for the last ``ceil(c * k)`` steps: high ``c`` is released early and
changes a lot, low ``c`` late and changes little, ``c == 1`` is never reset (exactly
plain img2img) and ``c == 0`` ends exactly at the original latents.

Few steps. SDXL-Turbo is run with 1-4 steps, and 4 steps x strength 0.55 runs 2 steps:
two thresholds, so a 50 px feather collapses into ~2 hard rings. Two choices, both
applied here: the thresholds are spread over the steps actually *run* (not over the
scheduler's full schedule), and :func:`steps_for_levels` raises the step count until at
least ``min_levels`` steps run (the SDXL spill backend uses 8 levels, i.e. 15 scheduler
steps at strength 0.55). The price is a few more UNet calls (no CFG for Turbo); Turbo was
distilled for 1-4 steps, so ``min_levels`` trades feather resolution against staying
close to its training regime.

Decoding. The VAE round trip is not the identity and its decoder mixes neighbouring
latents, so even with ``c == 0`` latents exactly restored, decoded pixels drift slightly.
With ``composite=True`` (the default) the original pixels are pasted back wherever the
pixel-space change map is exactly 0, so outside the feathered box nothing changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from synspill.errors import UsageError


@dataclass
class DifferentialOutput:
    """Result of one differential-diffusion call.

    Attributes:
        images: ``(B, H, W, 3)`` uint8 RGB (composited if asked).
        latents: ``(B, C, h, w)`` final latents after the last reset (pipeline latent space).
        clean_latents: ``(B, C, h, w)`` latents of the input images.
        latent_map: ``(B, 1, h, w)`` change map at latent size (area-averaged).
        steps_run: Denoising steps actually run (``k``); the number of release levels.
    """

    images: np.ndarray
    latents: Any
    clean_latents: Any
    latent_map: Any
    steps_run: int


def steps_run(steps: int, strength: float) -> int:
    """Steps a diffusers img2img/inpaint call runs: ``min(int(steps * strength), steps)``."""
    return min(int(steps * strength), steps)


def steps_for_levels(strength: float, min_levels: int, steps: int = 1) -> int:
    """Smallest scheduler step count ``>= steps`` that runs at least ``min_levels`` steps at ``strength``.

    Args:
        strength: Denoise strength in (0, 1].
        min_levels: Wanted number of release thresholds (steps run).
        steps: Lower bound (the configured step count).

    Returns:
        ``n`` with ``steps_run(n, strength) >= min_levels``.
    """
    if not 0.0 < strength <= 1.0:
        raise UsageError(f"strength {strength} must be in (0, 1]; the paper samples 0.5-0.6")
    n = max(int(steps), math.ceil(min_levels / strength) if min_levels > 0 else 1, 1)
    while steps_run(n, strength) < min_levels:  # float rounding of int(n * strength)
        n += 1
    return n


def release_thresholds(k: int) -> np.ndarray:
    """``tau_m = 1 - m / k`` for ``m = 1..k``: after step ``m - 1`` pixels with ``c <= tau_m`` are reset.

    Returns:
        ``(k,)`` float64, decreasing from ``1 - 1/k`` to exactly 0.
    """
    if k < 1:
        raise UsageError(f"differential diffusion needs at least one step to run (got {k}); raise --steps or the strength")
    return 1.0 - np.arange(1, k + 1, dtype=np.float64) / k


def latent_change_map(change_map: Any, latent_hw: tuple[int, int], device: Any = "cpu", dtype: Any = None) -> Any:
    """Area-average a pixel change map down to latent size.

    Args:
        change_map: ``(H, W)`` or ``(B, H, W)`` floats in [0, 1] (NumPy or torch).
        latent_hw: ``(h, w)`` latent size.
        device: Torch device of the result.
        dtype: Torch dtype of the result (float32 if None).

    Returns:
        ``(B, 1, h, w)`` tensor. A latent pixel is 0 exactly when every pixel it covers is 0.
    """
    import torch
    import torch.nn.functional as F

    m = torch.from_numpy(np.array(change_map, dtype=np.float32))
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise UsageError(f"change map must be (H, W) or (B, H, W), got shape {tuple(m.shape)}")
    out = F.adaptive_avg_pool2d(m[:, None], latent_hw)
    return out.clamp_(0.0, 1.0).to(device=device, dtype=dtype or torch.float32)


def soft_mask_processor(vae_scale_factor: int) -> Any:
    """A mask processor that keeps soft values (the stock one binarises at 0.5)."""
    from diffusers.image_processor import VaeImageProcessor

    return VaeImageProcessor(vae_scale_factor=vae_scale_factor, do_normalize=False, do_binarize=False,
                             do_convert_grayscale=True)


class DifferentialDiffusion:
    """Differential diffusion over a stock SDXL img2img or inpaint pipeline.

    The pipeline object is used as is (its scheduler, IP-Adapter, LoRA and attention
    settings apply); an inpaint pipeline gets a non-binarising mask processor.

    Example::

        pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(folder)
        dd = DifferentialDiffusion(pipe)
        out = dd(image, change_map, prompt="oil spill", strength=0.55, num_inference_steps=15)
    """

    def __init__(self, pipe: Any) -> None:
        from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLInpaintPipeline

        self.pipe: Any = pipe
        if isinstance(pipe, StableDiffusionXLInpaintPipeline):
            self.kind = "inpaint"
            # The stock processor binarises at 0.5: a feathered mask would lose its feathering.
            self.pipe.mask_processor = soft_mask_processor(self.pipe.vae_scale_factor)
        elif isinstance(pipe, StableDiffusionXLImg2ImgPipeline):
            self.kind = "img2img"
        else:
            raise UsageError(f"differential diffusion needs an SDXL img2img or inpaint pipeline, got {type(pipe).__name__}")

    def __call__(self, image: np.ndarray, change_map: np.ndarray, *, strength: float, num_inference_steps: int,
                 generator: Any = None, composite: bool = True, **kwargs: Any) -> DifferentialOutput:
        """Run the pipeline with a per-pixel change map.

        Args:
            image: ``(H, W, 3)`` or ``(B, H, W, 3)`` uint8 RGB; H and W multiples of 8.
            change_map: ``(H, W)`` or ``(B, H, W)`` float in [0, 1] (e.g. :func:`synspill.synth.masks.soft_mask`).
            strength: Denoise strength in (0, 1].
            num_inference_steps: Scheduler steps; ``int(steps * strength)`` of them run.
            generator: ``torch.Generator`` or one per image.
            composite: Paste the original pixels back where ``change_map == 0``.
            **kwargs: Passed to the pipeline (``prompt``, ``negative_prompt``, ``guidance_scale``,
                ``ip_adapter_image_embeds``, ...). ``output_type``, callbacks and
                ``denoising_start/end`` are reserved.

        Returns:
            A :class:`DifferentialOutput`.
        """
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        for key in ("output_type", "callback_on_step_end", "callback_on_step_end_tensor_inputs",
                    "denoising_start", "denoising_end", "mask_image", "latents"):
            if key in kwargs:
                raise UsageError(f"differential diffusion sets {key!r} itself; do not pass it")
        img = np.asarray(image)
        if img.ndim == 3:
            img = img[None]
        cmap = np.asarray(change_map, dtype=np.float32)
        if cmap.ndim == 2:
            cmap = np.broadcast_to(cmap, (img.shape[0], *cmap.shape)).copy()
        if img.ndim != 4 or img.shape[-1] != 3 or img.dtype != np.uint8:
            raise UsageError(f"image must be (H, W, 3) or (B, H, W, 3) uint8 RGB, got {img.dtype} {img.shape}")
        b, h, w = img.shape[:3]
        if cmap.shape != (b, h, w):
            raise UsageError(f"change map shape {cmap.shape} does not match the image {(b, h, w)}")
        if not (np.isfinite(cmap).all() and cmap.min() >= 0.0 and cmap.max() <= 1.0):
            raise UsageError("change map values must be finite and in [0, 1]")
        if h % 8 or w % 8:
            raise UsageError(f"image size {w}x{h} must be a multiple of 8 for SDXL; crop or pad it")
        k = steps_run(num_inference_steps, strength)
        taus = release_thresholds(k)

        pipe = self.pipe
        state: dict[str, Any] = {}
        original_prepare = pipe.prepare_latents

        def prepare_img2img(image: Any, timestep: Any, batch_size: int, num_images_per_prompt: int, dtype: Any,
                            device: Any, generator: Any = None, add_noise: bool = True) -> Any:
            # Same draws in the same order as the stock method (VAE sample, then noise),
            # so an all-ones map reproduces plain img2img bit for bit.
            clean = original_prepare(image, timestep, batch_size, num_images_per_prompt, dtype, device,
                                     generator, add_noise=False)
            noise = randn_tensor(clean.shape, generator=generator, device=device, dtype=dtype)
            state.update(clean=clean, noise=noise)
            return pipe.scheduler.add_noise(clean, noise, timestep) if add_noise else clean

        def prepare_inpaint(*args: Any, **kw: Any) -> tuple:
            want_noise, want_image = kw.get("return_noise", False), kw.get("return_image_latents", False)
            kw.update(return_noise=True, return_image_latents=True)
            latents, noise, image_latents = original_prepare(*args, **kw)
            state.update(clean=image_latents, noise=noise)
            return (latents,) + ((noise,) if want_noise else ()) + ((image_latents,) if want_image else ())

        def on_step_end(p: Any, i: int, t: Any, cb_kwargs: dict[str, Any]) -> dict[str, Any]:
            lat = cb_kwargs["latents"]
            m = i + 1
            if "lmap" not in state:
                state["lmap"] = latent_change_map(cmap, tuple(lat.shape[-2:]), lat.device)
                if p.num_timesteps != k:
                    raise UsageError(f"the scheduler ran {p.num_timesteps} steps, expected {k}; "
                                     "differential diffusion needs a first-order scheduler (Euler, DPM++ 2M)")
                state["timesteps"] = p.scheduler.timesteps[-k:]
            clean = state["clean"].to(lat.dtype)
            if m < k:
                t_next = state["timesteps"][m].reshape(1)
                ref = p.scheduler.add_noise(clean, state["noise"].to(lat.dtype), t_next)
            else:
                ref = clean
            keep = state["lmap"] <= float(taus[min(m, k) - 1])
            lat = torch.where(keep, ref, lat)
            if m >= k:
                state["final"] = lat
            return {"latents": lat}

        call: dict[str, Any] = dict(kwargs)
        pix = torch.from_numpy(img.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        if self.kind == "inpaint":
            # 9-channel UNets see the soft map as their mask channel; for 4-channel ones the
            # stock per-step blend must be a no-op (all ones) so only our callback resets.
            nine = pipe.unet.config.in_channels == 9
            call["mask_image"] = torch.from_numpy(cmap.copy())[:, None] if nine else torch.ones(b, 1, h, w)
            call.update(height=h, width=w)
        pipe.prepare_latents = prepare_img2img if self.kind == "img2img" else prepare_inpaint
        try:
            result = pipe(image=pix, strength=strength, num_inference_steps=num_inference_steps, generator=generator,
                          output_type="np", callback_on_step_end=on_step_end,
                          callback_on_step_end_tensor_inputs=["latents"], **call)
        finally:
            del pipe.prepare_latents  # back to the class method
        out = np.asarray(result.images, dtype=np.float32)
        out = (np.clip(out, 0.0, 1.0) * 255.0).round().astype(np.uint8)
        if composite:
            out = np.where((cmap > 0)[..., None], out, img)
        return DifferentialOutput(images=out, latents=state.get("final"), clean_latents=state.get("clean"),
                                  latent_map=state.get("lmap"), steps_run=k)
