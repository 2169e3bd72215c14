"""tinygrad_mnist: a small, readable, fast deep-learning framework on NumPy.

>>> from tinygrad_mnist import Tensor
>>> x = Tensor([2.0, 3.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
array([4., 6.], dtype=float32)
"""

import numpy as _np

from . import data, kernels, nn, optim, train, viz
from .creation import (
    arange,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    is_tensor,
    linspace,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    randperm,
    tensor,
    zeros,
    zeros_like,
)
from .devices import cuda, device
from .functions import (
    abs,  # noqa: F401 - tm.abs, kept out of __all__
    allclose,
    amax,
    amin,
    argmax,
    argmin,
    chunk,
    clamp,
    clip,
    exp,
    flatten,
    log,
    log_softmax,
    logsumexp,
    matmul,
    max,  # noqa: F401 - tm.max, kept out of __all__
    maximum,
    mean,
    min,  # noqa: F401 - tm.min, kept out of __all__
    minimum,
    mm,
    numel,
    permute,
    pow,  # noqa: F401 - tm.pow, kept out of __all__
    relu,
    reshape,
    sigmoid,
    softmax,
    split,
    sqrt,
    square,
    squeeze,
    std,
    sum,  # noqa: F401 - tm.sum, kept out of __all__
    tanh,
    transpose,
    unsqueeze,
    var,
)
from .gradcheck import GradcheckError, gradcheck
from .kernels import get_float32_precision, set_float32_precision
from .seeding import manual_seed
from .tensor import (
    Tensor,
    ValuesIndices,
    cat,
    enable_grad,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
    stack,
    where,
)
from .train import TrainingDiverged, evaluate, fit

# dtypes, so that dtype=tm.float32 reads as in PyTorch
float32 = _np.dtype(_np.float32)
float64 = _np.dtype(_np.float64)
int64 = _np.dtype(_np.int64)
int32 = _np.dtype(_np.int32)
uint8 = _np.dtype(_np.uint8)
bool = _np.dtype(_np.bool_)  # noqa: A001 - torch.bool
float = float32  # noqa: A001 - torch.float
double = float64
long = int64

inference_mode = no_grad  # torch.inference_mode: record no graph

__version__ = "0.1.0"


def __getattr__(name: str):
    # plots pulls in matplotlib (a third of a second): imported on first use, not at start-up
    if name == "plots":
        import importlib

        return importlib.import_module(".plots", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# names that would shadow Python builtins (abs, bool, float, max, min, pow, sum) are left out
# of __all__, so `from tinygrad_mnist import *` cannot break `sum(...)`: write tm.sum
__all__ = [
    "cuda",
    "device",
    "inference_mode",
    "allclose",
    "amax",
    "amin",
    "argmax",
    "argmin",
    "chunk",
    "clamp",
    "clip",
    "exp",
    "log",
    "log_softmax",
    "logsumexp",
    "matmul",
    "mean",
    "mm",
    "numel",
    "permute",
    "relu",
    "reshape",
    "sigmoid",
    "softmax",
    "split",
    "sqrt",
    "square",
    "squeeze",
    "std",
    "tanh",
    "transpose",
    "unsqueeze",
    "var",
    "ValuesIndices",
    "arange",
    "cat",
    "double",
    "empty",
    "empty_like",
    "enable_grad",
    "eye",
    "flatten",
    "float32",
    "float64",
    "from_numpy",
    "full",
    "full_like",
    "int32",
    "int64",
    "is_tensor",
    "linspace",
    "long",
    "manual_seed",
    "maximum",
    "minimum",
    "ones",
    "ones_like",
    "rand",
    "rand_like",
    "randint",
    "randn",
    "randn_like",
    "randperm",
    "set_grad_enabled",
    "stack",
    "tensor",
    "uint8",
    "where",
    "zeros",
    "zeros_like",
    "GradcheckError",
    "Tensor",
    "TrainingDiverged",
    "__version__",
    "data",
    "evaluate",
    "fit",
    "get_float32_precision",
    "gradcheck",
    "is_grad_enabled",
    "kernels",
    "nn",
    "no_grad",
    "optim",
    "plots",
    "set_float32_precision",
    "train",
    "viz",
]
