"""The engine room: fast kernels that stand in for some textbook ops.

`ops.py` says what every op computes, as plainly as NumPy allows; this package makes the
heavy ones fast (Winograd and im2col convolution, tiled pooling, work split across the cores,
the allocator tuning) without changing a result. Read it after the textbook, or not at all:

- `table`: which kernels may replace which op, in order of preference, and `choose`;
- `base`: what a kernel is (a subclass of its textbook op with `applies`);
- `settings`: `use("reference")` / TINYGRAD_MNIST_KERNELS, `set_float32_precision`;
- `layouts`: the memory-layout agreements between kernels;
- `fusion`: backward passes of neighbouring ops done as one (`fuse`);
- `deferred`: a ReLU whose output the next op does without, made only when read: a max-pool
  takes its max first (`relu_max_pool`), a Winograd conv applies it itself (`relu_conv2d`);
- the kernels: `conv_im2col`, `winograd`, `pool`, `elementwise`, `matmul`, `optimizers`;
- helpers: `convolution` (what the fast convs share), `parallel` (batch splitting across
  cores), `allocator` (keep freed memory between training steps).
"""

from .deferred import relu_conv2d, relu_max_pool
from .fusion import fuse
from .settings import get_float32_precision, mode, set_float32_precision, use
from .table import KERNELS, choose

__all__ = [
    "KERNELS",
    "choose",
    "fuse",
    "get_float32_precision",
    "mode",
    "relu_conv2d",
    "relu_max_pool",
    "set_float32_precision",
    "use",
]
