"""Channels-last training on a CPU: same loss and gradients as NCHW; options parsed and checked."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _model():
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    m = DetectionModel("yolo11n.yaml", nc=8, verbose=False)
    m.args = get_cfg()
    return m.train()


def _batch():
    g = torch.Generator().manual_seed(1)
    n = 12
    boxes = torch.rand(n, 4, generator=g) * 0.3 + torch.tensor([0.3, 0.3, 0.05, 0.05])  # xywh, normalised
    return {"img": torch.rand(8, 3, 96, 96, generator=g), "cls": torch.randint(0, 8, (n, 1), generator=g).float(),
            "bboxes": boxes, "batch_idx": (torch.arange(n) // 2).float()}


def test_channels_last_gives_the_same_loss_and_gradients():
    nchw = _model()
    nhwc = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    assert nhwc.model[0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    losses, grads = [], []
    for m in (nchw, nhwc):
        loss, _ = m.loss(_batch())
        loss.sum().backward()
        losses.append(loss.detach())
        grads.append({n: p.grad for n, p in m.named_parameters() if p.grad is not None})
    assert torch.allclose(losses[0], losses[1], rtol=1e-4, atol=1e-4)
    # float32 reassociation only: relative error per tensor ~1e-4, except tensors whose gradient
    # is itself rounding noise (norm < 1e-5)
    rel = [float((grads[0][n] - grads[1][n]).norm() / grads[0][n].norm()) for n in grads[0] if grads[0][n].norm() > 1e-5]
    assert len(rel) > 200 and np.median(rel) < 1e-3 and max(rel) < 0.05, (np.median(rel), max(rel))


def _trainer(device: str, channels_last):
    m = _model()
    return SimpleNamespace(device=torch.device(device), args=SimpleNamespace(channels_last=channels_last),
                           model=m, ema=SimpleNamespace(ema=copy.deepcopy(m)))


@pytest.mark.parametrize(("device", "flag", "converted"), [("cpu", None, True), ("cpu", True, True),
                                                           ("cpu", False, False), ("meta", None, False)])
def test_callback_converts_model_and_ema_on_cpu_only(device, flag, converted):
    from synspill.detectors.yolo import _cpu_channels_last

    t = _trainer(device, flag)
    params = list(t.model.parameters())
    _cpu_channels_last(t)
    for m in (t.model, t.ema.ema):
        assert m.model[0].conv.weight.is_contiguous(memory_format=torch.channels_last) is converted
    assert all(a is b for a, b in zip(params, t.model.parameters(), strict=True))  # the optimiser's tensors


def test_option_values_parse_like_ultralytics_cli():
    from synspill.commands._train_progress import parse_options

    assert parse_options(["channels_last=False", "val=True", "time=None", "lr0=0.01", "optimizer=AdamW", "flipud=0"]) == {
        "channels_last": False, "val": True, "time": None, "lr0": 0.01, "optimizer": "AdamW", "flipud": 0}


@pytest.mark.parametrize(("opts", "needle"), [({"lr0": -1}, "--option lr0=-1"), ({"channels_last": "yes"}, "channels_last"),
                                              ({"mosaik": 0.0}, "not an ultralytics training argument")])
def test_bad_options_are_refused_before_training(opts, needle):
    from synspill.detectors.yolo import _check_options
    from synspill.errors import UsageError

    with pytest.raises(UsageError, match=needle):
        _check_options(opts)
