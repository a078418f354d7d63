"""Synthetic spill data: scene generation, box proposals and spill inpainting.

Two interchangeable backends per stage (see :mod:`synspill.synth.base`): SDXL diffusion
(:mod:`synspill.synth.sdxl`) for GPUs with real weights, and a procedural CPU renderer
(:mod:`synspill.synth.procedural`) that needs nothing downloaded.
"""

#: Default smallest proposed box side, fraction of the image's shorter side (6 px at least).
MIN_BOX = 0.012
