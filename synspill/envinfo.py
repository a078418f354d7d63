"""Environment report: package versions (from metadata, no imports), accelerators, weight paths."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

from synspill import __version__
from synspill.runtime import hf_cache_dirs

PACKAGES = ("torch", "torchvision", "transformers", "diffusers", "peft", "bitsandbytes", "accelerate",
            "ultralytics", "rfdetr", "supervision", "pycocotools", "faster-coco-eval", "opencv-python-headless", "typer", "rich")


def package_versions() -> dict[str, str]:
    """Installed versions read from package metadata (nothing is imported)."""
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def collect(probe_torch: bool = True) -> dict[str, Any]:
    """Everything ``synspill env`` shows, as a flat dict."""
    info: dict[str, Any] = {"synspill": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
                            "cpu_count": os.cpu_count()}
    from synspill.runtime import available_cpus, resolve_threads

    info["cpus_available"] = available_cpus()  # affinity and cgroup quota
    info["compute_threads"] = resolve_threads()  # what training and inference use
    info.update(package_versions())
    if probe_torch:
        try:
            import torch

            info["cuda"] = torch.cuda.is_available()
            info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            info["mps"] = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
            info["torch_threads"] = torch.get_num_threads()
        except ImportError:
            info["cuda"] = "torch not installed"
    info["hf_cache"] = hf_cache_dirs()
    info["hf_hub_offline"] = os.environ.get("HF_HUB_OFFLINE", "unset")
    info["weights_dir"] = os.environ.get("SYNSPILL_WEIGHTS", "unset (set SYNSPILL_WEIGHTS to a folder of local weights)")
    return info
