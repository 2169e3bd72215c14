"""Time one conv2d forward + backward at batch 64 against PyTorch, in the same run.

The shape is the first layer of lenet-cnn: x (64, 1, 28, 28), 32 filters of 3x3, with bias;
the input, weight and bias all require grad. The two frameworks alternate and medians are shown.

    python benchmarks/conv2d_timing.py [--runs 30]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tinygrad_mnist import Tensor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per framework")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    x = rng.random((64, 1, 28, 28), dtype=np.float32)
    w = rng.standard_normal((32, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)

    def ours() -> None:
        xt, wt, bt = (Tensor(a, requires_grad=True) for a in (x, w, b))
        out = xt.conv2d(wt, bt)
        out.backward(np.ones(out.shape, np.float32))

    def theirs() -> None:
        xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        out = torch.nn.functional.conv2d(xt, wt, bt)
        out.backward(torch.ones_like(out))

    sides = {"tinygrad_mnist": ours, "pytorch": theirs}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for run in sides.values():
        run()  # warm-up
    for _ in range(args.runs):
        for name, run in sides.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    ours_ms, torch_ms = (float(np.median(times[name])) * 1e3 for name in sides)
    print(f"conv2d forward+backward, x (64, 1, 28, 28), weight (32, 1, 3, 3), bias; "
          f"medians of {args.runs} alternating runs")
    print(f"tinygrad_mnist {ours_ms:.2f} ms   PyTorch {torch_ms:.2f} ms   "
          f"time ours/PyTorch {ours_ms / torch_ms:.2f}")


if __name__ == "__main__":
    main()
