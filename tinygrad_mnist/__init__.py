"""tinygrad_mnist: a small, readable, fast deep-learning framework on NumPy.

>>> from tinygrad_mnist import Tensor
>>> x = Tensor([2.0, 3.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
array([4., 6.], dtype=float32)
"""

from . import data, nn, optim, plots, train, viz
from .allocator import tune_allocator
from .gradcheck import GradcheckError, gradcheck
from .tensor import Tensor, is_grad_enabled, no_grad
from .train import evaluate, fit

__version__ = "0.1.0"

tune_allocator()

__all__ = [
    "GradcheckError",
    "Tensor",
    "__version__",
    "data",
    "evaluate",
    "fit",
    "gradcheck",
    "is_grad_enabled",
    "nn",
    "no_grad",
    "optim",
    "plots",
    "train",
    "viz",
]
