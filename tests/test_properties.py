"""Property tests (hypothesis): random broadcast shapes and reduction axes.

Gradients are compared with NumPy reference formulas everywhere, and with PyTorch when it is
installed. Inputs come from a seeded NumPy generator so that examples stay cheap.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygrad_mnist import Tensor, gradcheck

SETTINGS = settings(max_examples=40, deadline=None)
Shape = tuple[int, ...]

# ---------------------------------------------------------------- strategies

shapes = st.lists(st.integers(1, 4), min_size=0, max_size=4).map(tuple)


@st.composite
def broadcast_pairs(draw) -> tuple[Shape, Shape]:
    """Two shapes (up to 4-D, dims 1-4) that broadcast together; either may have fewer axes."""
    full = draw(st.lists(st.integers(1, 4), min_size=0, max_size=4))
    pair = []
    for _ in range(2):
        ndim = draw(st.integers(0, len(full)))
        dims = full[len(full) - ndim :]
        ones = draw(st.lists(st.booleans(), min_size=ndim, max_size=ndim))
        pair.append(tuple(1 if one else d for d, one in zip(dims, ones, strict=True)))
    return pair[0], pair[1]


@st.composite
def shape_and_axis(draw):
    """A shape (0- to 4-D) and a valid axis for it: None, an int (maybe negative) or a tuple."""
    shape = draw(st.lists(st.integers(1, 4), min_size=0, max_size=4).map(tuple))
    ndim = len(shape)
    if ndim == 0:
        return shape, None
    single = st.integers(-ndim, ndim - 1)
    several = st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(
        lambda axes: tuple(a - ndim if i % 2 else a for i, a in enumerate(axes))
    )
    return shape, draw(st.one_of(st.none(), single, several))


# ---------------------------------------------------------------- NumPy references


def sum_to(grad: np.ndarray, shape: Shape) -> np.ndarray:
    """Reference unbroadcast: sum the leading extra axes, then every axis stretched from 1."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


def _ones(a, b):
    return np.ones(np.broadcast_shapes(a.shape, b.shape))


BINARY = {
    # name: (our op, forward, d/da, d/db), the derivatives on arrays before unbroadcasting
    "add": (lambda a, b: a + b, np.add, _ones, _ones),
    "sub": (lambda a, b: a - b, np.subtract, _ones, lambda a, b: -_ones(a, b)),
    "mul": (lambda a, b: a * b, np.multiply, lambda a, b: b * _ones(a, b), lambda a, b: a + 0 * b),
    "div": (lambda a, b: a / b, np.divide, lambda a, b: _ones(a, b) / b, lambda a, b: -a / (b * b)),
    "maximum": (lambda a, b: a.maximum(b), np.maximum, lambda a, b: (a > b) + 0.5 * (a == b),
                lambda a, b: (b > a) + 0.5 * (a == b)),
    "minimum": (lambda a, b: a.minimum(b), np.minimum, lambda a, b: (a < b) + 0.5 * (a == b),
                lambda a, b: (b < a) + 0.5 * (a == b)),
    "where": (lambda a, b: a.where(a > 0, b), lambda a, b: np.where(a > 0, a, b),
              lambda a, b: (a > 0) + 0 * b, lambda a, b: (a <= 0) + 0 * b),
    "pow": (lambda a, b: a.abs() ** b, lambda a, b: np.abs(a) ** b,
            lambda a, b: b * np.abs(a) ** (b - 1) * np.sign(a),
            lambda a, b: np.abs(a) ** b * np.log(np.abs(a))),
}  # fmt: skip


def _inputs(shape_a: Shape, shape_b: Shape, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.uniform(-2, 2, size=shape_a)
    b = rng.uniform(0.5, 2, size=shape_b) * rng.choice([-1.0, 1.0], size=shape_b)
    return a, b


# ---------------------------------------------------------------- binary ops


@SETTINGS
@given(pair=broadcast_pairs(), name=st.sampled_from(sorted(BINARY)), seed=st.integers(0, 2**16))
def test_binary_broadcast_gradients(pair, name, seed):
    our_op, forward, d_da, d_db = BINARY[name]
    a_data, b_data = _inputs(*pair, seed)
    a, b = Tensor(a_data, requires_grad=True), Tensor(b_data, requires_grad=True)
    out = our_op(a, b)
    upstream = np.random.default_rng(seed + 1).standard_normal(out.shape)
    out.backward(upstream)

    np.testing.assert_allclose(out.data, forward(a_data, b_data), rtol=1e-12)
    assert a.grad.shape == a_data.shape and b.grad.shape == b_data.shape
    np.testing.assert_allclose(a.grad, sum_to(upstream * d_da(a_data, b_data), a_data.shape),
                               rtol=1e-10, atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(b.grad, sum_to(upstream * d_db(a_data, b_data), b_data.shape),
                               rtol=1e-10, atol=1e-12)  # fmt: skip

    if torch is not None:
        ta = torch.tensor(a_data, requires_grad=True)
        tb = torch.tensor(b_data, requires_grad=True)
        our_op(ta, tb).backward(torch.tensor(upstream))
        np.testing.assert_allclose(a.grad, ta.grad.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(b.grad, tb.grad.numpy(), rtol=1e-6, atol=1e-6)


@SETTINGS
@given(pair=broadcast_pairs(), name=st.sampled_from(sorted(BINARY)), seed=st.integers(0, 2**8))
def test_binary_broadcast_float32_stays_float32(pair, name, seed):
    a_data, b_data = _inputs(*pair, seed)
    a = Tensor(a_data.astype(np.float32), requires_grad=True)
    b = Tensor(b_data.astype(np.float32), requires_grad=True)
    out = BINARY[name][0](a, b)
    out.sum().backward()
    assert out.dtype == np.float32
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float32


# ---------------------------------------------------------------- reductions


def _max_grad(x: np.ndarray, axis, upstream_kept: np.ndarray) -> np.ndarray:
    """Reference: the gradient goes to the maxima, shared equally between ties."""
    is_max = x == x.max(axis=axis, keepdims=True)
    return is_max * upstream_kept / is_max.sum(axis=axis, keepdims=True)


def _count(shape: Shape, axis) -> int:
    if axis is None:
        return int(np.prod(shape))
    axes = (axis,) if isinstance(axis, int) else axis
    return int(np.prod([shape[a] for a in axes]))


@SETTINGS
@given(
    shape_axis=shape_and_axis(),
    name=st.sampled_from(["sum", "mean", "amax"]),
    keepdims=st.booleans(),
    ties=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_reduction_gradients(shape_axis, name, keepdims, ties, seed):
    shape, axis = shape_axis
    rng = np.random.default_rng(seed)
    # small integers make ties common: max must share the gradient between them as torch.amax
    x_data = (
        rng.integers(-2, 3, size=shape).astype(np.float64) if ties else rng.standard_normal(shape)
    )
    x = Tensor(x_data, requires_grad=True)
    out = getattr(x, name)(dim=axis, keepdim=keepdims)
    expected = getattr(np, name)(x_data, axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    assert out.shape == np.shape(expected)

    upstream = rng.standard_normal(out.shape)
    out.backward(upstream)
    kept = upstream.reshape(np.sum(x_data, axis=axis, keepdims=True).shape)
    reference = {
        "sum": lambda: np.broadcast_to(kept, shape),
        "mean": lambda: np.broadcast_to(kept / _count(shape, axis), shape),
        "amax": lambda: _max_grad(x_data, axis, kept),
    }[name]()
    np.testing.assert_allclose(x.grad, reference, rtol=1e-12, atol=1e-15)

    if torch is not None:
        tx = torch.tensor(x_data, requires_grad=True)
        fn = getattr(torch, name)
        if axis is None:
            tout = fn(tx).reshape(out.shape)
        else:
            tout = fn(tx, dim=axis, keepdim=keepdims)
        tout.backward(torch.tensor(upstream))
        np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-6, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(
    shape_axis=shape_and_axis(),
    name=st.sampled_from(["sum", "mean", "amax", "var", "std", "softmax", "log_softmax"]),
    seed=st.integers(0, 2**16),
)
def test_reductions_pass_gradcheck(shape_axis, name, seed):
    shape, axis = shape_axis
    if name in ("softmax", "log_softmax"):
        if not shape or not isinstance(axis, int):
            axis = -1 if shape else None
        if axis is None:
            return
    if name in ("var", "std") and _count(shape, axis) < 2:
        return  # n - 1 = 0: a variance of one element is nan, as in PyTorch
    x = Tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)
    assert gradcheck(lambda t: getattr(t, name)(dim=axis), [x])
    if torch is not None:
        tx = torch.tensor(x.data, requires_grad=True)
        tout = getattr(tx, name)() if axis is None else getattr(tx, name)(dim=axis)
        out = getattr(x, name)(dim=axis)
        upstream = np.random.default_rng(seed + 1).standard_normal(out.shape)
        out.backward(upstream)
        tout.backward(torch.tensor(upstream))
        np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- movement


@st.composite
def shape_and_permutation(draw):
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple))
    perm = draw(st.permutations(range(len(shape))))
    return shape, tuple(perm)


@SETTINGS
@given(shape_perm=shape_and_permutation(), seed=st.integers(0, 2**16))
def test_transpose_and_reshape_gradients_route_back(shape_perm, seed):
    shape, perm = shape_perm
    rng = np.random.default_rng(seed)
    x_data = rng.standard_normal(shape)
    x = Tensor(x_data, requires_grad=True)
    out = x.permute(perm).reshape(-1)
    np.testing.assert_array_equal(out.data, x_data.transpose(perm).reshape(-1))
    upstream = rng.standard_normal(out.shape)
    out.backward(upstream)
    expected = upstream.reshape(x_data.transpose(perm).shape).transpose(np.argsort(perm))
    np.testing.assert_array_equal(x.grad, expected)


@pytest.mark.parametrize("pair", [((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((), (2, 2))])
def test_broadcast_strategy_examples_are_valid(pair):
    """The reference `sum_to` inverts broadcasting on the shapes the strategy produces."""
    full = np.broadcast_shapes(*pair)
    for shape in pair:
        assert sum_to(np.ones(full), shape).shape == shape


@st.composite
def shape_and_dim(draw):
    """A shape (1- to 4-D) and one dim of it, maybe negative."""
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple))
    return shape, draw(st.integers(-len(shape), len(shape) - 1))


TORCH_LIKE = {
    "max-dim": lambda t, d: t.max(dim=d).values,
    "min-dim-keepdim": lambda t, d: t.min(d, keepdim=True)[0],
    "transpose": lambda t, d: t.transpose(d, 0),
    "unsqueeze": lambda t, d: t.unsqueeze(d),
    "squeeze": lambda t, d: t.unsqueeze(d).squeeze(d),
    "split": lambda t, d: t.split(2, dim=d)[-1],
    "chunk": lambda t, d: t.chunk(2, d)[0],
    "cat-self": lambda t, d: (t * 2).sum(d, keepdim=True).expand(*t.shape) + t,
    "var-dim": lambda t, d: t.var(d, keepdim=True) if t.shape[d] > 1 else t.sum(d),
}


@SETTINGS
@given(shape_dim=shape_and_dim(), name=st.sampled_from(sorted(TORCH_LIKE)), seed=st.integers(0, 99))
def test_dim_ops_match_pytorch(shape_dim, name, seed):
    """Ops taking one dim, on random shapes and dims: values and gradients as PyTorch's."""
    if torch is None:
        pytest.skip("needs PyTorch")
    shape, dim = shape_dim
    data = np.random.default_rng(seed).standard_normal(shape)
    x, tx = Tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    out, tout = TORCH_LIKE[name](x, dim), TORCH_LIKE[name](tx, dim)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    upstream = np.random.default_rng(seed + 1).standard_normal(out.shape)
    out.backward(upstream)
    tout.backward(torch.tensor(upstream))
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-8, atol=1e-10)


@st.composite
def conv_cases(draw):
    """conv2d arguments that fit: groups dividing both channel counts, dilated kernels that fit
    the padded input."""
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 7))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 7))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    x, weight = (draw(st.integers(1, 2)), cin, h, w), (cout, cin // groups, kh, kw)
    return x, weight, dict(stride=stride, padding=(ph, pw), dilation=(dh, dw), groups=groups)


@settings(max_examples=25, deadline=None)
@given(case=conv_cases(), bias=st.booleans(), seed=st.integers(0, 99))
def test_conv2d_with_dilation_and_groups_matches_pytorch(case, bias, seed):
    if torch is None:
        pytest.skip("needs PyTorch")
    x_shape, w_shape, kwargs = case
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape)]
    if bias:
        arrays.append(rng.standard_normal(w_shape[0]))
    ours = [Tensor(a, requires_grad=True) for a in arrays]
    ref = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = ours[0].conv2d(*ours[1:], **kwargs)
    tout = torch.nn.functional.conv2d(*ref, **kwargs)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-10, atol=1e-10)
    upstream = rng.standard_normal(out.shape)
    out.backward(upstream)
    tout.backward(torch.tensor(upstream))
    for t, r in zip(ours, ref, strict=True):
        np.testing.assert_allclose(t.grad, r.grad.numpy(), rtol=1e-10, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(["max", "avg"]),
    k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    size=st.tuples(st.integers(3, 8), st.integers(3, 8)),
    seed=st.integers(0, 99),
    data=st.data(),
)
def test_padded_pooling_matches_pytorch(kind, k, s, size, seed, data):
    if torch is None:
        pytest.skip("needs PyTorch")
    padding = (data.draw(st.integers(0, k[0] // 2)), data.draw(st.integers(0, k[1] // 2)))
    x = np.random.default_rng(seed).standard_normal((2, 2, *size))
    t, tt = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out = getattr(t, f"{kind}_pool2d")(k, s, padding)
    tout = getattr(torch.nn.functional, f"{kind}_pool2d")(tt, k, s, padding)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-12, atol=1e-12)
    upstream = np.random.default_rng(seed + 1).standard_normal(out.shape)
    out.backward(upstream)
    tout.backward(torch.tensor(upstream))
    np.testing.assert_allclose(t.grad, tt.grad.numpy(), rtol=1e-12, atol=1e-12)
