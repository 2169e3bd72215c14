"""Every op, forward and backward, against PyTorch (float64 and float32) and finite differences.

One `check_op` line per shape case. The torch lambdas only run when PyTorch is installed; the
finite-difference and dtype checks run everywhere.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import check_op, torch

from tinygrad_mnist import Tensor

F = torch.nn.functional if torch is not None else None


def case(name, shapes, torch_fn, our_fn=None, **kwargs):
    return pytest.param(shapes, torch_fn, our_fn, kwargs, id=name)


def run(shapes, torch_fn, our_fn, kwargs):
    check_op(shapes, torch_fn, our_fn, **kwargs)


POSITIVE = {"low": 0.5, "high": 2.0}
NONZERO_DENOMINATOR = {"low": [-2.0, 0.5], "high": [2.0, 2.0]}

# ---------------------------------------------------------------- binary elementwise

BINARY = [
    case("add-same", [(3, 4), (3, 4)], lambda a, b: a + b),
    case("add-(3,1)x(1,4)", [(3, 1), (1, 4)], lambda a, b: a + b),
    case("add-(2,3,4)x(4,)", [(2, 3, 4), (4,)], lambda a, b: a + b),
    case("add-(4,)x(2,3,4)", [(4,), (2, 3, 4)], lambda a, b: a + b),
    case("add-(2,1,4)x(3,1)", [(2, 1, 4), (3, 1)], lambda a, b: a + b),
    case("add-0dx(2,3)", [(), (2, 3)], lambda a, b: a + b),
    case("add-t+2", [(3, 4)], lambda a: a + 2),
    case("add-2+t", [(3, 4)], lambda a: 2 + a),
    case("add-t+t", [(3, 4)], lambda a: a + a),
    case("sub-same", [(3, 4), (3, 4)], lambda a, b: a - b),
    case("sub-(3,1)x(1,4)", [(3, 1), (1, 4)], lambda a, b: a - b),
    case("sub-(2,3,4)x(4,)", [(2, 3, 4), (4,)], lambda a, b: a - b),
    case("sub-(4,)x(2,3,4)", [(4,), (2, 3, 4)], lambda a, b: a - b),
    case("sub-t-1", [(3, 4)], lambda a: a - 1),
    case("sub-1-t", [(3, 4)], lambda a: 1 - a),
    case("mul-same", [(3, 4), (3, 4)], lambda a, b: a * b),
    case("mul-(3,1)x(1,4)", [(3, 1), (1, 4)], lambda a, b: a * b),
    case("mul-(2,3,4)x(4,)", [(2, 3, 4), (4,)], lambda a, b: a * b),
    case("mul-(4,)x(2,3,4)", [(4,), (2, 3, 4)], lambda a, b: a * b),
    case("mul-(2,1,4)x(3,1)", [(2, 1, 4), (3, 1)], lambda a, b: a * b),
    case("mul-2*t", [(3, 4)], lambda a: 2 * a),
    case("mul-t*0.5", [(3, 4)], lambda a: a * 0.5),
    case("mul-t*t", [(3, 4)], lambda a: a * a),
    case("div-same", [(3, 4), (3, 4)], lambda a, b: a / b, **NONZERO_DENOMINATOR),
    case("div-(3,1)x(1,4)", [(3, 1), (1, 4)], lambda a, b: a / b, **NONZERO_DENOMINATOR),
    case("div-(2,3,4)x(4,)", [(2, 3, 4), (4,)], lambda a, b: a / b, **NONZERO_DENOMINATOR),
    case("div-(4,)x(2,3,4)", [(4,), (2, 3, 4)], lambda a, b: a / b, **NONZERO_DENOMINATOR),
    case("div-t/2", [(3, 4)], lambda a: a / 2),
    case("div-1/t", [(3, 4)], lambda a: 1 / a, **POSITIVE),
    case("div-t/t", [(3, 4)], lambda a: a / a, **POSITIVE),
]


@pytest.mark.parametrize("shapes, torch_fn, our_fn, kwargs", BINARY)
def test_binary(shapes, torch_fn, our_fn, kwargs):
    run(shapes, torch_fn, our_fn, kwargs)


# ---------------------------------------------------------------- unary elementwise

UNARY = [
    case("neg", [(3, 4)], lambda a: -a),
    case("neg-0d", [()], lambda a: -a),
    case("pow-2", [(3, 4)], lambda a: a**2),
    case("pow-3", [(2, 3, 4)], lambda a: a**3),
    case("pow-0.5", [(3, 4)], lambda a: a**0.5, **POSITIVE),
    case("pow--1", [(3, 4)], lambda a: a**-1, **POSITIVE),
    case("pow-1.5", [(3, 4)], lambda a: a**1.5, **POSITIVE),
    case(
        "pow-0-at-zero",
        None,
        lambda a: a**0,
        values=[np.array([0.0, 1.5, -2.0])],
        finite_differences=False,
    ),
    case("exp", [(3, 4)], lambda a: a.exp()),
    case("exp-0d", [()], lambda a: a.exp()),
    case("log", [(3, 4)], lambda a: a.log(), **POSITIVE),
    case("sqrt", [(3, 4)], lambda a: a.sqrt(), **POSITIVE),
    case("relu", [(3, 4)], lambda a: a.relu()),
    case("relu-3d", [(2, 3, 4)], lambda a: a.relu()),
    # at exactly 0 the gradient is 0, as in PyTorch (a kink: no finite differences)
    case(
        "relu-at-zero",
        None,
        lambda a: a.relu(),
        values=[np.array([-1.0, 0.0, 2.0])],
        finite_differences=False,
    ),
    case("sigmoid", [(3, 4)], lambda a: a.sigmoid()),
    case("sigmoid-wide", [(3, 4)], lambda a: a.sigmoid(), low=-30.0, high=30.0),
    case("tanh", [(3, 4)], lambda a: a.tanh()),
    case("tanh-wide", [(3, 4)], lambda a: a.tanh(), low=-6.0, high=6.0),
    case("chain", [(3, 4)], lambda a: ((a * 2).exp() + 1).log().tanh().sigmoid()),
]


@pytest.mark.parametrize("shapes, torch_fn, our_fn, kwargs", UNARY)
def test_unary(shapes, torch_fn, our_fn, kwargs):
    run(shapes, torch_fn, our_fn, kwargs)


# ---------------------------------------------------------------- reductions

REDUCE = [
    case("sum-all", [(3, 4)], lambda a: a.sum()),
    case("sum-axis0", [(3, 4)], lambda a: a.sum(axis=0)),
    case("sum-axis1", [(2, 3, 4)], lambda a: a.sum(axis=1)),
    case("sum-axis-1", [(2, 3, 4)], lambda a: a.sum(axis=-1)),
    case("sum-tuple", [(2, 3, 4)], lambda a: a.sum(axis=(0, 2))),
    case("sum-tuple-neg", [(2, 3, 4)], lambda a: a.sum(axis=(-1, 0))),
    case("sum-keepdims", [(2, 3, 4)], lambda a: a.sum(axis=1, keepdims=True)),
    case("sum-tuple-keepdims", [(2, 3, 4)], lambda a: a.sum(axis=(0, 2), keepdims=True)),
    case("sum-0d", [()], lambda a: a.sum()),
    case("sum-all-keepdims", [(2, 3)], lambda a: a.sum(axis=(0, 1), keepdims=True)),
    case("mean-all", [(3, 4)], lambda a: a.mean()),
    case("mean-axis0", [(3, 4)], lambda a: a.mean(axis=0)),
    case("mean-axis-1", [(2, 3, 4)], lambda a: a.mean(axis=-1)),
    case("mean-tuple", [(2, 3, 4)], lambda a: a.mean(axis=(0, 2))),
    case("mean-keepdims", [(2, 3, 4)], lambda a: a.mean(axis=1, keepdims=True)),
    case("mean-tuple-keepdims", [(2, 3, 4)], lambda a: a.mean(axis=(1, 2), keepdims=True)),
    case("max-all", [(3, 4)], lambda a: a.max()),
    case("amax-dim0", [(3, 4)], lambda a: a.amax(dim=0)),
    case("amax-dim1", [(2, 3, 4)], lambda a: a.amax(1)),
    case("amax-axis-1", [(2, 3, 4)], lambda a: a.amax(dim=-1), lambda a: a.amax(axis=-1)),
    case("amax-tuple", [(2, 3, 4)], lambda a: a.amax(dim=(0, 2))),
    case("amax-keepdim", [(2, 3, 4)], lambda a: a.amax(dim=1, keepdim=True)),
    case("amax-tuple-keepdim", [(2, 3, 4)], lambda a: a.amax(dim=(-1, 0), keepdim=True)),
    case(
        "amax-all-keepdims",
        [(2, 3)],
        lambda a: a.amax(dim=(0, 1), keepdim=True),
        lambda a: a.amax(axis=(0, 1), keepdims=True),
    ),
    case("amin-dim1", [(2, 3, 4)], lambda a: a.amin(1)),
    case("min-all", [(3, 4)], lambda a: a.min()),
    case("max-dim-values", [(3, 4)], lambda a: a.max(1).values),
    case("max-dim-keepdim", [(2, 3, 4)], lambda a: a.max(dim=0, keepdim=True)[0]),
    case("min-dim-values", [(3, 4)], lambda a: a.min(dim=-1).values),
    case("max-other", [(3, 4), (3, 4)], lambda a, b: a.max(b)),
    case("var-all", [(3, 4)], lambda a: a.var()),
    case("var-dim", [(3, 4)], lambda a: a.var(1)),
    case("var-correction0", [(2, 3, 4)], lambda a: a.var(dim=(0, 2), correction=0)),
    case("var-unbiased-false-keepdim", [(3, 4)], lambda a: a.var(0, unbiased=False, keepdim=True)),
    case("std-all", [(3, 4)], lambda a: a.std()),
    case("std-dim-keepdim", [(2, 3, 4)], lambda a: a.std(dim=2, keepdim=True)),
    # ties share the gradient equally, as torch.amax does (a kink: no finite differences)
    case(
        "amax-ties",
        None,
        lambda a: a.amax(dim=1),
        values=[np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [0.0, -1.0, 5.0]])],
        finite_differences=False,
    ),
    case(
        "max-ties-all",
        None,
        lambda a: a.max(),
        values=[np.array([[4.0, 1.0], [4.0, 4.0]])],
        finite_differences=False,
    ),
    # max(dim) sends the gradient to the index it returns (the first maximum), as PyTorch
    case(
        "max-dim-ties",
        None,
        lambda a: a.max(dim=1).values,
        values=[np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [0.0, -1.0, 5.0]])],
        finite_differences=False,
    ),
]


@pytest.mark.parametrize("shapes, torch_fn, our_fn, kwargs", REDUCE)
def test_reduce(shapes, torch_fn, our_fn, kwargs):
    run(shapes, torch_fn, our_fn, kwargs)


# ---------------------------------------------------------------- movement


def _reverse_axes(a):
    return a.permute(*reversed(range(a.ndim)))


IDX = np.array([2, 0, 2, 2])

MOVEMENT = [
    case("reshape-args", [(2, 3, 4)], lambda a: a.reshape(6, 4)),
    case("reshape-tuple", [(2, 3, 4)], lambda a: a.reshape((4, 6))),
    case("reshape--1", [(2, 3, 4)], lambda a: a.reshape(-1, 4)),
    case("reshape-tuple--1", [(2, 3, 4)], lambda a: a.reshape((2, -1))),
    case("reshape-flat", [(2, 3, 4)], lambda a: a.reshape(-1)),
    case("reshape-0d", [()], lambda a: a.reshape(1, 1)),
    case("flatten", [(2, 3, 4)], lambda a: a.flatten()),
    case("flatten-start1", [(2, 3, 4, 5)], lambda a: a.flatten(1)),
    case("flatten-start2", [(2, 3, 4, 5)], lambda a: a.flatten(start_dim=2)),
    case("flatten-start-2", [(2, 3, 4, 5)], lambda a: a.flatten(start_dim=-2)),
    case("transpose-2d", [(3, 4)], lambda a: a.transpose(0, 1)),
    case("transpose-3d", [(2, 3, 4)], lambda a: a.transpose(0, 2)),
    case("transpose-neg", [(2, 3, 4)], lambda a: a.transpose(-1, 1)),
    case("permute-tuple", [(2, 3, 4)], lambda a: a.permute((1, 2, 0))),
    case("permute-neg", [(2, 3, 4)], lambda a: a.permute(0, -1, 1)),
    case("permute", [(2, 3, 4, 5)], lambda a: a.permute(3, 1, 0, 2)),
    case("T-2d", [(3, 4)], lambda a: a.T),
    case("T-3d", [(2, 3, 4)], _reverse_axes, lambda a: a.T),
    case("getitem-int", [(3, 4)], lambda a: a[1]),
    case("getitem-neg-int", [(3, 4)], lambda a: a[-1]),
    case("getitem-slice", [(3, 4)], lambda a: a[:, 1:3]),
    case("getitem-step", [(5, 6)], lambda a: a[::2, 1::3]),
    case("getitem-ellipsis", [(2, 3, 4)], lambda a: a[..., 1]),
    case("getitem-none", [(2, 3)], lambda a: a[None, 0]),
    case("getitem-mixed", [(2, 3, 4)], lambda a: a[1, :, 2:]),
    case(
        "getitem-array",
        [(4, 3)],
        lambda a: a[torch.tensor([0, 2])],
        lambda a: a[np.array([0, 2])],
    ),
    case("getitem-negative-step", [(4, 3)], None, lambda a: a[::-2, ::-1]),
    case("getitem-list-repeated", [(4, 3)], lambda a: a[[0, 0, 1, 0]]),
    case(
        "getitem-array-repeated",
        [(4, 3)],
        lambda a: a[torch.tensor(IDX)],
        lambda a: a[IDX],
    ),
    case(
        "getitem-two-arrays",
        [(3, 4)],
        lambda a: a[torch.tensor([0, 0, 2]), torch.tensor([1, 1, 3])],
        lambda a: a[np.array([0, 0, 2]), np.array([1, 1, 3])],
    ),
    case(
        "getitem-array-and-slice",
        [(3, 4)],
        lambda a: a[1:, torch.tensor([3, 3, 0])],
        lambda a: a[1:, np.array([3, 3, 0])],
    ),
    case(
        "getitem-tensor-index",
        [(4, 3)],
        lambda a: a[torch.tensor(IDX)],
        lambda a: a[Tensor(IDX)],
    ),
    case(
        "getitem-tensor-in-tuple",
        [(4, 3)],
        lambda a: a[torch.tensor(IDX), 1],
        lambda a: a[Tensor(IDX), 1],
    ),
    case("getitem-bool-tensor-mask", [(3, 4)], lambda a: a[a > 0]),
    case(
        "getitem-bool-mask",
        [(3, 4)],
        lambda a: a[:, torch.tensor([True, False, True, True])],
        lambda a: a[:, np.array([True, False, True, True])],
    ),
]


@pytest.mark.parametrize("shapes, torch_fn, our_fn, kwargs", MOVEMENT)
def test_movement(shapes, torch_fn, our_fn, kwargs):
    run(shapes, torch_fn, our_fn, kwargs)


# ---------------------------------------------------------------- matmul

MATMUL = [
    case("matmul-2d", [(3, 4), (4, 5)], lambda a, b: a @ b),
    case("matmul-method", [(3, 4), (4, 5)], lambda a, b: a.matmul(b)),
    case("matmul-batched", [(2, 3, 4), (2, 4, 5)], lambda a, b: a @ b),
    case("matmul-(2,3,4)@(4,5)", [(2, 3, 4), (4, 5)], lambda a, b: a @ b),
    case("matmul-(3,4)@(2,4,5)", [(3, 4), (2, 4, 5)], lambda a, b: a @ b),
    case("matmul-4d-broadcast", [(2, 1, 3, 4), (3, 4, 2)], lambda a, b: a @ b),
    case("matmul-vec@mat", [(4,), (4, 5)], lambda a, b: a @ b),
    case("matmul-mat@vec", [(3, 4), (4,)], lambda a, b: a @ b),
    case("matmul-vec@vec", [(4,), (4,)], lambda a, b: a @ b),
    case("matmul-batched@vec", [(2, 3, 4), (4,)], lambda a, b: a @ b),
    case("matmul-vec@batched", [(4,), (2, 4, 5)], lambda a, b: a @ b),
    case("matmul-a@a.T", [(3, 4)], lambda a: a @ a.T),
]


@pytest.mark.parametrize("shapes, torch_fn, our_fn, kwargs", MATMUL)
def test_matmul(shapes, torch_fn, our_fn, kwargs):
    run(shapes, torch_fn, our_fn, kwargs)


# ---------------------------------------------------------------- conv2d and pooling


def conv(stride=1, padding=0, dilation=1, groups=1):
    """(torch_fn, our_fn) for conv2d, with a bias when given three inputs."""
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return (
        lambda x, w, b=None: F.conv2d(x, w, b, **kw),
        lambda x, w, b=None: x.conv2d(w, b, **kw),
    )


def conv_no_bias(stride=1, padding=0):
    return (
        lambda x, w: F.conv2d(x, w, stride=stride, padding=padding),
        lambda x, w: x.conv2d(w, stride=stride, padding=padding),
    )


W = np.random.default_rng(1).normal(size=(3, 2, 3, 3))
X = np.random.default_rng(2).normal(size=(2, 2, 6, 6))

CONV = [
    case("conv-basic", [(2, 3, 6, 6), (4, 3, 3, 3), (4,)], *conv()),
    case("conv-stride2", [(2, 3, 7, 7), (4, 3, 3, 3), (4,)], *conv(stride=2)),
    case("conv-pad1", [(2, 3, 5, 5), (4, 3, 3, 3), (4,)], *conv(padding=1)),
    case("conv-pad2", [(1, 2, 5, 5), (3, 2, 3, 3), (3,)], *conv(padding=2)),
    case("conv-stride2-pad1", [(2, 2, 8, 8), (3, 2, 3, 3), (3,)], *conv(stride=2, padding=1)),
    case("conv-pairs", [(2, 2, 6, 7), (3, 2, 3, 3), (3,)], *conv(stride=(1, 2), padding=(2, 1))),
    case("conv-no-bias", [(2, 3, 6, 6), (4, 3, 3, 3)], *conv_no_bias()),
    case("conv-no-bias-stride2", [(2, 3, 7, 7), (2, 3, 3, 3)], *conv_no_bias(stride=2)),
    case("conv-non-square", [(2, 3, 6, 7), (4, 3, 2, 3), (4,)], *conv()),
    case("conv-non-square-pad", [(1, 2, 5, 6), (3, 2, 3, 1), (3,)], *conv(padding=(1, 0))),
    case("conv-one-channel", [(3, 1, 6, 6), (5, 1, 3, 3), (5,)], *conv()),
    case("conv-1x1", [(2, 4, 3, 3), (2, 4, 1, 1), (2,)], *conv()),
    case("conv-full-kernel", [(2, 2, 4, 4), (3, 2, 4, 4), (3,)], *conv()),
    case(
        "conv-constant-weight",
        [(2, 2, 5, 5)],
        lambda x: F.conv2d(x, torch.tensor(W)),
        lambda x: x.conv2d(W),
        float32=False,  # a float64 constant weight promotes the output, as in NumPy
    ),
    case(
        "conv-constant-input",
        [(3, 2, 3, 3), (3,)],
        lambda w, b: F.conv2d(torch.tensor(X), w, b, stride=2),
        lambda w, b: Tensor(X).conv2d(w, b, stride=2),
        float32=False,
    ),
    case(
        "conv-non-contiguous-input",
        [(2, 2, 5, 6), (3, 2, 3, 3)],
        lambda x, w: F.conv2d(x.transpose(2, 3), w, padding=1),
        lambda x, w: x.transpose(2, 3).conv2d(w, padding=1),
    ),
    case(
        "conv-then-relu-pool",
        [(2, 1, 8, 8), (2, 1, 3, 3), (2,)],
        lambda x, w, b: F.max_pool2d(F.conv2d(x, w, b, padding=1).relu(), 2),
        lambda x, w, b: x.conv2d(w, b, padding=1).relu().max_pool2d(2),
    ),
    case("conv-dilation2", [(2, 2, 8, 8), (3, 2, 3, 3), (3,)], *conv(dilation=2)),
    case("conv-dilation-pair", [(1, 2, 9, 8), (2, 2, 3, 2)], *conv(dilation=(2, 3), padding=1)),
    case("conv-dilation-stride", [(2, 1, 9, 9), (2, 1, 3, 3)], *conv(dilation=2, stride=2)),
    case("conv-groups2", [(2, 4, 6, 6), (6, 2, 3, 3), (6,)], *conv(groups=2)),
    case("conv-depthwise", [(2, 3, 6, 5), (3, 1, 3, 3)], *conv(groups=3, padding=1)),
    case("conv-groups-dilation", [(1, 4, 8, 8), (4, 2, 3, 3)], *conv(groups=2, dilation=2)),
    case("conv-same-odd", [(2, 2, 6, 7), (3, 2, 3, 3), (3,)], *conv(padding="same")),
    case("conv-same-even", [(2, 2, 6, 7), (3, 2, 2, 4)], *conv(padding="same")),
    case("conv-same-dilation", [(1, 2, 7, 7), (2, 2, 2, 3)], *conv(padding="same", dilation=2)),
    case("conv-valid", [(2, 2, 6, 7), (3, 2, 3, 3)], *conv(padding="valid")),
]


@pytest.mark.parametrize("shapes, torch_fn, our_fn, kwargs", CONV)
def test_conv2d(shapes, torch_fn, our_fn, kwargs):
    run(shapes, torch_fn, our_fn, kwargs)


def pool(kernel_size, stride=None, padding=0):
    return (
        lambda x: F.max_pool2d(x, kernel_size, stride, padding),
        lambda x: x.max_pool2d(kernel_size, stride, padding),
    )


def avg_pool(kernel_size, stride=None, padding=0):
    return (
        lambda x: F.avg_pool2d(x, kernel_size, stride, padding),
        lambda x: x.avg_pool2d(kernel_size, stride, padding),
    )


POOL = [
    case("pool-k2", [(2, 3, 8, 8)], *pool(2)),
    case("pool-k2s2", [(2, 3, 6, 6)], *pool(2, 2)),
    case("pool-k2-7x7", [(2, 2, 7, 7)], *pool(2)),
    case("pool-k3s2", [(2, 2, 7, 7)], *pool(3, 2)),
    case("pool-k3s2-8x8", [(1, 2, 8, 8)], *pool(3, 2)),
    case("pool-k2s1", [(1, 2, 5, 5)], *pool(2, 1)),
    case("pool-k2s3", [(1, 2, 8, 8)], *pool(2, 3)),
    case("pool-pair-kernel", [(2, 2, 6, 9)], *pool((2, 3))),
    case("pool-pairs", [(2, 2, 7, 8)], *pool((3, 2), (2, 1))),
    case("pool-default", [(2, 2, 4, 4)], lambda x: F.max_pool2d(x, 2), lambda x: x.max_pool2d()),
    case("pool-whole", [(2, 2, 3, 3)], *pool(3)),
    # ties: the whole gradient goes to the first maximum of each window, as in PyTorch
    case(
        "pool-ties",
        None,
        *pool(2),
        values=[np.array([[[[1.0, 1.0, 0.0, 2.0], [1.0, 1.0, 2.0, 2.0]]]])],
        finite_differences=False,
    ),
    case(
        "pool-ties-overlap",
        None,
        *pool(3, 2),
        values=[np.ones((1, 1, 5, 5))],
        finite_differences=False,
    ),
    case(
        "pool-non-contiguous",
        [(2, 2, 8, 7)],
        lambda x: F.max_pool2d(x[:, :, ::2].transpose(2, 3), 2),
        lambda x: x[:, :, ::2].transpose(2, 3).max_pool2d(2),
    ),
    case(
        "pool-overlap-non-contiguous",
        [(2, 2, 7, 7)],
        lambda x: F.max_pool2d(x.transpose(2, 3), 3, 2),
        lambda x: x.transpose(2, 3).max_pool2d(3, 2),
    ),
    case("pool-pad1", [(2, 2, 6, 6)], *pool(2, 2, 1)),
    case("pool-k3-pad1", [(2, 2, 7, 6)], *pool(3, 2, 1)),
    case("pool-pad-pair", [(1, 2, 5, 8)], *pool((3, 4), 1, (1, 2))),
    case("pool-pad-negative-input", [(2, 1, 5, 5)], *pool(3, 2, 1), low=-3.0, high=-1.0),
    case("avg-k2", [(2, 3, 8, 8)], *avg_pool(2)),
    case("avg-k3s2", [(2, 2, 7, 7)], *avg_pool(3, 2)),
    case("avg-k3s1-pad1", [(1, 2, 5, 6)], *avg_pool(3, 1, 1)),
    case("avg-pairs", [(2, 2, 7, 8)], *avg_pool((3, 2), (2, 1), (1, 0))),
]


@pytest.mark.parametrize("shapes, torch_fn, our_fn, kwargs", POOL)
def test_max_pool2d(shapes, torch_fn, our_fn, kwargs):
    run(shapes, torch_fn, our_fn, kwargs)


# ---------------------------------------------------------------- softmax and losses

LARGE_LOGITS = np.array([[1e4, -1e4, 0.0, 1.0], [1e4, 1e4, -1e4, 3.0], [-1e4, -1e4, -1e4, -1e4]])

SOFTMAX = [
    case("softmax-axis-1", [(3, 5)], lambda a: a.softmax(-1)),
    case("softmax-axis0", [(3, 5)], lambda a: a.softmax(0)),
    case("softmax-3d-axis1", [(2, 3, 4)], lambda a: a.softmax(1)),
    case("softmax-default", [(3, 5)], lambda a: a.softmax(-1), lambda a: a.softmax()),
    case("softmax-large", None, lambda a: a.softmax(-1), values=[LARGE_LOGITS]),
    case("softmax-large-axis0", None, lambda a: a.softmax(0), values=[LARGE_LOGITS]),
    case("log_softmax-axis-1", [(3, 5)], lambda a: a.log_softmax(-1)),
    case("log_softmax-axis0", [(3, 5)], lambda a: a.log_softmax(0)),
    case("log_softmax-3d-axis1", [(2, 3, 4)], lambda a: a.log_softmax(1)),
    case("log_softmax-default", [(3, 5)], lambda a: a.log_softmax(-1), lambda a: a.log_softmax()),
    case("log_softmax-large", None, lambda a: a.log_softmax(-1), values=[LARGE_LOGITS]),
    case("log_softmax-large-axis0", None, lambda a: a.log_softmax(0), values=[LARGE_LOGITS]),
]


@pytest.mark.parametrize("shapes, torch_fn, our_fn, kwargs", SOFTMAX)
def test_softmax(shapes, torch_fn, our_fn, kwargs):
    run(shapes, torch_fn, our_fn, kwargs)


@pytest.mark.parametrize("method", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_large_logits_are_finite(method, axis):
    x = Tensor(LARGE_LOGITS.astype(np.float32), requires_grad=True)
    out = getattr(x, method)(axis)
    out.backward(np.ones_like(out.data))
    assert np.all(np.isfinite(out.data)), out.data
    assert np.all(np.isfinite(x.grad)), x.grad
    if method == "softmax":
        np.testing.assert_allclose(out.data.sum(axis=axis), 1.0, rtol=1e-6)


TARGETS = np.array([1, 0, 3, 3, 2])


def torch_targets(targets):
    """The same class indices as a torch int64 tensor (None without torch)."""
    if torch is None:
        return None
    array = targets.numpy() if isinstance(targets, Tensor) else np.asarray(targets)
    return torch.tensor(array.astype(np.int64))


def nll(targets, compose=False):
    """(torch_fn, our_fn) for nll_loss on raw scores, or on log_softmax of them."""
    ref = torch_targets(targets)
    if compose:
        return (
            lambda x: F.nll_loss(F.log_softmax(x, 1), ref),
            lambda x: x.log_softmax(1).nll_loss(targets),
        )
    return lambda x: F.nll_loss(x, ref), lambda x: x.nll_loss(targets)


def cross_entropy(targets):
    ref = torch_targets(targets)
    return lambda x: F.cross_entropy(x, ref), lambda x: x.cross_entropy(targets)


LOSSES = [
    case("nll-int64", [(5, 4)], *nll(TARGETS.astype(np.int64))),
    case("nll-uint8", [(5, 4)], *nll(TARGETS.astype(np.uint8))),
    case("nll-int32", [(5, 4)], *nll(TARGETS.astype(np.int32))),
    case("nll-tensor", [(5, 4)], *nll(Tensor(TARGETS.astype(np.int64)))),
    case("nll-list", [(5, 4)], *nll(TARGETS.tolist())),
    case("nll-of-log_softmax", [(5, 4)], *nll(TARGETS, compose=True)),
    case("cross_entropy-int64", [(5, 4)], *cross_entropy(TARGETS.astype(np.int64))),
    case("cross_entropy-uint8", [(5, 4)], *cross_entropy(TARGETS.astype(np.uint8))),
    case("cross_entropy-tensor", [(5, 4)], *cross_entropy(Tensor(TARGETS.astype(np.uint8)))),
    case("cross_entropy-wide", [(5, 4)], *cross_entropy(TARGETS), low=-50.0, high=50.0),
    case(
        "cross_entropy-large",
        None,
        *cross_entropy(TARGETS[:3]),
        values=[LARGE_LOGITS],
    ),
]


@pytest.mark.parametrize("shapes, torch_fn, our_fn, kwargs", LOSSES)
def test_losses(shapes, torch_fn, our_fn, kwargs):
    run(shapes, torch_fn, our_fn, kwargs)


def test_cross_entropy_equals_composed_log_softmax_nll(rng):
    """The fused op must agree with the primitives it replaces (forward and gradient)."""
    logits = rng.normal(size=(6, 10)) * 5
    targets = rng.integers(0, 10, size=6).astype(np.uint8)
    fused_x = Tensor(logits.copy(), requires_grad=True)
    composed_x = Tensor(logits.copy(), requires_grad=True)
    fused = fused_x.cross_entropy(targets)
    composed = composed_x.log_softmax(dim=1).nll_loss(targets)
    fused.backward()
    composed.backward()
    np.testing.assert_allclose(fused.data, composed.data, rtol=1e-12)
    np.testing.assert_allclose(fused_x.grad, composed_x.grad, rtol=1e-10, atol=1e-14)


def test_cross_entropy_large_logits_are_finite():
    x = Tensor(LARGE_LOGITS.astype(np.float32), requires_grad=True)
    loss = x.cross_entropy(np.array([1, 2, 0]))
    loss.backward()
    assert np.isfinite(loss.item()) and np.all(np.isfinite(x.grad))
    # row 0 puts 1e4 on class 0 and the target is class 1: the loss is about 2e4 / 3
    assert loss.item() == pytest.approx((2e4 + (2e4 + np.log(2)) + np.log(4)) / 3, rel=1e-5)
