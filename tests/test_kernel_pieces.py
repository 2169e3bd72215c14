"""The cache sizes the kernels size their pieces by, and kernels that work in pieces."""

from __future__ import annotations

import numpy as np
import pytest

from tinygrad_mnist.kernels import caches, optimizers
from tinygrad_mnist.kernels.elementwise import ThreadedReLU, memory_order_flat


@pytest.mark.parametrize(
    "text, size", [("2048K", 2 << 20), ("1M", 1 << 20), ("65536", 65536), (" 512K\n", 512 << 10)]
)
def test_sysfs_sizes_are_read_in_bytes(text, size):
    assert caches.parse_size(text) == size


def test_l2_size_falls_back_when_the_machine_hides_it(tmp_path, monkeypatch):
    monkeypatch.setattr(caches, "CACHE_INFO", tmp_path)
    caches.l2_bytes.cache_clear()
    try:
        assert caches.l2_bytes() == caches.FALLBACK_L2_BYTES
    finally:
        caches.l2_bytes.cache_clear()


def test_l2_size_is_read_from_sysfs(tmp_path, monkeypatch):
    for name, level, kind, size in [("index0", 1, "Data", "48K"), ("index2", 2, "Unified", "1M")]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "level").write_text(f"{level}\n")
        (tmp_path / name / "type").write_text(f"{kind}\n")
        (tmp_path / name / "size").write_text(f"{size}\n")
    monkeypatch.setattr(caches, "CACHE_INFO", tmp_path)
    caches.l2_bytes.cache_clear()
    try:
        assert caches.l2_bytes() == 1 << 20
        assert caches.piece_bytes() == caches.MIN_PIECE_BYTES  # half of 1 MiB is below it
        assert caches.elements_per_piece(4) == caches.MIN_PIECE_BYTES // 16
        monkeypatch.setattr(caches, "MIN_PIECE_BYTES", 1 << 16)
        assert caches.elements_per_piece(4) == (1 << 20) // 2 // 16
    finally:
        caches.l2_bytes.cache_clear()


@pytest.mark.parametrize("order", ["C", "F"])
def test_adam_in_pieces_equals_adam_in_one_go(monkeypatch, order):
    """Pieces far smaller than the arrays (and a gradient in another memory order) give the
    update of the whole arrays at once, bit for bit."""
    rng = np.random.default_rng(0)
    shape = (37, 1001)
    data = rng.standard_normal(shape).astype(np.float32)
    g = np.asarray(rng.standard_normal(shape).astype(np.float32), order=order)
    m = rng.standard_normal(shape).astype(np.float32)
    v = rng.random(shape).astype(np.float32)
    args = (0.9, 0.999, 1e-3, 0.7, 1e-8)
    whole = [a.copy() for a in (data, g, m, v)]
    optimizers._update(*whole, *args)
    monkeypatch.setattr(caches, "elements_per_piece", lambda arrays, itemsize=4: 1000)
    optimizers.adam_update_(data, g, m, v, *args)
    for ours, expected in zip((data, m, v), (whole[0], whole[2], whole[3]), strict=True):
        np.testing.assert_array_equal(ours, expected)


def test_memory_order_flat_views_gapless_arrays_only():
    a = np.arange(120.0).reshape(2, 3, 4, 5)
    channels_last = np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    for x in (a, np.asfortranarray(a), channels_last):
        flat = memory_order_flat(x)
        assert flat is not None and np.shares_memory(flat, x)
        assert sorted(flat.tolist()) == sorted(x.ravel().tolist())
    assert memory_order_flat(a[:, :, ::2]) is None
    assert memory_order_flat(np.broadcast_to(a[:1], (4, 3, 4, 5))) is None


@pytest.mark.parametrize("step", [1, 2])
def test_relu_in_pieces_equals_maximum(monkeypatch, step):
    from tinygrad_mnist.kernels import elementwise

    monkeypatch.setattr(caches, "l2_bytes", lambda: 2 * 3 * 4 * 4096)  # pieces of 4096
    monkeypatch.setattr(elementwise, "MIN_ZEROS", 1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 64, 6, 9 * step)).astype(np.float32)[..., ::step]
    x[0, 0, 0, :3] = [np.nan, -0.0, 0.0]
    out = ThreadedReLU((True,)).forward(x)
    np.testing.assert_array_equal(out, np.maximum(x, np.float32(0)))
    assert out.strides == np.empty_like(x).strides


@pytest.mark.parametrize("layout", [(0, 1, 2, 3), (0, 2, 3, 1), (1, 2, 3, 0)])
def test_max_pool_in_pieces_equals_pool_in_one_piece(monkeypatch, layout):
    """Cut into many pieces (NCHW, channels-last and batch-last memory), the tiled max-pool
    gives the same output and gradient, bit for bit, as in one piece."""
    from tinygrad_mnist.kernels.pool import TiledMaxPool2d

    rng = np.random.default_rng(1)
    memory = rng.standard_normal([(6, 5, 8, 8)[axis] for axis in layout]).astype(np.float32)
    x = memory.transpose(np.argsort(layout))  # NCHW view of that memory order
    grad = rng.standard_normal((6, 5, 4, 4)).astype(np.float32)
    results = []
    for piece in (1 << 30, 256):
        monkeypatch.setattr(caches, "piece_bytes", lambda piece=piece: piece)
        monkeypatch.setattr("tinygrad_mnist.kernels.parallel.MIN_SPLIT_ELEMENTS", 1)
        op = TiledMaxPool2d((True,))
        out = op.forward(x, (2, 2), (2, 2))
        results.append((out, op.backward(grad)[0]))
    (whole_out, whole_grad), (pieces_out, pieces_grad) = results
    np.testing.assert_array_equal(pieces_out, whole_out)
    np.testing.assert_array_equal(pieces_grad, whole_grad)


def test_batch_last_conv_product_in_blocks_equals_one_product(monkeypatch):
    """The batch-last conv's wide product cut into many blocks of columns gives the same
    output, bit for bit, as in one block."""
    from tinygrad_mnist.kernels.conv_im2col import BatchLastConv2d as kernel

    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 1, 9, 11)).astype(np.float32)
    weight = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    outputs = []
    for l2 in (1 << 30, 8 * 4 * 4 * 3):  # one block; blocks of 3 columns
        monkeypatch.setattr(caches, "l2_bytes", lambda l2=l2: l2)
        outputs.append(kernel((False, True, True)).forward(x, weight, bias))  # kept: no reuse
    np.testing.assert_array_equal(outputs[1], outputs[0])


@pytest.mark.parametrize("gapless", [True, False])
def test_read_only_view_is_as_strided_and_read_only(gapless):
    from numpy.lib.stride_tricks import as_strided

    from tinygrad_mnist.kernels.convolution import read_only_view

    x = np.arange(2 * 7 * 6, dtype=np.float32).reshape(2, 7, 6)
    if not gapless:
        x = x[:, ::2]  # every other row: not one gapless block
    s0, s1, s2 = x.strides
    shape, strides = (2, x.shape[1] - 1, 2, 6), (s0, s1, s1, s2)  # overlapping row pairs
    view = read_only_view(x, shape, strides)
    np.testing.assert_array_equal(view, as_strided(x, shape, strides))
    assert np.shares_memory(view, x) and not view.flags.writeable
