"""Device, dtype, seeding and quantisation: the only place that resolves ``auto``.

Also the only place that reads the launcher's process variables (``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, set by ``torchrun`` / ``accelerate launch``). Nothing here imports torch at
module level; each function imports it when called.
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any

from synspill.errors import DeviceError, UsageError

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


class Quant(str, Enum):
    """Weight quantisation for loading large models (bitsandbytes)."""

    none = "none"
    int4 = "4bit"
    int8 = "8bit"


class DType(str, Enum):
    """Compute dtype; ``auto`` picks bf16 where supported, fp16 on older CUDA, fp32 on CPU."""

    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


def resolve_device(spec: str = "auto") -> str:
    """Turn a device string into a concrete, available torch device string.

    Args:
        spec: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Returns:
        A device string such as ``"cpu"`` or ``"cuda:0"``.

    Raises:
        UsageError: The string is not a device name.
        DeviceError: The device does not exist on this machine (no CUDA, index out of range).
    """
    m = _DEVICE_RE.match(spec.strip().lower())
    if not m:
        raise UsageError(f"--device {spec!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    kind, index = m.group(1), m.group(2)
    import torch

    if kind == "auto":
        if torch.cuda.is_available():
            return "cuda:0"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if kind == "cpu":
        if index is not None:
            raise UsageError(f"--device {spec!r}: the CPU takes no index; use cpu")
        return "cpu"
    if kind == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError(f"--device {spec!r}: Apple MPS is not available here; use cpu or auto")
        return "mps"
    if not torch.cuda.is_available():
        raise DeviceError(
            f"--device {spec!r}: CUDA is not available on this machine "
            f"(torch {torch.__version__}); use --device cpu or auto"
        )
    n = torch.cuda.device_count()
    i = int(index or 0)
    if i >= n:
        raise DeviceError(f"--device {spec!r}: only {n} CUDA device(s) (0-{n - 1}); pick one of them")
    return f"cuda:{i}"


def world_size() -> int:
    """Processes launched together (``WORLD_SIZE``; 1 when run alone)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def local_world_size() -> int:
    """Processes launched together on this machine (``LOCAL_WORLD_SIZE``, else ``WORLD_SIZE``; 1 alone)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE") or world_size()))


def process_rank() -> int:
    """This process's global rank (``RANK``, else ``LOCAL_RANK``; 0 when run alone)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0)


def is_main_process() -> bool:
    """True for rank 0 (the process that owns output folders and run records)."""
    return process_rank() == 0


def launched_shard() -> tuple[int, int] | None:
    """``(RANK, WORLD_SIZE)`` when a launcher set both, else None."""
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if rank is None or world is None:
        return None
    return int(rank), int(world)


def process_device(spec: str) -> str:
    """Resolve ``--device``; under ``accelerate launch``/``torchrun`` ``auto``/``cuda`` mean this process's GPU.

    Each launched process has ``LOCAL_RANK``; without this every process would pick
    ``cuda:0``. An explicit ``cuda:N`` is kept as given.
    """
    device = resolve_device(spec)
    rank = os.environ.get("LOCAL_RANK")
    if rank is not None and rank.isdigit() and spec.strip().lower() in ("auto", "cuda") and device.startswith("cuda"):
        device = resolve_device(f"cuda:{rank}")
    return device


def resolve_dtype(spec: str | DType = "auto", device: str = "cpu") -> Any:
    """Pick a torch dtype for ``device``.

    ``auto``: bfloat16 on CUDA with bf16 support (Ampere+), float16 on older CUDA and MPS,
    float32 on CPU. An explicit half dtype on CPU is allowed (slow but correct) except
    float16, which many CPU kernels lack.

    Args:
        spec: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
        device: A resolved device string (see :func:`resolve_device`).

    Returns:
        A ``torch.dtype``.
    """
    import torch

    value = spec.value if isinstance(spec, DType) else str(spec)
    if value not in {d.value for d in DType}:
        raise UsageError(f"--dtype {value!r} is not a dtype; use auto, float32, bfloat16 or float16")
    if value == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device == "mps":
            return torch.float16
        return torch.float32
    if value == "float16" and device == "cpu":
        raise DeviceError("--dtype float16 is not supported on the CPU; use float32 or bfloat16")
    return getattr(torch, value)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices) for reproducible runs.

    Args:
        seed: The seed.
        deterministic: Also ask torch for deterministic kernels (slower on GPU).
    """
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    import numpy as np

    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:  # the data layer may run without torch
        return
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass(frozen=True)
class QuantSpec:
    """What to ask bitsandbytes for; turned into a ``BitsAndBytesConfig`` by :func:`quant_config`."""

    mode: Quant = Quant.none
    compute_dtype: str = "bfloat16"
    quant_type: str = "nf4"
    double_quant: bool = True

    def __post_init__(self) -> None:
        if self.quant_type not in {"nf4", "fp4"}:
            raise UsageError(f"4-bit quant type {self.quant_type!r} is unknown; use nf4 or fp4")
        if self.compute_dtype not in {"float32", "bfloat16", "float16"}:
            raise UsageError(f"quant compute dtype {self.compute_dtype!r} is unknown; use bfloat16, float16 or float32")


def quant_config(spec: QuantSpec | Quant | str, device: str = "cpu") -> Any | None:
    """Build a transformers ``BitsAndBytesConfig`` from ``spec`` (None for no quantisation).

    Args:
        spec: The quantisation request (``none``, ``4bit``, ``8bit`` or a :class:`QuantSpec`).
        device: The resolved device the model will live on.

    Raises:
        DeviceError: bitsandbytes is missing, or 8-bit is requested on a CPU/MPS device
            (bitsandbytes' int8 matmul needs CUDA; 4-bit NF4 runs on CPU).
    """
    if not isinstance(spec, QuantSpec):
        try:
            spec = QuantSpec(mode=Quant(spec))
        except ValueError as e:
            raise UsageError(f"--quant {spec!r} is unknown; use none, 4bit or 8bit") from e
    if spec.mode is Quant.none:
        return None
    if device == "mps":
        raise DeviceError(f"--quant {spec.mode.value} needs CUDA or CPU (bitsandbytes); MPS is unsupported")
    if spec.mode is Quant.int8 and not device.startswith("cuda"):
        raise DeviceError("--quant 8bit needs a CUDA GPU (bitsandbytes int8); use --quant 4bit or none on CPU")
    try:
        import_quietly("bitsandbytes")  # it warns on import about optional CPU kernels it cannot fetch
    except ImportError as e:
        raise DeviceError(f"--quant {spec.mode.value} needs bitsandbytes: pip install bitsandbytes ({e})") from e
    import torch
    from transformers import BitsAndBytesConfig

    if spec.mode is Quant.int8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=spec.quant_type,
        bnb_4bit_use_double_quant=spec.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, spec.compute_dtype),
    )


def hf_cache_dirs() -> list[str]:
    """Folders where Hugging Face weights are looked up, without importing huggingface_hub."""
    home = os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return [hub]


def resolve_weights(model: str, what: str = "model", hint: str | None = None) -> str:
    """Resolve a local path or a hub id from the *local* cache only; never downloads.

    Args:
        model: A folder/file path, or a Hugging Face id like ``Qwen/Qwen2.5-VL-7B-Instruct``.
        what: Words for the error message (``"SDXL base"``, ``"Qwen2.5-VL"``).
        hint: How to get the weights, replacing the generic ``huggingface-cli download``
            advice (so a caller's own advice is not given twice).

    Returns:
        A local filesystem path.

    Raises:
        ModelNotFound: Nothing local; the message says how to fetch the weights.
    """
    from synspill.errors import ModelNotFound

    if os.path.exists(model):
        return model
    if re.match(r"^[\w.-]+/[\w.-]+$", model):
        from huggingface_hub import snapshot_download

        try:
            return snapshot_download(model, local_files_only=True)
        except Exception as e:  # LocalEntryNotFoundError and friends
            advice = hint or (f"Fetch it once on a machine with network: `huggingface-cli download {model}`, "
                              "or pass a local folder")
            raise ModelNotFound(
                f"{what} {model!r} is not in the local Hugging Face cache ({hf_cache_dirs()[0]}, {type(e).__name__}). {advice}"
            ) from None
    raise ModelNotFound(f"{what} {model!r}: no such file or folder. {hint or 'Pass a local path or a Hugging Face id'}")


# ---- third-party noise -----------------------------------------------------------------------
@contextmanager
def quiet_logger(name: str, level: int = logging.ERROR) -> Iterator[None]:
    """Raise logger ``name``'s level to ``level`` for the block (unless synspill logs at DEBUG).

    For third-party packages that log warnings a user cannot act on (bitsandbytes' "Failed
    to load CPU gemm_4bit_forward ...") next to synspill's own error lines; ``--debug``
    shows them.
    """
    lg = logging.getLogger(name)
    if logging.getLogger("synspill").isEnabledFor(logging.DEBUG):
        yield
        return
    old = lg.level
    lg.setLevel(level)
    try:
        yield
    finally:
        lg.setLevel(old)


def import_quietly(module: str) -> Any:
    """``importlib.import_module(module)`` with the module's own import-time warnings held back."""
    import importlib

    with quiet_logger(module.split(".")[0]):
        return importlib.import_module(module)


# ---- CPU threads -----------------------------------------------------------------------------
#: The user's ``OMP_NUM_THREADS`` as it was when synspill was imported (ultralytics sets it to
#: 1 on import when it is unset, which must not be mistaken for a user's choice).
_USER_OMP = os.environ.get("OMP_NUM_THREADS")
_threads: int | None = None


def available_cpus() -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup CPU quota.

    ``os.cpu_count()`` counts the machine's cores; a container or ``taskset`` may allow
    fewer (``sched_getaffinity``), and a cgroup v2 ``cpu.max`` / v1 ``cfs_quota_us`` quota
    fewer still (rounded up, at least 1).
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def default_workers() -> int:
    """Worker processes or threads per launched process when none are asked for: one per usable
    CPU core, the cores shared among this machine's launched processes, up to 8."""
    return max(1, min(8, available_cpus() // local_world_size()))


def _cgroup_quota() -> float | None:
    """CPUs granted by the cgroup quota, or None when unlimited / unknown."""
    try:  # cgroup v2: "max 100000" or "200000 100000"
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", encoding="ascii") as f:
            q = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us", encoding="ascii") as f:
            p = int(f.read())
        return None if q <= 0 or p <= 0 else q / p
    except (OSError, ValueError):
        return None


def set_threads(n: int | None) -> None:
    """Fix the number of CPU compute threads for this process (``--threads``); None: automatic.

    Also exported as ``SYNSPILL_THREADS`` so that worker processes (DDP ranks, synthesis
    workers) follow it.

    Raises:
        UsageError: ``n`` is below 1.
    """
    global _threads
    if n is not None and n < 1:
        raise UsageError(f"--threads {n} must be at least 1")
    _threads = n
    if n is None:
        os.environ.pop("SYNSPILL_THREADS", None)
    else:
        os.environ["SYNSPILL_THREADS"] = str(n)


def resolve_threads() -> int:
    """CPU compute threads to use: ``--threads``, else ``SYNSPILL_THREADS``, else the user's
    ``OMP_NUM_THREADS``, else every core this process may use (:func:`available_cpus`)."""
    if _threads is not None:
        return _threads
    for value in (os.environ.get("SYNSPILL_THREADS"), _USER_OMP):
        if value and value.strip().isdigit() and int(value) > 0:
            return int(value)
    return available_cpus()


def apply_threads() -> int:
    """Give torch (and ultralytics, which resets torch to ``cores - 1`` when it picks a CPU
    device) the thread count of :func:`resolve_threads`; returns it.

    Call before training or inference starts; cheap to call again.
    """
    import sys

    import torch

    n = resolve_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    for name in ("ultralytics.utils", "ultralytics.utils.torch_utils"):
        mod = sys.modules.get(name)
        if mod is not None and hasattr(mod, "NUM_THREADS"):
            mod.NUM_THREADS = n  # type: ignore[attr-defined]
    return n
