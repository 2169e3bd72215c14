"""PyTorch tutorial idioms, run as written against PyTorch and against tinygrad_mnist.

Each idiom is one function of the library namespace `T` (`torch` or `tinygrad_mnist`), its
functional module `F`, and float input tensors that require grad. It runs in float64 and float32;
the results (tensors, tuples of them, Python values) must match PyTorch's, values and dtypes, and
wherever a result requires grad, so must every input's gradient after a backward pass with the
same random upstream gradient. An idiom that must raise returns `raises(...)`: then both sides
must raise.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import torch

import tinygrad_mnist as tm

pytestmark = pytest.mark.skipif(torch is None, reason="compares with PyTorch")

POSITIVE = (0.5, 2.0)


class Idiom:
    def __init__(self, name, shapes, fn, *, grad=True, bounds=(-2.0, 2.0), tol32=1e-5):
        self.name, self.shapes, self.fn, self.grad = name, shapes, fn, grad
        self.bounds, self.tol32 = bounds, tol32


IDIOMS: list[Idiom] = []


def idiom(name, shapes, fn, **kwargs):
    IDIOMS.append(Idiom(name, shapes, fn, **kwargs))


def raises(fn):
    """'raised' when fn raises (any error), else its result: both libraries must agree."""
    try:
        fn()
    except Exception:  # noqa: BLE001 - the point is that both sides refuse
        return "raised"
    return "did not raise"


def labels(T):
    return T.tensor([0, 2, 1, 2])


# ---------------------------------------------------------------- making tensors

idiom("tensor-nested-list", [], lambda T, F: T.tensor([[1.0, 2.0], [3.0, 4.0]]), grad=False)
idiom("tensor-ints-int64", [], lambda T, F: T.tensor([1, 2, 3]), grad=False)
idiom("tensor-dtype", [], lambda T, F: T.tensor([1.0, 2.0], dtype=T.float64), grad=False)
idiom("tensor-scalar-item", [], lambda T, F: T.tensor(3.5).item(), grad=False)
idiom("tensor-requires-grad", [], lambda T, F: T.tensor([1.0], requires_grad=True).is_leaf)
idiom("zeros-args", [], lambda T, F: T.zeros(2, 3), grad=False)
idiom("zeros-tuple", [], lambda T, F: T.zeros((2, 3)), grad=False)
idiom("zeros-int64", [], lambda T, F: T.zeros(2, dtype=T.int64), grad=False)
idiom("ones", [], lambda T, F: T.ones(3, 2), grad=False)
idiom("ones-requires-grad", [], lambda T, F: T.ones(2, 3, requires_grad=True).requires_grad)
idiom("full", [], lambda T, F: T.full((2, 2), 7.0), grad=False)
idiom("arange-int", [], lambda T, F: T.arange(5), grad=False)
idiom("arange-float", [], lambda T, F: T.arange(0, 1, 0.25), grad=False)
idiom("arange-start-end", [], lambda T, F: T.arange(2, 7), grad=False)
idiom("linspace", [], lambda T, F: T.linspace(0, 1, 5), grad=False)
idiom("eye", [], lambda T, F: T.eye(3), grad=False)
idiom("empty-shape", [], lambda T, F: T.empty(2, 3).shape, grad=False)
idiom("zeros_like", [(2, 3)], lambda T, F, x: T.zeros_like(x), grad=False)
idiom("ones_like", [(2, 3)], lambda T, F, x: T.ones_like(x), grad=False)
idiom("full_like", [(2, 3)], lambda T, F, x: T.full_like(x, 3.0), grad=False)
idiom("randn-shape", [], lambda T, F: T.randn(3, 4).shape, grad=False)
idiom("randn_like-shape", [(2, 5)], lambda T, F, x: T.randn_like(x).shape, grad=False)
idiom(
    "rand-range",
    [],
    lambda T, F: (lambda r: ((r >= 0) & (r < 1)).all().item())(T.rand(20, 5)),
    grad=False,
)
idiom(
    "randint-dtype",
    [],
    lambda T, F: (lambda r: (r.shape, str(r.dtype)[-5:], r.min().item() >= 0))(
        T.randint(0, 10, (5,))
    ),
    grad=False,
)
idiom(
    "manual_seed-repeats",
    [],
    lambda T, F: (
        (T.manual_seed(0), T.randn(3))[1].tolist() == (T.manual_seed(0), T.randn(3))[1].tolist()
    ),
    grad=False,
)
idiom("from_numpy", [], lambda T, F: T.from_numpy(np.arange(3.0)), grad=False)

idiom(
    "device-pattern",
    [(3,)],
    lambda T, F, x: x.to(T.device("cuda" if T.cuda.is_available() else "cpu")) * 2,
)
idiom(
    "normal_-init",
    [],
    lambda T, F: (lambda w: (tuple(w.shape), str(w.dtype)[-7:], abs(w.mean().item()) < 0.1))(
        T.empty(50, 40).normal_(0, 0.01)
    ),
    grad=False,
)
idiom(
    "uniform_-range",
    [],
    lambda T, F: (lambda w: ((w >= -1) & (w < 1)).all().item())(T.zeros(30).uniform_(-1, 1)),
    grad=False,
)

# ---------------------------------------------------------------- attributes

idiom("shape", [(2, 3)], lambda T, F, x: tuple(x.shape), grad=False)
idiom("size()", [(2, 3)], lambda T, F, x: tuple(x.size()), grad=False)
idiom("size(dim)", [(2, 3)], lambda T, F, x: x.size(1), grad=False)
idiom("size(-1)", [(2, 3, 4)], lambda T, F, x: x.size(-1), grad=False)
idiom("numel", [(2, 3)], lambda T, F, x: x.numel(), grad=False)
idiom("dim()", [(2, 3)], lambda T, F, x: x.dim(), grad=False)
idiom("ndim", [(2, 3, 1)], lambda T, F, x: x.ndim, grad=False)
idiom("len", [(4, 3)], lambda T, F, x: len(x), grad=False)
idiom("dtype-name", [(2,)], lambda T, F, x: str(x.dtype).replace("torch.", ""), grad=False)
idiom("device", [(2,)], lambda T, F, x: str(x.device), grad=False)
idiom("tolist", [(2, 2)], lambda T, F, x: x.tolist(), grad=False)
idiom("item", [(2, 2)], lambda T, F, x: x[0, 1].item(), grad=False)
idiom("float()", [(3,)], lambda T, F, x: float(x.sum()), grad=False)
idiom("int()", [], lambda T, F: int(T.tensor(3)), grad=False)
idiom("is_leaf", [(2,)], lambda T, F, x: (x.is_leaf, (x * 2).is_leaf), grad=False)
idiom("requires_grad", [(2,)], lambda T, F, x: (x.requires_grad, x.detach().requires_grad))
idiom("detach-numpy", [(2, 3)], lambda T, F, x: x.detach().numpy(), grad=False)
idiom("clone", [(2, 3)], lambda T, F, x: x.clone() * 2)
idiom("contiguous-view", [(2, 3)], lambda T, F, x: x.t().contiguous().view(-1))

# ---------------------------------------------------------------- arithmetic

idiom("add", [(3, 4), (3, 4)], lambda T, F, x, y: x + y)
idiom("add-broadcast", [(3, 4), (4,)], lambda T, F, x, y: x + y)
idiom("sub", [(3, 4), (3, 1)], lambda T, F, x, y: x - y)
idiom("mul", [(3, 4), (3, 4)], lambda T, F, x, y: x * y)
idiom("div", [(3, 4), (3, 4)], lambda T, F, x, y: x / y, bounds=POSITIVE)
idiom("pow-2", [(3, 4)], lambda T, F, x: x**2)
idiom("pow-0.5", [(3, 4)], lambda T, F, x: x**0.5, bounds=POSITIVE)
idiom("rpow-2**x", [(3, 4)], lambda T, F, x: 2**x)
idiom("pow-tensor", [(3, 4), (3, 4)], lambda T, F, x, y: x**y, bounds=POSITIVE)
idiom("neg", [(3,)], lambda T, F, x: -x)
idiom("rsub", [(3,)], lambda T, F, x: 1 - x)
idiom("div-number", [(3,)], lambda T, F, x: x / 2)
idiom("rdiv", [(3,)], lambda T, F, x: 1 / x, bounds=POSITIVE)
idiom("affine", [(3,)], lambda T, F, x: x * 3 + 1)
idiom("matmul-@", [(3, 4), (4, 2)], lambda T, F, x, w: x @ w)
idiom("matmul-method", [(3, 4), (4, 2)], lambda T, F, x, w: x.matmul(w))
idiom("matmul-fn", [(3, 4), (4, 2)], lambda T, F, x, w: T.matmul(x, w))
idiom("mm", [(3, 4), (4, 2)], lambda T, F, x, w: T.mm(x, w))
idiom("matmul-vector", [(3, 4), (4,)], lambda T, F, x, v: x @ v)
idiom("matmul-batched", [(2, 3, 4), (4, 5)], lambda T, F, x, w: x @ w)
idiom("linear-by-hand", [(5, 3), (2, 3), (2,)], lambda T, F, x, w, b: x @ w.t() + b)
idiom("add-method-alpha", [(3,), (3,)], lambda T, F, x, y: x.add(y, alpha=2))
idiom("sub-method", [(3,), (3,)], lambda T, F, x, y: x.sub(y))
idiom("mul-method", [(3,), (3,)], lambda T, F, x, y: x.mul(y))
idiom("div-method", [(3,), (3,)], lambda T, F, x, y: x.div(y), bounds=POSITIVE)
idiom("pow-method", [(3,)], lambda T, F, x: x.pow(3))
idiom("pow-fn", [(3,)], lambda T, F, x: T.pow(x, 2))
idiom("abs-method", [(3, 4)], lambda T, F, x: x.abs())
idiom("abs-builtin", [(3, 4)], lambda T, F, x: abs(x))
idiom("abs-fn", [(3, 4)], lambda T, F, x: T.abs(x))
idiom("numpy-scalar-keeps-dtype", [(3,)], lambda T, F, x: x * np.float64(2))
idiom("0d-tensor-keeps-dtype", [(3,)], lambda T, F, x: x * T.tensor(2.0))
idiom("int-tensor-times-float", [], lambda T, F: T.tensor([1, 2]) * 2.5, grad=False)
idiom("int-tensor-true-div", [], lambda T, F: T.tensor([1, 2]) / 2, grad=False)
idiom("mse-by-hand", [(4, 3), (4, 3)], lambda T, F, x, y: ((x - y) ** 2).mean())

# ---------------------------------------------------------------- elementwise functions

idiom("exp", [(3, 4)], lambda T, F, x: x.exp())
idiom("exp-fn", [(3, 4)], lambda T, F, x: T.exp(x))
idiom("log", [(3, 4)], lambda T, F, x: x.log(), bounds=POSITIVE)
idiom("log-fn", [(3, 4)], lambda T, F, x: T.log(x), bounds=POSITIVE)
idiom("sqrt", [(3, 4)], lambda T, F, x: x.sqrt(), bounds=POSITIVE)
idiom("sqrt-fn", [(3, 4)], lambda T, F, x: T.sqrt(x), bounds=POSITIVE)
idiom("relu", [(3, 4)], lambda T, F, x: x.relu())
idiom("relu-fn", [(3, 4)], lambda T, F, x: T.relu(x))
idiom("F.relu", [(3, 4)], lambda T, F, x: F.relu(x))
idiom("sigmoid", [(3, 4)], lambda T, F, x: x.sigmoid())
idiom("sigmoid-fn", [(3, 4)], lambda T, F, x: T.sigmoid(x))
idiom("tanh", [(3, 4)], lambda T, F, x: x.tanh())
idiom("tanh-fn", [(3, 4)], lambda T, F, x: T.tanh(x))
idiom("clamp", [(3, 4)], lambda T, F, x: x.clamp(-0.5, 0.5))
idiom("clamp-min", [(3, 4)], lambda T, F, x: x.clamp(min=0))
idiom("clamp-max", [(3, 4)], lambda T, F, x: x.clamp(max=1.0))
idiom("clamp-fn", [(3, 4)], lambda T, F, x: T.clamp(x, -1, 1))
idiom("clip", [(3, 4)], lambda T, F, x: x.clip(-1, 1))
idiom("maximum", [(3, 4), (3, 4)], lambda T, F, x, y: T.maximum(x, y))
idiom("minimum", [(3, 4), (4,)], lambda T, F, x, y: T.minimum(x, y))
idiom("maximum-method", [(3, 4), (3, 4)], lambda T, F, x, y: x.maximum(y))
idiom("max-of-two", [(3, 4), (3, 4)], lambda T, F, x, y: T.max(x, y))
idiom("where", [(3, 4), (3, 4)], lambda T, F, x, y: T.where(x > 0, x, y))
idiom("where-number", [(3, 4)], lambda T, F, x: T.where(x > 0, x, 0.0))
idiom("where-method", [(3, 4), (3, 4)], lambda T, F, x, y: x.where(x > 0, y))
idiom("leaky_relu", [(3, 4)], lambda T, F, x: F.leaky_relu(x, 0.1))
idiom("square", [(3, 4)], lambda T, F, x: x.square())
idiom("log-softmax-by-hand", [(3, 4)], lambda T, F, x: x - x.exp().sum(1, keepdim=True).log())

# ---------------------------------------------------------------- reductions

idiom("sum", [(3, 4)], lambda T, F, x: x.sum())
idiom("sum-dim", [(3, 4)], lambda T, F, x: x.sum(dim=1))
idiom("sum-positional", [(3, 4)], lambda T, F, x: x.sum(1))
idiom("sum-keepdim", [(3, 4)], lambda T, F, x: x.sum(dim=0, keepdim=True))
idiom("sum-axis", [(3, 4)], lambda T, F, x: x.sum(axis=1))
idiom("sum-tuple", [(2, 3, 4)], lambda T, F, x: x.sum((0, 2)))
idiom("sum-fn", [(3, 4)], lambda T, F, x: T.sum(x, dim=1))
idiom("mean", [(3, 4)], lambda T, F, x: x.mean())
idiom("mean-dim", [(3, 4)], lambda T, F, x: x.mean(dim=1))
idiom("mean-keepdim", [(3, 4)], lambda T, F, x: x.mean(-1, keepdim=True))
idiom("mean-fn", [(3, 4)], lambda T, F, x: T.mean(x, 0))
idiom("var", [(3, 4)], lambda T, F, x: x.var())
idiom("var-dim", [(3, 4)], lambda T, F, x: x.var(dim=0))
idiom("var-unbiased-false", [(3, 4)], lambda T, F, x: x.var(1, unbiased=False))
idiom("var-correction", [(3, 4)], lambda T, F, x: x.var(dim=1, correction=0))
idiom("std", [(3, 4)], lambda T, F, x: x.std())
idiom("std-keepdim", [(3, 4)], lambda T, F, x: x.std(dim=1, keepdim=True))
idiom("std-fn", [(3, 4)], lambda T, F, x: T.std(x))
idiom("standardize", [(5, 3)], lambda T, F, x: (x - x.mean(0)) / x.std(0))
idiom("max-all", [(3, 4)], lambda T, F, x: x.max())
idiom("max-dim-values", [(3, 4)], lambda T, F, x: x.max(dim=1).values)
idiom("max-dim-indices", [(3, 4)], lambda T, F, x: x.max(dim=1).indices)
idiom("max-dim-[0]", [(3, 4)], lambda T, F, x: x.max(1)[0])
idiom("max-unpack-predicted", [(4, 3)], lambda T, F, x: x.max(1)[1])
idiom("max-unpack-batch-2", [(2, 3)], lambda T, F, x: (lambda v, i: (v, i))(*x.max(1)))
idiom("max-fn-tuple", [(4, 3)], lambda T, F, x: tuple(T.max(x, 1)))
idiom("max-keepdim", [(3, 4)], lambda T, F, x: x.max(dim=1, keepdim=True)[0])
idiom("max-on-.data", [(4, 3)], lambda T, F, x: T.max(x.data, 1)[1], grad=False)
idiom("min-all", [(3, 4)], lambda T, F, x: x.min())
idiom("min-dim", [(3, 4)], lambda T, F, x: tuple(x.min(0)))
idiom("amax", [(3, 4)], lambda T, F, x: x.amax(dim=1))
idiom("amin-tuple", [(2, 3, 4)], lambda T, F, x: x.amin(dim=(0, 1)))
idiom("argmax-all", [(3, 4)], lambda T, F, x: x.argmax())
idiom("argmax-dim", [(3, 4)], lambda T, F, x: x.argmax(dim=1))
idiom("argmax-keepdim", [(3, 4)], lambda T, F, x: x.argmax(1, keepdim=True))
idiom("argmax-fn", [(3, 4)], lambda T, F, x: T.argmax(x, dim=1))
idiom("argmin", [(3, 4)], lambda T, F, x: x.argmin(dim=0))
idiom("correct-count", [(4, 3)], lambda T, F, x: (x.argmax(1) == labels(T)).sum().item())
idiom("accuracy", [(4, 3)], lambda T, F, x: (x.argmax(1) == labels(T)).float().mean())
idiom(
    "pred-eq-view_as",
    [(4, 3)],
    lambda T, F, x: (lambda p: p.eq(labels(T).view_as(p)).sum().item())(x.argmax(1, keepdim=True)),
)
idiom("sum-item", [(3, 4)], lambda T, F, x: x.sum().item())
idiom("mean-item", [(3, 4)], lambda T, F, x: x.mean().item())

# ---------------------------------------------------------------- shapes

idiom("view-flat", [(3, 4)], lambda T, F, x: x.view(-1))
idiom("view-shape", [(3, 4)], lambda T, F, x: x.view(4, 3))
idiom("view-minus-1", [(3, 4)], lambda T, F, x: x.view(-1, 2))
idiom("view-batch", [(2, 3, 4)], lambda T, F, x: x.view(x.size(0), -1))
idiom("reshape", [(3, 4)], lambda T, F, x: x.reshape(2, -1))
idiom("reshape-tuple", [(3, 4)], lambda T, F, x: x.reshape((6, 2)))
idiom("flatten", [(2, 3, 4)], lambda T, F, x: x.flatten())
idiom("flatten-1", [(2, 3, 4)], lambda T, F, x: x.flatten(1))
idiom("flatten-fn", [(2, 3, 4)], lambda T, F, x: T.flatten(x, 1))
idiom("unsqueeze-0", [(3, 4)], lambda T, F, x: x.unsqueeze(0))
idiom("unsqueeze--1", [(3, 4)], lambda T, F, x: x.unsqueeze(-1))
idiom("unsqueeze-squeeze", [(3, 4)], lambda T, F, x: x.unsqueeze(1).squeeze(1))
idiom("squeeze-all", [(3, 1, 4, 1)], lambda T, F, x: x.squeeze())
idiom("squeeze-dim", [(1, 3)], lambda T, F, x: x.squeeze(0))
idiom("squeeze-not-one", [(2, 3)], lambda T, F, x: x.squeeze(0))
idiom("permute-2d", [(3, 4)], lambda T, F, x: x.permute(1, 0))
idiom("permute-3d", [(2, 3, 4)], lambda T, F, x: x.permute(2, 0, 1))
idiom("transpose-2d", [(3, 4)], lambda T, F, x: x.transpose(0, 1))
idiom("transpose-3d", [(2, 3, 4)], lambda T, F, x: x.transpose(1, 2))
idiom("transpose-fn", [(3, 4)], lambda T, F, x: T.transpose(x, 0, 1))
idiom("t", [(3, 4)], lambda T, F, x: x.t())
idiom("T", [(3, 4)], lambda T, F, x: x.T)
idiom("expand", [(1, 4)], lambda T, F, x: x.expand(3, 4))
idiom("expand-minus-1", [(3, 1)], lambda T, F, x: x.expand(2, -1, 5))
idiom("expand_as", [(1, 4), (3, 4)], lambda T, F, x, y: x.expand_as(y) * y)
idiom("split-size", [(5, 2)], lambda T, F, x: x.split(2))
idiom("split-sizes", [(2, 3)], lambda T, F, x: x.split([1, 2], dim=1))
idiom("chunk", [(2, 4)], lambda T, F, x: x.chunk(2, dim=1))
idiom("chunk-uneven", [(5, 2)], lambda T, F, x: T.chunk(x, 3))
idiom("split-fn", [(5, 2)], lambda T, F, x: T.split(x, 2))
idiom("cat-0", [(2, 3), (1, 3)], lambda T, F, x, y: T.cat([x, y], dim=0))
idiom("cat-1-tuple", [(2, 3), (2, 2)], lambda T, F, x, y: T.cat((x, y), 1))
idiom("stack", [(2, 3), (2, 3)], lambda T, F, x, y: T.stack([x, y]))
idiom("stack-dim1", [(2, 3), (2, 3)], lambda T, F, x, y: T.stack([x, y], dim=1))
idiom("view_as", [(3, 4), (2, 6)], lambda T, F, x, y: x.view_as(y) + y)
idiom("reshape_as", [(3, 4), (6, 2)], lambda T, F, x, y: x.reshape_as(y))

idiom("repeat", [(2, 3)], lambda T, F, x: x.repeat(2, 3))
idiom("repeat-new-dim", [(2, 3)], lambda T, F, x: x.repeat(2, 1, 2))
idiom("logsumexp", [(3, 4)], lambda T, F, x: x.logsumexp(1))
idiom("logsumexp-keepdim", [(3, 4)], lambda T, F, x: T.logsumexp(x, dim=0, keepdim=True))
idiom("norm", [(3, 4)], lambda T, F, x: x.norm())
idiom("norm-dim", [(3, 4)], lambda T, F, x: x.norm(dim=1))
idiom("norm-p1", [(3, 4)], lambda T, F, x: x.norm(p=1, dim=0, keepdim=True))
idiom("masked_fill", [(3, 4)], lambda T, F, x: x.masked_fill(x > 0.5, 0.0))
idiom("masked_fill_", [(3, 4)], lambda T, F, x: x.detach().clone().masked_fill_(x < 0, -1.0))
idiom("type_as", [(3,)], lambda T, F, x: T.tensor([1, 2, 3]).type_as(x), grad=False)

# ---------------------------------------------------------------- indexing

idiom("index-int", [(3, 4)], lambda T, F, x: x[0])
idiom("index-column", [(3, 4)], lambda T, F, x: x[:, 1])
idiom("index-slices", [(3, 4)], lambda T, F, x: x[1:, :2])
idiom("index-ellipsis", [(2, 3, 4)], lambda T, F, x: x[..., -1])
idiom("index-None", [(3, 4)], lambda T, F, x: x[None])
idiom("index-None-middle", [(3, 4)], lambda T, F, x: x[:, None])
idiom("boolean-mask", [(3, 4)], lambda T, F, x: x[x > 0])
idiom("index-list", [(3, 4)], lambda T, F, x: x[[0, 2]])
idiom("index-tensor-repeats", [(3, 4)], lambda T, F, x: x[T.tensor([0, 2, 0])])
idiom("index-columns-list", [(3, 4)], lambda T, F, x: x[:, [1, 0]])
idiom("index-pair", [(3, 4)], lambda T, F, x: x[1, 2])
idiom(
    "index-rows-cols",
    [(4, 3)],
    lambda T, F, x: x[T.arange(4), labels(T)],
)
idiom("gather", [(4, 3)], lambda T, F, x: x.gather(1, labels(T).unsqueeze(1)))
idiom("mask-from-other", [(3, 4), (3, 4)], lambda T, F, x, y: x[y > 0.5].sum())

# ---------------------------------------------------------------- conversions

idiom("float", [(3,)], lambda T, F, x: x.float())
idiom("double", [(3,)], lambda T, F, x: x.double() * 2)
idiom("long", [(3,)], lambda T, F, x: (x * 3).long(), grad=False)
idiom("int", [(3,)], lambda T, F, x: (x * 3).int(), grad=False)
idiom("bool-to-float", [(3, 4)], lambda T, F, x: (x > 0).float())
idiom("to-dtype", [(3,)], lambda T, F, x: x.to(T.float64))
idiom("to-cpu", [(3,)], lambda T, F, x: x.to("cpu") * 2)
idiom("type-dtype", [(3,)], lambda T, F, x: x.type(T.float64))
idiom("bool", [(3,)], lambda T, F, x: x.bool(), grad=False)
idiom("count-positive", [(3, 4)], lambda T, F, x: (x > 0).sum())
idiom("count-positive-long", [(3, 4)], lambda T, F, x: (x > 0).long().sum())
idiom("compare-methods", [(3,), (3,)], lambda T, F, x, y: (x.lt(y), x.ge(y), x.ne(y)))

# ---------------------------------------------------------------- autograd and in place


def sgd_by_hand(T, F, x, w):
    w = w.detach().clone().requires_grad_(True)
    for _ in range(3):
        loss = ((x @ w) ** 2).mean()
        loss.backward()
        with T.no_grad():
            w -= 0.1 * w.grad
        w.grad = None
    return w.detach()


def in_place_updates(T, F, x):
    y = x.detach().clone()
    y += 1
    y *= 2
    y.sub_(0.5)
    y.add_(y, alpha=0.5)
    y.div_(3).clamp_(max=1.5)
    y[y < 0] = 0
    return y


def accumulation(T, F, x):
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    return x.grad


def retain_grad(T, F, x):
    y = x * 2
    y.retain_grad()
    (y * y).sum().backward()
    return y.grad, x.grad


def backward_with_grad(T, F, x):
    y = x * x
    y.backward(T.ones_like(y))
    return x.grad


def decorated_no_grad(T, F, x):
    @T.no_grad()
    def f(t):
        return t * 2

    return f(x).requires_grad


def grad_enabled_off(T, F, x):
    with T.set_grad_enabled(False):
        y = x * 2
    return y.requires_grad, (x * 2).requires_grad


def inside_no_grad(T, F, x):
    with T.no_grad():
        y = x * 2
    return y.requires_grad, y


def inside_inference_mode(T, x):
    with T.inference_mode():
        return (x * 2).requires_grad


def fill_rows(T, F, w, b):
    out = T.zeros(3, 4, dtype=w.dtype)
    out[0] = w[1] * 2
    out[2] = (w * b).sum(0)
    out[:, 1] = w[0, 0] * 3
    return out


def fill_by_mask(T, F, x, y):
    out = x * 1
    out[y > 0] = 0.0
    return out


idiom("setitem-rows-from-grad-values", [(2, 4), (2, 4)], fill_rows)
idiom("setitem-mask-on-a-result", [(3, 4), (3, 4)], fill_by_mask)
idiom("in-place-on-a-result", [(3, 4), (3, 4)], lambda T, F, x, y: (x * 2).clamp_(min=0).mul_(y))
idiom("add_-onto-a-result", [(3,), (3,)], lambda T, F, x, y: (x * 1).add_(y, alpha=2).div_(3))
idiom("copy_-into-zeros", [(3,)], lambda T, F, x: T.zeros(2, 3, dtype=x.dtype).copy_(x) * 2)
idiom("sgd-by-hand", [(5, 3), (3, 2)], sgd_by_hand, grad=False)
idiom("in-place-updates", [(3, 4)], in_place_updates, grad=False)
idiom("zero_-fill_-copy_", [(3,)], lambda T, F, x: x.detach().clone().zero_().fill_(2).add_(1))
idiom("copy_", [(3,), (3,)], lambda T, F, x, y: x.detach().clone().copy_(y))
idiom("in-place-leaf-raises", [(3,)], lambda T, F, x: raises(lambda: x.add_(1)), grad=False)
idiom("iadd-leaf-raises", [(3,)], lambda T, F, x: raises(lambda: x.__isub__(1)), grad=False)
idiom("iadd-non-leaf", [(3,)], lambda T, F, x: (lambda y: y.__iadd__(1))(x * 2))
idiom("grad-accumulates", [(3,)], accumulation, grad=False)
idiom("retain_grad", [(3,)], retain_grad, grad=False)
idiom("backward-grad-tensor", [(3,)], backward_with_grad, grad=False)
idiom("no_grad-decorator", [(3,)], decorated_no_grad, grad=False)
idiom("set_grad_enabled", [(3,)], grad_enabled_off, grad=False)
idiom("no_grad-block", [(3,)], inside_no_grad, grad=False)
idiom("inference_mode", [(3,)], lambda T, F, x: inside_inference_mode(T, x), grad=False)
idiom("detach", [(3,)], lambda T, F, x: x.detach() * x)
idiom("requires_grad_", [(3,)], lambda T, F, x: x.detach().requires_grad_().requires_grad)
idiom("backward-non-scalar-raises", [(3,)], lambda T, F, x: raises(lambda: (x * 2).backward()))
idiom(
    "float64-into-float32-matmul-raises",
    [(3,)],
    lambda T, F, x: raises(lambda: T.ones(2, 3) @ T.ones(3, 2, dtype=T.float64)),
    grad=False,
)

# ---------------------------------------------------------------- nn.functional

# float32: Winograd's rounding (set_float32_precision("high")) is ~1e-5 of the largest value
WINOGRAD = {"tol32": 1e-4}
idiom("conv2d", [(2, 3, 6, 6), (4, 3, 3, 3)], lambda T, F, x, w: F.conv2d(x, w), **WINOGRAD)
idiom(
    "conv2d-bias-stride-padding",
    [(2, 3, 7, 6), (4, 3, 3, 3), (4,)],
    lambda T, F, x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
    **WINOGRAD,
)
idiom(
    "conv2d-same",
    [(1, 2, 5, 6), (3, 2, 3, 3)],
    lambda T, F, x, w: F.conv2d(x, w, padding="same"),
    **WINOGRAD,
)
idiom(
    "conv2d-dilation", [(1, 2, 7, 7), (3, 2, 3, 3)], lambda T, F, x, w: F.conv2d(x, w, dilation=2)
)
idiom("conv2d-groups", [(1, 4, 5, 5), (4, 2, 3, 3)], lambda T, F, x, w: F.conv2d(x, w, groups=2))
idiom("max_pool2d", [(2, 3, 6, 6)], lambda T, F, x: F.max_pool2d(x, 2))
idiom("max_pool2d-padding", [(2, 3, 7, 7)], lambda T, F, x: F.max_pool2d(x, 3, 2, 1))
idiom("avg_pool2d", [(2, 3, 6, 6)], lambda T, F, x: F.avg_pool2d(x, 2))
idiom("softmax-dim", [(3, 5)], lambda T, F, x: F.softmax(x, dim=1))
idiom("log_softmax-dim", [(3, 5)], lambda T, F, x: F.log_softmax(x, dim=1))
idiom("softmax-method", [(3, 5)], lambda T, F, x: x.softmax(dim=-1))
idiom("log_softmax-method", [(3, 5)], lambda T, F, x: x.log_softmax(1))
idiom("softmax-fn", [(3, 5)], lambda T, F, x: T.softmax(x, dim=1))
idiom("cross_entropy", [(4, 3)], lambda T, F, x: F.cross_entropy(x, labels(T)))
idiom("nll_loss", [(4, 3)], lambda T, F, x: F.nll_loss(F.log_softmax(x, dim=1), labels(T)))
idiom("linear", [(4, 3), (2, 3), (2,)], lambda T, F, x, w, b: F.linear(x, w, b))
idiom("flatten-then-linear", [(2, 2, 2, 2), (3, 8)], lambda T, F, x, w: T.flatten(x, 1) @ w.T)


def linear_module(T, F, x, w, b):
    layer = T.nn.Linear(3, 2).to(x.dtype)
    with T.no_grad():
        layer.weight.copy_(w)
        layer.bias.copy_(b)
    return layer(x).relu().sum(dim=1)


def conv_module(T, F, x, w):
    layer = T.nn.Conv2d(2, 3, 3, padding="same", bias=False).to(x.dtype)
    with T.no_grad():
        layer.weight.copy_(w)
    return F.max_pool2d(layer(x), 2).flatten(1)


def loss_module(T, F, x):
    return T.nn.CrossEntropyLoss()(x, labels(T))


idiom("nn.Linear-with-copied-weights", [(4, 3), (2, 3), (2,)], linear_module)
idiom("nn.Conv2d-same-then-pool", [(2, 2, 6, 6), (3, 2, 3, 3)], conv_module, **WINOGRAD)
idiom("nn.CrossEntropyLoss", [(4, 3)], loss_module)

# ---------------------------------------------------------------- the harness


def _torch_dtype(dtype):
    return {np.float64: torch.float64, np.float32: torch.float32}[dtype]


def _run(idiom: Idiom, lib: str, arrays, dtype, upstream_seed: int):
    if lib == "torch":
        T, F = torch, torch.nn.functional
        inputs = [torch.tensor(a, dtype=_torch_dtype(dtype), requires_grad=True) for a in arrays]
    else:
        T, F = tm, tm.nn.functional
        inputs = [tm.Tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    out = idiom.fn(T, F, *inputs)
    grads = None
    if idiom.grad:
        differentiable = [t for t in _tensors(out) if t.requires_grad]
        if differentiable:
            rng = np.random.default_rng(upstream_seed)
            total = None
            for t in differentiable:
                u = rng.standard_normal(tuple(t.shape)).astype(dtype)
                term = (t * (torch.tensor(u) if lib == "torch" else tm.Tensor(u))).sum()
                total = term if total is None else total + term
            total.backward()
            grads = [_grad_array(t) for t in inputs]
    return _plain(out), grads


def _tensors(out):
    if isinstance(out, (torch.Tensor, tm.Tensor)):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return []


def _grad_array(t):
    g = t.grad
    if g is None:
        return np.zeros(tuple(t.shape))
    return g.detach().numpy() if isinstance(g, torch.Tensor) else np.asarray(g)


def _plain(out):
    """Results as comparable values: (array, dtype name) for tensors, recursively for tuples."""
    if isinstance(out, torch.Tensor):
        array = out.detach().numpy()
        return ("tensor", array, str(array.dtype))
    if isinstance(out, tm.Tensor):
        return ("tensor", out.data, str(out.dtype))
    if isinstance(out, np.ndarray):
        return ("tensor", out, str(out.dtype))
    if isinstance(out, (tuple, list)):
        return type(out).__name__ if not hasattr(out, "_fields") else "tuple", [
            _plain(o) for o in out
        ]
    if isinstance(out, torch.Size):
        return tuple(out)
    return out


def _assert_same(ours, ref, rtol, atol, where="result"):
    if isinstance(ref, tuple) and len(ref) == 3 and ref[0] == "tensor":
        assert isinstance(ours, tuple) and ours[:1] == ("tensor",), f"{where}: {ours!r}"
        assert ours[2] == ref[2], f"{where}: dtype {ours[2]}, PyTorch's {ref[2]}"
        assert np.shape(ours[1]) == np.shape(ref[1]), f"{where}: shape"
        scale = (
            max(1.0, float(np.max(np.abs(ref[1]), initial=0.0))) if ref[1].dtype.kind == "f" else 1
        )
        np.testing.assert_allclose(ours[1], ref[1], rtol=rtol, atol=atol * scale, err_msg=where)
    elif isinstance(ref, tuple) and len(ref) == 2 and isinstance(ref[1], list):
        assert isinstance(ours, tuple) and len(ours[1]) == len(ref[1]), f"{where}: {ours!r}"
        for k, (o, r) in enumerate(zip(ours[1], ref[1], strict=True)):
            _assert_same(o, r, rtol, atol, f"{where}[{k}]")
    elif isinstance(ref, float):
        assert ours == pytest.approx(ref, rel=rtol, abs=atol), where
    else:
        assert ours == ref, f"{where}: {ours!r}, PyTorch's {ref!r}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("idiom", IDIOMS, ids=[i.name for i in IDIOMS])
def test_idiom_matches_pytorch(idiom, dtype):
    rng = np.random.default_rng(0)
    arrays = [rng.uniform(*idiom.bounds, size=s) for s in idiom.shapes]
    tol = 1e-10 if dtype == np.float64 else idiom.tol32
    ref, ref_grads = _run(idiom, "torch", arrays, dtype, upstream_seed=1)
    ours, our_grads = _run(idiom, "tm", arrays, dtype, upstream_seed=1)
    _assert_same(ours, ref, tol, tol)
    assert (our_grads is None) == (ref_grads is None), "one side needs a gradient, one not"
    for k, (g, r) in enumerate(zip(our_grads or [], ref_grads or [], strict=True)):
        assert g.dtype == r.dtype, f"grad of input {k}: dtype {g.dtype}, PyTorch's {r.dtype}"
        scale = max(1.0, float(np.max(np.abs(r), initial=0.0)))
        np.testing.assert_allclose(g, r, rtol=tol, atol=tol * scale, err_msg=f"grad of input {k}")


def test_there_are_at_least_150_idioms():
    assert len(IDIOMS) >= 150
    assert len({i.name for i in IDIOMS}) == len(IDIOMS), "idiom names must be unique"


# ---------------------------------------------------------------- fit's default loss


def test_fit_refuses_logits_with_the_default_nll_loss():
    """Old main: fit trained nll_loss on logits, the loss went to -14 with no warning."""
    rng = np.random.default_rng(0)
    x = rng.random((64, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    tm.manual_seed(0)
    logits = tm.nn.Sequential(tm.nn.Flatten(), tm.nn.Linear(784, 10))
    optimizer = tm.optim.SGD(logits.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"loss_fn=nn\.functional\.cross_entropy"):
        tm.fit(logits, optimizer, (x, y), iterations=2, batch_size=32, progress=False)
    # the same model with cross_entropy, or ending in LogSoftmax, trains
    tm.fit(logits, optimizer, (x, y), iterations=2, batch_size=32, progress=False,
           loss_fn=tm.nn.functional.cross_entropy)  # fmt: skip
    log_probs = tm.nn.Sequential(logits, tm.nn.LogSoftmax(dim=1))
    tm.fit(log_probs, optimizer, (x, y), iterations=2, batch_size=32, progress=False)
