"""Backward fusion: an op's backward done together with that of the op just before it.

`Tensor.backward` runs one op's backward at a time, each a full pass over its gradient. Where
two kernels meet in a chain, their backward passes can often be one: a max-pool after a ReLU
(conv -> relu -> pool, in both reference CNNs) gives its gradient only to the winner of each
window, where the ReLU's output is the pooled value itself, so

    relu_backward(pool_backward(g)) = pool_backward(g * (pooled > 0))

masks the small pooled gradient instead of the full-size one, and the ReLU's own pass over
memory is gone. Likewise a Winograd conv after a ReLU (lenet-cnn's second conv) zeroes its
input gradient where the ReLU's output is not > 0 while each chunk of it is still in cache.

`Tensor.backward` asks `fuse` at each node; a fusion is taken only when the ReLU's output
feeds nothing but the next op in this backward and does not keep its `.grad`, so no gradient
anyone can see changes (tests/test_fusion.py checks every case against the unfused ops).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .convolution import FastConv2d
from .elementwise import ThreadedReLU
from .pool import TiledMaxPool2d


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
        self.conv.input_mask = self.relu.out.transpose(0, 2, 3, 1)  # channels-last, as conv's
        try:
            return self.conv.backward(grad)
        finally:
            self.conv.input_mask = None


def fuse(node: Any, consumers: dict[int, int]) -> tuple[Any, tuple] | None:
    """(fused op, the inputs its gradients are for) when `node`'s op can take its input's op
    into its backward, else None. `consumers[id(t)]`: how many ops of this backward read t."""
    op = node._op
    if isinstance(op, TiledMaxPool2d) and op.out is not None:
        relu_out = _only_consumed_relu_output(node._parents[0], consumers)
        if relu_out is not None:
            return PoolAfterReLU(op), relu_out._parents
    if (
        isinstance(op, FastConv2d)
        and op.masks_input_grad
        and op.needs_input_grad[0]
        and op.geometry.ph == op.geometry.pw == 0
    ):
        relu_out = _only_consumed_relu_output(node._parents[0], consumers)
        if relu_out is not None:
            return ConvAfterReLU(op, relu_out._op), (*relu_out._parents, *node._parents[1:])
    return None


def _only_consumed_relu_output(tensor: Any, consumers: dict[int, int]) -> Any:
    """`tensor` when a fast ReLU made it and this backward reads it once, without it keeping
    its `.grad`; else None."""
    if (
        isinstance(tensor._op, ThreadedReLU)
        and consumers.get(id(tensor)) == 1
        and not tensor._retains_grad
    ):
        return tensor
    return None
