"""The memory-layout agreements between kernels, written down in one place.

Every array passed between ops has NumPy's logical shape (NCHW for images), and every textbook
op accepts any memory order, so layouts never change a result. They change speed: NumPy pays
per contiguous run of memory, so an elementwise op over runs of 8 numbers costs several times
one over long rows, and a conv reading its input channels-last gathers each window as kh*kw
runs of C numbers. The kernels therefore agree on these layouts:

1. Conv2d kernels read their input as channels-last (N, H, W, C). When the input is the NCHW
   view of a previous conv's (or pool's) channels-last output, that costs nothing.
2. Conv2d kernels return the NCHW view of one of three memory orders:
   - channels-last (N, OH, OW, O), in general (im2col, Winograd);
   - channel-major (O, N, OH, OW) for im2col with fewer than `CHANNEL_MAJOR_BELOW` output
     channels: long rows per channel make the ReLU and max-pool after it ~30% faster;
   - batch-last (O, OH, OW, N) for the batch-last kernel (one input channel, few outputs):
     the ReLU and max-pool after it then work on runs of N numbers.
3. ReLU and max-pool kernels keep their input's memory layout (`np.empty_like`), and their
   gradients have it too, so conv -> relu -> pool -> conv stays in the conv's layout, forward
   and backward, and each conv's backward gets its gradient in its own output's layout.
4. MatMul: a column-major 2-D left operand (a flattened batch-last output, whose reshape is a
   column-major view) gets a column-major gradient, so the layers before it see their own
   layout again; a column-major right operand (Linear's transposed weight) likewise, so the
   weight's gradient is C-ordered like the weight, and the optimizer streams through both.
"""

from __future__ import annotations

import numpy as np

# im2col convolutions with fewer output channels than this store their output channel-major
CHANNEL_MAJOR_BELOW = 16


def conv_output(n: int, oh: int, ow: int, o: int, dtype) -> np.ndarray:
    """An empty (N, OH, OW, O) conv output in the memory order of agreement 2 (im2col)."""
    if o < CHANNEL_MAJOR_BELOW:
        return np.empty((o, n, oh, ow), dtype=dtype).transpose(1, 2, 3, 0)
    return np.empty((n, oh, ow, o), dtype=dtype)
