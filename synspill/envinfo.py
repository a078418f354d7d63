"""Environment report: package versions (from metadata, no imports), accelerators, weight paths."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterable
from importlib import metadata
from typing import Any

from synspill import __version__
from synspill.runtime import hf_cache_dirs

PACKAGES = ("torch", "torchvision", "transformers", "diffusers", "peft", "bitsandbytes", "accelerate",
            "ultralytics", "rfdetr", "supervision", "pycocotools", "faster-coco-eval", "opencv-python-headless", "typer", "rich")


def versions(packages: Iterable[str], missing: str | None = None) -> dict[str, str]:
    """Installed versions of ``packages`` from their metadata (nothing is imported).

    Args:
        packages: Distribution names (``opencv-python-headless``, not ``cv2``); ``synspill``
            is this package's own ``__version__`` (also when run from a source tree).
        missing: What to record for a package that is not installed (None: leave it out).

    Returns:
        ``{package: version}`` in the order given; what run records and manifests store.
    """
    out = {}
    for p in packages:
        if p == "synspill":
            out[p] = __version__
            continue
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            if missing is not None:
                out[p] = missing
    return out


def package_versions() -> dict[str, str]:
    """Versions of everything ``synspill env`` reports (``not installed`` where missing)."""
    return versions(PACKAGES, missing="not installed")


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
