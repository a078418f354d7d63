"""Tiny random SDXL model folders, built once per test session (offline, ~seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sdxl_dirs(tmp_path_factory) -> dict[str, Path]:
    """Folders: ``base`` (4-channel SDXL), ``inpaint`` (9-channel), ``ip`` (adapter + image_encoder/), ``lora``, ``refs``."""
    from tests.synth.tiny_sdxl import save_tiny_ip_adapter, save_tiny_lora, save_tiny_pipeline

    root = tmp_path_factory.mktemp("tiny-sdxl")
    save_tiny_pipeline(root / "base")
    save_tiny_pipeline(root / "inpaint", inpaint=True)
    (root / "ip").mkdir()
    save_tiny_ip_adapter(root / "ip")
    save_tiny_lora(root / "lora")
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "refs").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / "refs" / f"ref{i}.png")
    return {k: root / k for k in ("base", "inpaint", "ip", "lora", "refs")}


def scene_image(h: int = 64, w: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth synthetic scene (gradients + a few blocks), uint8 RGB."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w, y / h, 0.5 + 0.2 * np.sin(x / 5)], -1) * 200 + 20
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)
