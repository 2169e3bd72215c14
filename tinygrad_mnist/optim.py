"""Optimizers: SGD (with momentum and weight decay) and Adam, with PyTorch's update rules."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

import numpy as np

from .kernels import parallel
from .tensor import Tensor


class Optimizer(ABC):
    """Holds the parameters to update; `step()` applies one update, `zero_grad()` clears grads."""

    def __init__(self, params: Iterable[Tensor], lr: float):
        if isinstance(params, Tensor):
            raise TypeError(
                f"{type(self).__name__}: params must be an iterable of Tensors (e.g. "
                f"model.parameters() or [w]), got a single Tensor of shape {params.shape}"
            )
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise TypeError(
                    f"{type(self).__name__}: parameter {i} must be a Tensor with "
                    "requires_grad=True"
                )
            if not p.is_leaf:
                raise ValueError(
                    f"{type(self).__name__}: parameter {i} (shape {p.shape}) is the result of an "
                    "op, not a leaf tensor; an optimizer can only update leaf tensors"
                )
        if lr < 0:
            raise ValueError(f"{type(self).__name__}: learning rate must be >= 0, got {lr}")
        self.lr = lr

    def zero_grad(self) -> None:
        """Set every parameter's `.grad` to None."""
        for p in self.params:
            p.grad = None

    @abstractmethod
    def step(self) -> None:
        """Apply one update to every parameter that has a gradient."""


class SGD(Optimizer):
    """Stochastic gradient descent, as `torch.optim.SGD` (dampening 0, no Nesterov).

    g = grad + weight_decay * p;  buf = momentum * buf + g (buf = g at the first step);
    p -= lr * buf  (p -= lr * g without momentum)
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError(
                f"SGD: momentum ({momentum}) and weight_decay ({weight_decay}) must be >= 0"
            )
        self.momentum, self.weight_decay = momentum, weight_decay
        self.buffers: list[np.ndarray | None] = [None] * len(self.params)

    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            if self.momentum:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = np.array(g, dtype=p.dtype)
                else:
                    buf *= self.momentum
                    buf += g
                g = buf
            p.data -= self.lr * g


class Adam(Optimizer):
    """Adam, as `torch.optim.Adam` (L2 weight decay added to the gradient, no amsgrad).

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, lr)
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"Adam: betas must be in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"Adam: eps ({eps}) and weight_decay ({weight_decay}) must be >= 0")
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.steps = [0] * len(self.params)  # per parameter: steps it had a gradient for
        self.m = [np.zeros_like(p.data) for p in self.params]
        self.v = [np.zeros_like(p.data) for p in self.params]

    def step(self) -> None:
        b1, b2 = self.betas
        for i, (p, m, v) in enumerate(zip(self.params, self.m, self.v, strict=True)):
            if p.grad is None:
                continue
            self.steps[i] += 1
            step_size = self.lr / (1 - b1 ** self.steps[i])
            root_correction2 = (1 - b2 ** self.steps[i]) ** 0.5
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            update = _adam_update(p.data, g, m, v, b1, b2, step_size, root_correction2, self.eps)
            if p.data.ndim == 0:
                update(...)  # a 0-d parameter: all of it
            else:
                # a large parameter's rows are shared out among the cores
                parallel.split(len(p.data), update, elements=p.data.size * 6)  # ~10 passes


def _adam_update(data, g, m, v, b1, b2, step_size, root_correction2, eps):
    """The Adam update of rows `part` of one parameter, in place, with one scratch array:
    m and v never leave their buffers."""

    def update(part) -> None:
        p_m, p_v, p_g = m[part], v[part], g[part]
        scratch = np.empty_like(p_m)
        np.multiply(p_g, 1 - b1, out=scratch)
        p_m *= b1
        p_m += scratch
        np.multiply(p_g, p_g, out=scratch)
        scratch *= 1 - b2
        p_v *= b2
        p_v += scratch
        np.sqrt(p_v, out=scratch)
        scratch /= root_correction2
        scratch += eps
        np.divide(p_m, scratch, out=scratch)
        scratch *= step_size
        data[part] -= scratch

    return update
