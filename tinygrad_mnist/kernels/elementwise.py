"""Elementwise ops on both cores, in their input's memory layout.

NumPy runs a ufunc on one core; for arrays of a million elements or more, `parallel.split`
gives each core a share of the batch. Outputs and gradients keep the input's memory layout
(`layouts`, agreement 3).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .. import ops
from . import caches, parallel
from .base import Kernel

# NumPy's max with a scalar skips its SIMD loop; against an array of zeros it takes it. The
# zeros are one cache-sized piece, made once and reused: the max runs piece by piece
ZEROS_BYTES = 2 << 20  # arrays in no single memory order: zeros of their size up to this
MIN_ZEROS = 1 << 16  # the least the block of zeros holds, whatever the cache


class ThreadedReLU(Kernel, ops.ReLU):
    """max(x, 0), split across the cores, keeping x's memory layout."""

    kernel = "threaded"

    @classmethod
    def applies(cls, x) -> bool:
        return x.ndim > 0

    def forward(self, x):
        out = np.empty_like(x)
        flat_x, flat_out = memory_order_flat(x), memory_order_flat(out)
        if flat_x is not None and flat_out is not None and x.strides == out.strides:
            # pieces of half L2 (x, zeros and out in cache), not `caches.piece_bytes`: a
            # zeros block too large to stay in cache costs more than the calls it saves
            # (seed-cnn's ReLU at batch 64: 0.17 ms in pieces of 87K, 0.22 in 349K, 0.34 in 22K)
            piece = max(MIN_ZEROS, caches.l2_bytes() // 2 // (3 * x.itemsize))
            zeros = cached_zeros(x.dtype, piece)

            def flat_relu(span):
                size = span.stop - span.start
                np.maximum(flat_x[span], zeros[:size], out=flat_out[span])

            parallel.split_in_pieces(x.size, piece, flat_relu, elements=x.size)
        else:

            def part_relu(part):
                piece = x[part]
                small = piece.nbytes <= ZEROS_BYTES
                zero = np.zeros_like(piece) if small else piece.dtype.type(0)
                np.maximum(piece, zero, out=out[part])

            parallel.split(len(x), part_relu, elements=x.size)
        self.out = out
        return out

    def backward(self, grad):
        out = self.out
        dtype = np.result_type(grad, out)
        # in place when the gradient is ours to overwrite (`Op.grad_is_scratch`): no fresh
        # array to fill, one stream less through memory
        gx = grad if self.grad_is_scratch and grad.dtype == dtype else np.empty_like(grad, dtype)

        def part_grad(part):
            np.multiply(grad[part], out[part] > 0, out=gx[part])

        parallel.split(len(grad), part_grad, elements=grad.size)
        return (gx,)


class ThreadedReshape(Kernel, ops.Reshape):
    """x.reshape(shape) with the copy, when one is needed, split across the cores.

    Flattening a conv's channels-last output into (N, C*H*W) rows, as before a Linear layer,
    reorders all of it; NumPy does that on one core.
    """

    kernel = "threaded"

    @classmethod
    def applies(cls, x, shape) -> bool:
        return x.ndim > 0  # small copies run in one piece (`parallel.split`)

    def forward(self, x, shape):
        self.in_shape = x.shape
        view = _reshape_view(x, shape)
        if view is not None:
            return view
        out = np.empty(x.size, dtype=x.dtype).reshape(shape)
        flat = out.reshape(x.shape)  # a view: out is C-ordered

        def part_copy(part):
            np.copyto(flat[part], x[part])

        parallel.split(len(x), part_copy, elements=2 * x.size)  # a strided gather
        return out


def _reshape_view(x: np.ndarray, shape) -> np.ndarray | None:
    """x.reshape(shape) when that is a view of x's memory, else None."""
    try:
        return np.reshape(x, shape, copy=False)
    except ValueError:  # the memory order does not allow it
        return None
    except TypeError:  # NumPy before 2.1: no copy argument
        view = x.view()
        try:
            view.shape = shape
        except AttributeError:
            return None
        return view


def memory_order_flat(x: np.ndarray) -> np.ndarray | None:
    """x's elements as a 1-D view in the order they lie in memory, or None when x is not one
    gapless block of memory (a slice with steps, a broadcast)."""
    order = sorted(range(x.ndim), key=lambda axis: -abs(x.strides[axis]))
    in_memory_order = x.transpose(order)
    if not in_memory_order.flags.c_contiguous:
        return None
    return in_memory_order.reshape(-1)


@lru_cache(maxsize=8)
def cached_zeros(dtype: np.dtype, size: int) -> np.ndarray:
    """A read-only array of `size` zeros, made once per dtype and size (the last few kept)."""
    zeros = np.zeros(size, dtype=dtype)
    zeros.flags.writeable = False
    return zeros


def relu_into(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = max(x, 0) on one thread (out may be x): a small piece, in cache, of a kernel that
    applies a ReLU itself (`deferred`). Against a cached block of zeros, over both arrays in
    their memory order, NumPy takes its SIMD loop, ~3x faster than a max with the scalar 0;
    arrays with gaps or in two layouts take the scalar."""
    flat_x, flat_out = memory_order_flat(x), memory_order_flat(out)
    if flat_x is None or flat_out is None or x.strides != out.strides:
        return np.maximum(x, x.dtype.type(0), out=out)
    zeros = cached_zeros(x.dtype, 1 << max(x.size - 1, 0).bit_length())  # a few sizes only
    np.maximum(flat_x, zeros[: x.size], out=flat_out)
    return out
