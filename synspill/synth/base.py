"""Interfaces shared by the synthesis backends and the job runner.

Coordinates: spill boxes are absolute ``xyxy`` pixels of the scene image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from synspill.params import FromParams


@dataclass(frozen=True)
class SceneSpec:
    """One scene to generate.

    Attributes:
        seed: Per-image seed; the same spec gives the same image.
        scene_type: ``corridor``, ``control-room``, ``pump-room``, ``walkway``, ``tank-farm``, ``loading-bay`` ...
        width: Output width in pixels.
        height: Output height in pixels.
        prompt: Positive prompt (diffusion backends; recorded by all).
        negative_prompt: Negative prompt.
        params: Backend parameters actually used (sampled LoRA scale, ...), for the manifest.
    """

    seed: int
    scene_type: str
    width: int = 1024
    height: int = 1024
    prompt: str = ""
    negative_prompt: str = ""
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SpillSpec:
    """One spill to paint into a scene.

    Attributes:
        box: ``(x1, y1, x2, y2)`` absolute pixels: where the spill may appear.
        class_id: Taxonomy id (1-8).
        seed: Per-spill seed.
        feather: Gaussian feathering of the soft mask, pixels (paper: 50).
        opacity: Peak opacity of the soft mask (paper: 0.75).
        strength: Denoise strength for diffusion (paper: sampled in 0.5-0.6).
        prompt: Material prompt (diffusion).
        negative_prompt: Negative prompt (diffusion).
    """

    box: tuple[float, float, float, float]
    class_id: int
    seed: int
    feather: float = 50.0
    opacity: float = 0.75
    strength: float = 0.55
    prompt: str = ""
    negative_prompt: str = ""


@dataclass
class SpillResult:
    """A scene with spills painted in.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        masks: One ``(H, W)`` bool mask per spill: where it is *visible*.
        boxes: One tight ``(x1, y1, x2, y2)`` per spill around its visible pixels (None if invisible).
        params: Parameters actually used per spill (for the manifest).
    """

    image: np.ndarray
    masks: list[np.ndarray]
    boxes: list[tuple[float, float, float, float] | None]
    params: list[dict[str, Any]] = field(default_factory=list)


class SceneBackend(Protocol):
    """Makes clean background scenes."""

    name: str

    def generate(self, specs: list[SceneSpec]) -> list[np.ndarray]:
        """Render one ``(H, W, 3)`` uint8 RGB image per spec (a batch)."""
        ...


class SpillBackend(Protocol):
    """Paints spills into a scene inside given boxes."""

    name: str

    def inpaint(self, image: np.ndarray, spills: list[SpillSpec]) -> SpillResult:
        """Paint every spill of ``spills`` into ``image`` (``(H, W, 3)`` uint8 RGB)."""
        ...


#: Where SDXL-Turbo inpainting (stage 3) departs from the scene defaults of :class:`DiffusionOptions`.
INPAINT_DIFFUSION: dict[str, Any] = {"steps": 20, "guidance": 0.0, "scheduler": "euler_a"}


@dataclass(frozen=True)
class DiffusionOptions(FromParams):
    """Options of the SDXL backends (:mod:`synspill.synth.sdxl`), set from the CLI.

    The field defaults are the paper's Table 1 (scenes); :meth:`for_inpaint` starts from
    the stage-3 settings (:data:`INPAINT_DIFFUSION`) instead.

    Attributes:
        model: SDXL base (scenes) or SDXL-Turbo (inpaint) local folder or cached hub id.
        device: ``auto``, ``cpu``, ``cuda[:N]``.
        dtype: ``auto``, ``float32``, ``bfloat16``, ``float16``.
        steps: Denoising steps (scenes 64; inpaint: enough for differential thresholds).
        guidance: CFG scale (scenes 8.0; SDXL-Turbo 0.0).
        scheduler: ``dpmpp_2m_sde_karras`` (paper) or ``euler_a``.
        refs: Folder of IP-Adapter reference images (style photos / spill textures).
        ip_adapter: IP-Adapter folder (with ``image_encoder/``) and weight file name.
        ip_weight_name: Adapter weight file (paper: the "plus composition" SDXL adapter).
        ip_scale: IP-Adapter strength (paper: 0.6).
        lora: Style LoRA file or folder.
        lora_scale: ``(lo, hi)`` range the LoRA strength is sampled from (paper: 0.2-0.4).
        strength: ``(lo, hi)`` denoise strength range for inpainting (paper: 0.5-0.6).
        batch_size: Images per pipeline call.
        vae_slicing: Decode a batch one image at a time (less peak memory, same pixels).
        vae_tiling: Decode/encode in overlapping tiles (large images on small GPUs; may show faint seams).
        compile: ``torch.compile`` the UNet (pays off after warm-up on CUDA for long runs).
        min_levels: Inpainting: raise the step count until at least this many steps run, so the
            differential-diffusion change map has enough release thresholds (see
            :mod:`synspill.synth.differential`).
    """

    model: str
    device: str = "auto"
    dtype: str = "auto"
    steps: int = 64
    guidance: float = 8.0
    scheduler: str = "dpmpp_2m_sde_karras"
    refs: str | None = None
    ip_adapter: str | None = None
    ip_weight_name: str = "ip-adapter-plus_sdxl_vit-h.safetensors"
    ip_scale: float = 0.6
    lora: str | None = None
    lora_scale: tuple[float, float] = (0.2, 0.4)
    strength: tuple[float, float] = (0.5, 0.6)
    batch_size: int = 1
    vae_slicing: bool = False
    vae_tiling: bool = False
    compile: bool = False
    min_levels: int = 8

    @classmethod
    def for_inpaint(cls, params: dict[str, Any], where: str = "", **fixed: Any) -> DiffusionOptions:
        """Inpainting options: :data:`INPAINT_DIFFUSION`, then ``params`` (see :meth:`from_params`)."""
        return cls.from_params({**INPAINT_DIFFUSION, **params}, where, **fixed)
