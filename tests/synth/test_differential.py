"""Differential diffusion properties on tiny random SDXL components (CPU, 64 x 64)."""

from __future__ import annotations

import numpy as np
import pytest

from synspill.errors import UsageError
from synspill.synth.differential import (
    DifferentialDiffusion,
    latent_change_map,
    release_thresholds,
    steps_for_levels,
    steps_run,
)
from synspill.synth.masks import soft_mask
from tests.synth.tiny_sdxl import scene_image, tiny_sdxl_dirs


@pytest.fixture(scope="module")
def sdxl_dirs(tmp_path_factory):
    return tiny_sdxl_dirs(tmp_path_factory.getbasetemp() / "tiny-sdxl")

STEPS, STRENGTH = 8, 0.5  # 4 steps run -> thresholds 0.75, 0.5, 0.25, 0


@pytest.fixture(scope="module", params=["dpmpp_2m_sde_karras", "euler_a"])
def img2img(request, sdxl_dirs):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    from synspill.synth.sdxl import make_scheduler

    pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(str(sdxl_dirs["base"]), local_files_only=True)
    pipe.scheduler = make_scheduler(request.param, pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _gen(seed=0):
    import torch

    return torch.Generator("cpu").manual_seed(seed)


def _run(dd, img, cmap, **kw):
    return dd(img, cmap, strength=STRENGTH, num_inference_steps=STEPS, generator=_gen(), prompt="oil spill",
              guidance_scale=2.0, **kw)


def test_thresholds_and_step_counts():
    assert release_thresholds(4).tolist() == [0.75, 0.5, 0.25, 0.0]
    assert steps_run(4, 0.55) == 2  # SDXL-Turbo default: almost no thresholds
    n = steps_for_levels(0.55, 8, 4)
    assert steps_run(n, 0.55) >= 8 and steps_run(n - 1, 0.55) < 8
    assert steps_for_levels(0.5, 8, 64) == 64  # already enough levels
    for s in (0.5, 0.53, 0.57, 0.6, 0.7, 0.9):
        assert steps_run(steps_for_levels(s, 8), s) >= 8
    with pytest.raises(UsageError, match="strength"):
        steps_for_levels(0.0, 8)


def test_latent_map_is_zero_only_where_all_pixels_are_zero():
    m = np.zeros((16, 16), np.float32)
    m[5, 6] = 0.4
    lm = latent_change_map(m, (8, 8)).numpy()[0, 0]
    assert lm[2, 3] == pytest.approx(0.1) and np.count_nonzero(lm) == 1


def test_all_ones_map_equals_plain_img2img_exactly(img2img):
    img = scene_image()
    dd = DifferentialDiffusion(img2img)
    ours = _run(dd, img, np.ones((64, 64), np.float32), composite=False)
    plain = img2img(image=img.astype(np.float32)[None] / 255.0, strength=STRENGTH, num_inference_steps=STEPS,
                    generator=_gen(), prompt="oil spill", guidance_scale=2.0, output_type="np").images
    plain = (np.clip(plain, 0, 1) * 255).round().astype(np.uint8)
    assert ours.steps_run == 4
    np.testing.assert_array_equal(ours.images, plain)
    assert np.abs(ours.images.astype(int) - img).mean() > 1  # and it did change the image


def test_mean_latent_change_grows_with_uniform_map_value(img2img):
    img = scene_image(seed=1)
    dd = DifferentialDiffusion(img2img)
    changes = []
    for c in (0.0, 0.2, 0.45, 0.7, 1.0):  # 0, 1, 2, 3, 4 of the 4 steps free
        out = _run(dd, img, np.full((64, 64), c, np.float32))
        changes.append(float((out.latents - out.clean_latents).abs().mean()))
    assert changes[0] == 0.0  # c = 0 ends exactly at the original latents
    assert all(b > a for a, b in zip(changes, changes[1:], strict=False)), changes
    # ...and the decoded, composited output of an all-zero map is the input, bit for bit
    np.testing.assert_array_equal(_run(dd, img, np.zeros((64, 64), np.float32)).images[0], img)


def test_feathered_box_changes_centre_most_edge_less_outside_nothing(img2img):
    img = scene_image(seed=2)
    dd = DifferentialDiffusion(img2img)
    cmap = soft_mask(64, 64, (20, 20, 44, 44), feather=12, opacity=1.0)
    out = _run(dd, img, cmap)
    d_lat = (out.latents - out.clean_latents).abs().mean(1)[0].numpy()  # (32, 32), VAE factor 2
    lm = out.latent_map[0, 0].numpy()
    centre = d_lat[lm >= 0.99].mean()
    band = d_lat[(lm > 0.05) & (lm < 0.5)].mean()
    assert centre > band > 0
    assert np.all(d_lat[lm == 0] == 0)  # latents outside the support are exactly the original
    px = out.images[0].astype(int)
    outside = cmap == 0
    np.testing.assert_array_equal(px[outside], img[outside])  # composited back
    d_px = np.abs(px - img).max(-1)
    assert d_px[28:36, 28:36].mean() > d_px[cmap > 0].mean() / 2 > 0
    # Without compositing, outside pixels differ only by the VAE round trip/decoder spill-over.
    raw = _run(dd, img, cmap, composite=False).images[0].astype(int)
    assert np.abs(raw - img)[outside].mean() < np.abs(raw - img)[cmap > 0.9].mean()


def test_inpaint_pipeline_keeps_the_soft_mask(sdxl_dirs):
    import torch
    from diffusers import StableDiffusionXLInpaintPipeline

    pipe = StableDiffusionXLInpaintPipeline.from_pretrained(str(sdxl_dirs["inpaint"]), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.mask_processor.config.do_binarize  # the stock processor binarises...
    dd = DifferentialDiffusion(pipe)
    assert not pipe.mask_processor.config.do_binarize  # ...ours keeps the feathering
    cmap = soft_mask(64, 64, (16, 16, 48, 48), feather=10, opacity=0.75)
    processed = pipe.mask_processor.preprocess(torch.from_numpy(cmap)[None, None], height=64, width=64)
    np.testing.assert_allclose(processed[0, 0].numpy(), cmap, atol=1e-6)
    img = scene_image(seed=3)
    out = dd(img, cmap, strength=0.6, num_inference_steps=7, generator=_gen(), prompt="water leak", guidance_scale=1.0)
    assert out.steps_run == 4 and out.images.shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(out.images[0][cmap == 0], img[cmap == 0])
    d_lat = (out.latents - out.clean_latents).abs().mean(1)[0].numpy()
    assert np.all(d_lat[out.latent_map[0, 0].numpy() == 0] == 0)


def test_bad_inputs_are_clear_errors(img2img):
    dd = DifferentialDiffusion(img2img)
    img = scene_image()
    with pytest.raises(UsageError, match="change map shape"):
        _run(dd, img, np.ones((32, 32), np.float32))
    with pytest.raises(UsageError, match=r"\[0, 1\]"):
        _run(dd, img, np.full((64, 64), 1.5, np.float32))
    with pytest.raises(UsageError, match="multiple of 8"):
        _run(dd, scene_image(60, 64), np.ones((60, 64), np.float32))
    with pytest.raises(UsageError, match="output_type"):
        _run(dd, img, np.ones((64, 64), np.float32), output_type="pil")
    with pytest.raises(UsageError, match="img2img or inpaint"):
        DifferentialDiffusion(object())
