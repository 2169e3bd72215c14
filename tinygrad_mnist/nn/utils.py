"""Gradient utilities, as `torch.nn.utils`: clipping by total norm or by value."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..tensor import Tensor


def _with_grads(parameters) -> list[tuple[Tensor, np.ndarray]]:
    """The (parameter, gradient) pairs of the parameters that have a gradient."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [(p, p.grad) for p in parameters if p.grad is not None]


def clip_grad_norm_(
    parameters: Iterable[Tensor] | Tensor,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> Tensor:
    """Scale all gradients together so that their total norm is at most `max_norm`.

    total = (sum_p ||grad_p||^q)^(1/q) (q = norm_type; inf: the largest |grad|); every grad
    is multiplied by min(1, max_norm / (total + 1e-6)). Returns the total norm (before
    clipping) as a 0-d Tensor, as PyTorch's.
    """
    pairs = _with_grads(parameters)
    norm_type = float(norm_type)
    if not pairs:
        return Tensor(np.float32(0.0))
    total: float
    if norm_type == math.inf:
        total = max(float(np.max(np.abs(g))) if g.size else 0.0 for _, g in pairs)
    else:
        powers = [float(np.sum(np.abs(g.astype(np.float64)) ** norm_type)) for _, g in pairs]
        total = sum(powers) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is "
            f"{total}, not finite; pass error_if_nonfinite=False to clip anyway"
        )
    coefficient = min(1.0, max_norm / (total + 1e-6))
    for p, g in pairs:
        p.grad = (g * coefficient).astype(g.dtype)
    return Tensor(np.asarray(total, dtype=pairs[0][1].dtype))


def clip_grad_value_(parameters: Iterable[Tensor] | Tensor, clip_value: float) -> None:
    """Clamp every gradient element into [-clip_value, clip_value], in place."""
    for _, g in _with_grads(parameters):
        np.clip(g, -clip_value, clip_value, out=g)
