"""Matrix products on both cores with one-thread BLAS each (`parallel.matmul`).

After a threaded product OpenBLAS keeps its idle threads spinning for ~0.1 s, which in a
training loop takes a core from everything else; splitting the rows (or columns) between our
own threads, each with a one-thread BLAS, keeps both cores on the product and nothing spinning.
"""

from __future__ import annotations

from .. import ops
from . import parallel
from .base import Kernel


class ThreadedMatMul(Kernel, ops.MatMul):
    """a @ b for 2-D operands, split across the cores; the gradient of a column-major operand
    is column-major too (`layouts`, agreement 4)."""

    kernel = "threaded"

    @classmethod
    def applies(cls, a, b) -> bool:
        return a.ndim == 2 and b.ndim == 2

    def forward(self, a, b):
        self.a, self.b = a, b
        if _transposed(b) and not _transposed(a) and a.shape[1] >= 16 * max(len(a), b.shape[1]):
            # a Linear layer, x @ W^T, with an inner size that dwarfs the batch (lenet-cnn's
            # 9216 features at batch 64-128): computed as (W @ x^T)^T, whose operands BLAS reads
            # in their own order, each core taking half of the inner dimension. At batch 1000
            # cutting the batch is faster (9.6 against 14.8 ms).
            return parallel.matmul_inner_split(b.T, a.T).T
        return parallel.matmul(a, b)

    def backward(self, grad):
        a, b = self.a, self.b
        grad_a = grad_b = None
        if self.needs_input_grad[0]:
            if _transposed(a):
                grad_a = parallel.matmul(b, grad.T).T  # (b @ grad^T)^T: column-major
            else:
                grad_a = parallel.matmul(grad, b.T)
        if self.needs_input_grad[1]:
            if _transposed(b):
                # b is a transposed weight (Linear's W^T): (grad^T @ a)^T is column-major, so
                # the weight's own gradient comes out C-ordered, as the optimizer reads it
                grad_b = parallel.matmul(grad.T, a).T
            else:
                grad_b = parallel.matmul(a.T, grad)
        return grad_a, grad_b


def _transposed(a) -> bool:
    """True for a column-major 2-D array (the transpose of a C-ordered one)."""
    return a.flags.f_contiguous and not a.flags.c_contiguous
