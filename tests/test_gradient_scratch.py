"""Ops may overwrite a gradient that nothing else holds (`Op.grad_is_scratch`); never one that
is also a tensor's .grad, the caller's array, or handed to two inputs."""

from __future__ import annotations

import numpy as np

from tinygrad_mnist import Tensor, kernels
from tinygrad_mnist.kernels.elementwise import ThreadedReLU


def _mixed(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_one_array_handed_to_two_relus_is_not_overwritten():
    # Add's backward hands the same array to both inputs: the first ReLU must not mask it in
    # place, or the second would see the first one's zeros
    x1 = Tensor(_mixed((64, 300), 1), requires_grad=True)
    x2 = Tensor(_mixed((64, 300), 2), requires_grad=True)
    ((x1.relu() + x2.relu()) * 1.0).sum().backward()  # Mul makes the array Add hands out
    np.testing.assert_array_equal(x1.grad, (x1.data > 0).astype(np.float32))
    np.testing.assert_array_equal(x2.grad, (x2.data > 0).astype(np.float32))


def test_views_of_one_array_handed_to_two_relus_are_not_overwritten():
    # Add hands one array to both inputs; each Transpose's backward makes a view of it
    x1 = Tensor(_mixed((64, 300), 11), requires_grad=True)
    x2 = Tensor(_mixed((64, 300), 12), requires_grad=True)
    ((x1.relu().T + x2.relu().T) * 1.0).sum().backward()
    np.testing.assert_array_equal(x1.grad, (x1.data > 0).astype(np.float32))
    np.testing.assert_array_equal(x2.grad, (x2.data > 0).astype(np.float32))


def test_a_transposed_weights_gradient_is_taken_over_without_a_copy():
    w = Tensor(_mixed((10, 300), 13), requires_grad=True)
    x = Tensor(_mixed((64, 300), 14))
    with kernels.use("fast"):  # the fast MatMul makes W^T's gradient in W^T's own layout
        (x @ w.T).sum().backward()
    assert w.grad is not None and w.grad.flags.c_contiguous
    assert w.grad.base is not None  # the product's own memory, seen through the transpose
    np.testing.assert_allclose(w.grad, np.broadcast_to(x.data.sum(axis=0), (10, 300)), rtol=1e-5)


def test_a_retained_gradient_is_not_overwritten():
    x = Tensor(_mixed((64, 300), 3), requires_grad=True)
    w = _mixed((64, 300), 4)
    y = x * 2.0
    y.retain_grad()
    z = y.relu()
    (z * Tensor(w)).sum().backward()
    np.testing.assert_array_equal(y.grad, w * (y.data > 0))
    upstream = x * 1.0
    upstream.retain_grad()
    r = upstream.relu()
    r.retain_grad()
    (r * Tensor(w)).sum().backward()
    np.testing.assert_array_equal(r.grad, w)  # r's own gradient, not masked by the ReLU


def test_the_callers_gradient_is_not_overwritten():
    x = Tensor(_mixed((64, 300), 5), requires_grad=True)
    seed = _mixed((64, 300), 6)
    kept = seed.copy()
    x.relu().backward(seed)
    np.testing.assert_array_equal(seed, kept)
    np.testing.assert_array_equal(x.grad, kept * (x.data > 0))


def test_the_fast_relu_writes_into_a_scratch_gradient_only():
    x = _mixed((64, 300), 7)
    for scratch in (True, False):
        op = ThreadedReLU((True,))
        op.forward(x)
        op.grad_is_scratch = scratch
        grad = _mixed((64, 300), 8)
        kept = grad.copy()
        (gx,) = op.backward(grad)
        np.testing.assert_array_equal(gx, kept * (x > 0))
        assert (gx is grad) == scratch
        if not scratch:
            np.testing.assert_array_equal(grad, kept)


def test_backward_marks_a_fresh_gradient_as_scratch():
    x = Tensor(_mixed((64, 300), 9), requires_grad=True)
    out = x.relu()
    (out * 3.0).sum().backward()  # Mul's backward makes a fresh array for the ReLU
    assert out._op is not None and out._op.grad_is_scratch
