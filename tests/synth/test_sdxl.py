"""SDXL backends on tiny random components loaded through the real from_pretrained(local folder) path."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from synspill import taxonomy
from synspill.boxes import tight_box
from synspill.errors import ModelNotFound, UsageError
from synspill.synth import prompting
from synspill.synth.base import DiffusionOptions, SceneSpec, SpillSpec
from synspill.synth.masks import soft_mask
from synspill.synth.sdxl import (
    crop_window,
    make_scene_backend,
    make_spill_backend,
    visible_mask,
)
from tests.synth.tiny_sdxl import scene_image, tiny_sdxl_dirs


@pytest.fixture(scope="module")
def sdxl_dirs(tmp_path_factory):
    return tiny_sdxl_dirs(tmp_path_factory.getbasetemp() / "tiny-sdxl")


def _scene_opts(dirs, **kw) -> DiffusionOptions:
    return DiffusionOptions(**{"model": str(dirs["base"]), "device": "cpu", "steps": 2, "guidance": 8.0, **kw})


def _specs(seeds, w=64, h=64, scene_type="pump-room"):
    return [SceneSpec(seed=s, scene_type=scene_type, width=w, height=h) for s in seeds]


@pytest.fixture(scope="module")
def scene_backend(sdxl_dirs):
    return make_scene_backend(_scene_opts(sdxl_dirs, batch_size=2), {})


# ----------------------------------------------------------------------------- scenes


def test_paper_defaults_and_scheduler_is_dpmpp_2m_sde_karras(scene_backend):
    from diffusers import DPMSolverMultistepScheduler

    d = DiffusionOptions(model="x")
    assert (d.steps, d.guidance, d.scheduler, d.ip_scale, d.lora_scale, d.strength) == (
        64, 8.0, "dpmpp_2m_sde_karras", 0.6, (0.2, 0.4), (0.5, 0.6))
    assert SceneSpec(seed=0, scene_type="corridor").width == 1024
    sched = scene_backend.pipe.scheduler
    assert isinstance(sched, DPMSolverMultistepScheduler)
    assert sched.config.algorithm_type == "sde-dpmsolver++"
    assert sched.config.use_karras_sigmas is True and sched.config.solver_order == 2
    sched.set_timesteps(64)
    sig = sched.sigmas[:-1].numpy()  # Karras: rho-7 spacing between sigma_max and sigma_min
    rho = 7.0
    ramp = np.linspace(0, 1, 64)
    smax, smin = sig[0], sig[-1]
    karras = (smax ** (1 / rho) + ramp * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    np.testing.assert_allclose(sig, karras, rtol=1e-4)


def test_text_to_image_is_deterministic_per_seed_and_batched(scene_backend):
    specs = _specs([11, 12, 13])
    imgs = scene_backend.generate(specs)
    assert len(imgs) == 3 and all(i.shape == (64, 64, 3) and i.dtype == np.uint8 for i in imgs)
    again = scene_backend.generate(_specs([13, 11]))  # other batch composition, other order
    np.testing.assert_allclose(again[0].astype(int), imgs[2].astype(int), atol=2)
    np.testing.assert_allclose(again[1].astype(int), imgs[0].astype(int), atol=2)
    assert np.abs(imgs[0].astype(int) - imgs[1]).mean() > 1  # other seed, other image
    p = specs[0].params
    assert p["steps"] == 2 and p["guidance"] == 8.0 and p["lora_scale"] is None and p["ip_ref"] is None
    assert p["prompt"].endswith(prompting.load_scene_prompts()["positive"])
    assert p["negative_prompt"] == prompting.load_scene_prompts()["negative"]


def test_explicit_prompt_wins_and_bad_size_is_an_error(scene_backend):
    spec = SceneSpec(seed=1, scene_type="corridor", width=64, height=64, prompt="a pump", negative_prompt="text")
    scene_backend.generate([spec])
    assert spec.params["prompt"] == "a pump" and spec.params["negative_prompt"] == "text"
    with pytest.raises(UsageError, match="multiples of 8"):
        scene_backend.generate(_specs([1], w=60))


def test_ip_adapter_style_references(sdxl_dirs, scene_backend):
    opts = _scene_opts(sdxl_dirs, refs=str(sdxl_dirs["refs"]), ip_adapter=str(sdxl_dirs["ip"]), batch_size=2)
    be = make_scene_backend(opts, {})
    assert be.pipe.image_encoder is not None and be.pipe.unet.encoder_hid_proj is not None
    specs = _specs([21, 22])
    with_ref = be.generate(specs)
    plain = scene_backend.generate(_specs([21, 22]))
    assert all(s.params["ip_ref"] in {"ref0.png", "ref1.png", "ref2.png"} for s in specs)
    assert specs[0].params["ip_scale"] == 0.6
    assert np.abs(with_ref[0].astype(int) - plain[0]).max() > 0  # the reference conditions the image
    assert specs[0].params["ip_ref"] != specs[1].params["ip_ref"]  # one batch, two references
    alone = be.generate(_specs([22]))[0]  # same seed -> same reference and image, batched or not
    np.testing.assert_allclose(alone.astype(int), with_ref[1].astype(int), atol=2)
    with pytest.raises(UsageError, match="--ip-adapter"):
        make_scene_backend(_scene_opts(sdxl_dirs, refs=str(sdxl_dirs["refs"])), {})


def test_lora_scale_zero_equals_base_and_scale_is_recorded(sdxl_dirs, scene_backend):
    base = scene_backend.generate(_specs([31]))[0]
    zero = make_scene_backend(_scene_opts(sdxl_dirs, lora=str(sdxl_dirs["lora"]), lora_scale=(0.0, 0.0)), {})
    np.testing.assert_array_equal(zero.generate(_specs([31]))[0], base)
    be = make_scene_backend(_scene_opts(sdxl_dirs, lora=str(sdxl_dirs["lora"])), {})
    specs = _specs([31, 32])
    out = be.generate(specs)
    scales = [s.params["lora_scale"] for s in specs]
    assert all(0.2 <= s <= 0.4 for s in scales) and scales[0] != scales[1]
    assert scales[0] == prompting.sample_uniform((0.2, 0.4), 31, "lora-scale")
    assert np.abs(out[0].astype(int) - base).max() > 0


def test_missing_models_are_clear_errors(tmp_path, sdxl_dirs):
    with pytest.raises(ModelNotFound, match="huggingface-cli download stabilityai/stable-diffusion-xl-base-1.0"):
        make_scene_backend(DiffusionOptions(model=str(tmp_path / "nope"), device="cpu"), {})
    with pytest.raises(ModelNotFound, match="not in the local Hugging Face cache"):
        make_spill_backend(DiffusionOptions(model="nobody/no-such-sdxl-model", device="cpu"))
    with pytest.raises(ModelNotFound, match="no model_index.json"):
        make_scene_backend(DiffusionOptions(model=str(tmp_path), device="cpu"), {})
    with pytest.raises(ModelNotFound, match="image encoder"):
        (tmp_path / "ip").mkdir()
        (tmp_path / "ip" / "ip-adapter-plus_sdxl_vit-h.safetensors").write_bytes(b"")
        make_scene_backend(_scene_opts(sdxl_dirs, refs=str(sdxl_dirs["refs"]), ip_adapter=str(tmp_path / "ip")), {})
    with pytest.raises(UsageError, match="no images"):
        (tmp_path / "empty").mkdir()
        make_scene_backend(_scene_opts(sdxl_dirs, refs=str(tmp_path / "empty"), ip_adapter=str(sdxl_dirs["ip"])), {})
    with pytest.raises(UsageError, match="--scheduler"):
        make_scene_backend(_scene_opts(sdxl_dirs, scheduler="ddim"), {})


# ----------------------------------------------------------------------------- spills


def _spill_opts(dirs, model="base", **kw) -> DiffusionOptions:
    return DiffusionOptions(**{"model": str(dirs[model]), "device": "cpu", "steps": 2, "guidance": 0.0,
                               "scheduler": "euler_a", "min_levels": 3, **kw})


def test_spill_backend_paints_inside_the_soft_mask_with_exact_labels(sdxl_dirs):
    be = make_spill_backend(_spill_opts(sdxl_dirs))
    img = scene_image(seed=5)
    spills = [SpillSpec(box=(14, 16, 40, 36), class_id=1, seed=3, feather=6, opacity=1.0, strength=0.6),
              SpillSpec(box=(40, 40, 56, 60), class_id=6, seed=4, feather=4, opacity=0.75, strength=0.5)]
    res = be.inpaint(img, spills)
    assert res.image.shape == img.shape and res.image.dtype == np.uint8
    support = np.zeros((64, 64), bool)
    for s in spills:
        support |= soft_mask(64, 64, s.box, s.feather, s.opacity) > 0
    np.testing.assert_array_equal(res.image[~support], img[~support])  # nothing changes outside
    assert len(res.masks) == 2 and res.masks[0].any()
    for m, b, p in zip(res.masks, res.boxes, res.params, strict=True):
        assert m.dtype == bool and m.shape == (64, 64)
        if b is None:
            assert not m.any()
            continue
        x1, y1, x2, y2 = (int(v) for v in b)
        assert m[y1:y2, x1:x2].sum() == m.sum()  # every visible pixel inside its box...
        assert m[y1, x1:x2].any() and m[y2 - 1, x1:x2].any() and m[y1:y2, x1].any() and m[y1:y2, x2 - 1].any()  # tight
        assert p["visible_pixels"] == m.sum()
    assert not (res.masks[0] & res.masks[1]).any()  # later spills occlude earlier ones
    p0 = res.params[0]
    assert p0["strength"] == 0.6 and p0["steps_run"] >= 3 and p0["window"] == [0, 0, 64, 64]
    assert p0["prompt"] in prompting.load_spill_prompts()["oil-spill"]["positive"]
    assert res.params[1]["prompt"] in prompting.load_spill_prompts()["rust-stain"]["positive"]
    again = be.inpaint(img, spills)  # deterministic per seed
    np.testing.assert_array_equal(again.image, res.image)


def test_spill_backend_with_inpainting_unet_ip_adapter_and_lora(sdxl_dirs):
    be = make_spill_backend(_spill_opts(sdxl_dirs, "inpaint", refs=str(sdxl_dirs["refs"]), ip_adapter=str(sdxl_dirs["ip"]),
                                        lora=str(sdxl_dirs["lora"])))
    from diffusers import StableDiffusionXLInpaintPipeline

    assert isinstance(be.pipe, StableDiffusionXLInpaintPipeline)
    img = scene_image(seed=6)
    spill = SpillSpec(box=(16, 16, 48, 48), class_id=taxonomy.class_id("water"), seed=9, feather=8, strength=0.55,
                      prompt="a puddle", negative_prompt="cartoon")
    res = be.inpaint(img, [spill])
    p = res.params[0]
    assert p["prompt"] == "a puddle" and 0.2 <= p["lora_scale"] <= 0.4 and p["ip_ref"].startswith("ref")
    support = soft_mask(64, 64, spill.box, spill.feather, spill.opacity) > 0
    np.testing.assert_array_equal(res.image[~support], img[~support])
    assert np.abs(res.image.astype(int) - img)[support].mean() > 0


def test_crop_window_visible_mask_and_tight_box():
    # A small box in a big image gets a 512 window that holds its support and stays inside.
    assert crop_window((900, 100, 1000, 180), 1024, 1024) == (512, 0, 1024, 512)
    x1, y1, x2, y2 = crop_window((300, 300, 420, 380), 1024, 1024)
    assert x2 - x1 == 512 and y2 - y1 == 512 and x1 <= 300 - 64 and x2 >= 420 + 64
    assert crop_window((10, 10, 50, 50), 64, 60) == (2, 0, 58, 64)  # sides stay multiples of 8
    assert crop_window((0, 0, 900, 40), 1024, 1024)[2] == 1024  # a wide box widens the window
    before = np.zeros((20, 20, 3), np.uint8)
    after = before.copy()
    after[5:10, 6:12] = 80
    after[15, 15] = 40  # an isolated speck: above the threshold, but not its neighbourhood
    after[0, 19] = 9  # below the threshold
    m = visible_mask(before, after, np.ones((20, 20), bool))
    assert tight_box(m) == (6.0, 5.0, 12.0, 10.0)  # exactly the changed block, x2/y2 exclusive
    assert m.sum() == 30
    assert tight_box(np.zeros((4, 4), bool)) is None
    assert not visible_mask(before, after, np.zeros((20, 20), bool)).any()


def test_spill_errors(sdxl_dirs):
    be = make_spill_backend(_spill_opts(sdxl_dirs))
    with pytest.raises(UsageError, match="empty"):
        be.inpaint(scene_image(), [SpillSpec(box=(10, 10, 10, 20), class_id=1, seed=0)])
    with pytest.raises(UsageError, match="taxonomy"):
        be.inpaint(scene_image(), [SpillSpec(box=(10, 10, 20, 20), class_id=12, seed=0)])
    with pytest.raises(UsageError, match="uint8"):
        be.inpaint(scene_image().astype(np.float32), [])
    out = be.inpaint(scene_image(), [SpillSpec(box=(100, 100, 120, 120), class_id=1, seed=0, feather=5)])
    assert out.boxes == [None] and out.params[0]["visible_pixels"] == 0


def test_replace_keeps_options_frozen():
    o = DiffusionOptions(model="m")
    assert replace(o, compile=True).compile and not o.compile and o.min_levels == 8


def test_process_device_follows_local_rank(monkeypatch):
    from synspill.runtime import process_device

    monkeypatch.setenv("LOCAL_RANK", "1")
    assert process_device("cpu") == "cpu"  # no GPU here: auto stays on the CPU
    assert process_device("auto") in ("cpu", "cuda:1", "mps")


@pytest.mark.gpu
def test_cuda_bf16_batched_scenes_and_spills(sdxl_dirs):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    be = make_scene_backend(_scene_opts(sdxl_dirs, device="cuda", dtype="auto", batch_size=2, vae_slicing=True), {})
    assert be.pipe.unet.dtype in (torch.bfloat16, torch.float16) and be.device.startswith("cuda")
    a = be.generate(_specs([1, 2]))
    b = be.generate(_specs([2]))
    assert a[0].shape == (64, 64, 3) and np.abs(a[1].astype(int) - b[0]).max() <= 8  # half precision, batched
    sp = make_spill_backend(_spill_opts(sdxl_dirs, device="cuda"))
    img = scene_image(seed=5)
    spill = SpillSpec(box=(14, 16, 40, 36), class_id=1, seed=3, feather=6, strength=0.6)
    res = sp.inpaint(img, [spill])
    outside = soft_mask(64, 64, spill.box, spill.feather, spill.opacity) == 0
    np.testing.assert_array_equal(res.image[outside], img[outside])
