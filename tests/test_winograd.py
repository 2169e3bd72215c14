"""The Winograd F(4x4, 3x3) convolution: same values and gradients as PyTorch, chosen where it wins.

`WinogradConv2d.applies` picks it only for 3x3 stride-1 convs with two or more input channels; tests
that need it for one input channel lower that minimum with monkeypatch.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import check_op

from tinygrad_mnist import Tensor
from tinygrad_mnist.kernels import winograd
from tinygrad_mnist.kernels.winograd import WinogradConv2d
from tinygrad_mnist.models import build_model

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.fixture
def always_winograd(monkeypatch):
    """Take the Winograd path for any input channel count."""
    monkeypatch.setattr(winograd, "MIN_IN_CHANNELS", 1)


def reference(x, w, b, g, padding=0):
    """PyTorch's forward and gradients (NCHW numpy arrays) for conv2d with upstream g."""
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    out = F.conv2d(tx, tw, tb, padding=padding)
    out.backward(torch.tensor(g))
    grads = [tx.grad.numpy(), tw.grad.numpy(), None if tb is None else tb.grad.numpy()]
    return out.detach().numpy(), grads


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 2e-5)])
@pytest.mark.parametrize(
    "n, c, o, h, w, bias",
    [
        (2, 8, 16, 10, 10, True),  # the output is exactly 2x2 tiles
        (3, 9, 17, 7, 13, True),  # tiles hang over the bottom and right edges
        (1, 8, 16, 3, 3, False),  # a single output pixel
        (5, 8, 16, 26, 26, True),  # lenet's geometry, several batch chunks
    ],
)
def test_module_matches_torch(n, c, o, h, w, bias, dtype, tol, monkeypatch):
    """winograd.forward / backward on channels-last arrays, several chunks or one."""
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)  # one image per chunk
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((o, c, 3, 3)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype) if bias else None
    g = rng.standard_normal((n, o, h - 2, w - 2)).astype(dtype)
    ref_out, (ref_gx, ref_gw, ref_gb) = reference(x, wt, b, g)

    out, saved = winograd.forward(x.transpose(0, 2, 3, 1), wt, b)
    assert len(saved.chunks) == n
    gx, gw, gb = winograd.backward(saved, g.transpose(0, 2, 3, 1), need_bias=bias)
    assert (gb is None) == (not bias)
    for ours, ref in [
        (out.transpose(0, 3, 1, 2), ref_out),
        (gx.transpose(0, 3, 1, 2), ref_gx),
        (gw, ref_gw),
        *([(gb, ref_gb)] if bias else []),
    ]:
        assert ours.dtype == dtype and ours.shape == ref.shape
        scale = np.abs(ref).max()
        np.testing.assert_allclose(ours, ref, rtol=0, atol=tol * scale)


def test_chunking_does_not_change_results(monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 12, 12, 8))
    wt, g = rng.standard_normal((16, 8, 3, 3)), rng.standard_normal((6, 10, 10, 16))
    whole, saved = winograd.forward(x, wt)
    grads = winograd.backward(saved, g, need_bias=True)
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)
    chunked, saved = winograd.forward(x, wt)
    assert len(saved.chunks) == 6
    np.testing.assert_allclose(chunked, whole, rtol=1e-12, atol=1e-12)
    for a, b in zip(winograd.backward(saved, g, need_bias=True), grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_only_the_wanted_gradients():
    rng = np.random.default_rng(2)
    x, wt = rng.standard_normal((2, 8, 8, 8)), rng.standard_normal((16, 8, 3, 3))
    g = rng.standard_normal((2, 6, 6, 16))
    _, saved = winograd.forward(x, wt, keep_patches=False)
    assert saved.patches is None
    gx, gw, gb = winograd.backward(saved, g, need_input=True, need_weight=False)
    assert gw is None and gb is None and gx.shape == x.shape
    _, saved = winograd.forward(x, wt)
    gx, gw, gb = winograd.backward(saved, g, need_input=False, need_weight=True)
    assert gx is None and gb is None and gw.shape == wt.shape


def test_input_mask_zeroes_the_input_gradient_where_it_is_not_positive(monkeypatch):
    """The ReLU backward fused into the conv's (`fusion`): d/dx * (mask > 0), in every chunk."""
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)
    rng = np.random.default_rng(3)
    x, wt = rng.standard_normal((3, 9, 7, 8)), rng.standard_normal((16, 8, 3, 3))
    g = rng.standard_normal((3, 7, 5, 16))
    mask = np.maximum(rng.standard_normal(x.shape), 0)
    _, saved = winograd.forward(x, wt)
    plain, gw, _ = winograd.backward(saved, g)
    masked, gw_masked, _ = winograd.backward(saved, g, input_mask=mask)
    np.testing.assert_array_equal(masked, plain * (mask > 0))
    np.testing.assert_array_equal(gw_masked, gw)


@pytest.mark.parametrize(
    "shapes, padding",
    [
        ([(2, 3, 6, 6), (2, 3, 3, 3), (2,)], 0),
        ([(1, 2, 7, 9), (3, 2, 3, 3), (3,)], 1),
        ([(2, 1, 5, 4), (2, 1, 3, 3), (2,)], (2, 1)),
    ],
)
def test_conv2d_op_on_winograd_path(shapes, padding, always_winograd):
    """Through Tensor.conv2d: PyTorch in float64 and float32, and finite differences."""
    check_op(
        shapes,
        lambda x, w, b: F.conv2d(x, w, b, padding=padding),
        lambda x, w, b: x.conv2d(w, b, padding=padding),
        rtol32=1e-4,
        atol32=1e-4,
    )
    x, w, b = (Tensor(np.ones(s), requires_grad=True) for s in shapes)
    assert x.conv2d(w, b, padding=padding)._op.kernel == "winograd"


def test_applies_only_where_valid_and_faster():
    def applies(x_shape, w_shape, stride=(1, 1), dtype=np.float32):
        x, w = np.zeros(x_shape, dtype), np.zeros(w_shape, dtype)
        return WinogradConv2d.applies(x, w, None, stride, (0, 0))

    assert applies((2, 32, 8, 8), (64, 32, 3, 3))
    assert not applies((2, 32, 8, 8), (64, 32, 3, 3), stride=(2, 2))  # strided
    assert not applies((2, 32, 8, 8), (64, 32, 5, 5))  # not 3x3
    assert not applies((2, 32, 8, 8), (64, 32, 3, 3), dtype=np.int64)
    assert not applies((2, 1, 8, 8), (32, 1, 3, 3))  # too few channels to win


def test_lenet_takes_winograd_for_its_second_conv():
    model = build_model("lenet-cnn")
    x = Tensor(np.zeros((2, 1, 28, 28), dtype=np.float32))
    first = model[0](x)
    second = model[2](model[1](first))
    assert first._op.kernel == "im2col"
    assert second._op.kernel == "winograd"
