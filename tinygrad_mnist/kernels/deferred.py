"""Forward fusion: a ReLU whose full-size output the next op does without.

A ReLU followed by a max-pool: the pool takes its max first.

relu and max commute, max(relu(a), relu(b)) = relu(max(a, b)), so the pool can read the ReLU's
input and apply the ReLU to its own output, a quarter the size (2x2 windows). The ReLU's
full-size output is then needed only by whoever reads it, and in a training step of the
reference CNNs nothing does: the fused backward (`fusion.ConvReLUPool`) masks with the pooled
values. So it is left unmade: the ReLU's node in the graph holds a tensor that makes its array
the first time it is read (`tensor._Deferred`), and the ReLU's op makes its mask the same way.
The graph keeps both nodes, conv -> relu -> pool, exactly as the layers say.

The pool's winners are then those of the ReLU's input. They differ from the ReLU output's only
in windows whose max is <= 0, where the ReLU's output is all zeros and its backward zeroes the
window's gradient whichever element got it; an unfused backward also moves those windows'
winner to their first element, as pooling the ReLU's zeros would, so even the gradient of the
ReLU's own output is the textbook's.

A ReLU followed by a convolution (lenet-cnn's first ReLU): a Winograd conv applies the ReLU
to each chunk of its input while it copies it into patches, in cache (`takes_relu_input`).
Its backward fusion with the ReLU (`fusion.ConvAfterReLU`) masks with the ReLU's input, which
is > 0 exactly where the output is.

Deferring is only safe while nothing can change the ReLU's input before its output is made, so
`nn.Sequential` asks for it only where a Conv2d layer made that input (a fresh array no one
else holds) and no hook sees any of the three layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import ops
from . import settings
from .elementwise import ThreadedReLU
from .pool import TiledMaxPool2d
from .table import choose

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
    from ..tensor import Tensor

    attrs = x._max_pool2d_attrs(kernel_size, stride, padding)
    data = x.data
    if not _relu_defers(data) or not TiledMaxPool2d.applies(data, **attrs):
        return None
    relu_out = _deferred_relu(x)
    pool = TiledMaxPool2d((relu_out.requires_grad,))
    pool.attrs = attrs
    pool.relu_after = True
    pooled = Tensor._record(pool, (relu_out,), pool.forward(data, **attrs))
    return relu_out, pooled


def relu_conv2d(x: Tensor, weight, bias, stride, padding, dilation, groups):
    """(relu(x), conv2d(relu(x), ...)) as two recorded ops, the conv applying the ReLU to its
    input itself and the ReLU's array made only when read; None when the conv would not run
    as a kernel that can (`takes_relu_input`). Only for an x nothing else can change.
    """
    from ..tensor import Tensor, is_grad_enabled

    inputs, attrs = x._conv2d_call(weight, bias, stride, padding, dilation, groups)
    data = x.data
    if inputs[0] is not x or not _relu_defers(data):  # "same" padding made a padded copy
        return None
    arrays = [data] + [t.data for t in inputs[1:]]
    kernel: Any = choose(ops.Conv2d, arrays, attrs)
    if not getattr(kernel, "takes_relu_input", False):
        return None
    relu_out = _deferred_relu(x)
    conv_inputs = (relu_out, *inputs[1:])
    conv = kernel(tuple([is_grad_enabled() and t.requires_grad for t in conv_inputs]))
    conv.attrs, conv.relu_input = attrs, True
    return relu_out, Tensor._record(conv, conv_inputs, conv.forward(*arrays, **attrs))


def _relu_defers(data: np.ndarray) -> bool:
    """True when the fast ReLU would run on `data`, so its output may wait to be read."""
    return settings.mode() != "reference" and data.dtype.kind == "f" and ThreadedReLU.applies(data)


def _deferred_relu(x: Tensor) -> Tensor:
    """relu(x) recorded, its array made the first time something reads it."""
    from ..tensor import Tensor, is_grad_enabled

    relu: Any = DeferredReLU((is_grad_enabled() and x.requires_grad,), x.data)
    relu.attrs = {}
    return Tensor._record(relu, (x,), lambda: relu.out)
