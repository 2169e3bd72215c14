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
