"""Runtime: device parsing and bounds, dtype choice, quantisation values reaching the config."""

from __future__ import annotations

import pytest

from synspill import runtime
from synspill.errors import DeviceError, ModelNotFound, UsageError


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cpu:0", "tpu", ""])
def test_bad_device_strings(spec):
    with pytest.raises(UsageError):
        runtime.resolve_device(spec)


def test_auto_and_cpu():
    import torch

    assert runtime.resolve_device("cpu") == "cpu"
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert runtime.resolve_device("auto") == expected


def test_cuda_without_gpu_or_out_of_range():
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            runtime.resolve_device("cuda")
    else:
        with pytest.raises(DeviceError, match="only"):
            runtime.resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_dtype_auto_cpu_is_fp32_and_fp16_refused():
    import torch

    assert runtime.resolve_dtype("auto", "cpu") is torch.float32
    assert runtime.resolve_dtype("bfloat16", "cpu") is torch.bfloat16
    with pytest.raises(DeviceError):
        runtime.resolve_dtype("float16", "cpu")
    with pytest.raises(UsageError):
        runtime.resolve_dtype("fp8", "cpu")


def test_quant_values_reach_the_config():
    import torch

    assert runtime.quant_config("none") is None
    spec = runtime.QuantSpec(mode=runtime.Quant.int4, compute_dtype="float32", quant_type="fp4", double_quant=False)
    cfg = runtime.quant_config(spec, device="cpu")
    assert cfg.load_in_4bit is True and cfg.load_in_8bit is False
    assert cfg.bnb_4bit_quant_type == "fp4"
    assert cfg.bnb_4bit_use_double_quant is False
    assert cfg.bnb_4bit_compute_dtype == torch.float32
    d = runtime.quant_config("4bit", device="cpu").to_dict()
    assert d["bnb_4bit_quant_type"] == "nf4" and d["bnb_4bit_use_double_quant"] is True


def test_quant_errors():
    with pytest.raises(DeviceError, match="8bit needs a CUDA"):
        runtime.quant_config("8bit", device="cpu")
    with pytest.raises(UsageError):
        runtime.quant_config("3bit")
    with pytest.raises(UsageError):
        runtime.QuantSpec(quant_type="nf3")


def test_seed_is_reproducible():
    import numpy as np
    import torch

    runtime.seed_everything(7)
    a = (np.random.rand(3), torch.rand(3))
    runtime.seed_everything(7)
    b = (np.random.rand(3), torch.rand(3))
    assert np.allclose(a[0], b[0]) and torch.equal(a[1], b[1])


def test_resolve_weights_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelNotFound, match="huggingface-cli download"):
        runtime.resolve_weights("nobody/no-such-model", "test model")
    with pytest.raises(ModelNotFound, match="no such file"):
        runtime.resolve_weights(str(tmp_path / "missing.pt"))
    assert runtime.resolve_weights(str(tmp_path)) == str(tmp_path)


# ---- CPU threads ----------------------------------------------------------------------------
@pytest.fixture
def clean_threads(monkeypatch):
    monkeypatch.delenv("SYNSPILL_THREADS", raising=False)
    monkeypatch.setattr(runtime, "_USER_OMP", None)
    monkeypatch.setattr(runtime, "_threads", None)
    yield
    runtime.set_threads(None)


def test_available_cpus_follows_affinity_and_cgroup_quota(monkeypatch, clean_threads):
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    monkeypatch.setattr(runtime, "_cgroup_quota", lambda: None)
    assert runtime.available_cpus() == 6
    monkeypatch.setattr(runtime, "_cgroup_quota", lambda: 2.5)  # "250000 100000" in cpu.max
    assert runtime.available_cpus() == 3
    monkeypatch.setattr(runtime, "_cgroup_quota", lambda: 0.2)
    assert runtime.available_cpus() == 1


def test_synthesis_workers_default_to_usable_cores_up_to_8(monkeypatch, clean_threads):
    # a 16-core GPU machine made 2,000 demo images with 2 processes (69 s) before this
    from synspill.demo import DemoConfig
    from synspill.runtime import default_workers

    monkeypatch.setattr(runtime, "_cgroup_quota", lambda: None)
    for cores, want in ((1, 1), (2, 2), (6, 6), (16, 8)):
        monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid, n=cores: set(range(n)))
        assert default_workers() == want
        assert DemoConfig().workers == want
    monkeypatch.setattr(runtime, "_cgroup_quota", lambda: 3.0)  # a container allowed 3 of the 16
    assert default_workers() == 3


def test_cgroup_v2_quota_is_read(monkeypatch, tmp_path):
    import builtins

    files = {"/sys/fs/cgroup/cpu.max": "150000 100000\n"}
    real_open = builtins.open

    def fake_open(path, *a, **k):
        if str(path) in files:
            import io

            return io.StringIO(files[str(path)])
        if str(path).startswith("/sys/fs/cgroup"):
            raise FileNotFoundError(path)
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", fake_open)
    assert runtime._cgroup_quota() == 1.5
    files["/sys/fs/cgroup/cpu.max"] = "max 100000\n"
    assert runtime._cgroup_quota() is None


def test_thread_count_precedence(monkeypatch, clean_threads):
    monkeypatch.setattr(runtime, "available_cpus", lambda: 8)
    assert runtime.resolve_threads() == 8
    monkeypatch.setattr(runtime, "_USER_OMP", "3")  # the user's OMP_NUM_THREADS
    assert runtime.resolve_threads() == 3
    monkeypatch.setenv("SYNSPILL_THREADS", "5")
    assert runtime.resolve_threads() == 5
    runtime.set_threads(2)  # --threads wins, and is passed on to child processes
    assert runtime.resolve_threads() == 2
    import os

    assert os.environ["SYNSPILL_THREADS"] == "2"
    with pytest.raises(UsageError, match="--threads 0"):
        runtime.set_threads(0)


def test_ultralytics_cpu_device_keeps_our_thread_count(monkeypatch, clean_threads):
    """ultralytics' select_device('cpu') resets torch to cores-1 threads (1 of 2 cores) unless patched."""
    import torch

    from synspill.detectors import yolo

    yolo._import_ultralytics()
    from ultralytics.utils.torch_utils import select_device

    before = torch.get_num_threads()
    try:
        runtime.set_threads(3)
        runtime.apply_threads()
        select_device("cpu", verbose=False)
        assert torch.get_num_threads() == 3
        runtime.set_threads(1)
        runtime.apply_threads()
        select_device("cpu", verbose=False)
        assert torch.get_num_threads() == 1
    finally:
        runtime.set_threads(None)
        runtime.apply_threads()
        torch.set_num_threads(before)

def test_launcher_variables_are_read_in_one_place(monkeypatch):
    from synspill import runtime

    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    assert (runtime.world_size(), runtime.process_rank(), runtime.is_main_process(), runtime.launched_shard()) == (1, 0, True, None)
    assert runtime.local_world_size() == 1
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert runtime.process_rank() == 1 and not runtime.is_main_process() and runtime.launched_shard() is None
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert runtime.process_rank() == 3 and runtime.world_size() == 4 and runtime.launched_shard() == (3, 4)
    assert runtime.local_world_size() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert runtime.local_world_size() == 2 and runtime.world_size() == 4


def test_rfdetr_loader_workers_share_the_cores_among_torchrun_processes(monkeypatch, clean_threads):
    # rfdetr's own default of 2 loader processes starves a GPU the way YOLO's did
    from synspill.detectors.detr import DetrTrainConfig

    monkeypatch.setattr(runtime, "_cgroup_quota", lambda: None)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    for cores, want in ((2, 2), (16, 8)):
        monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid, n=cores: set(range(n)))
        assert DetrTrainConfig(data="d", out="o").workers == want
    monkeypatch.setenv("WORLD_SIZE", "8")  # two nodes of four GPUs: a node's 16 cores go 4 to each
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert DetrTrainConfig(data="d", out="o").workers == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert DetrTrainConfig(data="d", out="o").workers == 1
    assert DetrTrainConfig(data="d", out="o", workers=0).workers == 0
    with pytest.raises(UsageError, match="--workers -1"):
        DetrTrainConfig(data="d", out="o", workers=-1)
