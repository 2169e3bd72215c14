"""Forward fusion: a ReLU followed by a max-pool, with the pool's max taken first.

relu and max commute, max(relu(a), relu(b)) = relu(max(a, b)), so the pool can read the ReLU's
input and apply the ReLU to its own output, a quarter the size (2x2 windows). The ReLU's
full-size output is then needed only by whoever reads it, and in a training step of the
reference CNNs nothing does: the fused backward (`fusion.ConvReLUPool`) masks with the pooled
values. So it is left unmade: the ReLU's node in the graph holds a tensor that makes its array
the first time it is read (`tensor._Deferred`), and the ReLU's op makes its mask the same way.
The graph keeps both nodes, conv -> relu -> pool, exactly as the layers say.

The pool's winners are then those of the ReLU's input. They differ from the ReLU output's only
in windows whose max is <= 0, where the ReLU's output is all zeros and its backward zeroes the
window's gradient whichever element got it; every gradient a caller can see is unchanged.

Deferring is only safe while nothing can change the ReLU's input before its output is made, so
`nn.Sequential` asks for it only where a Conv2d layer made that input (a fresh array no one
else holds) and no hook sees any of the three layers (`relu_max_pool_applies`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import settings
from .elementwise import ThreadedReLU
from .pool import TiledMaxPool2d

if TYPE_CHECKING:
    from ..tensor import Tensor


class DeferredReLU(ThreadedReLU):
    """A ReLU whose output array is made when first read (`out`), from the input it keeps."""

    def __init__(self, needs_input_grad: tuple[bool, ...], x: np.ndarray):
        super().__init__(needs_input_grad)
        self.x = x
        self._out: np.ndarray | None = None

    @property
    def out(self) -> np.ndarray:
        if self._out is None:
            self.forward(self.x)  # sets out
        assert self._out is not None
        return self._out

    @out.setter
    def out(self, array: np.ndarray) -> None:
        self._out = array


def relu_max_pool(x: Tensor, kernel_size, stride=None, padding=0) -> tuple[Tensor, Tensor] | None:
    """(relu(x), max_pool2d(relu(x))) as two recorded ops, the first one's array made only
    when read; None when the pool or the ReLU would not run as a fast kernel here.

    Only for an x nothing else can change until the ReLU's output is made (module docstring).
    """
    from ..tensor import Tensor, is_grad_enabled

    attrs = x._max_pool2d_attrs(kernel_size, stride, padding)
    data = x.data
    if (
        settings.mode() == "reference"
        or data.dtype.kind != "f"
        or not ThreadedReLU.applies(data)
        or not TiledMaxPool2d.applies(data, **attrs)
    ):
        return None
    needs = (is_grad_enabled() and x.requires_grad,)
    relu: Any = DeferredReLU(needs, data)
    relu.attrs = {}
    relu_out = Tensor._record(relu, (x,), lambda: relu.out)
    pool = TiledMaxPool2d(needs)
    pool.attrs = attrs
    pool.relu_after = True
    pooled = Tensor._record(pool, (relu_out,), pool.forward(data, **attrs))
    return relu_out, pooled
