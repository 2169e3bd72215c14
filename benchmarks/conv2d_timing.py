"""Time one conv2d forward + backward at batch 64 against PyTorch, in the same run.

The shape is the first layer of lenet-cnn: x (64, 1, 28, 28), 32 filters of 3x3, with bias;
the input, weight and bias all require grad. The two frameworks alternate and medians are shown.

With --algorithms, a table instead: for 3x3 convs on 26x26 inputs with several channel counts,
our im2col and Winograd paths (each forced) and PyTorch, which shows where `WinogradConv2d.applies`
should switch.

    python benchmarks/conv2d_timing.py [--runs 30] [--algorithms]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tinygrad_mnist import Tensor
from tinygrad_mnist.kernels.winograd import WinogradConv2d

CHANNELS = [
    (1, 8),
    (1, 32),
    (2, 4),
    (2, 8),
    (2, 16),
    (3, 8),
    (4, 4),
    (4, 8),
    (4, 16),
    (8, 8),
    (8, 16),
    (16, 16),
    (16, 32),
    (32, 64),
    (64, 64),
]


def time_alternating(sides: dict, runs: int) -> dict[str, float]:
    """Median ms of each side, the sides alternating run by run after one warm-up each."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for run in sides.values():
        run()
    for _ in range(runs):
        for name, run in sides.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(ts)) * 1e3 for name, ts in times.items()}


def conv_runs(x: np.ndarray, w: np.ndarray, b: np.ndarray, input_grad: bool = True) -> dict:
    """Forward + backward of one conv in our framework and in PyTorch, as callables."""

    def ours() -> None:
        xt = Tensor(x, requires_grad=input_grad)
        wt, bt = Tensor(w, requires_grad=True), Tensor(b, requires_grad=True)
        out = xt.conv2d(wt, bt)
        out.backward(np.ones(out.shape, np.float32))

    def theirs() -> None:
        xt = torch.tensor(x, requires_grad=input_grad)
        wt, bt = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
        out = torch.nn.functional.conv2d(xt, wt, bt)
        out.backward(torch.ones_like(out))

    return {"ours": ours, "pytorch": theirs}


def forced(algorithm: str, run):
    """`run` with Conv2d made to take `algorithm` ("im2col" or "winograd")."""

    def wrapped() -> None:
        original = WinogradConv2d.__dict__["applies"]
        WinogradConv2d.applies = classmethod(lambda cls, *args, **kw: algorithm == "winograd")
        try:
            run()
        finally:
            WinogradConv2d.applies = original

    return wrapped


def algorithm_table(runs: int) -> None:
    rng = np.random.default_rng(0)
    print(
        f"3x3 conv forward+backward (input gradient too), x (64, C, 26, 26), bias; ms, "
        f"medians of {runs} alternating runs"
    )
    print(f"{'C':>4} {'O':>4} {'im2col':>8} {'winograd':>9} {'pytorch':>8}  chosen")
    for c, o in CHANNELS:
        x = rng.random((64, c, 26, 26), dtype=np.float32)
        w = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
        b = rng.standard_normal(o).astype(np.float32)
        runs_by_side = conv_runs(x, w, b)
        sides = {
            "im2col": forced("im2col", runs_by_side["ours"]),
            "winograd": forced("winograd", runs_by_side["ours"]),
            "pytorch": runs_by_side["pytorch"],
        }
        ms = time_alternating(sides, runs)
        chosen = "winograd" if WinogradConv2d.applies(x, w, b) else "im2col"
        print(
            f"{c:>4} {o:>4} {ms['im2col']:>8.2f} {ms['winograd']:>9.2f} {ms['pytorch']:>8.2f}"
            f"  {chosen}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per framework")
    parser.add_argument(
        "--algorithms",
        action="store_true",
        help="im2col vs Winograd vs PyTorch over several channel counts",
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.algorithms:
        algorithm_table(args.runs)
        return
    rng = np.random.default_rng(0)
    x = rng.random((64, 1, 28, 28), dtype=np.float32)
    w = rng.standard_normal((32, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    ms = time_alternating(conv_runs(x, w, b), args.runs)
    ours_ms, torch_ms = ms["ours"], ms["pytorch"]
    print(
        f"conv2d forward+backward, x (64, 1, 28, 28), weight (32, 1, 3, 3), bias; "
        f"medians of {args.runs} alternating runs"
    )
    print(
        f"tinygrad_mnist {ours_ms:.2f} ms   PyTorch {torch_ms:.2f} ms   "
        f"time ours/PyTorch {ours_ms / torch_ms:.2f}"
    )


if __name__ == "__main__":
    main()
