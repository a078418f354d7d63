"""EfficientNet-Lite backbone on a CPU, each optimisation against its baseline in the same run.

``--compare fold`` (default): the backbone's BatchNorm always evaluates with its ImageNet
statistics, so synspill folds it into each convolution (``synspill.detectors.lite.conv_bn``).
The baseline is the same modules run unfolded, ``bn(conv(x))``.

``--compare padding``: TensorFlow "same" padding is symmetric for the stride-1 layers, so
synspill lets the convolution pad them (``SameConv.conv``) instead of making a padded copy of
the feature map first (``F.pad``, still used for the asymmetric stride-2 layers). The
baseline pads every layer with ``F.pad``.

Both arms run the frozen backbone as training does (channels-last on a CPU, no gradients),
interleaved, best of ``--repeat``, and their outputs are compared.

    python benchmarks/bench_lite.py [--compare fold|padding] [--batch 16] [--sizes 160,320] [--repeat 7]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--sizes", default="160,320")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--variant", default="lite0")
    ap.add_argument("--compare", choices=("fold", "padding"), default="fold")
    args = ap.parse_args()

    import math

    import torch
    from torch.nn import functional as F

    from synspill.detectors.lite import LiteBackbone, SameConv
    from synspill.runtime import set_threads

    set_threads(None)
    net = LiteBackbone(args.variant).eval().requires_grad_(False).to(memory_format=torch.channels_last)

    def unfolded(x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - net.mean) / net.std
        x = F.relu6(net._bn0(net._conv_stem(x)))
        out = []
        for i, b in enumerate(net._blocks):
            y = F.relu6(b._bn0(b._expand_conv(x))) if b.expand else x
            y = F.relu6(b._bn1(b._depthwise_conv(y)))
            y = b._bn2(b._project_conv(y))
            x = x + y if b.residual else y
            if i in net.out_index:
                out.append(x)
        return out

    same_conv = SameConv.conv

    def padded_copy_conv(self: SameConv, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        k, st = self.kernel_size[0], self.stride[0]
        ih, iw = x.shape[-2:]
        ph = max((math.ceil(ih / st) - 1) * st + k - ih, 0)
        pw = max((math.ceil(iw / st) - 1) * st + k - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, weight, bias, self.stride, 0, 1, self.groups)

    def padded(x: torch.Tensor) -> list[torch.Tensor]:
        SameConv.conv = padded_copy_conv  # type: ignore[method-assign]
        try:
            return net(x)
        finally:
            SameConv.conv = same_conv  # type: ignore[method-assign]

    baseline, label = (unfolded, "unfolded (baseline) ms") if args.compare == "fold" else (padded, "F.pad copy (baseline) ms")
    new_label = "folded ms" if args.compare == "fold" else "conv pads ms"

    def best(fn, x: torch.Tensor) -> float:
        fn(x)  # warm-up
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t)
        return min(times)

    print(f"{args.variant} backbone forward, batch {args.batch}, {torch.get_num_threads()} threads, channels-last, "
          f"best of {args.repeat}")
    print(f"{'size':>5} {label:>25} {new_label:>12} {'speed-up':>9} {'max |diff|':>11}")
    with torch.no_grad():
        for size in (int(s) for s in args.sizes.split(",")):
            x = torch.rand(args.batch, 3, size, size).contiguous(memory_format=torch.channels_last)
            diff = max(float((a - b).abs().max()) for a, b in zip(baseline(x), net(x), strict=True))
            base, new = [], []
            for _ in range(2):  # interleaved arms
                base.append(best(baseline, x))
                new.append(best(net, x))
            b, n = min(base), min(new)
            print(f"{size:>5} {b * 1e3:>25.1f} {n * 1e3:>12.1f} {b / n:>8.2f}x {diff:>11.1e}")


if __name__ == "__main__":
    main()
