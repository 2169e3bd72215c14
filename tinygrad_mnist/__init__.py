"""tinygrad_mnist: a small, readable, fast deep-learning framework on NumPy.

>>> from tinygrad_mnist import Tensor
>>> x = Tensor([2.0, 3.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
array([4., 6.], dtype=float32)
"""

from . import data, kernels, nn, optim, train, viz
from .gradcheck import GradcheckError, gradcheck
from .kernels import get_float32_precision, set_float32_precision
from .tensor import Tensor, is_grad_enabled, no_grad
from .train import TrainingDiverged, evaluate, fit

__version__ = "0.1.0"


def __getattr__(name: str):
    # plots pulls in matplotlib (a third of a second): imported on first use, not at start-up
    if name == "plots":
        import importlib

        return importlib.import_module(".plots", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
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
