"""The fastest a training or inference step could run on this machine, from its arithmetic and
its memory traffic.

Two numbers describe the machine, both measured when asked (`measure_machine`, ~1 s):

- GEMM rate: FLOP/s of a 2048 x 2048 x 2048 float32 matrix product, BLAS on its own threads
  (all cores), median of a few runs. No op of the framework multiplies faster than this.
- memory bandwidth: bytes/s read plus written by an in-place pass (x *= 1) over a 512 MiB
  float32 array, the array split across the cores, median of a few passes. In place, every
  cache line is read once and written back once: no write-allocate reads inflate the count,
  as they do for a copy into a second array. The size is beyond any cache: the VM reports a
  300 MB L3 (the host's), but the streaming rate already drops from ~40 to ~13 GB/s between
  32 and 64 MB arrays, and 512 MiB is beyond even the reported size.

Two numbers describe a step of a model (`step_cost`), counted from the shapes its layers
produce on a dummy image (any nn.Sequential of the layer types in `_VIEWS`, `_ELEMENTWISE`
and `_OTHER` or Conv2d / Linear):

FLOPs: a multiply-add is 2 FLOPs.
- Conv2d and Linear: the multiply-adds of forward, of the weight gradient and of the input
  gradient (none for the first layer: the images need no gradient), plus 1 FLOP per output
  element for the bias each way. A 3x3 conv that the framework runs by Winograd F(4x4, 3x3)
  counts its 36 GEMMs, 6*6 * tiles * C * O multiply-adds per pass with 4x4-pixel tiles, as
  the kernel does them; `direct_flops` counts every conv directly (O*OH*OW*C*kh*kw per image
  and pass) instead. Winograd's transforms (products with small constant matrices, bound by
  memory) are not counted.
- every other layer: 1 FLOP per input element forward and 1 backward.
- Adam: 13 FLOPs per parameter (the in-place update in tinygrad_mnist/kernels/optimizers.py).

Memory traffic, the least any implementation must move (float32, 4 bytes a number):
- forward: the input batch is read once; each activation is written once and read once.
  An activation is a layer's output, except that views (Flatten, ...) are free, and an
  elementwise layer (ReLU, Dropout, ...) is fused into the layer before it: its output takes
  the place of that layer's, the pre-activation is never stored.
- backward: each activation's gradient is written once and read once.
- parameters: read once forward; their gradients written once; Adam reads parameter,
  gradient, m and v and writes parameter, m and v: 9 passes over the parameters a training
  step, 1 an inference step.
- not counted: re-reading saved activations and weights in backward, im2col or Winograd
  arrays, labels and the loss. So this is a lower bound, and so is the time it gives.

The step-time limits: flop_limit = FLOPs / GEMM rate, memory_limit = bytes / bandwidth,
limit = the larger of the two.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from tinygrad_mnist import Tensor, nn
from tinygrad_mnist.kernels.winograd import PATCH, TILE

MNIST_IMAGE = (1, 28, 28)  # (C, H, W) of one input image
ITEMSIZE = 4  # bytes per float32 number
ADAM_FLOPS_PER_PARAMETER = 13
# parameter passes a step: forward read, gradient write, Adam's 4 reads and 3 writes
TRAIN_PARAMETER_PASSES = 9

GEMM_SIZE = 2048
BANDWIDTH_BYTES = 512 << 20

_VIEWS = (nn.Flatten, nn.Reshape, nn.Identity)
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Dropout)
_OTHER = (
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.LogSoftmax,
    nn.Softmax,
)


# ---------------------------------------------------------------- the machine


class Machine(NamedTuple):
    """What this machine can do: FLOP/s of a large float32 GEMM, bytes/s to and from memory
    (each the median of that many runs)."""

    gemm_flops: float
    bandwidth: float
    gemm_runs: int
    bandwidth_runs: int

    def summary(self) -> dict:
        """The rates in GFLOP/s and GB/s, and how each was measured."""
        return {
            "gemm_gflop_s": self.gemm_flops / 1e9,
            "memory_gb_s": self.bandwidth / 1e9,
            "gemm": f"{GEMM_SIZE}^3 float32 matmul, BLAS threads, median of {self.gemm_runs}",
            "memory": f"in-place x *= 1 over {BANDWIDTH_BYTES >> 20} MiB float32 on all "
            f"cores, read + write, median of {self.bandwidth_runs}",
        }


def measure_gemm(size: int = GEMM_SIZE, repeats: int = 3) -> float:
    """FLOP/s of a (size x size) @ (size x size) float32 product, median of `repeats`."""
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = a.T.copy()
    out = np.empty_like(a)
    np.matmul(a, b, out=out)  # warm up: BLAS starts its threads
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / float(np.median(times))


def measure_bandwidth(nbytes: int = BANDWIDTH_BYTES, repeats: int = 5) -> float:
    """Bytes/s read plus written by `x *= 1` over an nbytes float32 array on all cores, median
    of `repeats` passes after one warm-up pass."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    x = np.ones(nbytes // ITEMSIZE, dtype=np.float32)
    parts = np.array_split(x, cores)

    def scale(part: np.ndarray) -> None:
        np.multiply(part, 1.0, out=part)

    with ThreadPoolExecutor(cores) as pool:
        list(pool.map(scale, parts))
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            list(pool.map(scale, parts))
            times.append(time.perf_counter() - start)
    return 2 * x.nbytes / float(np.median(times))


def measure_machine(quick: bool = False) -> Machine:
    """The GEMM rate and memory bandwidth, now (~1 s; ~0.5 s with `quick`)."""
    gemm_runs, bandwidth_runs = (1, 2) if quick else (3, 5)
    return Machine(
        measure_gemm(repeats=gemm_runs),
        measure_bandwidth(repeats=bandwidth_runs),
        gemm_runs,
        bandwidth_runs,
    )


# ---------------------------------------------------------------- a model's step


class Layer(NamedTuple):
    """One layer as a dummy image passes through it; shapes are per image."""

    module: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: str  # which implementation of its op ran ("winograd", ...)
    first: bool  # it reads the model's input, which needs no gradient


class Cost(NamedTuple):
    """What one step takes: FLOPs as the framework computes, FLOPs with direct convs, bytes."""

    flops: float
    direct_flops: float
    traffic_bytes: float


def trace(model: nn.Sequential, image: tuple[int, ...] = MNIST_IMAGE) -> list[Layer]:
    """The model's layers, in the order they run, with the shapes one image takes through them.

    The model runs once, in eval mode, on a zero image with the graph recorded, so each
    output's op tells which kernel ran. (At batch 1 a first conv may take another direct
    kernel than at batch 64, which costs the same; whether Winograd runs does not depend on
    the batch.)
    """
    model.eval()
    layers = [m for m in model.modules() if next(m.children(), None) is None]
    x = Tensor(np.zeros((1, *image), dtype=np.float32))
    traced = []
    for i, module in enumerate(layers):
        y = module(x)
        kernel = y.op.kernel if y.op is not None else "reference"
        traced.append(Layer(module, x.shape[1:], y.shape[1:], kernel, first=i == 0))
        x = y
    model.train()
    return traced


def layer_macs(layer: Layer, winograd: bool) -> tuple[int, int]:
    """(multiply-adds, bias adds) of one pass of a Conv2d or Linear, per image.

    With `winograd`, a conv the framework ran by Winograd counts its Winograd-domain GEMMs.
    """
    module, out = layer.module, layer.out_shape
    bias = module.bias is not None
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features, out[0] * bias
    c, o = module.in_channels // module.groups, module.out_channels
    oh, ow = out[1], out[2]
    if winograd and layer.kernel == "winograd":
        tiles = -(-oh // TILE) * -(-ow // TILE)
        return PATCH * PATCH * tiles * c * o, o * oh * ow * bias
    kh, kw = module.kernel_size
    return o * oh * ow * c * kh * kw, o * oh * ow * bias


def layer_flops(layer: Layer, training: bool, winograd: bool = True) -> int:
    """FLOPs of one layer for one image: forward, and backward when `training`."""
    module = layer.module
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        macs, bias = layer_macs(layer, winograd)
        if not training:
            return 2 * macs + bias
        gemms = 2 if layer.first else 3  # forward, weight gradient, input gradient
        return 2 * macs * gemms + 2 * bias
    if isinstance(module, _VIEWS):
        return 0
    if isinstance(module, (*_ELEMENTWISE, *_OTHER)):
        return int(np.prod(layer.in_shape)) * (2 if training else 1)
    raise ValueError(
        f"limits: no FLOP rule for layer {type(module).__name__}; "
        f"add it to _VIEWS, _ELEMENTWISE or _OTHER in {__file__}"
    )


def activation_elements(layers: list[Layer]) -> int:
    """Numbers in the activations of one image: layer outputs, views and fused elementwise
    layers left out (see the module docstring)."""
    total = 0
    for layer in layers:
        fused = isinstance(layer.module, _ELEMENTWISE) and not layer.first
        if not fused and not isinstance(layer.module, _VIEWS):
            total += int(np.prod(layer.out_shape))
    return total


def step_cost(model: nn.Sequential, batch: int, training: bool) -> Cost:
    """FLOPs and least memory traffic of one step at `batch` (rules: the module docstring)."""
    layers = trace(model)
    parameters = sum(p.data.size for p in model.parameters())
    flops = batch * sum(layer_flops(layer, training) for layer in layers)
    direct = batch * sum(layer_flops(layer, training, winograd=False) for layer in layers)
    activations = batch * activation_elements(layers)
    images = batch * int(np.prod(layers[0].in_shape))
    if training:
        flops += ADAM_FLOPS_PER_PARAMETER * parameters
        direct += ADAM_FLOPS_PER_PARAMETER * parameters
        numbers = images + 4 * activations + TRAIN_PARAMETER_PASSES * parameters
    else:
        numbers = images + 2 * activations + parameters
    return Cost(float(flops), float(direct), float(ITEMSIZE * numbers))


def step_limits(cost: Cost, machine: Machine) -> dict[str, float]:
    """The step-time limits in ms: from the FLOPs, from the traffic, and the larger."""
    flop_ms = 1e3 * cost.flops / machine.gemm_flops
    memory_ms = 1e3 * cost.traffic_bytes / machine.bandwidth
    return {
        "flop_limit_ms": flop_ms,
        "memory_limit_ms": memory_ms,
        "limit_ms": max(flop_ms, memory_ms),
    }
