"""Elementwise ops on both cores, in their input's memory layout.

NumPy runs a ufunc on one core; for arrays of a million elements or more, `parallel.split`
gives each core a share of the batch. Outputs and gradients keep the input's memory layout
(`layouts`, agreement 3).
"""

from __future__ import annotations

import numpy as np

from .. import ops
from . import parallel
from .base import Kernel

# NumPy's max with a scalar skips its SIMD loop: on pieces that fit in cache a max against an
# array of zeros is ~2x faster even counting its allocation; on larger ones memory is the limit
# either way and the zeros would only add traffic
ZEROS_BYTES = 2 << 20


class ThreadedReLU(Kernel, ops.ReLU):
    """max(x, 0), split across the cores, keeping x's memory layout."""

    kernel = "threaded"

    @classmethod
    def applies(cls, x) -> bool:
        return x.ndim > 0

    def forward(self, x):
        out = np.empty_like(x)

        def part_relu(part):
            piece = x[part]
            zero = np.zeros_like(piece) if piece.nbytes <= ZEROS_BYTES else piece.dtype.type(0)
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
