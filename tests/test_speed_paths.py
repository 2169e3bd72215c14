"""The fast paths of the CNN ops: same values and gradients as PyTorch, float32 kept throughout.

Conv2d works channels-last (its output is an NCHW view of NHWC memory), ReLU and max-pool keep
that memory layout, and max-pool with kernel == stride takes the max over views of the tiles.
These tests feed each op inputs in both memory layouts, with padding, strides, odd sizes and
ties, in float64 and float32, and check that no op silently upcasts to float64.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinygrad_mnist import Tensor, ops
from tinygrad_mnist.models import build_model
from tinygrad_mnist.nn.functional import nll_loss
from tinygrad_mnist.optim import Adam
from tinygrad_mnist.tensor import topological_order

torch = pytest.importorskip("torch")

TOL = {np.float64: dict(rtol=1e-9, atol=1e-9), np.float32: dict(rtol=1e-4, atol=1e-4)}


def channels_last(a: np.ndarray) -> np.ndarray:
    """The same NCHW values, stored NHWC in memory (as our conv outputs are)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def run_both(fn_ours, fn_torch, arrays, upstream, dtype):
    """Forward and backward in both frameworks; returns (ours out, grads), (torch out, grads)."""
    ours = [Tensor(a.astype(dtype, copy=False), requires_grad=True) for a in arrays]
    out = fn_ours(*ours)
    out.backward(upstream.astype(dtype))
    theirs = [
        torch.tensor(
            np.ascontiguousarray(a), dtype=getattr(torch, np.dtype(dtype).name), requires_grad=True
        )
        for a in arrays
    ]
    tout = fn_torch(*theirs)
    tout.backward(torch.tensor(upstream, dtype=tout.dtype))
    return (out, [t.grad for t in ours]), (tout, [t.grad.numpy() for t in theirs])


def assert_matches(ours, theirs, dtype):
    (out, grads), (tout, tgrads) = ours, theirs
    assert out.dtype == dtype
    np.testing.assert_allclose(out.data, tout.detach().numpy(), **TOL[dtype])
    for g, tg in zip(grads, tgrads, strict=True):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, tg, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize(
    "shape, wshape, stride, padding",
    [
        ((2, 3, 9, 8), (4, 3, 3, 3), 1, 0),
        ((2, 3, 9, 8), (4, 3, 3, 3), 1, 1),
        ((2, 5, 11, 10), (6, 5, 3, 2), (2, 3), (1, 2)),
        ((3, 1, 12, 12), (8, 1, 3, 3), 1, 0),
        ((1, 4, 7, 7), (2, 4, 1, 1), 2, 0),
        ((2, 3, 9, 8), (16, 3, 3, 3), 2, 1),  # channels-last output
        ((2, 1, 9, 8), (16, 1, 3, 3), 1, 1),  # offset-major im2col, channels-last output
        ((3, 1, 9, 8), (5, 1, 3, 3), 1, 1),  # batch-last
        ((3, 1, 10, 9), (5, 1, 3, 2), (2, 1), (0, 1)),  # batch-last, strided, not square
    ],
)
def test_conv2d_matches_torch(dtype, layout, shape, wshape, stride, padding):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    x = channels_last(x) if layout == "nhwc" else x
    w, b = rng.standard_normal(wshape), rng.standard_normal(wshape[0])
    oh = (shape[2] + 2 * np.broadcast_to(padding, 2)[0] - wshape[2]) // np.broadcast_to(stride, 2)[
        0
    ] + 1
    ow = (shape[3] + 2 * np.broadcast_to(padding, 2)[1] - wshape[3]) // np.broadcast_to(stride, 2)[
        1
    ] + 1
    upstream = channels_last(rng.standard_normal((shape[0], wshape[0], oh, ow)))
    results = run_both(
        lambda x, w, b: x.conv2d(w, b, stride=stride, padding=padding),
        lambda x, w, b: torch.nn.functional.conv2d(x, w, b, stride=stride, padding=padding),
        [x, w, b],
        upstream,
        dtype,
    )
    assert_matches(*results, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize(
    "shape, kernel, ties",
    [
        ((2, 3, 8, 8), 2, False),
        ((2, 3, 9, 7), 2, False),  # odd sizes: the last row and column are in no window
        ((2, 4, 8, 8), 2, True),  # small integers: many ties, the first max gets the gradient
        ((1, 2, 9, 9), 3, True),
        ((1, 2, 8, 6), (2, 3), True),
    ],
)
def test_max_pool_fast_path_matches_torch(dtype, layout, shape, kernel, ties):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 3, shape).astype(float) if ties else rng.standard_normal(shape)
    x = channels_last(x) if layout == "nhwc" else x
    k = np.broadcast_to(kernel, 2)
    upstream = rng.standard_normal((shape[0], shape[1], shape[2] // k[0], shape[3] // k[1]))
    results = run_both(
        lambda x: x.max_pool2d(kernel),
        lambda x: torch.nn.functional.max_pool2d(x, kernel),
        [x],
        upstream,
        dtype,
    )
    assert_matches(*results, dtype)


def test_relu_matches_torch_and_keeps_layout():
    rng = np.random.default_rng(3)
    x = channels_last(rng.standard_normal((2, 3, 4, 5)).astype(np.float32))
    x[0, 0, 0, :2] = 0.0  # d/dx relu at 0 is 0, as in PyTorch
    upstream = rng.standard_normal(x.shape)
    ours, theirs = run_both(lambda x: x.relu(), torch.relu, [x], upstream, np.float32)
    assert_matches(ours, theirs, np.float32)
    assert ours[0].data.transpose(0, 2, 3, 1).flags.c_contiguous


@pytest.mark.parametrize(
    "in_channels, out_channels, stride, algorithm, memory_order",
    [
        (1, 16, 1, "im2col", (0, 2, 3, 1)),  # NHWC
        (2, 4, 2, "im2col", (1, 0, 2, 3)),  # few output channels: channel-major (C, N, H, W)
        (1, 4, 1, "batch-last", (1, 2, 3, 0)),  # a first layer: batch innermost (C, H, W, N)
    ],
)
def test_cnn_ops_keep_the_conv_output_memory_layout(
    in_channels, out_channels, stride, algorithm, memory_order
):
    """conv -> relu -> pool hands one memory layout along, so no op transposes a copy."""
    rng = np.random.default_rng(4)
    x = Tensor(rng.standard_normal((2, in_channels, 12, 12)).astype(np.float32))
    w = Tensor(
        rng.standard_normal((out_channels, in_channels, 3, 3)).astype(np.float32),
        requires_grad=True,
    )
    h = x.conv2d(w, stride=stride)
    assert h._op.kernel == algorithm
    for t in (h, h.relu(), h.relu().max_pool2d(2)):
        assert t.data.transpose(*memory_order).flags.c_contiguous, t.data.strides


def test_a_flattened_batch_last_output_gets_its_gradient_in_its_own_layout():
    """conv (batch-last) -> flatten -> linear: the linear layer's input gradient comes back
    column-major, so reshaped to NCHW it lines up with the conv output's memory."""
    rng = np.random.default_rng(5)
    x = Tensor(rng.standard_normal((4, 1, 8, 8)))
    w = Tensor(rng.standard_normal((3, 1, 3, 3)), requires_grad=True)
    h = x.conv2d(w)
    h.retain_grad()
    flat = h.reshape(4, -1)
    (flat @ Tensor(rng.standard_normal((108, 5)))).sum().backward()
    assert h.grad.transpose(1, 2, 3, 0).flags.c_contiguous


@pytest.mark.parametrize("name", ["seed-cnn", "lenet-cnn"])
def test_training_step_stays_float32(name, monkeypatch):
    """No op computes in float64 behind our back: every forward output, every gradient an op
    returns (before Tensor.backward casts it), every .grad and Adam's state stay float32."""
    seen = []
    for op_class in ops.op_classes():
        if "backward" in vars(op_class):
            original = vars(op_class)["backward"]

            def checked(self, grad, original=original):
                result = original(self, grad)
                seen.extend((self.name, g.dtype) for g in result if g is not None)
                return result

            monkeypatch.setattr(op_class, "backward", checked)
    np.random.seed(0)
    model = build_model(name)
    optimizer = Adam(model.parameters())
    x = np.random.default_rng(5).random((4, 1, 28, 28), dtype=np.float32)
    out = model(Tensor(x))
    loss = nll_loss(out, np.array([0, 1, 2, 3]))
    graph = topological_order(loss, only_requiring_grad=True)
    assert {t.dtype for t in graph} == {np.dtype(np.float32)}
    loss.backward()
    optimizer.step()
    assert seen and {dtype for _, dtype in seen} == {np.dtype(np.float32)}, seen
    for p in model.parameters():
        assert p.dtype == np.float32 and p.grad.dtype == np.float32
    moments = [s[k] for s in optimizer.state.values() for k in ("exp_avg", "exp_avg_sq")]
    assert moments and all(m.dtype == np.float32 for m in moments)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("kernel, stride", [(2, None), (3, None), (3, 2), ((2, 3), None)])
def test_max_pool_nan_windows_match_torch(layout, kernel, stride):
    """A window holding NaN outputs NaN, and its gradient goes where PyTorch's goes (the last
    NaN); windows without NaN are unaffected."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 9, 9))
    x[rng.random(x.shape) < 0.15] = np.nan
    x = channels_last(x) if layout == "nhwc" else x
    ours = Tensor(x, requires_grad=True)
    out = ours.max_pool2d(kernel, stride)
    upstream = rng.standard_normal(out.shape)
    out.backward(upstream)
    theirs = torch.tensor(np.ascontiguousarray(x), requires_grad=True)
    tout = torch.nn.functional.max_pool2d(theirs, kernel, stride)
    tout.backward(torch.tensor(upstream))
    assert np.isnan(out.data).any()
    np.testing.assert_array_equal(out.data, tout.detach().numpy())
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-12, atol=1e-12)
