"""`check_op`: run one lambda in PyTorch and in tinygrad_mnist and compare, as tinygrad's
`helper_test_op` does.

For every op case it checks, on random inputs:
  1. float64: our forward and every input gradient equal PyTorch's (rtol = atol = 1e-6);
  2. float64: our gradients equal central finite differences (`tinygrad_mnist.gradcheck`);
  3. float32: the output and every gradient stay float32, and match PyTorch's float32 run.
Without PyTorch the comparisons with it are left out; finite differences and dtypes still run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tinygrad_mnist import Tensor, gradcheck

try:
    import torch
except ImportError:  # pragma: no cover - exercised only on machines without torch
    torch = None

Shape = tuple[int, ...]


def has_torch() -> bool:
    return torch is not None


def make_inputs(
    shapes: Sequence[Shape],
    low: float | Sequence[float] = -2.0,
    high: float | Sequence[float] = 2.0,
    seed: int = 0,
) -> list[np.ndarray]:
    """Random float64 arrays, uniform in [low, high) (one bound per input, or one for all)."""
    rng = np.random.default_rng(seed)
    lows = low if isinstance(low, Sequence) else [low] * len(shapes)
    highs = high if isinstance(high, Sequence) else [high] * len(shapes)
    return [rng.uniform(lo, hi, size=s) for s, lo, hi in zip(shapes, lows, highs, strict=True)]


def _run_ours(fn, arrays, dtype, upstream):
    tensors = [Tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    out = fn(*tensors)
    assert isinstance(out, Tensor), f"our function returned {type(out).__name__}, not a Tensor"
    out.backward(upstream.astype(dtype))
    return out, tensors


def _run_torch(fn, arrays, dtype, upstream):
    tdtype = {np.float64: torch.float64, np.float32: torch.float32}[dtype]
    tensors = [torch.tensor(a, dtype=tdtype, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    out.backward(torch.tensor(upstream, dtype=tdtype))
    return out, tensors


def _grad(t, shape) -> np.ndarray:
    if t.grad is None:
        return np.zeros(shape)
    return t.grad.detach().numpy() if has_torch() and isinstance(t.grad, torch.Tensor) else t.grad


def _compare(name: str, ours, ref, rtol: float, atol: float) -> None:
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape}, expected {ref.shape}"
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=atol, err_msg=name)


def check_op(
    shapes: Sequence[Shape],
    torch_fn: Callable | None,
    our_fn: Callable | None = None,
    *,
    low: float | Sequence[float] = -2.0,
    high: float | Sequence[float] = 2.0,
    values: Sequence[np.ndarray] | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    rtol32: float = 1e-5,
    atol32: float = 1e-5,
    finite_differences: bool = True,
    samples: int | None = None,
    float32: bool = True,
    seed: int = 0,
) -> None:
    """Check forward and backward of `our_fn` (default: `torch_fn`) against PyTorch and numerics.

    Args:
        shapes: one shape per input; all inputs are differentiated.
        torch_fn: the reference, called with torch tensors (None: no reference, numerics only).
        our_fn: the same computation on our Tensors; defaults to `torch_fn` (same lambda).
        low, high: inputs are uniform in [low, high) (a bound per input, or one for all).
        values: explicit float64 input arrays instead of random ones (shapes is then ignored).
        finite_differences: run `gradcheck` in float64 (off only where the op has a kink).
        samples: how many elements per input gradcheck nudges (None: all).
        float32: also run in float32 and check dtypes and values against PyTorch's float32.
    """
    our_fn = our_fn or torch_fn
    arrays = (
        [np.asarray(v, dtype=np.float64) for v in values]
        if values is not None
        else make_inputs(shapes, low, high, seed)
    )

    # the upstream gradient: random, of the output's shape
    probe = our_fn(*(Tensor(a.copy(), requires_grad=True) for a in arrays))
    upstream = np.random.default_rng(seed + 1).standard_normal(probe.shape)

    out64, ours64 = _run_ours(our_fn, arrays, np.float64, upstream)
    assert out64.dtype == np.float64, f"float64 inputs gave a {out64.dtype} output"
    for i, t in enumerate(ours64):
        assert t.grad is None or t.grad.dtype == np.float64, f"input {i}: grad {t.grad.dtype}"

    if has_torch() and torch_fn is not None:
        ref_out, ref_inputs = _run_torch(torch_fn, arrays, np.float64, upstream)
        _compare("forward (float64)", out64.data, ref_out.detach().numpy(), rtol, atol)
        for i, (t, r) in enumerate(zip(ours64, ref_inputs, strict=True)):
            _compare(
                f"grad of input {i} (float64)", _grad(t, t.shape), _grad(r, t.shape), rtol, atol
            )

    if finite_differences:
        tensors = [Tensor(a.copy(), requires_grad=True) for a in arrays]
        assert gradcheck(our_fn, tensors, samples=samples)

    if float32:
        out32, ours32 = _run_ours(our_fn, arrays, np.float32, upstream)
        assert out32.dtype == np.float32, f"float32 inputs gave a {out32.dtype} output"
        for i, t in enumerate(ours32):
            assert t.grad is None or t.grad.dtype == np.float32, (
                f"input {i}: float32 input got a {t.grad.dtype} gradient"
            )
        if has_torch() and torch_fn is not None:
            ref_out, ref_inputs = _run_torch(torch_fn, arrays, np.float32, upstream)
            ref_forward, ref_grads = (
                ref_out.detach().numpy(),
                [_grad(r, t.shape) for r, t in zip(ref_inputs, ours32, strict=True)],
            )
        else:
            ref_forward, ref_grads = out64.data, [_grad(t, t.shape) for t in ours64]
        scale = max(1.0, float(np.max(np.abs(ref_forward), initial=0.0)))
        _compare("forward (float32)", out32.data, ref_forward, rtol32, atol32 * scale)
        for i, (t, g) in enumerate(zip(ours32, ref_grads, strict=True)):
            gscale = max(1.0, float(np.max(np.abs(g), initial=0.0)))
            _compare(
                f"grad of input {i} (float32)",
                _grad(t, t.shape),
                g,
                10 * rtol32,
                10 * atol32 * gscale,
            )
