"""Optimizers with PyTorch's update rules: SGD, Adam, AdamW and RMSprop.

An optimizer holds `param_groups` (a list of dicts: the parameters and their options, `lr`
writable) and per-parameter `state` (momentum buffers, moment estimates). `step()` applies one
update to every parameter that has a gradient; `state_dict()` / `load_state_dict()` save and
restore both in PyTorch's structure, so a run resumes bit for bit.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import kernels
from ..kernels import optimizers as fast
from ..tensor import Tensor


class Optimizer(ABC):
    """The base of every optimizer: parameter groups, state, zero_grad and state_dict.

    `params` is an iterable of Tensors, or of dicts (parameter groups: `{"params": [...],
    "lr": ...}`), each group's missing options taken from the optimizer's defaults.
    """

    # the per-parameter state entries holding arrays of the parameter's shape
    array_state: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], defaults: dict):
        name = type(self).__name__
        if isinstance(params, Tensor):
            raise TypeError(
                f"{name}: params must be an iterable of Tensors (e.g. model.parameters() or "
                f"[w]), got a single Tensor of shape {params.shape}"
            )
        if isinstance(params, dict):
            raise TypeError(
                f"{name}: params must be an iterable of Tensors or of dicts, got a "
                "dict; wrap a parameter group in a list: [group]"
            )
        groups: list[Any] = list(params)  # Tensors, or dicts (parameter groups)
        if not groups:
            raise ValueError(f"{name}: got an empty parameter list")
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self.state: dict[Tensor, dict] = {}
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters with its own options (the rest from the defaults)."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(
                f"{name}: a parameter group must be a dict, got {type(param_group).__name__}"
            )
        group = dict(param_group)
        params = group.get("params")
        if params is None:
            raise ValueError(f"{name}: a parameter group needs a 'params' entry")
        params = [params] if isinstance(params, Tensor) else list(params)
        if not params:
            raise ValueError(f"{name}: got an empty parameter list")
        first = sum(len(g["params"]) for g in self.param_groups)
        known = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(params, first):
            if not isinstance(p, Tensor) or p.dtype.kind != "f":
                raise TypeError(
                    f"{name}: parameter {i} must be a floating-point Tensor with "
                    f"requires_grad=True, got {type(p).__name__}"
                )
            if not p.is_leaf:
                raise ValueError(
                    f"{name}: parameter {i} (shape {p.shape}) is the result of an op, not a "
                    "leaf tensor; an optimizer can only update leaf tensors"
                )
            if id(p) in known:
                raise ValueError(f"{name}: parameter {i} appears in more than one group")
            known.add(id(p))
        group["params"] = params
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_options(group)
        self.param_groups.append(group)

    @abstractmethod
    def _check_options(self, group: dict) -> None:
        """Raise ValueError for an option out of range (called for every group)."""

    @property
    def params(self) -> list[Tensor]:
        """Every parameter of every group, in order."""
        return [p for group in self.param_groups for p in group["params"]]

    @property
    def lr(self) -> float:
        """The learning rate of the first group; setting it sets every group's."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        for group in self.param_groups:
            group["lr"] = value

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Set every parameter's `.grad` to None (or to zeros with `set_to_none=False`)."""
        for p in self.params:
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = np.zeros_like(p.data)

    def step(self) -> None:
        """Apply one update to every parameter that has a gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = -p.grad if group.get("maximize") else p.grad
                self._update(p, g, self.state.setdefault(p, {}), group)

    @abstractmethod
    def _update(self, p: Tensor, g: np.ndarray, state: dict, group: dict) -> None:
        """Update parameter p (in place) from its gradient g, its state and its group."""

    # ------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """The optimizer's state, in PyTorch's structure, for checkpoints.

        {"state": {index: {name: array or number}}, "param_groups": [{options..., "params":
        [indices]}]}, parameters numbered across the groups in order; parameters without
        state (never stepped) have no entry. The arrays are copies.
        """
        groups, state, index = [], {}, 0
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = list(range(index, index + len(group["params"])))
            for p in group["params"]:
                entry = self.state.get(p)
                if entry:
                    state[index] = {
                        k: v.copy() if isinstance(v, np.ndarray) else v for k, v in entry.items()
                    }
                index += 1
            groups.append(packed)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a state written by `state_dict()` (options and per-parameter state).

        State keys may be ints or their strings (as after a JSON round trip), lists stand for
        tuples, arrays may be PyTorch tensors. Raises ValueError naming what does not fit (the
        groups' sizes, a state array's shape, a missing entry); nothing is changed unless
        everything fits.
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
        ours = [len(g["params"]) for g in self.param_groups]
        theirs = [len(g.get("params", [])) for g in groups]
        if ours != theirs:
            raise ValueError(
                f"{name}.load_state_dict: this optimizer has {len(ours)} parameter group(s) of "
                f"{ours} parameters, the state has {len(theirs)} of {theirs}"
            )
        params = self.params
        new_groups = []
        for group, saved in zip(self.param_groups, groups, strict=True):
            missing = [k for k in self.defaults if k not in saved]
            if missing:
                raise ValueError(f"{name}.load_state_dict: a parameter group lacks {missing}")
            new = {}
            for key, value in saved.items():
                if key == "params":
                    continue
                if isinstance(value, list) and isinstance(group.get(key), tuple | type(None)):
                    value = tuple(value)
                new[key] = value
            new["params"] = group["params"]
            new_groups.append(new)
        new_state = {}
        for key, entry in state.items():
            index = int(key)
            if not 0 <= index < len(params):
                raise ValueError(
                    f"{name}.load_state_dict: state for parameter {index}, but there are only "
                    f"{len(params)}"
                )
            new_state[params[index]] = self._checked_entry(index, params[index], entry)
        self.param_groups = new_groups
        self.state = new_state

    def _checked_entry(self, i: int, p: Tensor, entry: dict) -> dict:
        """Entry i of a loaded state, its arrays checked against parameter i and copied."""
        name = type(self).__name__
        checked: dict[str, Any] = {}
        for key, value in entry.items():
            if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor
                value = value.detach().cpu().numpy()
            if key == "step":
                step = float(np.asarray(value))
                if not step.is_integer() or step < 1:
                    raise ValueError(
                        f"{name}.load_state_dict: state 'step' of parameter {i} must be an "
                        f"integer >= 1, got {value!r}"
                    )
                checked[key] = int(step)
            elif key in self.array_state:
                if value is None:
                    continue
                array = np.asarray(value)
                if array.shape != p.shape:
                    raise ValueError(
                        f"{name}.load_state_dict: state {key!r} of parameter {i} has shape "
                        f"{array.shape}, expected the parameter's {p.shape}"
                    )
                checked[key] = array.astype(p.dtype, copy=True)
            else:
                checked[key] = value
        required = self._required_state(p)
        if checked and not required <= set(checked):
            raise ValueError(
                f"{name}.load_state_dict: state of parameter {i} must hold "
                f"{sorted(required)}, got {sorted(entry)}"
            )
        return checked

    def _required_state(self, p: Tensor) -> set[str]:
        """The state entries a stepped parameter must have."""
        return set()

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines) + "\n)"


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


class SGD(Optimizer):
    """Stochastic gradient descent, as `torch.optim.SGD`.

    g = grad + weight_decay * p;  buf = momentum * buf + (1 - dampening) * g (buf = g at the
    first step);  g = g + momentum * buf with nesterov, else g = buf;  p -= lr * g
    (without momentum: p -= lr * g). `maximize` ascends instead.
    """

    array_state = ("momentum_buffer",)

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_options(self, group: dict) -> None:
        _check_finite_at_least_0(self, "learning rate", group["lr"])
        _check_finite_at_least_0(self, "momentum", group["momentum"])
        _check_finite_at_least_0(self, "dampening", group["dampening"])
        _check_finite_at_least_0(self, "weight_decay", group["weight_decay"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: nesterov momentum requires a momentum > 0 and dampening 0")

    def _update(self, p: Tensor, g: np.ndarray, state: dict, group: dict) -> None:
        momentum, wd = group["momentum"], group["weight_decay"]
        if wd:
            g = g + wd * p.data
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(g, dtype=p.dtype)
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * g
            g = g + momentum * buf if group["nesterov"] else buf
        p.data -= group["lr"] * g


class Adam(Optimizer):
    """Adam, as `torch.optim.Adam` (L2 weight decay added to the gradient; `amsgrad` keeps the
    largest v so far).

    g = grad + weight_decay * p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """

    array_state = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    decoupled_weight_decay = False

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ):
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_options(self, group: dict) -> None:
        name = type(self).__name__
        _check_finite_at_least_0(self, "learning rate", group["lr"])
        betas = group["betas"]
        if len(betas) != 2 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"{name}: betas must be two numbers in [0, 1), got {betas}")
        group["betas"] = tuple(betas)
        _check_finite_at_least_0(self, "eps", group["eps"])
        _check_finite_at_least_0(self, "weight_decay", group["weight_decay"])

    def _required_state(self, p: Tensor) -> set[str]:
        return {"step", "exp_avg", "exp_avg_sq"}

    def _update(self, p: Tensor, g: np.ndarray, state: dict, group: dict) -> None:
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(p.data), exp_avg_sq=np.zeros_like(p.data))
        if group["amsgrad"] and state.get("max_exp_avg_sq") is None:
            state["max_exp_avg_sq"] = np.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        if wd and self.decoupled_weight_decay:
            p.data *= 1 - lr * wd  # AdamW: decay the weights, not the gradient
        elif wd:
            g = g + wd * p.data
        m, v = state["exp_avg"], state["exp_avg_sq"]
        step_size = lr / (1 - b1**t)
        root_correction2 = math.sqrt(1 - b2**t)
        if kernels.mode() == "fast" and not group["amsgrad"]:
            # the same update, in place and on all cores
            fast.adam_update_(p.data, g, m, v, b1, b2, step_size, root_correction2, eps)
            return
        m[...] = b1 * m + (1 - b1) * g
        v[...] = b2 * v + (1 - b2) * g * g
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        p.data -= step_size * m / (np.sqrt(v) / root_correction2 + eps)


class AdamW(Adam):
    """Adam with decoupled weight decay, as `torch.optim.AdamW`:

    p *= 1 - lr * weight_decay, then the Adam step on the plain gradient.
    """

    decoupled_weight_decay = True

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)


class RMSprop(Optimizer):
    """RMSprop, as `torch.optim.RMSprop`.

    g = grad + weight_decay * p;  s = alpha s + (1 - alpha) g^2;
    d = sqrt(s - a^2) + eps with a = alpha a + (1 - alpha) g (centered), else sqrt(s) + eps;
    buf = momentum buf + g / d, p -= lr buf (momentum > 0), else p -= lr g / d
    """

    array_state = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ):
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_options(self, group: dict) -> None:
        for what in ("lr", "alpha", "eps", "weight_decay", "momentum"):
            _check_finite_at_least_0(self, "learning rate" if what == "lr" else what, group[what])

    def _required_state(self, p: Tensor) -> set[str]:
        return {"step", "square_avg"}

    def _update(self, p: Tensor, g: np.ndarray, state: dict, group: dict) -> None:
        alpha, eps, momentum = group["alpha"], group["eps"], group["momentum"]
        if not state:
            state.update(step=0, square_avg=np.zeros_like(p.data))
        if momentum > 0 and state.get("momentum_buffer") is None:
            state["momentum_buffer"] = np.zeros_like(p.data)
        if group["centered"] and state.get("grad_avg") is None:
            state["grad_avg"] = np.zeros_like(p.data)
        state["step"] += 1
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        s = state["square_avg"]
        s[...] = alpha * s + (1 - alpha) * g * g
        if group["centered"]:
            a = state["grad_avg"]
            a[...] = alpha * a + (1 - alpha) * g
            denominator = np.sqrt(s - a * a) + eps
        else:
            denominator = np.sqrt(s) + eps
        if momentum > 0:
            buf = state["momentum_buffer"]
            buf[...] = momentum * buf + g / denominator
            p.data -= group["lr"] * buf
        else:
            p.data -= group["lr"] * g / denominator
