"""Backward fusion (kernels/fusion.py) gives exactly the gradients of the unfused ops."""

from __future__ import annotations

import numpy as np
import pytest

from tinygrad_mnist import Tensor, kernels
from tinygrad_mnist.kernels.elementwise import ThreadedReLU


def pooled_relu_grads(x: np.ndarray, weights: np.ndarray, *, retain=False, second_use=False):
    """x.grad (and the ReLU output's .grad when retained) of sum(pool(relu(x)) * weights)."""
    t = Tensor(x, requires_grad=True)
    r = t.relu()
    if retain:
        r.retain_grad()
    loss = (r.max_pool2d(2) * Tensor(weights)).sum()
    if second_use:
        loss = loss + (r * 0.5).sum()
    loss.backward()
    return t.grad, r.grad


def layouts(shape, seed):
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(shape)
    values[0, 0, :2, :2] = 0.0  # a window of ties at zero
    values[0, 1, 2, 3] = np.nan  # a NaN window
    n, c, h, w = shape
    channels_last = np.ascontiguousarray(values.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    batch_last = np.ascontiguousarray(values.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    return {"c": values, "channels-last": channels_last, "batch-last": batch_last}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["c", "channels-last", "batch-last"])
@pytest.mark.parametrize("case", ["fused", "retained", "second use"])
def test_fused_backward_equals_the_unfused_ops(dtype, layout, case):
    x = layouts((3, 4, 8, 10), seed=1)[layout].astype(dtype)
    weights = np.random.default_rng(2).standard_normal((3, 4, 4, 5)).astype(dtype)
    options = dict(retain=case == "retained", second_use=case == "second use")
    with kernels.use("fast"):
        got, got_r = pooled_relu_grads(x, weights, **options)
    with kernels.use("reference"):
        expected, expected_r = pooled_relu_grads(x, weights, **options)
    np.testing.assert_array_equal(got, expected)
    if case == "retained":
        np.testing.assert_array_equal(got_r, expected_r)


def test_the_relu_backward_is_skipped_when_fused(monkeypatch):
    calls = []
    original = ThreadedReLU.backward

    def counted(self, grad):
        calls.append(1)
        return original(self, grad)

    monkeypatch.setattr(ThreadedReLU, "backward", counted)
    x = layouts((2, 3, 6, 6), seed=3)["channels-last"]
    weights = np.ones((2, 3, 3, 3))
    with kernels.use("fast"):
        pooled_relu_grads(x, weights)
        assert calls == []  # fused: the ReLU's own pass never ran
        pooled_relu_grads(x, weights, retain=True)
        assert calls == [1]  # its output keeps .grad: not fused
        pooled_relu_grads(x, weights, second_use=True)
        assert calls == [1, 1]  # its output feeds another op too: not fused


def relu_conv_grads(x, weight, bias, *, retain=False):
    t = Tensor(x, requires_grad=True)
    w = Tensor(weight, requires_grad=True)
    b = Tensor(bias, requires_grad=True)
    r = t.relu()
    if retain:
        r.retain_grad()
    out = r.conv2d(w, b)
    (out * Tensor(np.linspace(-1, 1, out.data.size).reshape(out.shape))).sum().backward()
    assert out._op is not None
    assert out._op.kernel == ("winograd" if kernels.mode() == "fast" else "reference")
    return t.grad, w.grad, b.grad


@pytest.mark.parametrize("layout", ["c", "channels-last"])
def test_conv_after_relu_fused_equals_unfused(layout, monkeypatch):
    x = layouts((5, 6, 14, 10), seed=4)[layout]
    x = np.nan_to_num(x).astype(np.float32)  # NaN through a Winograd conv spreads to all
    rng = np.random.default_rng(5)
    weight = rng.standard_normal((7, 6, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(7).astype(np.float32)
    calls = []
    original = ThreadedReLU.backward
    monkeypatch.setattr(
        ThreadedReLU, "backward", lambda self, grad: calls.append(1) or original(self, grad)
    )
    with kernels.use("fast"):
        fused = relu_conv_grads(x, weight, bias)
        assert calls == []  # the conv applied the ReLU's mask itself
        unfused = relu_conv_grads(x, weight, bias, retain=True)
        assert calls == [1]
    for got, expected in zip(fused, unfused, strict=True):
        np.testing.assert_array_equal(got, expected)
    with kernels.use("reference"):
        reference = relu_conv_grads(x, weight, bias)
    for got, expected in zip(fused, reference, strict=True):
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * scale)


def conv_relu_pool_grads(x, weight, bias, *, padding=0, relu_first=False, retain_conv=False):
    """Gradients of sum(pool(relu(conv(x))) * weights) for x, weight and bias."""
    t = Tensor(x, requires_grad=True)
    w = Tensor(weight, requires_grad=True)
    b = Tensor(bias, requires_grad=True)
    source = t.relu() if relu_first else t
    conv = source.conv2d(w, b, padding=padding)
    if retain_conv:
        conv.retain_grad()
    pooled = conv.relu().max_pool2d(2)
    weights = np.linspace(-1, 1, pooled.data.size).reshape(pooled.shape)
    (pooled * Tensor(weights.astype(x.dtype))).sum().backward()
    return t.grad, w.grad, b.grad


def count_pool_backwards(monkeypatch) -> list:
    """A list that gets an item each time a tiled max-pool runs its own backward."""
    from tinygrad_mnist.kernels.pool import TiledMaxPool2d

    calls: list = []
    original = TiledMaxPool2d.backward
    monkeypatch.setattr(
        TiledMaxPool2d, "backward", lambda self, g: calls.append(1) or original(self, g)
    )
    return calls


def small_integers(shape, seed):
    """Integers from -2 to 2: sums of them tie exactly, inside windows and across them."""
    return np.random.default_rng(seed).integers(-2, 3, size=shape).astype(np.float32)


@pytest.mark.parametrize("layout", ["c", "channels-last"])
@pytest.mark.parametrize("relu_first", [False, True])
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("chunk_images", [1, 64])
def test_conv_relu_pool_fused_equals_unfused(
    layout, relu_first, padding, chunk_images, monkeypatch
):
    """The conv that takes its output gradient's tiles from the pool (one Winograd chunk or
    one per image) gives the gradients of the ops run one by one, bit for bit."""
    from tinygrad_mnist.kernels import winograd

    size = 18 - 2 * padding  # a 16 x 16 conv output: 4 x 4 tiles of 2 x 2 windows each
    x = small_integers((3, 4, size, size), seed=6)
    if layout == "channels-last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    weight, bias = small_integers((6, 4, 3, 3), seed=7), small_integers((6,), seed=8)
    per_image = winograd.PATCH**2 * 16 * 6 * 4  # bytes of one image's Winograd-domain array
    monkeypatch.setattr(winograd, "CHUNK_BYTES", per_image * chunk_images)
    pool_calls = count_pool_backwards(monkeypatch)
    options = dict(padding=padding, relu_first=relu_first)
    with kernels.use("fast"):
        fused = conv_relu_pool_grads(x, weight, bias, **options)
        assert pool_calls == []  # the conv took the pool's backward into its own
        unfused = conv_relu_pool_grads(x, weight, bias, retain_conv=True, **options)
        assert pool_calls == [1]  # the conv's output keeps .grad: the pool ran on its own
    for got, expected in zip(fused, unfused, strict=True):
        np.testing.assert_array_equal(got, expected)
    # against the textbook: values without exact ties, which Winograd's rounding would break
    # differently from a direct convolution
    x = x + np.random.default_rng(12).standard_normal(x.shape).astype(np.float32)
    with kernels.use("fast"):
        fused = conv_relu_pool_grads(x, weight, bias, **options)
    with kernels.use("reference"):
        reference = conv_relu_pool_grads(x, weight, bias, **options)
    for got, expected in zip(fused, reference, strict=True):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


def test_conv_relu_pool_is_not_fused_when_tiles_would_split_windows(monkeypatch):
    """A 14 x 14 conv output: Winograd's last tiles hang over the edge and cut windows in
    two, so the pool runs its own backward."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 4, 16, 16)).astype(np.float32)
    weight, bias = small_integers((5, 4, 3, 3), seed=10), small_integers((5,), seed=11)
    pool_calls = count_pool_backwards(monkeypatch)
    with kernels.use("fast"):
        got = conv_relu_pool_grads(x, weight, bias)
    assert pool_calls == [1]
    with kernels.use("reference"):
        expected = conv_relu_pool_grads(x, weight, bias)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-4 * np.abs(e).max())


def first_conv_grads(x, weight, bias, *, retain_conv=False, input_grad=False):
    """Gradients of sum(pool(relu(conv(x))) * weights) for weight and bias (and x)."""
    t = Tensor(x, requires_grad=input_grad)
    w = Tensor(weight, requires_grad=True)
    b = Tensor(bias, requires_grad=True)
    conv = t.conv2d(w, b)
    if retain_conv:
        conv.retain_grad()
    pooled = conv.relu().max_pool2d(2)
    weights = np.linspace(-1, 1, pooled.data.size).reshape(pooled.shape)
    (pooled * Tensor(weights.astype(x.dtype))).sum().backward()
    assert conv._op is not None
    return conv._op.kernel, t.grad, w.grad, b.grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("split", [False, True])
def test_batch_last_conv_relu_pool_fused_equals_unfused(dtype, split, monkeypatch):
    """seed-cnn's first layers: the batch-last conv takes its output gradient two rows at a
    time from the pool, bit for bit what the ops one by one give (exact ties included)."""
    from tinygrad_mnist.kernels import parallel

    if split:  # several parts, each its own rows
        monkeypatch.setattr(parallel, "MIN_SPLIT_ELEMENTS", 0)
        monkeypatch.setattr(parallel, "workers", lambda: 3)
    x = small_integers((6, 1, 12, 10), seed=13).astype(dtype)
    weight, bias = small_integers((4, 1, 3, 3), seed=14), small_integers((4,), seed=15)
    weight, bias = weight.astype(dtype), bias.astype(dtype)
    pool_calls = count_pool_backwards(monkeypatch)
    with kernels.use("fast"):
        kernel, *fused = first_conv_grads(x, weight, bias)
        assert kernel == "batch-last" and pool_calls == []
        _, *unfused = first_conv_grads(x, weight, bias, retain_conv=True)
        assert pool_calls == [1]
        _, *with_input_grad = first_conv_grads(x, weight, bias, input_grad=True)
        assert pool_calls == [1, 1]  # the input wants a gradient: the pool ran on its own
    with kernels.use("reference"):
        _, *reference = first_conv_grads(x, weight, bias)
    for got, same, also, expected in zip(fused, unfused, with_input_grad, reference, strict=True):
        if expected is None:
            assert got is None
            continue
        if split:  # the parts cut the rows differently: the partial sums round differently
            np.testing.assert_allclose(got, same, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(got, also, rtol=1e-6, atol=1e-6)
        else:
            np.testing.assert_array_equal(got, same)
            np.testing.assert_array_equal(got, also)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_batch_last_conv_is_not_fused_with_a_pool_that_drops_a_row(monkeypatch):
    """A 9-row conv output: the pool drops its last row, so the conv's rows are not all whole
    window rows and the pool runs its own backward."""
    x = small_integers((3, 1, 11, 10), seed=16)
    weight, bias = small_integers((4, 1, 3, 3), seed=17), small_integers((4,), seed=18)
    pool_calls = count_pool_backwards(monkeypatch)
    with kernels.use("fast"):
        got = first_conv_grads(x, weight, bias)[2:]
    assert pool_calls == [1]
    with kernels.use("reference"):
        expected = first_conv_grads(x, weight, bias)[2:]
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
