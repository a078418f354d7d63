"""SDXL diffusion backends: scenes (SDXL 1.0 text-to-image) and spills (SDXL-Turbo + differential diffusion).

The job runner calls exactly two factories:

- :func:`make_scene_backend` -> :class:`SDXLSceneBackend` (``generate(specs)``), the
  paper's stage 1: SDXL 1.0, 1024 x 1024, DPM++ 2M SDE with Karras sigmas, 64 steps,
  CFG 8, optional IP-Adapter style references (scale 0.6) and a style LoRA whose
  strength is sampled per image in ``opts.lora_scale``.
- :func:`make_spill_backend` -> :class:`SDXLSpillBackend` (``inpaint(image, spills)``),
  stage 3: per spill a soft mask (:func:`synspill.synth.masks.soft_mask`) used as a
  differential-diffusion change map over the stock SDXL img2img pipeline (SDXL-Turbo or
  any 4-channel SDXL) or the SDXL inpaint pipeline (9-channel inpainting UNets).

Weights come only from local folders or the local Hugging Face cache
(:func:`synspill.runtime.resolve_weights`); nothing is downloaded. Every random choice
(prompt variation, LoRA strength, reference image, diffusion noise) is a function of the
spec's seed, so a spec always regenerates the same image on the same hardware/dtype.

Labels. A spill's visible mask is measured from the change actually made: the per-pixel
maximum over RGB of ``|new - old|`` (uint8 levels) above ``visible_threshold`` (default 10
levels) with a 3 x 3 neighbourhood mean above half of it (no isolated specks), inside the
soft mask's support. Its
tight ``xyxy`` box is the bounding box of that mask (None if nothing visibly changed).
Later spills occlude earlier ones: pixels a later spill visibly changed are removed from
the earlier spills' masks before their boxes are computed.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from synspill.boxes import tight_box
from synspill.errors import ModelNotFound, UsageError
from synspill.io import IMAGE_SUFFIXES, list_images
from synspill.synth import Scheduler, prompting
from synspill.synth.base import DiffusionOptions, SceneSpec, SpillResult, SpillSpec

log = logging.getLogger(__name__)

SCENE_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
SPILL_MODEL = "stabilityai/sdxl-turbo"
SCHEDULERS = tuple(s.value for s in Scheduler)
LORA_NAME = "style"
VISIBLE_THRESHOLD = 10.0
WINDOW = 512
CONTEXT = 64


# ----------------------------------------------------------------------------- loading


def make_scheduler(name: str, config: Any) -> Any:
    """A scheduler from a pipeline's scheduler config.

    Args:
        name: ``dpmpp_2m_sde_karras`` (the paper: DPM++ 2M SDE, Karras sigmas), ``euler_a``
            (Euler ancestral; keeps e.g. SDXL-Turbo's trailing timestep spacing) or
            ``native`` (None: keep the checkpoint's own scheduler).
        config: The pipeline's ``scheduler.config``.
    """
    from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler

    if name == "dpmpp_2m_sde_karras":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="sde-dpmsolver++",
                                                       use_karras_sigmas=True, solver_order=2)
    if name == "euler_a":
        return EulerAncestralDiscreteScheduler.from_config(config)
    if name == "native":
        return None
    raise UsageError(f"--scheduler {name!r} is unknown; use one of {', '.join(SCHEDULERS)}")


def _pipeline_folder(model: str, what: str, hint: str) -> Path:
    """Resolve ``model`` to a local diffusers pipeline folder (``model_index.json``)."""
    from synspill.runtime import resolve_weights

    path = Path(resolve_weights(model, what, hint=hint))
    if path.is_file():
        raise ModelNotFound(f"{what} {model!r} is a single file; synspill loads diffusers folders (with model_index.json). "
                            f"{hint}")
    if not (path / "model_index.json").is_file():
        raise ModelNotFound(f"{what} {model!r}: {path} is not a diffusers pipeline folder (no model_index.json). {hint}")
    return path


def _variant(folder: Path) -> str | None:
    """``"fp16"`` when the UNet ships only fp16-variant weights (e.g. a partial SDXL-Turbo download)."""
    unet = folder / "unet"
    if not unet.is_dir():
        return None
    names = [p.name for p in unet.iterdir()]
    plain = any(n.startswith("diffusion_pytorch_model") and ".fp16." not in n for n in names)
    return "fp16" if not plain and any(".fp16." in n for n in names) else None


def _unet_in_channels(folder: Path) -> int:
    cfg = folder / "unet" / "config.json"
    try:
        return int(json.loads(cfg.read_text())["in_channels"])
    except (OSError, ValueError, KeyError) as e:
        raise ModelNotFound(f"{cfg}: unreadable UNet config ({e}); re-download the model folder") from None


def load_pipeline(opts: DiffusionOptions, task: str) -> tuple[Any, str, Any]:
    """Load and configure a stock diffusers SDXL pipeline from local weights.

    Args:
        opts: Backend options (model, device, dtype, scheduler, IP-Adapter, LoRA, VAE, compile).
        task: ``"text2img"`` (scenes) or ``"edit"`` (img2img for 4-channel UNets, inpaint for 9-channel).

    Returns:
        ``(pipe, device, dtype)``.

    Raises:
        ModelNotFound: Weights (model, IP-Adapter, image encoder, LoRA) are not local.
        UsageError: An option is invalid.
    """
    from diffusers import (
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLInpaintPipeline,
        StableDiffusionXLPipeline,
    )

    from synspill.runtime import process_device, resolve_dtype

    device = process_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    default = SCENE_MODEL if task == "text2img" else SPILL_MODEL
    hint = (f"Fetch it once on a machine with network (`huggingface-cli download {default}`) and pass the model id "
            f"or its folder with --model; see docs/synth-sdxl.md")
    what = "SDXL scene model" if task == "text2img" else "SDXL inpainting model"
    folder = _pipeline_folder(opts.model, what, hint)
    cls: Any
    if task == "text2img":
        cls = StableDiffusionXLPipeline
    elif task == "edit":
        cls = StableDiffusionXLInpaintPipeline if _unet_in_channels(folder) == 9 else StableDiffusionXLImg2ImgPipeline
    else:
        raise ValueError(f"task {task!r}")
    try:
        pipe = cls.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True, variant=_variant(folder),
                                   add_watermarker=False)
    except (OSError, ValueError) as e:
        raise ModelNotFound(f"{what} {opts.model!r}: loading {folder} failed ({type(e).__name__}: {e}). {hint}") from None
    configure_pipeline(pipe, opts, device, dtype)
    log.info("loaded %s from %s on %s (%s), scheduler %s", cls.__name__, folder, device, dtype,
             type(pipe.scheduler).__name__)
    return pipe, device, dtype


def configure_pipeline(pipe: Any, opts: DiffusionOptions, device: str, dtype: Any) -> Any:
    """Apply the options to a loaded (or in-memory) SDXL pipeline, in place.

    Scheduler, IP-Adapter + image encoder, LoRA, VAE slicing/tiling, device; on CUDA
    TF32 matmuls and a channels-last UNet; optionally ``torch.compile`` of the UNet.
    Attention uses PyTorch SDPA (diffusers' default processor on torch 2).

    Returns:
        ``pipe``.
    """
    import torch

    sched = make_scheduler(opts.scheduler, pipe.scheduler.config)
    if sched is not None:
        pipe.scheduler = sched
    if opts.ip_adapter or opts.refs:
        _load_ip_adapter(pipe, opts, dtype)
    if opts.lora:
        _load_lora(pipe, opts)
    if opts.vae_slicing:
        pipe.vae.enable_slicing()
    if opts.vae_tiling:
        pipe.vae.enable_tiling()
    if pipe.unet.dtype != dtype:
        pipe.to(dtype=dtype)
    pipe.to(device)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        pipe.unet.to(memory_format=torch.channels_last)
    if opts.compile:
        if opts.lora:
            log.warning("--compile with a LoRA: every new sampled LoRA strength may recompile the UNet")
        pipe.unet.compile(dynamic=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _load_ip_adapter(pipe: Any, opts: DiffusionOptions, dtype: Any) -> None:
    """Load the IP-Adapter (``opts.ip_adapter``: folder or weight file) and its CLIP image encoder."""
    if not opts.ip_adapter:
        raise UsageError("--refs needs --ip-adapter: the IP-Adapter folder (with image_encoder/); see docs/synth-sdxl.md")
    if not opts.refs:
        raise UsageError("--ip-adapter needs --refs: a folder of reference images")
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    from synspill.runtime import resolve_weights

    hint = ("Get it with `huggingface-cli download h94/IP-Adapter sdxl_models/ip-adapter-plus_sdxl_vit-h.safetensors "
            "models/image_encoder/config.json models/image_encoder/model.safetensors` (see docs/synth-sdxl.md)")
    root = Path(resolve_weights(opts.ip_adapter, "IP-Adapter", hint=hint))
    cands = [root] if root.is_file() else [root / opts.ip_weight_name, root / "sdxl_models" / opts.ip_weight_name]
    weight = next((c for c in cands if c.is_file()), None)
    if root.is_file():
        root = root.parent
    if weight is None:
        raise ModelNotFound(f"IP-Adapter weight {opts.ip_weight_name!r} not found in {root} (looked at "
                            f"{', '.join(str(c) for c in cands)}); pass the file or set the weight name. {hint}")
    # h94/IP-Adapter keeps the ViT-H encoder in models/image_encoder and the bigG one in
    # sdxl_models/image_encoder: "vit-h" and the (ViT-H) composition adapters need the former.
    vit_h = "vit-h" in weight.name.lower() or "composition" in weight.name.lower()
    enc_cands = [root / "image_encoder", weight.parent / "image_encoder", root / "models" / "image_encoder"]
    if vit_h:
        enc_cands = [root / "image_encoder", root / "models" / "image_encoder", weight.parent / "image_encoder"]
    enc = next((c for c in enc_cands if (c / "config.json").is_file()), None)
    if enc is None:
        raise ModelNotFound(f"IP-Adapter image encoder not found (looked for image_encoder/config.json in "
                            f"{', '.join(str(c) for c in enc_cands)}); the plus adapters need the ViT-H encoder; {hint}")
    try:
        encoder: Any = CLIPVisionModelWithProjection.from_pretrained(str(enc), dtype=dtype, local_files_only=True)
        size = int(encoder.config.image_size)  # 224 for the ViT-H encoder of the plus adapters
        processor = (CLIPImageProcessor.from_pretrained(str(enc)) if (enc / "preprocessor_config.json").is_file()
                     else CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}))
        pipe.register_modules(image_encoder=encoder, feature_extractor=processor)
        pipe.load_ip_adapter(str(weight.parent), subfolder="", weight_name=weight.name, image_encoder_folder=None,
                             local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelNotFound(f"IP-Adapter {weight} / {enc} failed to load ({type(e).__name__}: {e}); "
                            "check that the adapter matches the model (SDXL) and the image encoder") from None
    pipe.set_ip_adapter_scale(opts.ip_scale)


def _load_lora(pipe: Any, opts: DiffusionOptions) -> None:
    """Load the style LoRA under the adapter name ``style`` (strength set per image)."""
    from synspill.runtime import resolve_weights

    path = Path(resolve_weights(str(opts.lora), "style LoRA"))
    kwargs: dict[str, Any] = {}
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if not (path / "pytorch_lora_weights.safetensors").is_file():
            if len(files) != 1:
                raise ModelNotFound(f"style LoRA folder {path} holds {len(files)} .safetensors files; pass the file itself")
            kwargs["weight_name"] = files[0].name
    try:
        pipe.load_lora_weights(str(path), adapter_name=LORA_NAME, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelNotFound(f"style LoRA {path} failed to load ({type(e).__name__}: {e}); it must be an SDXL LoRA") from None
    lo, hi = opts.lora_scale
    if not 0.0 <= lo <= hi:
        raise UsageError(f"--lora-scale {opts.lora_scale}: need 0 <= low <= high (paper: 0.2-0.4)")


def list_refs(folder: str | Path) -> list[Path]:
    """Reference images in ``folder`` (sorted, so choices by seed are stable).

    Raises:
        UsageError: The folder is missing or holds no images.
    """
    p = Path(folder)
    if not p.is_dir():
        raise UsageError(f"--refs {str(folder)!r} is not a folder; pass a folder of reference photos")
    refs = list_images(p)
    if not refs:
        raise UsageError(f"--refs {str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return refs


class _Conditioning:
    """Per-seed LoRA strength and IP-Adapter reference shared by both backends."""

    def __init__(self, pipe: Any, opts: DiffusionOptions, device: str) -> None:
        self.pipe, self.opts, self.device = pipe, opts, device
        self.refs = list_refs(opts.refs) if opts.refs else []
        self._embeds: dict[tuple[Path, bool], Any] = {}

    def lora_scale(self, seed: int) -> float | None:
        if not self.opts.lora:
            return None
        return prompting.sample_uniform(self.opts.lora_scale, seed, "lora-scale")

    def set_lora(self, scale: float | None) -> None:
        if scale is not None:
            self.pipe.set_adapters([LORA_NAME], adapter_weights=[scale])

    def ref(self, seed: int) -> Path | None:
        return prompting.choose(self.refs, seed, "ip-ref") if self.refs else None

    def ref_name(self, ref: Path | None) -> str | None:
        """The reference's path relative to ``opts.refs`` (for the manifest)."""
        return ref.relative_to(Path(str(self.opts.refs))).as_posix() if ref is not None else None

    def call(self, refs: list[Path | None], cfg: bool, **kwargs: Any) -> Any:
        """Call the pipeline with one IP-Adapter reference per image of the batch.

        The stock pipelines repeat precomputed ``ip_adapter_image_embeds`` ``batch_size``
        times (they expect one reference for the whole batch), and the IP attention then
        folds the extra rows into the token axis: every image would attend to every
        reference of the batch. So for the duration of the call the pipeline's
        ``prepare_ip_adapter_image_embeds`` returns our per-image embeddings unchanged.
        """
        emb = self.embeds(refs, cfg)
        if emb is None:
            return self.pipe(**kwargs)
        self.pipe.prepare_ip_adapter_image_embeds = lambda *a, **k: emb
        try:
            return self.pipe(ip_adapter_image_embeds=emb, **kwargs)
        finally:
            del self.pipe.prepare_ip_adapter_image_embeds

    def embeds(self, refs: list[Path | None], cfg: bool) -> list[Any] | None:
        """Per-image ``ip_adapter_image_embeds``: one tensor ``(2B if cfg else B, 1, ...)``, negatives first."""
        if not self.refs:
            return None
        import torch
        from PIL import Image

        pos, neg = [], []
        for r in refs:
            if r is None:
                raise ValueError("a reference is missing for an image of the batch")
            key = (r, cfg)
            if key not in self._embeds:
                with Image.open(r) as im:
                    img = im.convert("RGB")
                (e,) = self.pipe.prepare_ip_adapter_image_embeds([img], None, self.device, 1, cfg)
                self._embeds[key] = e
            e = self._embeds[key]
            if cfg:
                n, p = e.chunk(2)
                neg.append(n)
                pos.append(p)
            else:
                pos.append(e)
        return [torch.cat(neg + pos) if cfg else torch.cat(pos)]


def _cfg(pipe: Any, guidance: float) -> bool:
    return guidance > 1.0 and pipe.unet.config.time_cond_proj_dim is None


def _to_uint8(images: Any) -> list[np.ndarray]:
    arr = np.asarray(images, dtype=np.float32)
    return list((np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8))


def _generators(seeds: list[int]) -> list[Any]:
    import torch

    # CPU generators: the same seed gives the same noise on any device.
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


# ----------------------------------------------------------------------------- scenes


class SDXLSceneBackend:
    """Stage 1: SDXL text-to-image scenes (see :func:`make_scene_backend`).

    ``generate`` fills each spec's ``params`` dict (the manifest record) with what it used:
    ``model``, ``scheduler``, ``steps``, ``guidance``, ``prompt``, ``negative_prompt``,
    ``lora_scale`` (None without a LoRA), ``ip_ref`` (path relative to ``opts.refs`` or None), ``ip_scale``.
    """

    name = "sdxl"

    def __init__(self, pipe: Any, opts: DiffusionOptions, scene_prompts: dict[str, Any], device: str = "cpu") -> None:
        self.pipe, self.opts, self.device = pipe, opts, device
        self.scene_prompts = scene_prompts or prompting.load_scene_prompts()
        self.cond = _Conditioning(pipe, opts, device)

    def generate(self, specs: list[SceneSpec]) -> list[np.ndarray]:
        """Render one ``(H, W, 3)`` uint8 RGB image per spec.

        Specs are batched ``opts.batch_size`` at a time; a batch shares the image size and
        the LoRA strength, so with a LoRA (strength sampled per image) images run one by one.

        Raises:
            UsageError: A size is not a multiple of 8.
        """
        plans = []
        for i, s in enumerate(specs):
            if s.width % 8 or s.height % 8 or s.width <= 0 or s.height <= 0:
                raise UsageError(f"scene size {s.width}x{s.height} (seed {s.seed}) must be positive multiples of 8 for SDXL")
            pos, neg = (s.prompt, s.negative_prompt) if s.prompt else prompting.scene_prompt(
                self.scene_prompts, s.scene_type or None, s.seed)
            plans.append((i, s, pos, neg if s.prompt else (s.negative_prompt or neg),
                          self.cond.lora_scale(s.seed), self.cond.ref(s.seed)))
        out: list[np.ndarray | None] = [None] * len(specs)
        groups: dict[tuple[int, int, float | None], list[tuple]] = {}
        for p in plans:
            groups.setdefault((p[1].width, p[1].height, p[4]), []).append(p)
        bs = max(1, int(self.opts.batch_size))
        cfg = _cfg(self.pipe, self.opts.guidance)
        for (w, h, scale), items in groups.items():
            for k in range(0, len(items), bs):
                chunk = items[k:k + bs]
                self.cond.set_lora(scale)
                res = self.cond.call([p[5] for p in chunk], cfg, prompt=[p[2] for p in chunk],
                                     negative_prompt=[p[3] for p in chunk], width=w, height=h,
                                     num_inference_steps=self.opts.steps, guidance_scale=self.opts.guidance,
                                     generator=_generators([p[1].seed for p in chunk]), output_type="np")
                for p, img in zip(chunk, _to_uint8(res.images), strict=True):
                    out[p[0]] = img
                    p[1].params.update(self._params(p))
        return [o for o in out if o is not None]

    def _params(self, p: tuple) -> dict[str, Any]:
        return {"model": self.opts.model, "scheduler": type(self.pipe.scheduler).__name__,
                "scheduler_option": self.opts.scheduler, "steps": self.opts.steps, "guidance": self.opts.guidance,
                "prompt": p[2], "negative_prompt": p[3], "lora_scale": p[4],
                "ip_ref": self.cond.ref_name(p[5]),
                "ip_scale": self.opts.ip_scale if p[5] is not None else None}


def make_scene_backend(opts: DiffusionOptions, scene_prompts: dict[str, Any]) -> SDXLSceneBackend:
    """The SDXL scene backend (stage 1).

    Args:
        opts: Options (``opts.model``: SDXL 1.0 base folder or cached hub id; paper defaults
            1024 px, ``dpmpp_2m_sde_karras``, 64 steps, CFG 8; ``refs`` + ``ip_adapter`` for
            style references; ``lora`` + ``lora_scale`` range).
        scene_prompts: A scene prompt set (:func:`synspill.synth.prompting.load_scene_prompts`);
            used for specs whose ``prompt`` is empty. ``{}`` loads the shipped one.

    Raises:
        ModelNotFound: Weights are not local (the message says how to get them).
    """
    pipe, device, _ = load_pipeline(opts, "text2img")
    return SDXLSceneBackend(pipe, opts, scene_prompts, device)


# ----------------------------------------------------------------------------- spills


def crop_window(support: tuple[int, int, int, int], height: int, width: int, min_size: int = WINDOW,
                context: int = CONTEXT, align: int = 64) -> tuple[int, int, int, int]:
    """Region of the image to run diffusion on for one spill.

    The window covers the soft mask's support plus ``context`` pixels each side, is at
    least ``min_size`` (SDXL-Turbo's native 512 px) where the image allows, is rounded up
    to ``align`` and kept inside the image with sides that are multiples of 8.

    Args:
        support: ``(x1, y1, x2, y2)`` absolute pixels (x2/y2 exclusive) where the change map is > 0.
        height: Image height.
        width: Image width.

    Returns:
        ``(x1, y1, x2, y2)`` absolute pixels, x2/y2 exclusive.
    """
    def axis(a: int, b: int, n: int) -> tuple[int, int]:
        limit = n - n % 8
        if limit < 8:
            raise UsageError(f"image side {n} px is too small for SDXL (needs >= 8)")
        size = max(b - a + 2 * context, min(min_size, limit))
        size = min(int(math.ceil(size / align) * align), limit)
        start = int(round((a + b) / 2 - size / 2))
        start = min(max(start, 0), n - size)
        return start, start + size

    x1, x2 = axis(support[0], support[2], width)
    y1, y2 = axis(support[1], support[3], height)
    return x1, y1, x2, y2


def visible_mask(before: np.ndarray, after: np.ndarray, support: np.ndarray,
                 threshold: float = VISIBLE_THRESHOLD) -> np.ndarray:
    """Pixels a spill visibly changed.

    A pixel is visible when its change (max over RGB of ``|after - before|``, uint8 levels)
    exceeds ``threshold`` and the mean change of its 3 x 3 neighbourhood exceeds
    ``threshold / 2`` (drops isolated specks), inside ``support``.

    Args:
        before: ``(H, W, 3)`` uint8 RGB before the spill.
        after: ``(H, W, 3)`` uint8 RGB after.
        support: ``(H, W)`` bool, where the change map was > 0.
        threshold: Minimum change in uint8 levels.

    Returns:
        ``(H, W)`` bool mask.
    """
    d = np.abs(after.astype(np.int16) - before.astype(np.int16)).max(axis=-1).astype(np.float32)
    p = np.pad(d, 1)
    h, w = d.shape
    mean = sum(p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9.0
    return (d > threshold) & (mean > threshold / 2) & support


class SDXLSpillBackend:
    """Stage 3: spills painted with differential diffusion (see :func:`make_spill_backend`)."""

    name = "sdxl-diffdiff"

    def __init__(self, pipe: Any, opts: DiffusionOptions, spill_prompts: dict[str, Any] | None = None,
                 device: str = "cpu", window: int = WINDOW, visible_threshold: float = VISIBLE_THRESHOLD) -> None:
        from synspill.synth.differential import DifferentialDiffusion

        self.pipe, self.opts, self.device = pipe, opts, device
        self.diff = DifferentialDiffusion(pipe)
        self.spill_prompts = spill_prompts or prompting.load_spill_prompts()
        self.cond = _Conditioning(pipe, opts, device)
        self.window, self.visible_threshold = window, visible_threshold

    def inpaint(self, image: np.ndarray, spills: list[SpillSpec]) -> SpillResult:
        """Paint ``spills`` into ``image`` one after another.

        Each spill: soft mask from its box/feather/opacity -> a crop window around it ->
        differential diffusion at ``spec.strength`` with the class prompt, the sampled LoRA
        strength and a reference image -> pasted back (pixels where the mask is 0 are
        untouched) -> visible mask and tight box measured from the change (module docstring).

        Args:
            image: ``(H, W, 3)`` uint8 RGB scene.
            spills: The spills (boxes are absolute ``xyxy``).

        Returns:
            A :class:`SpillResult`; ``params[i]`` holds what spill ``i`` used (strength,
            steps, steps_run, guidance, prompt, negative_prompt, lora_scale, ip_ref,
            window xyxy, box_drawn xyxy, visible_pixels).
        """
        from synspill import taxonomy
        from synspill.synth.differential import steps_for_levels
        from synspill.synth.masks import soft_mask

        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise UsageError(f"scene image must be (H, W, 3) uint8 RGB, got {img.dtype} {img.shape}")
        cur = img.copy()
        H, W = cur.shape[:2]
        masks: list[np.ndarray] = []
        params: list[dict[str, Any]] = []
        cfg = _cfg(self.pipe, self.opts.guidance)
        for spec in spills:
            cid = taxonomy.class_id(spec.class_id)
            x1, y1, x2, y2 = spec.box
            if not (x2 > x1 and y2 > y1):
                raise UsageError(f"spill box {spec.box} (seed {spec.seed}) is empty; boxes are absolute x1, y1, x2, y2")
            cmap = soft_mask(H, W, spec.box, spec.feather, spec.opacity)
            rows, cols = np.flatnonzero(cmap.any(axis=1)), np.flatnonzero(cmap.any(axis=0))
            pos, neg = (spec.prompt, spec.negative_prompt) if spec.prompt else prompting.spill_prompt(
                self.spill_prompts, cid, spec.seed)
            rec: dict[str, Any] = {"strength": spec.strength, "feather": spec.feather, "opacity": spec.opacity,
                                   "prompt": pos, "negative_prompt": neg, "guidance": self.opts.guidance,
                                   "box_drawn": [float(v) for v in spec.box], "model": self.opts.model}
            if rows.size == 0:  # the box lies outside the image
                masks.append(np.zeros((H, W), bool))
                params.append({**rec, "visible_pixels": 0, "window": None})
                continue
            win = crop_window((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1), H, W, self.window)
            wx1, wy1, wx2, wy2 = win
            steps = steps_for_levels(spec.strength, self.opts.min_levels, self.opts.steps)
            scale = self.cond.lora_scale(spec.seed)
            self.cond.set_lora(scale)
            ref = self.cond.ref(spec.seed)
            kw: dict[str, Any] = {}
            emb = self.cond.embeds([ref], cfg)
            if emb is not None:
                kw["ip_adapter_image_embeds"] = emb
            res = self.diff(cur[wy1:wy2, wx1:wx2], cmap[wy1:wy2, wx1:wx2], strength=spec.strength,
                            num_inference_steps=steps, generator=_generators([spec.seed])[0], prompt=pos,
                            negative_prompt=neg, guidance_scale=self.opts.guidance, **kw)
            new = cur.copy()
            new[wy1:wy2, wx1:wx2] = res.images[0]
            vis = visible_mask(cur, new, cmap > 0, self.visible_threshold)
            for m in masks:  # later spills occlude earlier ones
                m &= ~vis
            masks.append(vis)
            cur = new
            params.append({**rec, "steps": steps, "steps_run": res.steps_run, "lora_scale": scale,
                           "ip_ref": self.cond.ref_name(ref), "window": [wx1, wy1, wx2, wy2],
                           "visible_threshold": self.visible_threshold})
        for p, m in zip(params, masks, strict=True):
            p["visible_pixels"] = int(m.sum())
        return SpillResult(image=cur, masks=masks, boxes=[tight_box(m) for m in masks], params=params)


def make_spill_backend(opts: DiffusionOptions) -> SDXLSpillBackend:
    """The SDXL spill backend (stage 3): differential diffusion with soft masks.

    Args:
        opts: Options (``opts.model``: SDXL-Turbo or another SDXL folder/cached id; a
            9-channel inpainting UNet selects the inpaint pipeline; ``steps`` is the lower
            bound of scheduler steps, raised until ``min_levels`` steps run; ``guidance``
            0 for Turbo; ``refs`` + ``ip_adapter`` for spill-texture references; ``lora``).
            Each spill's strength comes from ``SpillSpec.strength`` (the runner samples it
            in ``opts.strength``).

    Raises:
        ModelNotFound: Weights are not local (the message says how to get them).
    """
    pipe, device, _ = load_pipeline(opts, "edit")
    return SDXLSpillBackend(pipe, opts, prompting.load_spill_prompts(), device)
