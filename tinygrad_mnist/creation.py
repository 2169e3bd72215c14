"""Making tensors, as the `torch` module does: `tensor`, `zeros`, `ones`, `rand`, `arange`, ...

Every function takes PyTorch's arguments: sizes as `zeros(2, 3)` or `zeros((2, 3))`, a `dtype`
(default float32, or int64 for `randint` and integer `arange`) and `requires_grad=`. The random
ones draw from the package's one generator, seeded by `manual_seed`.
"""

from __future__ import annotations

import numpy as np

from . import seeding
from .tensor import Tensor, as_dtype, check_device


def _make(array: np.ndarray, dtype, requires_grad: bool, device, op: str) -> Tensor:
    if device is not None:
        check_device(device, op)
    if dtype is not None:
        array = array.astype(as_dtype(dtype, op), copy=False)
    return Tensor(array, requires_grad=requires_grad)


def _size(size, op: str) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    if not all(isinstance(n, (int, np.integer)) and n >= 0 for n in size):
        raise ValueError(f"{op}: sizes must be non-negative ints, got {size}")
    return tuple(int(n) for n in size)


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of `data` (lists and numbers become float32, or int64 when
    all are ints; NumPy arrays keep their dtype)."""
    if device is not None:
        check_device(device, "tensor")
    if isinstance(data, Tensor):
        data = data.data
    if dtype is None and not isinstance(data, (np.ndarray, np.generic)):
        array = np.asarray(data)
        if array.dtype.kind in "iu":
            dtype = np.int64
        elif array.dtype.kind == "b":
            dtype = np.bool_
    array = np.array(data, dtype=None if dtype is None else as_dtype(dtype, "tensor"))
    if (
        array.dtype == np.float64
        and not isinstance(data, (np.ndarray, np.generic))
        and (dtype is None)
    ):
        array = array.astype(np.float32)
    return Tensor(array, requires_grad=requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros."""
    return _make(np.zeros(_size(size, "zeros"), np.float32), dtype, requires_grad, device, "zeros")


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones."""
    return _make(np.ones(_size(size, "ones"), np.float32), dtype, requires_grad, device, "ones")


def empty(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of the given size (zeros here: NumPy's garbage would only surprise)."""
    return _make(np.zeros(_size(size, "empty"), np.float32), dtype, requires_grad, device, "empty")


def full(size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor filled with `fill_value` (float32 for a float, int64 for an int, as PyTorch)."""
    default: type[np.generic] = (
        np.int64 if isinstance(fill_value, (int, np.integer)) else np.float32
    )
    if isinstance(fill_value, (np.bool_,)) or fill_value is True or fill_value is False:
        default = np.bool_
    array = np.full(_size((size,), "full"), fill_value, dtype=default)
    return _make(array, dtype, requires_grad, device, "full")


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad: bool = False):
    """start, start + step, ... below end (`arange(5)` is 0..4); int64 for ints, else float32."""
    if end is None:
        start, end = 0, start
    ints = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
    array = np.arange(start, end, step, dtype=np.int64 if ints else np.float32)
    return _make(array, dtype, requires_grad, device, "arange")


def linspace(start, end, steps: int, dtype=None, device=None, requires_grad: bool = False):
    """`steps` evenly spaced values from start to end, both included."""
    return _make(
        np.linspace(start, end, steps, dtype=np.float32), dtype, requires_grad, device, "linspace"
    )


def eye(n: int, m: int | None = None, dtype=None, device=None, requires_grad: bool = False):
    """The n x m identity matrix (m defaults to n)."""
    return _make(np.eye(n, m, dtype=np.float32), dtype, requires_grad, device, "eye")


def rand(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1), from the generator `manual_seed` seeds."""
    array = seeding.generator.random(_size(size, "rand"), dtype=np.float32)
    return _make(array, dtype, requires_grad, device, "rand")


def randn(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples, from the generator `manual_seed` seeds."""
    array = seeding.generator.standard_normal(_size(size, "randn"), dtype=np.float32)
    return _make(array, dtype, requires_grad, device, "randn")


def randint(low, high=None, size=None, dtype=None, device=None, requires_grad: bool = False):
    """Integers uniform in [low, high) (`randint(high, size)` from 0), int64 by default."""
    if size is None:
        if high is None or not isinstance(high, (tuple, list)):
            raise TypeError("randint: expected randint(low, high, size) or randint(high, size)")
        low, high, size = 0, low, high
    elif high is None:
        low, high = 0, low
    array = seeding.generator.integers(low, high, size=_size((size,), "randint"), dtype=np.int64)
    return _make(array, dtype, requires_grad, device, "randint")


def randperm(n: int, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A random permutation of 0..n-1 (int64)."""
    return _make(seeding.generator.permutation(n), dtype, requires_grad, device, "randperm")


def _like(x: Tensor, make, dtype, requires_grad: bool, op: str) -> Tensor:
    dtype = x.dtype if dtype is None else dtype
    return make(x.shape, dtype=dtype, requires_grad=requires_grad)


def zeros_like(x: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    """Zeros of x's shape and dtype."""
    return _like(x, zeros, dtype, requires_grad, "zeros_like")


def ones_like(x: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    """Ones of x's shape and dtype."""
    return _like(x, ones, dtype, requires_grad, "ones_like")


def empty_like(x: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    """A tensor of x's shape and dtype (zeros)."""
    return _like(x, empty, dtype, requires_grad, "empty_like")


def full_like(x: Tensor, fill_value, dtype=None, requires_grad: bool = False) -> Tensor:
    """`fill_value` in x's shape and dtype."""
    dtype = x.dtype if dtype is None else dtype
    return full(x.shape, fill_value, dtype=dtype, requires_grad=requires_grad)


def rand_like(x: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    """Uniform [0, 1) samples in x's shape and dtype."""
    return _like(x, rand, dtype, requires_grad, "rand_like")


def randn_like(x: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples in x's shape and dtype."""
    return _like(x, randn, dtype, requires_grad, "randn_like")


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing `array`'s memory and dtype."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected an ndarray, got {type(array).__name__}")
    return Tensor(array)


def is_tensor(obj) -> bool:
    """Whether obj is a Tensor."""
    return isinstance(obj, Tensor)
