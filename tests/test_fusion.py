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
