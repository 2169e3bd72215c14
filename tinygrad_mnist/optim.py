"""Optimizers: SGD (with momentum and weight decay) and Adam, with PyTorch's update rules."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable

import numpy as np

from . import kernels
from .kernels import optimizers
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
        _check_finite_at_least_0(self, "learning rate", lr)
        self.lr = lr

    def zero_grad(self) -> None:
        """Set every parameter's `.grad` to None."""
        for p in self.params:
            p.grad = None

    # The names of the options stored in the parameter group, besides "lr" (set by subclasses).
    group_options: tuple[str, ...] = ()
    # The per-parameter state arrays: state key -> attribute holding one array (or None) per
    # parameter (set by subclasses).
    state_arrays: dict[str, str] = {}

    def state_dict(self) -> dict:
        """The optimizer's state, in PyTorch's structure, for checkpoints.

        {"state": {index: {name: array or number}}, "param_groups": [{"lr": ..., options...,
        "params": [indices]}]}; parameters without state (not stepped yet) have no entry. The
        arrays are copies.
        """
        state = {}
        for i in range(len(self.params)):
            entry = self._parameter_state(i)
            if entry:
                state[i] = entry
        group = {"lr": self.lr}
        for name in self.group_options:
            value = getattr(self, name)
            group[name] = list(value) if isinstance(value, tuple) else value
        group["params"] = list(range(len(self.params)))
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a state written by `state_dict()` (options and per-parameter state).

        State keys may be ints or their strings (as after a JSON round trip). Raises ValueError
        naming what does not fit (the number of parameters, a state array's shape, a missing
        option); nothing is changed unless everything fits.
        """
        name = type(self).__name__
        try:
            groups, state = state_dict["param_groups"], state_dict["state"]
        except (TypeError, KeyError):
            raise ValueError(
                f"{name}.load_state_dict: expected a dict with 'state' and 'param_groups', got "
                f"{type(state_dict).__name__}"
                + (f" with keys {sorted(state_dict)}" if isinstance(state_dict, dict) else "")
            ) from None
        if len(groups) != 1 or list(groups[0].get("params", [])) != list(range(len(self.params))):
            raise ValueError(
                f"{name}.load_state_dict: expected one parameter group of {len(self.params)} "
                f"parameters, got {len(groups)} group(s) with "
                f"{[len(g.get('params', [])) for g in groups]} parameters"
            )
        group = groups[0]
        missing = [k for k in ("lr", *self.group_options) if k not in group]
        if missing:
            raise ValueError(f"{name}.load_state_dict: the parameter group lacks {missing}")
        entries = {}
        for key, entry in state.items():
            index = int(key)
            if not 0 <= index < len(self.params):
                raise ValueError(
                    f"{name}.load_state_dict: state for parameter {index}, but there are only "
                    f"{len(self.params)}"
                )
            entries[index] = self._checked_entry(index, entry)
        for option in self.group_options:
            value = group[option]
            setattr(self, option, tuple(value) if isinstance(value, list) else value)
        self.lr = group["lr"]
        for i in range(len(self.params)):
            self._set_parameter_state(i, entries.get(i, {}))

    def _parameter_state(self, i: int) -> dict:
        """The state entry of parameter i ({} when it has none)."""
        entry = {}
        for key, attribute in self.state_arrays.items():
            array = getattr(self, attribute)[i]
            if array is not None:
                entry[key] = array.copy()
        return entry

    def _checked_entry(self, i: int, entry: dict) -> dict:
        """Entry i of a loaded state, its arrays checked against parameter i and copied."""
        p = self.params[i]
        checked = {}
        for key in self.state_arrays:
            if key not in entry:
                continue
            array = np.asarray(entry[key])
            if array.shape != p.shape:
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: state {key!r} of parameter {i} has "
                    f"shape {array.shape}, expected the parameter's {p.shape}"
                )
            checked[key] = array.astype(p.dtype, copy=True)
        return checked

    def _set_parameter_state(self, i: int, entry: dict) -> None:
        """Install a checked state entry for parameter i (missing keys: no state)."""
        for key, attribute in self.state_arrays.items():
            getattr(self, attribute)[i] = entry.get(key)

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
        _check_finite_at_least_0(self, "momentum", momentum)
        _check_finite_at_least_0(self, "weight_decay", weight_decay)
        self.momentum, self.weight_decay = momentum, weight_decay
        self.buffers: list[np.ndarray | None] = [None] * len(self.params)

    group_options = ("momentum", "weight_decay")
    state_arrays = {"momentum_buffer": "buffers"}

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
        _check_finite_at_least_0(self, "eps", eps)
        _check_finite_at_least_0(self, "weight_decay", weight_decay)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.steps = [0] * len(self.params)  # per parameter: steps it had a gradient for
        self.m = [np.zeros_like(p.data) for p in self.params]
        self.v = [np.zeros_like(p.data) for p in self.params]

    group_options = ("betas", "eps", "weight_decay")
    state_arrays = {"exp_avg": "m", "exp_avg_sq": "v"}

    def _parameter_state(self, i: int) -> dict:
        if not self.steps[i]:
            return {}
        return {"step": self.steps[i], **super()._parameter_state(i)}

    def _checked_entry(self, i: int, entry: dict) -> dict:
        checked = super()._checked_entry(i, entry)
        if not entry:
            return checked
        step = entry.get("step")
        if len(checked) != 2 or isinstance(step, bool) or not isinstance(
            step, (int, np.integer)
        ) or step < 1:
            raise ValueError(
                f"Adam.load_state_dict: state of parameter {i} must hold 'step' (an integer "
                f">= 1), 'exp_avg' and 'exp_avg_sq', got {sorted(entry)} with step {step!r}"
            )
        checked["step"] = int(step)
        return checked

    def _set_parameter_state(self, i: int, entry: dict) -> None:
        p = self.params[i]
        self.steps[i] = entry.get("step", 0)
        self.m[i] = entry.get("exp_avg", np.zeros_like(p.data))
        self.v[i] = entry.get("exp_avg_sq", np.zeros_like(p.data))

    def step(self) -> None:
        b1, b2 = self.betas
        for i, (p, m, v) in enumerate(zip(self.params, self.m, self.v, strict=True)):
            if p.grad is None:
                continue
            self.steps[i] += 1
            step_size = self.lr / (1 - b1 ** self.steps[i])
            root_correction2 = (1 - b2 ** self.steps[i]) ** 0.5
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            if kernels.mode() == "fast":  # the same update, in place and on all cores
                optimizers.adam_update_(
                    p.data, g, m, v, b1, b2, step_size, root_correction2, self.eps
                )
                continue
            m[...] = b1 * m + (1 - b1) * g
            v[...] = b2 * v + (1 - b2) * g * g
            p.data -= step_size * m / (np.sqrt(v) / root_correction2 + self.eps)


def _check_finite_at_least_0(optimizer: Optimizer, what: str, value) -> None:
    """Raise ValueError unless `value` is a finite number >= 0 (NaN and inf are refused)."""
    try:
        ok = math.isfinite(value) and value >= 0
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(
            f"{type(optimizer).__name__}: {what} must be a finite number >= 0, got {value!r}"
        )
