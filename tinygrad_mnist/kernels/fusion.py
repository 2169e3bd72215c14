"""Backward fusion: an op's backward done together with that of the op just before it.

`Tensor.backward` runs one op's backward at a time, each a full pass over its gradient. Where
two kernels meet in a chain, their backward passes can often be one: a max-pool after a ReLU
(conv -> relu -> pool, in both reference CNNs) gives its gradient only to the winner of each
window, where the ReLU's output is the pooled value itself, so

    relu_backward(pool_backward(g)) = pool_backward(g * (pooled > 0))

masks the small pooled gradient instead of the full-size one, and the ReLU's own pass over
memory is gone. Likewise a Winograd conv after a ReLU (lenet-cnn's second conv) zeroes its
input gradient where the ReLU's output is not > 0 while each chunk of it is still in cache.

The longest chain, conv -> relu -> 2x2 max-pool with a Winograd conv whose tiles hold whole
pooling windows (lenet-cnn's second conv), is done as one: the conv takes each batch chunk's
output gradient, cut into its tiles, straight from the pooled gradient and the pool's winners,
and the full-size gradient between them (9.4 MB at batch 64) is never written nor read back.
seed-cnn's batch-last first conv does the same two output rows at a time.

`Tensor.backward` asks `fuse` at each node; a fusion is taken only when each tensor inside it
feeds nothing but the next op in this backward and does not keep its `.grad`, so no gradient
anyone can see changes (tests/test_fusion.py checks every case against the unfused ops).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from .conv_im2col import BatchLastConv2d
from .convolution import FastConv2d
from .deferred import DeferredReLU
from .elementwise import ThreadedReLU
from .pool import TiledMaxPool2d
from .winograd import TILE, WinogradConv2d


class PoolAfterReLU:
    """The backward of relu -> max-pool in one: its gradient is the ReLU's input's."""

    name = "MaxPool2d+ReLU"
    grad_is_scratch = False  # set by Tensor.backward, as on any op

    def __init__(self, pool: TiledMaxPool2d):
        self.pool = pool

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        self.pool.mask_by_output = True  # the ReLU's mask, on the pooled values
        try:
            return self.pool.backward(grad)
        finally:
            self.pool.mask_by_output = False


class ConvAfterReLU:
    """The backward of relu -> conv in one: the conv zeroes its input gradient where the ReLU's
    output is not > 0, chunk by chunk while it is in cache (`FastConv2d.masks_input_grad`)."""

    name = "Conv2d+ReLU"
    grad_is_scratch = False

    def __init__(self, conv: FastConv2d, relu: ThreadedReLU):
        self.conv, self.relu = conv, relu

    def backward(self, grad: np.ndarray) -> tuple:
        self.conv.input_mask = _relu_mask(self.relu).transpose(0, 2, 3, 1)  # channels-last
        try:
            return self.conv.backward(grad)
        finally:
            self.conv.input_mask = None


class ConvReLUPool:
    """The backward of conv -> relu -> 2x2 max-pool in one. The conv gets its output gradient
    routed from the pooled gradient by the pool's winners and masked by the ReLU, a piece at a
    time, and the full-size gradient between the ops is never written: a Winograd conv whose
    4x4 output tiles each hold 2x2 whole windows as each chunk's tiles (`grad_tiles`), the
    batch-last first conv, with no input gradient to give, two output rows at a time inside
    its weight-gradient products (`grad_rows`). A ReLU before a Winograd conv may be fused in
    too."""

    name = "Conv2d+ReLU+MaxPool2d"
    grad_is_scratch = False

    def __init__(self, conv: FastConv2d, pool: TiledMaxPool2d, relu_before: Any = None):
        self.conv, self.pool, self.relu_before = conv, pool, relu_before

    def backward(self, grad: np.ndarray) -> tuple:
        conv, pool = self.conv, self.pool
        if isinstance(conv, WinogradConv2d):
            conv.grad_tiles = partial(_pooled_grad_tiles, pool, grad)
        elif isinstance(conv, BatchLastConv2d):
            conv.grad_rows = partial(_pooled_grad_rows, pool, grad)
        if self.relu_before is not None:
            conv.input_mask = _relu_mask(self.relu_before).transpose(0, 2, 3, 1)
        try:
            return conv.backward(None)
        finally:
            if isinstance(conv, WinogradConv2d):
                conv.grad_tiles = None
            elif isinstance(conv, BatchLastConv2d):
                conv.grad_rows = None
            conv.input_mask = None


def _relu_mask(relu: ThreadedReLU) -> np.ndarray:
    """An array > 0 exactly where the ReLU's output is: its input when its output was left
    unmade (`deferred`), else its output."""
    return relu.x if isinstance(relu, DeferredReLU) else relu.out


def _window_corners(
    pool: TiledMaxPool2d, grad: np.ndarray, index: tuple, order: tuple
) -> np.ndarray:
    """The gradient of the ReLU before `pool` (so of the conv before that) at every corner of
    the pooling windows `index` selects: (2, 2, *pooled) with corner (i, j) of each window at
    [i, j], the pooled axes transposed by `order` into the conv's memory order. The same
    numbers as the pool's backward (`_route_2x2`) and the ReLU's."""
    assert pool.pair_winners is not None and pool.out is not None  # checked by `fuse`
    right_in_top, right_in_bottom, bottom_row = (
        won[index].transpose(order) for won in pool.pair_winners
    )
    g = np.empty(bottom_row.shape, dtype=grad.dtype)
    g[...] = grad[index].transpose(order)
    g *= pool.out[index].transpose(order) > 0  # the ReLU: its output is the pooled value
    # each window's gradient to its winner, by forward's three comparisons
    corners = np.empty((2, 2, *g.shape), dtype=g.dtype)
    np.multiply(g, bottom_row, out=corners[1, 0])
    np.subtract(g, corners[1, 0], out=corners[0, 0])
    for row, right_won in ((0, right_in_top), (1, right_in_bottom)):
        np.multiply(corners[row, 0], right_won, out=corners[row, 1])
        corners[row, 0] -= corners[row, 1]
    return corners


def _pooled_grad_tiles(pool: TiledMaxPool2d, grad: np.ndarray, chunk: slice) -> np.ndarray:
    """The conv's output gradient for images `chunk`, cut into Winograd's 4x4 tiles as
    `winograd.backward` reads them: (16, tiles * C), the in-tile positions first."""
    corners = _window_corners(pool, grad, (chunk,), (0, 2, 3, 1))  # channels-last
    # pixel (TILE*t + 2a + i, TILE*u + 2b + j) is corner (i, j) of window (2t + a, 2u + b)
    n, oh, ow, c = corners.shape[2:]
    th, tw = oh // 2, ow // 2
    windows = corners.reshape(2, 2, n, th, 2, tw, 2, c)  # (i, j, n, t, a, u, b, C)
    tiles = np.empty((2, 2, 2, 2, n, th, tw, c), dtype=corners.dtype)  # (a, i, b, j, n, t, u, C)
    tiles[...] = windows.transpose(4, 0, 6, 1, 2, 3, 5, 7)
    return tiles.reshape(TILE * TILE, -1)


def _pooled_grad_rows(pool: TiledMaxPool2d, grad: np.ndarray, rows: slice) -> np.ndarray:
    """The batch-last conv's output gradient for its output rows `rows` (whole window rows):
    (O, rows, OW, N), as `BatchLastConv2d` stores its output."""
    windows = slice(rows.start // 2, rows.stop // 2)
    corners = _window_corners(pool, grad, (slice(None), slice(None), windows), (1, 2, 3, 0))
    c, wh, ww, n = corners.shape[2:]
    out = np.empty((c, wh, 2, ww, 2, n), dtype=corners.dtype)  # pixel (2p + i, 2q + j)
    out[...] = corners.transpose(2, 3, 0, 4, 1, 5)
    return out.reshape(c, 2 * wh, 2 * ww, n)


def fuse(node: Any, consumers: dict[int, int]) -> tuple[Any, tuple] | None:
    """(fused op, the inputs its gradients are for) when `node`'s op can take its input's op
    into its backward, else None. `consumers[id(t)]`: how many ops of this backward read t."""
    op = node._op
    if isinstance(op, TiledMaxPool2d) and op.out is not None:
        relu_out = _only_consumed_relu_output(node._parents[0], consumers)
        if relu_out is not None:
            conv_out = relu_out._parents[0]
            if _conv_takes_pooled_grad(conv_out, op, consumers):
                relu_before = _relu_before(conv_out._op, conv_out, consumers)
                if relu_before is not None:
                    parents = (*relu_before._parents, *conv_out._parents[1:])
                    return ConvReLUPool(conv_out._op, op, relu_before._op), parents
                return ConvReLUPool(conv_out._op, op), conv_out._parents
            return PoolAfterReLU(op), relu_out._parents
    if isinstance(op, FastConv2d):
        relu_out = _relu_before(op, node, consumers)
        if relu_out is not None:
            return ConvAfterReLU(op, relu_out._op), (*relu_out._parents, *node._parents[1:])
    return None


def _relu_before(conv: FastConv2d, conv_out: Any, consumers: dict[int, int]) -> Any:
    """The output of a fast ReLU that only `conv` reads, when the conv can mask its input
    gradient with it (no padding); else None."""
    if (
        conv.masks_input_grad
        and conv.needs_input_grad[0]
        and conv.geometry.ph == conv.geometry.pw == 0
    ):
        return _only_consumed_relu_output(conv_out._parents[0], consumers)
    return None


def _conv_takes_pooled_grad(tensor: Any, pool: TiledMaxPool2d, consumers: dict[int, int]) -> bool:
    """True when `tensor`, which only the ReLU before `pool` reads, was made by a conv that can
    take its output gradient from `pool` (`ConvReLUPool`): `pool` is 2x2 with its three
    comparisons (no NaN window) over the whole of it, and the conv is a Winograd conv whose
    4x4 tiles hold whole windows or a batch-last conv that gives no input gradient."""
    if not _feeds_only_the_next_op(tensor, consumers) or pool.pair_winners is None:
        return False
    h, w, oh, ow, kh, kw = pool.geometry
    if (kh, kw) != (2, 2) or (h, w) != (2 * oh, 2 * ow):
        return False
    conv = tensor._op
    if isinstance(conv, WinogradConv2d):
        return h % TILE == 0 and w % TILE == 0
    return isinstance(conv, BatchLastConv2d) and not conv.needs_input_grad[0]


def _feeds_only_the_next_op(tensor: Any, consumers: dict[int, int]) -> bool:
    """True when this backward reads `tensor` once and it keeps no `.grad` of its own."""
    return consumers.get(id(tensor)) == 1 and not tensor._retains_grad


def _only_consumed_relu_output(tensor: Any, consumers: dict[int, int]) -> Any:
    """`tensor` when a fast ReLU made it and this backward reads it once, without it keeping
    its `.grad`; else None."""
    if isinstance(tensor._op, ThreadedReLU) and _feeds_only_the_next_op(tensor, consumers):
        return tensor
    return None
