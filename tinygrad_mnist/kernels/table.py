"""THE table: for each textbook op, the kernels that may replace it, in order of preference.

`choose` walks an op's row and takes the first kernel that is allowed (kernel mode "fast";
precision "high" for kernels that are not exact) and that `applies` to the inputs; with none,
the textbook op runs. To add a kernel: write it (see `base`), add it to its op's row here, and
add its cases to tests/test_kernels.py.
"""

from __future__ import annotations

from .. import ops
from . import settings
from .base import Kernel
from .conv_im2col import BatchLastConv2d, Im2colConv2d
from .elementwise import ThreadedReLU, ThreadedReshape
from .matmul import ThreadedMatMul
from .pool import TiledMaxPool2d
from .winograd import WinogradConv2d

KERNELS: dict[type[ops.Op], tuple[type[Kernel], ...]] = {
    ops.Conv2d: (WinogradConv2d, BatchLastConv2d, Im2colConv2d),
    ops.MaxPool2d: (TiledMaxPool2d,),
    ops.ReLU: (ThreadedReLU,),
    ops.MatMul: (ThreadedMatMul,),
    ops.Reshape: (ThreadedReshape,),
}


def choose(op_class: type[ops.Op], inputs, attrs: dict) -> type[ops.Op]:
    """The class to run `op_class` with on these input arrays and attributes."""
    row = KERNELS.get(op_class)
    if not row or settings.mode() == "reference":
        return op_class
    exact_only = settings.get_float32_precision() == "highest"
    for kernel in row:
        if (kernel.exact or not exact_only) and kernel.applies(*inputs, **attrs):
            return kernel  # type: ignore[return-value]
    return op_class
