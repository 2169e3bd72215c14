"""Check any function's gradients against central finite differences, in float64."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .tensor import Tensor, no_grad


class GradcheckError(RuntimeError):
    """Raised by `gradcheck` when analytic and numeric gradients disagree."""


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Tensor],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    samples: int | None = None,
    seed: int = 0,
    raise_exception: bool = True,
) -> bool:
    """Compare the gradients that `backward()` gives with central finite differences.

    `fn(*inputs)` must return a Tensor. A fixed random vector v of the output's shape turns a
    non-scalar output into the scalar sum(v * fn(...)), whose gradient is checked. Every element
    of every input that requires grad is nudged by +-eps: numeric = (f(x+eps) - f(x-eps)) / 2eps.

    Args:
        fn: the function to check; it is called with the inputs, in order.
        inputs: float64 Tensors (the ones with requires_grad=True are checked; parameters of a
            model are fine here, they are nudged in place and restored).
        eps: the finite-difference step.
        atol, rtol: an element passes when |analytic - numeric| <= atol + rtol * |numeric|.
        samples: check only this many randomly chosen elements per input (for big models).
        seed: seeds the projection vector and the sampled elements.
        raise_exception: raise `GradcheckError` on failure (else return False).

    Returns:
        True when every checked element passes.
    """
    inputs = list(inputs)
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"gradcheck: input {i} is a {type(t).__name__}, expected a Tensor")
        if t.requires_grad and t.dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} (shape {t.shape}) has dtype {t.dtype}; finite differences "
                "need float64, e.g. Tensor(x.data.astype('float64'), requires_grad=True)"
            )
    checked = [i for i, t in enumerate(inputs) if t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")

    rng = np.random.default_rng(seed)
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    projection = rng.standard_normal(out.shape)

    saved_grads = [inputs[i].grad for i in checked]
    for i in checked:
        inputs[i].grad = None
    try:
        out.backward(projection)
        analytic = {i: _grad_or_zeros(inputs[i]) for i in checked}
    finally:
        for i, g in zip(checked, saved_grads, strict=True):
            inputs[i].grad = g

    def projected() -> float:
        with no_grad():
            return float(np.sum(fn(*inputs).data * projection))

    # (excess, input index, element index, analytic, numeric)
    worst: tuple[float, int, tuple[int, ...], float, float] | None = None
    failures = total = 0
    for i in checked:
        data = inputs[i].data
        flat_indices = np.arange(data.size)
        if samples is not None and samples < data.size:
            flat_indices = rng.choice(data.size, size=samples, replace=False)
        for flat in flat_indices:
            index = np.unravel_index(flat, data.shape)
            original = data[index]
            data[index] = original + eps
            plus = projected()
            data[index] = original - eps
            minus = projected()
            data[index] = original
            numeric = (plus - minus) / (2 * eps)
            value = float(analytic[i][index])
            allowed = atol + rtol * abs(numeric)
            excess = abs(value - numeric) / allowed
            total += 1
            if excess > 1:
                failures += 1
            if worst is None or excess > worst[0]:
                worst = (excess, i, tuple(int(k) for k in index), value, numeric)

    if failures == 0 or worst is None:
        return True
    _, i, where, value, numeric = worst
    message = (
        f"gradcheck: {failures} of {total} gradient elements disagree with finite differences. "
        f"Worst: input {i} (shape {inputs[i].shape}), element {where}: analytic {value:.6g}, "
        f"numeric {numeric:.6g}, difference {abs(value - numeric):.3g} "
        f"(allowed {atol + rtol * abs(numeric):.3g} = atol {atol} + rtol {rtol} * |numeric|)"
    )
    if raise_exception:
        raise GradcheckError(message)
    return False


def _grad_or_zeros(t: Tensor) -> np.ndarray:
    """The gradient backward left on t; zeros when the output does not depend on t."""
    return t.grad if t.grad is not None else np.zeros_like(t.data)
