"""EfficientNet-Lite backbone on a CPU: BatchNorm folded into the convolutions vs applied after them.

The backbone's BatchNorm always evaluates with its ImageNet statistics, so synspill folds it
into each convolution (``synspill.detectors.lite.conv_bn``). The baseline here is the same
modules run unfolded, ``bn(conv(x))``, in the same process; both arms run the frozen
backbone as training does (channels-last on a CPU, no gradients), interleaved, best of
``--repeat``. The outputs are compared too.

    python benchmarks/bench_lite.py [--batch 16] [--sizes 160,320] [--repeat 7]
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
    args = ap.parse_args()

    import torch
    from torch.nn import functional as F

    from synspill.detectors.lite import LiteBackbone
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
    print(f"{'size':>5} {'unfolded (baseline) ms':>23} {'folded ms':>10} {'speed-up':>9} {'max |diff|':>11}")
    with torch.no_grad():
        for size in (int(s) for s in args.sizes.split(",")):
            x = torch.rand(args.batch, 3, size, size).contiguous(memory_format=torch.channels_last)
            diff = max(float((a - b).abs().max()) for a, b in zip(unfolded(x), net(x), strict=True))
            base, new = [], []
            for _ in range(2):  # interleaved arms
                base.append(best(unfolded, x))
                new.append(best(net, x))
            b, n = min(base), min(new)
            print(f"{size:>5} {b * 1e3:>23.1f} {n * 1e3:>10.1f} {b / n:>8.2f}x {diff:>11.1e}")


if __name__ == "__main__":
    main()
