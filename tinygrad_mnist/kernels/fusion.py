"""Backward fusion: an op's backward done together with that of the op just before it.

`Tensor.backward` runs one op's backward at a time, each a full pass over its gradient. Where
two kernels meet in a chain, their backward passes can often be one: a max-pool after a ReLU
(conv -> relu -> pool, in both reference CNNs) gives its gradient only to the winner of each
window, where the ReLU's output is the pooled value itself, so

    relu_backward(pool_backward(g)) = pool_backward(g * (pooled > 0))

masks the small pooled gradient instead of the full-size one, and the ReLU's own pass over
memory is gone. `Tensor.backward` asks `fuse` at each node; the fusion is taken only when the
ReLU's output feeds nothing but the pool in this backward and does not keep its `.grad`, so
no gradient anyone can see changes (tests/test_fusion.py checks every case against the
unfused ops).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .elementwise import ThreadedReLU
from .pool import TiledMaxPool2d


class PoolAfterReLU:
    """The backward of relu -> max-pool in one: its gradient is the ReLU's input's."""

    name = "MaxPool2d+ReLU"
    grad_is_scratch = False  # set by Tensor.backward, as on any op

    def __init__(self, pool: TiledMaxPool2d, relu: ThreadedReLU):
        self.pool, self.relu = pool, relu

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        pooled = self.pool.out
        assert pooled is not None  # `fuse` checked it
        masked = np.empty_like(pooled, dtype=np.result_type(grad, pooled))
        np.multiply(grad, pooled > 0, out=masked)  # ReLU's mask, on the pooled values
        return self.pool.backward(masked)


def fuse(node: Any, consumers: dict[int, int]) -> tuple[Any, tuple] | None:
    """(fused op, the inputs its gradients are for) when `node`'s op can take its input's op
    into its backward, else None. `consumers[id(t)]`: how many ops of this backward read t."""
    op = node._op
    if not isinstance(op, TiledMaxPool2d) or op.out is None:
        return None
    (relu_out,) = node._parents
    relu = relu_out._op
    if (
        isinstance(relu, ThreadedReLU)
        and consumers.get(id(relu_out)) == 1
        and not relu_out._retains_grad
    ):
        return PoolAfterReLU(op, relu), relu_out._parents
    return None
