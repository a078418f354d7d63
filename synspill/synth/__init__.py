"""Synthetic spill data: scene generation, box proposals and spill inpainting.

Two interchangeable backends per stage (see :mod:`synspill.synth.base`): SDXL diffusion
(:mod:`synspill.synth.sdxl`) for GPUs with real weights, and a procedural CPU renderer
(:mod:`synspill.synth.procedural`) that needs nothing downloaded. The stages run as
resumable, shardable jobs: :mod:`synspill.synth.jobrunner` (manifest, shards, atomic
writes) under :mod:`synspill.synth.scenes` and :mod:`synspill.synth.inpaint`; box
proposals are :mod:`synspill.synth.propose`.
"""

from enum import Enum

#: Default smallest proposed box side, fraction of the image's shorter side (6 px at least).
MIN_BOX = 0.012

#: Ingredients of the procedural synthesis that ``SYNSPILL_SYNTH_ABLATE`` (comma-separated)
#: can switch off, to measure what each is worth (``benchmarks/``, docs/synth.md):
#: ``reflection`` (liquids mirror nothing), ``materials`` (every place gets a plain concrete
#: floor), ``distractors`` (no markings, mats, cables, people, signs, dry-floor glare) and
#: ``camera`` (no CCTV camera model: no blur, noise, on-screen text or resolution loss).
ABLATIONS = ("reflection", "materials", "distractors", "camera")


def ablated(name: str) -> bool:
    """Whether the ingredient ``name`` of :data:`ABLATIONS` is switched off in this process."""
    import os

    return name in {s.strip() for s in os.environ.get("SYNSPILL_SYNTH_ABLATE", "").split(",")}


class SynthBackend(str, Enum):
    """Who draws scenes and spills; ``auto``: sdxl when weights are configured, else procedural."""

    auto = "auto"
    procedural = "procedural"
    sdxl = "sdxl"


class Scheduler(str, Enum):
    """SDXL denoising scheduler; ``native`` keeps the checkpoint's own."""

    dpmpp_2m_sde_karras = "dpmpp_2m_sde_karras"
    euler_a = "euler_a"
    native = "native"
