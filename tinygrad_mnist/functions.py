"""The `torch.` function forms of the Tensor methods: `tm.sum(x, dim=1)` is `x.sum(dim=1)`.

Tutorials write both `torch.max(outputs, 1)` and `outputs.max(1)`; each function here is the
method of the same name, with the same arguments. An ndarray argument is taken as a Tensor
(so `torch.max(outputs.data, 1)`, where `.data` is our ndarray, works too).
"""

from __future__ import annotations

import numpy as np

from .tensor import Tensor


def _t(x) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (np.ndarray, np.generic)):
        return Tensor(x)
    raise TypeError(f"expected a Tensor, got {type(x).__name__}")


def sum(input, *args, **kwargs) -> Tensor:  # noqa: A001 - torch.sum
    """`input.sum(...)`."""
    return _t(input).sum(*args, **kwargs)


def mean(input, *args, **kwargs) -> Tensor:
    """`input.mean(...)`."""
    return _t(input).mean(*args, **kwargs)


def var(input, *args, **kwargs) -> Tensor:
    """`input.var(...)`."""
    return _t(input).var(*args, **kwargs)


def std(input, *args, **kwargs) -> Tensor:
    """`input.std(...)`."""
    return _t(input).std(*args, **kwargs)


def max(input, *args, **kwargs):  # noqa: A001 - torch.max
    """`input.max(...)`: the 0-d max, (values, indices) along a dim, or maximum(input, other)."""
    return _t(input).max(*args, **kwargs)


def min(input, *args, **kwargs):  # noqa: A001 - torch.min
    """`input.min(...)`: the 0-d min, (values, indices) along a dim, or minimum(input, other)."""
    return _t(input).min(*args, **kwargs)


def amax(input, *args, **kwargs) -> Tensor:
    """`input.amax(...)`."""
    return _t(input).amax(*args, **kwargs)


def amin(input, *args, **kwargs) -> Tensor:
    """`input.amin(...)`."""
    return _t(input).amin(*args, **kwargs)


def argmax(input, *args, **kwargs) -> Tensor:
    """`input.argmax(...)`."""
    return _t(input).argmax(*args, **kwargs)


def argmin(input, *args, **kwargs) -> Tensor:
    """`input.argmin(...)`."""
    return _t(input).argmin(*args, **kwargs)


def exp(input) -> Tensor:
    """`input.exp()`."""
    return _t(input).exp()


def log(input) -> Tensor:
    """`input.log()`."""
    return _t(input).log()


def sqrt(input) -> Tensor:
    """`input.sqrt()`."""
    return _t(input).sqrt()


def abs(input) -> Tensor:  # noqa: A001 - torch.abs
    """`input.abs()`."""
    return _t(input).abs()


def pow(input, exponent) -> Tensor:  # noqa: A001 - torch.pow
    """`input ** exponent`."""
    return _t(input) ** exponent


def square(input) -> Tensor:
    """`input * input`."""
    return _t(input).square()


def relu(input) -> Tensor:
    """`input.relu()`."""
    return _t(input).relu()


def sigmoid(input) -> Tensor:
    """`input.sigmoid()`."""
    return _t(input).sigmoid()


def tanh(input) -> Tensor:
    """`input.tanh()`."""
    return _t(input).tanh()


def clamp(input, min=None, max=None) -> Tensor:
    """`input.clamp(min, max)`."""
    return _t(input).clamp(min, max)


clip = clamp


def softmax(input, dim: int) -> Tensor:
    """`input.softmax(dim)`."""
    return _t(input).softmax(dim)


def log_softmax(input, dim: int) -> Tensor:
    """`input.log_softmax(dim)`."""
    return _t(input).log_softmax(dim)


def matmul(input, other) -> Tensor:
    """`input @ other`."""
    return _t(input).matmul(other)


def mm(input, other) -> Tensor:
    """`input @ other` for matrices."""
    return _t(input).mm(other)


def reshape(input, shape) -> Tensor:
    """`input.reshape(shape)`."""
    return _t(input).reshape(shape)


def flatten(input, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """`input.flatten(start_dim, end_dim)` (`flatten(x, 1)` keeps the batch dim)."""
    return _t(input).flatten(start_dim, end_dim)


def squeeze(input, dim=None) -> Tensor:
    """`input.squeeze(dim)`."""
    return _t(input).squeeze(dim)


def unsqueeze(input, dim: int) -> Tensor:
    """`input.unsqueeze(dim)`."""
    return _t(input).unsqueeze(dim)


def transpose(input, dim0: int, dim1: int) -> Tensor:
    """`input.transpose(dim0, dim1)`: swaps two dims."""
    return _t(input).transpose(dim0, dim1)


def permute(input, dims) -> Tensor:
    """`input.permute(dims)`."""
    return _t(input).permute(dims)


def split(tensor, split_size_or_sections, dim: int = 0) -> tuple[Tensor, ...]:
    """`tensor.split(split_size_or_sections, dim)`."""
    return _t(tensor).split(split_size_or_sections, dim)


def chunk(input, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    """`input.chunk(chunks, dim)`."""
    return _t(input).chunk(chunks, dim)


def maximum(input, other) -> Tensor:
    """The larger of two tensors, elementwise (ties share the gradient)."""
    return _t(input).maximum(other)


def minimum(input, other) -> Tensor:
    """The smaller of two tensors, elementwise (ties share the gradient)."""
    return _t(input).minimum(other)


def logsumexp(input, dim, keepdim: bool = False) -> Tensor:
    """`input.logsumexp(dim, keepdim)`."""
    return _t(input).logsumexp(dim, keepdim)


def numel(input) -> int:
    """`input.numel()`."""
    return _t(input).numel()


def allclose(input, other, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    """Whether all values are close (as `np.allclose`)."""
    return bool(np.allclose(_t(input).data, _t(other).data, rtol=rtol, atol=atol))
