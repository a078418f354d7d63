"""Synthetic spill data: scene generation, box proposals and spill inpainting.

Two interchangeable backends per stage (see :mod:`synspill.synth.base`): SDXL diffusion
(:mod:`synspill.synth.sdxl`) for GPUs with real weights, and a procedural CPU renderer
(:mod:`synspill.synth.procedural`) that needs nothing downloaded.
"""
