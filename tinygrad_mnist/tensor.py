"""Tensor: a NumPy array plus the bookkeeping of reverse-mode automatic differentiation.

Every op applied to tensors records itself: the result keeps the op instance (`_op`, with its
saved arrays and attributes) and its ordered inputs (`_parents`). `backward()` sorts that graph
topologically without recursion and walks it in reverse, calling each op's backward rule and
adding the gradients up.
"""

from __future__ import annotations

# Tensor has methods named bool, int and float (as torch.Tensor), which hide the builtin types
# inside the class body: annotations there spell them builtins.bool and so on.
import builtins
import contextlib
import math
import numbers
from collections import Counter
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from . import checks, kernels, ops, seeding

_grad_enabled = True

# dtypes a Tensor may hold; anything else (object, strings, complex) is refused up front
_SUPPORTED_KINDS = "fiub"

# PyTorch's promotion categories: a higher category wins whatever the sizes (int + float32 is
# float32); within one, the wider dtype wins, but a 0-d tensor never widens a dimensioned one
_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2}


class _GradMode(contextlib.ContextDecorator):
    """Base of no_grad / enable_grad: set gradient recording on or off inside a block."""

    enabled = False
    _previous: list[bool]

    def __new__(cls, func=None):
        self = super().__new__(cls)
        self._previous = []  # a stack: one decorator instance is re-entered by nested calls
        if callable(func):  # used as a decorator without parentheses: @no_grad
            return self(func)
        return self

    def __init__(self, func=None):
        pass

    def __enter__(self):
        global _grad_enabled
        self._previous.append(_grad_enabled)
        _grad_enabled = self.enabled
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._previous.pop()
        return False


class no_grad(_GradMode):
    """Context manager and decorator (with or without parentheses): inside it, ops record no
    graph and results need no grad; in-place updates of parameters are allowed.

    >>> with no_grad():
    ...     y = model(x)
    """

    enabled = False


class enable_grad(_GradMode):
    """Context manager and decorator: record the graph again inside a `no_grad` block."""

    enabled = True


class set_grad_enabled:
    """Turn gradient recording on or off: at once when called, or for a `with` block."""

    def __init__(self, mode: bool):
        global _grad_enabled
        self._previous = _grad_enabled
        _grad_enabled = bool(mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._previous
        return False


def is_grad_enabled() -> bool:
    """True unless inside `no_grad()`."""
    return _grad_enabled


def result_dtype(a: Tensor, b: Tensor) -> np.dtype:
    """The dtype of an elementwise op on a and b, by PyTorch's promotion rules."""
    if a.dtype == b.dtype:
        return a.dtype
    ca, cb = _CATEGORY[a.dtype.kind], _CATEGORY[b.dtype.kind]
    if ca != cb:
        return a.dtype if ca > cb else b.dtype
    if (a.ndim == 0) != (b.ndim == 0):
        return b.dtype if a.ndim == 0 else a.dtype
    return np.result_type(a.dtype, b.dtype)


class ValuesIndices(NamedTuple):
    """What `max(dim)` and `min(dim)` return, as PyTorch's: `values, indices = x.max(1)`."""

    values: Tensor
    indices: Tensor


def _to_array(data, dtype) -> np.ndarray:
    """Convert user data to an ndarray following the dtype rules of the Tensor docstring."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        try:
            dtype = np.dtype(dtype)
        except TypeError as err:
            raise TypeError(f"Tensor: unknown dtype {dtype!r}; expected e.g. 'float32'") from err
        if dtype.kind not in _SUPPORTED_KINDS:
            raise TypeError(
                f"Tensor: unsupported dtype {dtype}; expected a float, integer or bool dtype"
            )
    if isinstance(data, np.ndarray | np.generic):
        array = np.asarray(data, dtype=dtype)
    elif isinstance(data, (numbers.Number, Sequence)) and not isinstance(data, (str, bytes)):
        try:
            array = np.asarray(data, dtype=dtype or np.float32)
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"Tensor: cannot make an array from {type(data).__name__} data ({err}); "
                "expected a number or a rectangular nested list of numbers"
            ) from err
    else:
        raise TypeError(
            f"Tensor: data must be a NumPy array, a list or a number, got {type(data).__name__}"
        )
    if array.dtype.kind not in _SUPPORTED_KINDS:
        raise TypeError(
            f"Tensor: unsupported dtype {array.dtype}; expected a float, integer or bool dtype"
        )
    return array


def _axes_of(args) -> tuple[int, ...]:
    """Accept shape arguments as `f(2, 3)` or `f((2, 3))`."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


class Tensor:
    """An n-dimensional array that records the ops applied to it, for reverse-mode autodiff.

    Args:
        data: a NumPy array, a (nested) list, or a number. Lists and numbers become float32;
            NumPy arrays keep their dtype (float64 stays float64, so gradients can be checked in
            double precision; integer arrays stay integer).
        requires_grad: whether `backward()` should compute `.grad` for this tensor. Only
            floating-point tensors can require grad.
        dtype: convert the data to this dtype (e.g. ``"float64"``).
        name: an optional label, shown by the graph drawer.
    """

    __array_priority__ = 1000  # so `ndarray * Tensor` defers to Tensor.__rmul__

    module_calls: tuple = ()
    """The module calls that returned this tensor, innermost first, as (module, input tensors)
    pairs: set by `nn.Module.__call__`, read by the graph drawer to box each layer's ops."""

    def __init__(self, data, requires_grad: bool = False, dtype=None, name: str | None = None):
        self.data: np.ndarray = _to_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"Tensor: only floating-point tensors can require grad, got dtype "
                f"{self.data.dtype}; convert with dtype='float32' first"
            )
        self.requires_grad: bool = bool(requires_grad)
        self.grad: np.ndarray | None = None
        self.name = name
        self._op: ops.Op | None = None
        self._parents: tuple[Tensor, ...] = ()
        self._retains_grad = False
        self._consumed = False  # whether a recorded op took this tensor as an input

    # ------------------------------------------------------------ graph building

    @staticmethod
    def _apply(op_class: type[ops.Op], *inputs: Tensor, **attrs) -> Tensor:
        """Run `op_class` forward on the inputs' arrays and record it when a gradient is needed."""
        # under no_grad nothing is recorded, so ops save nothing for a backward pass
        # (list comprehensions, not generators: this runs for every op, every step)
        needs = tuple([_grad_enabled and t.requires_grad for t in inputs])
        arrays = [t.data for t in inputs]
        # the textbook op, or a faster kernel for it where the kernels' table has one
        op = kernels.choose(op_class, arrays, attrs)(needs)
        op.attrs = attrs
        return Tensor._record(op, inputs, op.forward(*arrays, **attrs))

    @staticmethod
    def _record(
        op: ops.Op, inputs: Sequence[Tensor], data: np.ndarray | Callable[[], np.ndarray]
    ) -> Tensor:
        """The tensor of `op`'s result `data` on `inputs`, recorded as their child when the op
        needs a gradient. `data` may be a function that makes the array when it is first read
        (`_Deferred`)."""
        if callable(data):
            out: Tensor = Tensor.__new__(_Deferred)
            out._make = data  # type: ignore[attr-defined]
        else:
            out = Tensor.__new__(Tensor)
            out.data = data
        out.grad = None
        out.name = None
        out._retains_grad = False
        out._consumed = False
        out.requires_grad = True in op.needs_input_grad
        if out.requires_grad:
            out._op, out._parents = op, tuple(inputs)
            for t in inputs:
                t._consumed = True
        else:
            out._op, out._parents = None, ()
        return out

    def _lift(self, other) -> Tensor:
        """Turn a number or array operand into a constant Tensor.

        A Python number or NumPy scalar is "weak", as in PyTorch: it takes this tensor's dtype
        (float32 * 2.0 and float32 * np.float64(2) stay float32), except that a float number
        makes an integer or bool tensor's result float32. Arrays and lists keep their dtype.
        """
        if isinstance(other, Tensor):
            return other
        if isinstance(other, np.generic) and other.dtype.kind in _SUPPORTED_KINDS:
            other = other.item()
        if isinstance(other, numbers.Number):
            kind = "b" if isinstance(other, bool) else "i" if isinstance(other, int) else "f"
            if kind not in "bif" or isinstance(other, complex):
                raise TypeError(f"unsupported number for a Tensor op: {other!r}")
            if _CATEGORY[kind] <= _CATEGORY[self.dtype.kind]:
                dtype = self.dtype
            else:
                dtype = np.dtype(np.float32 if kind == "f" else np.int64)
            return Tensor(np.asarray(other, dtype=dtype))
        if isinstance(other, (np.ndarray, list, tuple)):
            return Tensor(other)
        raise TypeError(
            f"unsupported operand type for a Tensor op: {type(other).__name__}; "
            "expected a Tensor, a NumPy array or a number"
        )

    # ------------------------------------------------------------ properties

    @property
    def shape(self) -> tuple[int, ...]:
        """The sizes of the dimensions (a tuple; PyTorch's torch.Size)."""
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def device(self) -> str:
        """Always "cpu": tensors live in NumPy arrays."""
        return "cpu"

    def size(self, dim: int | None = None) -> tuple[int, ...] | int:
        """`x.size()` is the shape, `x.size(dim)` the size of one dimension (as PyTorch; for
        the number of elements use `numel()`)."""
        if dim is None:
            return self.data.shape
        return self.data.shape[self._dims(dim, "size")]

    def numel(self) -> int:
        """The number of elements."""
        return self.data.size

    def dim(self) -> int:
        """The number of dimensions (same as `.ndim`)."""
        return self.data.ndim

    def nelement(self) -> int:
        """Same as `numel()`."""
        return self.data.size

    @property
    def is_leaf(self) -> bool:
        """True for tensors made by the user rather than by an op."""
        return self._op is None

    @property
    def op(self) -> ops.Op | None:
        """The op that produced this tensor (None for leaves), with its attributes."""
        return self._op

    @property
    def parents(self) -> tuple[Tensor, ...]:
        """The op's inputs, in order (empty for leaves)."""
        return self._parents

    def numpy(self) -> np.ndarray:
        """The underlying ndarray (shared, not copied)."""
        return self.data

    def tolist(self):
        """The values as (nested) Python lists of numbers; a 0-d tensor gives a number."""
        return self.data.tolist()

    def item(self) -> float | int | bool:
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(
                f"item: only one-element tensors can be converted to a Python number, "
                f"got shape {self.shape}"
            )
        return self.data.item()

    def __array__(self, dtype=None, copy=None):
        if dtype is None:
            return self.data
        return self.data.astype(dtype, copy=bool(copy))

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise ValueError(
                f"bool: the truth value of a tensor of shape {self.shape} is ambiguous; "
                "expected a one-element tensor (use .any() or .all() on .data)"
            )
        return bool(self.data.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.dtype.kind not in "iu" or self.data.size != 1:
            raise TypeError(
                f"only one-element integer tensors can be used as an index, got dtype "
                f"{self.dtype} and shape {self.shape}"
            )
        return int(self.item())

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self):
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.data.shape[0]))

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", prefix="tensor(", precision=4)
        extras = [] if self.dtype == np.float32 else [f"dtype={self.dtype}"]
        if self._op is not None:
            extras.append(f"grad_fn=<{self._op.name}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body, *extras]) + ")"

    __hash__ = object.__hash__

    # ------------------------------------------------------------ conversions

    def to(self, *args, dtype=None, device=None, copy: bool = False) -> Tensor:
        """`to(dtype)`, `to("cpu")`, `to(other_tensor)` or `to(device, dtype)`: this tensor
        itself when nothing changes, else a converted copy (differentiable between floats)."""
        for arg in args:
            if isinstance(arg, Tensor):
                dtype = arg.dtype
            elif isinstance(arg, str) and is_device(arg):
                device = arg
            else:
                dtype = arg
        if device is not None:
            check_device(device, "to")
        if dtype is None:
            return self.clone() if copy else self
        dtype = as_dtype(dtype, "to")
        if dtype == self.dtype and not copy:
            return self
        if self.requires_grad and dtype.kind != "f":
            return Tensor(self.data.astype(dtype))  # an integer result has no gradient
        return Tensor._apply(ops.Cast, self, dtype=dtype)

    def type(self, dtype=None):
        """`type()` names the dtype; `type(dtype)` converts, as `to(dtype)`."""
        if dtype is None:
            return str(self.dtype)
        if isinstance(dtype, str) and "cuda" in dtype:
            check_device("cuda", "type")
        return self.to(dtype)

    def type_as(self, other: Tensor) -> Tensor:
        """Converted to other's dtype, as `to(other.dtype)`."""
        return self.to(other.dtype)

    def float(self) -> Tensor:
        """A float32 copy (this tensor itself if it is float32)."""
        return self.to(np.float32)

    def double(self) -> Tensor:
        """A float64 copy (this tensor itself if it is float64)."""
        return self.to(np.float64)

    def long(self) -> Tensor:
        """An int64 copy (no gradient)."""
        return self.to(np.int64)

    def int(self) -> Tensor:
        """An int32 copy (no gradient)."""
        return self.to(np.int32)

    def bool(self) -> Tensor:
        """A bool copy (no gradient)."""
        return self.to(np.bool_)

    def cpu(self) -> Tensor:
        """This tensor (everything lives on the CPU)."""
        return self

    def cuda(self, *args, **kwargs) -> Tensor:
        """Not available: tinygrad_mnist runs on the CPU only."""
        check_device("cuda", "cuda")
        return self

    def contiguous(self) -> Tensor:
        """This tensor (NumPy handles memory layouts; `x.contiguous().view(...)` just works)."""
        return self

    def clone(self) -> Tensor:
        """A copy of the data that stays in the graph (d/dx = 1)."""
        return Tensor._apply(ops.Cast, self, dtype=self.dtype)

    # ------------------------------------------------------------ autograd

    def backward(self, grad=None) -> None:
        """Compute d(self)/d(leaf) for every leaf that requires grad and add it to `leaf.grad`.

        Args:
            grad: the gradient flowing into this tensor, same shape; may be omitted only when
                the tensor has one element (then it is 1).

        Gradients accumulate: calling backward twice adds twice. The graph is kept.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward: this tensor does not require grad and has no recorded graph; "
                "create the inputs with requires_grad=True (and not inside no_grad())"
            )
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    f"backward: grad can be omitted only for a one-element tensor, but this "
                    f"tensor has shape {self.shape}; pass grad= an array of that shape"
                )
            seed = np.ones(self.shape, dtype=self.dtype)
        else:
            seed = np.asarray(grad.data if isinstance(grad, Tensor) else grad)
            if seed.shape != self.shape:
                raise ValueError(
                    f"backward: grad has shape {seed.shape} but the tensor has shape "
                    f"{self.shape}; they must match"
                )
            seed = seed.astype(self.dtype, copy=False)

        grads: dict[int, np.ndarray] = {id(self): seed}
        # arrays a tensor's .grad may not take over without a copy, nor an op overwrite: the
        # caller's, those stored as some .grad, and those an op handed to two inputs (add)
        shared = {id(seed), id(_memory_owner(seed))} if grad is not None else set()
        order = topological_order(self, only_requiring_grad=True)
        assert order is not None  # None only when given a limit
        consumers = Counter(id(parent) for node in order for parent in node._parents)
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._op is None or node._retains_grad:
                if node.grad is not None:
                    node.grad = node.grad + g
                elif _unshared(g, shared):
                    node.grad = g  # a fresh array from an op's backward: no copy needed
                else:
                    node.grad = g.copy(order="K")  # in g's memory layout
                shared.update((id(node.grad), id(_memory_owner(node.grad))))
                if node._op is None:
                    continue
            op, parents = node._op, node._parents
            # the engine room may do this op's backward and that of the op before it in one
            # (kernels/fusion.py); the tensor between them then gets no gradient of its own
            fused = kernels.fuse(node, consumers)
            if fused is not None:
                op, parents = fused
            # a gradient nothing else holds is the op's to overwrite: a kernel may write its
            # result into it rather than into a fresh array (one pass less over memory)
            op.grad_is_scratch = _unshared(g, shared)
            input_grads = op.backward(g)
            if len(input_grads) > 1:
                owners = [id(_memory_owner(pg)) for pg in input_grads if pg is not None]
                shared.update([i for i in owners if owners.count(i) > 1])  # one memory, 2 inputs
            for parent, pg in zip(parents, input_grads, strict=False):
                if pg is None or not parent.requires_grad:
                    continue
                # as PyTorch: a gradient has its tensor's dtype, even after a mixed-dtype op
                pg = pg.astype(parent.dtype, copy=False)
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg

    def retain_grad(self) -> Tensor:
        """Keep `.grad` on this intermediate tensor during backward (leaves always keep it)."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad: this tensor does not require grad")
        self._retains_grad = True
        return self

    def zero_grad(self) -> None:
        """Forget the accumulated gradient (sets `.grad` to None, as PyTorch does)."""
        self.grad = None

    def detach(self) -> Tensor:
        """A new leaf tensor sharing this data, cut off from the graph."""
        return Tensor(self.data)

    def requires_grad_(self, requires_grad: builtins.bool = True) -> Tensor:
        """Set `requires_grad` on this leaf in place; returns self."""
        if not requires_grad and not self.is_leaf:
            raise RuntimeError(
                "requires_grad_: you can only change requires_grad flags of leaf tensors; "
                "use detach() to cut a result off the graph"
            )
        if requires_grad and self.dtype.kind != "f":
            raise TypeError(
                f"requires_grad_: only floating-point tensors can require grad, got dtype "
                f"{self.dtype}; convert with .float() first"
            )
        self.requires_grad = bool(requires_grad)
        return self

    # ------------------------------------------------------------ arithmetic

    def __add__(self, other) -> Tensor:
        return Tensor._binary(ops.Add, "add", self, self._lift(other))

    def __radd__(self, other) -> Tensor:
        return Tensor._binary(ops.Add, "add", self._lift(other), self)

    def __sub__(self, other) -> Tensor:
        return Tensor._binary(ops.Sub, "sub", self, self._lift(other))

    def __rsub__(self, other) -> Tensor:
        return Tensor._binary(ops.Sub, "sub", self._lift(other), self)

    def __mul__(self, other) -> Tensor:
        return Tensor._binary(ops.Mul, "mul", self, self._lift(other))

    def __rmul__(self, other) -> Tensor:
        return Tensor._binary(ops.Mul, "mul", self._lift(other), self)

    def __truediv__(self, other) -> Tensor:
        return Tensor._binary(ops.Div, "div", self, self._lift(other))

    def __rtruediv__(self, other) -> Tensor:
        return Tensor._binary(ops.Div, "div", self._lift(other), self)

    def __neg__(self) -> Tensor:
        return Tensor._apply(ops.Neg, self)

    def __abs__(self) -> Tensor:
        return self.abs()

    def add(self, other, *, alpha=1) -> Tensor:
        """self + alpha * other."""
        return self + (other if alpha == 1 else self._lift(other) * alpha)

    def sub(self, other, *, alpha=1) -> Tensor:
        """self - alpha * other."""
        return self - (other if alpha == 1 else self._lift(other) * alpha)

    def mul(self, other) -> Tensor:
        """self * other."""
        return self * other

    def div(self, other) -> Tensor:
        """self / other (true division)."""
        return self / other

    def neg(self) -> Tensor:
        """-self."""
        return -self

    def __pow__(self, exponent) -> Tensor:
        """x ** p for a number p (d/dx = p x^(p-1)) or a tensor p (see `ops.Power`)."""
        if isinstance(exponent, (Tensor, np.ndarray)):
            return Tensor._binary(ops.Power, "pow", self, self._lift(exponent))
        if isinstance(exponent, np.generic):
            exponent = exponent.item()
        if not isinstance(exponent, numbers.Real) or isinstance(exponent, bool):
            raise TypeError(
                f"pow: the exponent must be a number or a Tensor, got {type(exponent).__name__}"
            )
        if self.dtype.kind != "f":
            if not float(exponent).is_integer():
                return self.float() ** exponent
            if exponent < 0:
                raise ValueError(
                    f"pow: integers to negative integer powers are not allowed (dtype "
                    f"{self.dtype}, exponent {exponent}); convert with .float() first"
                )
        return Tensor._apply(ops.Pow, self, exponent=exponent)

    def __rpow__(self, base) -> Tensor:
        """base ** x for a number or array base (`2 ** t`).   d/dx = base^x log(base)"""
        return Tensor._binary(ops.Power, "pow", self._lift(base), self)

    def pow(self, exponent) -> Tensor:
        """self ** exponent (a number or a Tensor)."""
        return self**exponent

    def __matmul__(self, other) -> Tensor:
        return self.matmul(other)

    def __rmatmul__(self, other) -> Tensor:
        return self._lift(other).matmul(self)

    @staticmethod
    def _binary(op_class, name: str, a: Tensor, b: Tensor) -> Tensor:
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(
                f"{name}: shapes {a.shape} and {b.shape} cannot be broadcast together; "
                "each axis must match or be 1 (aligned from the right)"
            ) from None
        dtype = result_dtype(a, b)
        if dtype.kind != "f" and op_class in (ops.Div, ops.Power):
            if op_class is ops.Div or (b.data < 0).any():
                dtype = np.dtype(np.float32)  # true division of integers, as PyTorch
        a = a if a.dtype == dtype else a.to(dtype)
        b = b if b.dtype == dtype else b.to(dtype)
        return Tensor._apply(op_class, a, b)

    # ------------------------------------------------------------ in place

    def _in_place(self, name: str, compute, other=None) -> Tensor:
        """Write `compute(self.data, other_array)` into this tensor's own array.

        As PyTorch: refused on a leaf that requires grad while grad is enabled (it would
        change a parameter behind autograd's back; wrap the update in `no_grad()`), and on a
        tensor recorded in the graph (write `x = x + y` instead).
        """
        other_requires_grad = isinstance(other, Tensor) and other.requires_grad
        if _grad_enabled and (self.requires_grad or other_requires_grad):
            if self.requires_grad and self.is_leaf:
                raise RuntimeError(
                    f"{name}: a leaf Variable that requires grad is being used in an in-place "
                    "operation. Wrap the update in `with no_grad():` (as an optimizer step does)"
                )
            raise RuntimeError(
                f"{name}: this tensor is already used by an op of the graph, which may need its "
                "old values for backward; write the out-of-place form (x = x + y), or wrap the "
                "update in `with no_grad():`"
            )
        value = other.data if isinstance(other, Tensor) else other
        if value is not None and np.broadcast_shapes(self.shape, np.shape(value)) != self.shape:
            raise ValueError(
                f"{name}: an operand of shape {np.shape(value)} cannot be written into a tensor "
                f"of shape {self.shape}"
            )
        if not self.data.flags.writeable:  # a broadcast or window view: take a copy first
            self.data = self.data.copy()
        result = compute(self.data, value)
        if (
            result.dtype.kind != self.dtype.kind
            and _CATEGORY[result.dtype.kind] > _CATEGORY[self.dtype.kind]
        ):
            raise TypeError(
                f"{name}: result type {result.dtype} can't be cast to the tensor's dtype "
                f"{self.dtype}"
            )
        self.data[...] = result
        return self

    def __iadd__(self, other) -> Tensor:
        """`x += y`: in x's own array; on a tensor recorded in the graph, x + y (rebinds x)."""
        if self._records(other):
            return self + other
        return self._in_place("add_", np.add, other)

    def __isub__(self, other) -> Tensor:
        """`x -= y`: in x's own array (so `with no_grad(): w -= lr * w.grad` trains)."""
        if self._records(other):
            return self - other
        return self._in_place("sub_", np.subtract, other)

    def __imul__(self, other) -> Tensor:
        """`x *= y`: in x's own array; on a tensor recorded in the graph, x * y (rebinds x)."""
        if self._records(other):
            return self * other
        return self._in_place("mul_", np.multiply, other)

    def __itruediv__(self, other) -> Tensor:
        """`x /= y`: in x's own array; on a tensor recorded in the graph, x / y (rebinds x)."""
        if self._records(other):
            return self / other
        return self._in_place("div_", np.true_divide, other)

    def _records(self, other) -> builtins.bool:
        """Whether `x op= other` must record (grad enabled, and a non-leaf or a grad operand)."""
        if not _grad_enabled:
            return False
        if self.requires_grad and not self.is_leaf:
            return True
        return not self.requires_grad and isinstance(other, Tensor) and other.requires_grad

    def _become(self, result: Tensor) -> Tensor:
        """Make this tensor, which needs no grad, the recorded `result` (shape and dtype kept):
        as in PyTorch, `x.copy_(w)` or `x.add_(w)` with a `w` that requires grad puts x in the
        graph. No op has recorded x as an input that needs a gradient, so none is misled."""
        if result.shape != self.shape:
            result = result.expand(self.shape)
        result = result.to(self.dtype)
        self.data, self._op, self._parents = result.data, result._op, result._parents
        self.requires_grad = result.requires_grad
        return self

    def _graph_input(self, other=None) -> Tensor | None:
        """The input an in-place op must record itself from, or None when it may simply write
        this tensor's array (or must refuse: `_in_place` says why).

        A plain tensor joining the graph (grad enabled and `other` requires grad) starts from a
        detached copy of itself; a recorded result that no op has used yet continues from its
        own node, moved to a stand-in object, so the op is recorded in place as in PyTorch.
        """
        if not _grad_enabled:
            return None
        if not self.requires_grad:
            return self.detach() if isinstance(other, Tensor) and other.requires_grad else None
        if self.is_leaf or self._consumed:
            return None
        before = Tensor.__new__(Tensor)
        before.__dict__.update(self.__dict__)
        return before

    def add_(self, other, *, alpha=1) -> Tensor:
        """self += alpha * other, in place."""
        if (before := self._graph_input(other)) is not None:
            return self._become(before + other * alpha)
        return self._in_place("add_", lambda x, y: x + alpha * y, _plain(other))

    def sub_(self, other, *, alpha=1) -> Tensor:
        """self -= alpha * other, in place."""
        if (before := self._graph_input(other)) is not None:
            return self._become(before - other * alpha)
        return self._in_place("sub_", lambda x, y: x - alpha * y, _plain(other))

    def mul_(self, other) -> Tensor:
        """self *= other, in place."""
        if (before := self._graph_input(other)) is not None:
            return self._become(before * other)
        return self._in_place("mul_", np.multiply, _plain(other))

    def div_(self, other) -> Tensor:
        """self /= other, in place."""
        if (before := self._graph_input(other)) is not None:
            return self._become(before / other)
        return self._in_place("div_", np.true_divide, _plain(other))

    def normal_(self, mean: builtins.float = 0.0, std: builtins.float = 1.0) -> Tensor:
        """Fill with normal samples (from the generator `manual_seed` seeds), in place."""
        draw = seeding.generator.normal
        return self._in_place("normal_", lambda x, _: draw(mean, std, size=x.shape))

    def uniform_(self, a: builtins.float = 0.0, b: builtins.float = 1.0) -> Tensor:
        """Fill with samples uniform in [a, b) (from the generator `manual_seed` seeds)."""
        draw = seeding.generator.uniform
        return self._in_place("uniform_", lambda x, _: draw(a, b, size=x.shape))

    def zero_(self) -> Tensor:
        """Set every element to 0, in place."""
        return self._in_place("zero_", lambda x, _: np.zeros_like(x))

    def fill_(self, value) -> Tensor:
        """Set every element to `value`, in place."""
        return self._in_place("fill_", lambda x, v: np.full_like(x, v), _plain(value))

    def copy_(self, src) -> Tensor:
        """Copy `src`'s values (broadcast to this shape, cast to this dtype) in place."""
        if self._graph_input(src) is not None:  # the old values get no gradient: not an input
            return self._become(Tensor._apply(ops.Cast, self._lift(src), dtype=self.dtype))
        src = _plain(src)
        return self._in_place(
            "copy_", lambda x, v: np.broadcast_to(np.asarray(v).astype(x.dtype), x.shape), src
        )

    def clamp_(self, min=None, max=None) -> Tensor:
        """Clamp into [min, max], in place."""
        if (before := self._graph_input()) is not None:
            return self._become(before.clamp(min, max))
        return self._in_place("clamp_", lambda x, _: np.clip(x, min, max).astype(x.dtype))

    def __setitem__(self, index, value) -> None:
        """`x[index] = value`, in place, with the same rules as the other in-place ops. A value
        that requires grad puts a plain x into the graph (`out = zeros(n, d); out[i] = f(w)`)."""
        index = _plain_index(index)
        value_needs_grad = isinstance(value, Tensor) and value.requires_grad
        if _grad_enabled and (self.requires_grad or value_needs_grad):
            # safe unless an op already recorded this tensor as an input: its gradient would
            # then flow into the new values (PyTorch's version counters refuse that too)
            if self.requires_grad and self.is_leaf:
                self._in_place("__setitem__", None)  # raises PyTorch's leaf error
                return
            before = self._graph_input(value)
            if before is None:  # a recorded result some op already used
                raise RuntimeError(
                    "__setitem__: this tensor requires grad and is already used in the graph; "
                    "writing into it is not recorded here: build the result out of place "
                    "(e.g. with where(), cat() or stack())"
                )
            value = self._lift(value).to(self.dtype)
            self._become(Tensor._apply(ops.SetItem, before, value, index=index))
            return
        value = _plain(value)

        def assign(x, _):
            out = x.copy()
            out[index] = value
            return out

        self._in_place("__setitem__", assign)

    # comparisons give bool tensors and record nothing
    def _compare(self, other, fn, name: str) -> Tensor:
        b = self._lift(other)
        try:
            np.broadcast_shapes(self.shape, b.shape)
        except ValueError:
            raise ValueError(
                f"{name}: shapes {self.shape} and {b.shape} cannot be broadcast together"
            ) from None
        return Tensor(fn(self.data, b.data))

    def __eq__(self, other) -> Tensor:  # type: ignore[override]
        return self._compare(other, np.equal, "eq")

    def __ne__(self, other) -> Tensor:  # type: ignore[override]
        return self._compare(other, np.not_equal, "ne")

    def __lt__(self, other) -> Tensor:
        return self._compare(other, np.less, "lt")

    def __le__(self, other) -> Tensor:
        return self._compare(other, np.less_equal, "le")

    def __gt__(self, other) -> Tensor:
        return self._compare(other, np.greater, "gt")

    def __ge__(self, other) -> Tensor:
        return self._compare(other, np.greater_equal, "ge")

    def eq(self, other) -> Tensor:
        """self == other, elementwise (a bool tensor)."""
        return self == other

    def ne(self, other) -> Tensor:
        """self != other, elementwise (a bool tensor)."""
        return self != other

    def lt(self, other) -> Tensor:
        """self < other, elementwise (a bool tensor)."""
        return self < other

    def le(self, other) -> Tensor:
        """self <= other, elementwise (a bool tensor)."""
        return self <= other

    def gt(self, other) -> Tensor:
        """self > other, elementwise (a bool tensor)."""
        return self > other

    def ge(self, other) -> Tensor:
        """self >= other, elementwise (a bool tensor)."""
        return self >= other

    def __invert__(self) -> Tensor:
        if self.dtype.kind not in "biu":
            raise TypeError(f"~ (bitwise not) needs a bool or integer tensor, got {self.dtype}")
        return Tensor(~self.data)

    def __and__(self, other) -> Tensor:
        return Tensor(self.data & self._lift(other).data)

    def __or__(self, other) -> Tensor:
        return Tensor(self.data | self._lift(other).data)

    def any(self) -> Tensor:
        """Whether any element is true (a 0-d bool tensor)."""
        return Tensor(np.asarray(self.data.any()))

    def all(self) -> Tensor:
        """Whether every element is true (a 0-d bool tensor)."""
        return Tensor(np.asarray(self.data.all()))

    # ------------------------------------------------------------ elementwise functions

    def exp(self) -> Tensor:
        """e^x elementwise.   d/dx = e^x"""
        return Tensor._apply(ops.Exp, self._floating("exp"))

    def log(self) -> Tensor:
        """Natural log elementwise.   d/dx = 1/x"""
        return Tensor._apply(ops.Log, self._floating("log"))

    def sqrt(self) -> Tensor:
        """Square root elementwise.   d/dx = 1/(2 sqrt(x))"""
        return Tensor._apply(ops.Sqrt, self._floating("sqrt"))

    def relu(self) -> Tensor:
        """max(x, 0) elementwise.   d/dx = 1 where x > 0, else 0"""
        return Tensor._apply(ops.ReLU, self)

    def sigmoid(self) -> Tensor:
        """1/(1+e^-x) elementwise.   d/dx = s(1-s)"""
        return Tensor._apply(ops.Sigmoid, self._floating("sigmoid"))

    def tanh(self) -> Tensor:
        """tanh(x) elementwise.   d/dx = 1 - tanh(x)^2"""
        return Tensor._apply(ops.Tanh, self._floating("tanh"))

    def abs(self) -> Tensor:
        """|x| elementwise.   d/dx = sign(x) (0 at 0)"""
        return Tensor._apply(ops.Abs, self)

    def square(self) -> Tensor:
        """x * x elementwise.   d/dx = 2x"""
        return self * self

    def leaky_relu(self, negative_slope: builtins.float = 0.01) -> Tensor:
        """x where x > 0, else negative_slope * x.   d/dx = 1 or negative_slope"""
        return Tensor._apply(ops.LeakyReLU, self, negative_slope=float(negative_slope))

    def clamp(self, min=None, max=None) -> Tensor:
        """Clamp into [min, max] (numbers or Tensors; either may be None).

        d/dx = 1 where min <= x <= max, else 0
        """
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        if isinstance(min, Tensor) or isinstance(max, Tensor):
            out = self if min is None else self.maximum(min)
            return out if max is None else out.minimum(max)
        return Tensor._apply(ops.Clamp, self, min=min, max=max)

    def clip(self, min=None, max=None) -> Tensor:
        """Same as `clamp`."""
        return self.clamp(min, max)

    def maximum(self, other) -> Tensor:
        """The larger of self and other, elementwise (ties share the gradient)."""
        return Tensor._binary(ops.Maximum, "maximum", self, self._lift(other))

    def minimum(self, other) -> Tensor:
        """The smaller of self and other, elementwise: -maximum(-self, -other)."""
        return -(-self).maximum(-self._lift(other))

    def masked_fill(self, mask, value) -> Tensor:
        """`value` where `mask` is true, else self (d/dx = 1 where the mask is false)."""
        return where(mask, self._lift(value).to(self.dtype), self)

    def masked_fill_(self, mask, value) -> Tensor:
        """Set the elements where `mask` is true to `value`, in place."""
        mask = np.asarray(_plain(mask))
        return self._in_place("masked_fill_", lambda x, _: np.where(mask, _plain(value), x))

    def where(self, condition, other) -> Tensor:
        """self where condition is true, else other (as `torch.where(condition, self, other)`)."""
        return where(condition, self, other)

    def _floating(self, name: str) -> Tensor:
        """Integer inputs of a float function become float32, as in PyTorch."""
        return self if self.dtype.kind == "f" else self.float()

    # ------------------------------------------------------------ reductions

    def _dims(self, dim, name: str):
        """Check `dim` (an int, a tuple of ints, or None for all) against this tensor's shape
        and return it with plain ints."""
        if dim is None:
            return None
        if isinstance(dim, Tensor):
            raise TypeError(f"{name}: dim must be an int or a tuple of ints, got a Tensor")
        dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
        rank = max(self.ndim, 1)
        for d in dims:
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
                raise TypeError(f"{name}: dim must be an int or a tuple of ints, got {dim!r}")
            if not -rank <= d < rank:
                raise ValueError(
                    f"{name}: dim {dim} is out of range for a tensor of shape {self.shape} "
                    f"(expected -{rank} <= dim < {rank})"
                )
        if len({d % rank for d in dims}) != len(dims):
            raise ValueError(f"{name}: repeated dim in {dim}")
        return int(dim) if isinstance(dim, (int, np.integer)) else tuple(int(d) for d in dims)

    def _reduce_args(self, name, dim, keepdim, axis, keepdims):
        """PyTorch's (dim, keepdim), or NumPy's (axis, keepdims), which PyTorch also accepts."""
        dim = checks.dim_argument(name, dim, axis)
        if keepdims is not None:
            keepdim = keepdims
        return self._dims(dim, name), bool(keepdim)

    def sum(
        self, dim=None, keepdim: builtins.bool = False, *, dtype=None, axis=None, keepdims=None
    ):
        """Sum over `dim` (an int, a tuple, or None for all).   d/dx = 1"""
        dim, keepdim = self._reduce_args("sum", dim, keepdim, axis, keepdims)
        x = self if dtype is None else self.to(dtype)
        return Tensor._apply(ops.Sum, x, axis=dim, keepdims=keepdim)

    def mean(
        self, dim=None, keepdim: builtins.bool = False, *, dtype=None, axis=None, keepdims=None
    ):
        """Mean over `dim` (an int, a tuple, or None for all).   d/dx = 1/n"""
        dim, keepdim = self._reduce_args("mean", dim, keepdim, axis, keepdims)
        x = self if dtype is None else self.to(dtype)
        if x.dtype.kind != "f":
            raise TypeError(
                f"mean: could not infer output dtype from {x.dtype}; mean needs a floating-point "
                "tensor: write x.float().mean()"
            )
        return Tensor._apply(ops.Mean, x, axis=dim, keepdims=keepdim)

    def var(
        self,
        dim=None,
        unbiased=None,
        keepdim: builtins.bool = False,
        *,
        correction=None,
        axis=None,
        keepdims=None,
    ) -> Tensor:
        """Variance over `dim`: sum((x - mean)^2) / (n - correction); correction=1 (Bessel's,
        PyTorch's default), 0 for the biased variance; `unbiased=False` means correction=0."""
        dim, keepdim = self._reduce_args("var", dim, keepdim, axis, keepdims)
        if unbiased is not None and correction is not None:
            raise TypeError("var: pass correction= or unbiased=, not both")
        correction = 1 if correction is None and unbiased in (None, True) else correction or 0
        deviation = self - self.mean(dim, keepdim=True)
        count = self.numel() // max(self.mean(dim).numel(), 1) if self.numel() else 0
        return (deviation * deviation).sum(dim, keepdim=keepdim) / (count - correction)

    def std(
        self,
        dim=None,
        unbiased=None,
        keepdim: builtins.bool = False,
        *,
        correction=None,
        axis=None,
        keepdims=None,
    ) -> Tensor:
        """Standard deviation over `dim`: the square root of `var` (same arguments)."""
        return self.var(
            dim, unbiased, keepdim, correction=correction, axis=axis, keepdims=keepdims
        ).sqrt()

    def amax(self, dim=None, keepdim: builtins.bool = False, *, axis=None, keepdims=None) -> Tensor:
        """Maximum over `dim` (an int, a tuple or None).   d/dx = 1 at the maximum, ties share it"""
        dim, keepdim = self._reduce_args("amax", dim, keepdim, axis, keepdims)
        if self.numel() == 0:
            raise ValueError(f"amax: cannot take the max of an empty tensor of shape {self.shape}")
        return Tensor._apply(ops.Max, self, axis=dim, keepdims=keepdim)

    def amin(self, dim=None, keepdim: builtins.bool = False, *, axis=None, keepdims=None) -> Tensor:
        """Minimum over `dim`: -amax(-x) (ties share the gradient)."""
        return -(-self).amax(dim, keepdim, axis=axis, keepdims=keepdims)

    def max(self, dim=None, keepdim: builtins.bool = False, *, axis=None, keepdims=None):
        """As PyTorch: `max()` is the 0-d maximum (ties share the gradient); `max(dim)` is the
        named tuple (values, indices) along dim (the gradient goes to the index); `max(other)`
        with a Tensor is `maximum(other)`."""
        if isinstance(dim, Tensor):
            return self.maximum(dim)
        return self._extreme("max", dim, keepdim, axis, keepdims)

    def min(self, dim=None, keepdim: builtins.bool = False, *, axis=None, keepdims=None):
        """As PyTorch: `min()` is the 0-d minimum, `min(dim)` the named tuple (values, indices),
        `min(other)` with a Tensor is `minimum(other)`."""
        if isinstance(dim, Tensor):
            return self.minimum(dim)
        return self._extreme("min", dim, keepdim, axis, keepdims)

    def _extreme(self, name, dim, keepdim, axis, keepdims):
        dim = checks.dim_argument(name, dim, axis)
        if dim is None:
            if keepdim or keepdims:
                raise TypeError(f"{name}: keepdim needs a dim; write x.a{name}(keepdim=True)")
            return self.amax() if name == "max" else self.amin()
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
            raise TypeError(
                f"{name}: dim must be one int, got {dim!r}; for several dims use x.a{name}(dims)"
            )
        keepdim = bool(keepdim if keepdims is None else keepdims)
        indices = self.argmax(dim, keepdim=True) if name == "max" else self.argmin(dim, True)
        values = self.gather(int(dim), indices)
        if not keepdim:
            values, indices = values.squeeze(dim), indices.squeeze(dim)
        return ValuesIndices(values, indices)

    def argmax(
        self, dim=None, keepdim: builtins.bool = False, *, axis=None, keepdims=None
    ) -> Tensor:
        """Index of the (first) maximum along dim, or in the flattened tensor; int64, no grad."""
        return self._arg("argmax", np.argmax, dim, keepdim, axis, keepdims)

    def argmin(
        self, dim=None, keepdim: builtins.bool = False, *, axis=None, keepdims=None
    ) -> Tensor:
        """Index of the (first) minimum along dim, or in the flattened tensor; int64, no grad."""
        return self._arg("argmin", np.argmin, dim, keepdim, axis, keepdims)

    def _arg(self, name, fn, dim, keepdim, axis, keepdims) -> Tensor:
        dim, keepdim = self._reduce_args(name, dim, keepdim, axis, keepdims)
        if isinstance(dim, tuple):
            raise TypeError(f"{name}: dim must be one int, got {dim}")
        if self.numel() == 0:
            raise ValueError(f"{name}: empty tensor of shape {self.shape}")
        out = np.asarray(fn(self.data, axis=dim if self.ndim else None), dtype=np.int64)
        if keepdim:
            out = np.expand_dims(out, dim) if dim is not None else out.reshape((1,) * self.ndim)
        return Tensor(out)

    def gather(self, dim: builtins.int, index) -> Tensor:
        """out[i][j] = self[index[i][j]][j] for dim 0 (and so on): picks along dim.

        d/dx scatters the gradient back to the picked places (repeats add).
        """
        dim = self._dims(dim, "gather")
        index = _plain(index)
        if np.ndim(index) != self.ndim:
            raise ValueError(
                f"gather: index has {np.ndim(index)} dims but the tensor has {self.ndim} "
                f"(shape {self.shape}); they must match"
            )
        shape = np.shape(index)
        grid = list(np.indices(shape, sparse=True))
        grid[dim] = np.asarray(index)
        return self[tuple(grid)]

    def logsumexp(self, dim, keepdim: builtins.bool = False) -> Tensor:
        """log(sum(exp(x))) over dim, shifted by the max so that large values do not overflow.

        d/dx = softmax(x) along dim
        """
        dim = self._dims(dim, "logsumexp")
        shift = self.amax(dim, keepdim=True).detach()
        out = (self - shift).exp().sum(dim, keepdim=True).log() + shift
        return out if keepdim else out.squeeze(dim)

    def norm(self, p=2, dim=None, keepdim: builtins.bool = False) -> Tensor:
        """The p-norm over dim (None: all elements): p = 2 (sqrt of the sum of squares) or 1
        (sum of absolute values)."""
        if p == 2 or p == "fro":
            return (self * self).sum(dim, keepdim=keepdim).sqrt()
        if p == 1:
            return self.abs().sum(dim, keepdim=keepdim)
        raise NotImplementedError(f"norm: p={p!r} is not supported (only p=2, 'fro' or 1)")

    # ------------------------------------------------------------ movement

    def reshape(self, *shape) -> Tensor:
        """The same elements in a new shape; accepts `reshape(2, 3)`, `reshape((2, 3))` and -1."""
        shape = _axes_of(shape)
        try:
            np.empty(self.shape, dtype=bool).reshape(shape)
        except (ValueError, TypeError):
            raise ValueError(
                f"reshape: cannot reshape a tensor of shape {self.shape} ({self.numel()} "
                f"elements) into {shape}"
            ) from None
        return Tensor._apply(ops.Reshape, self, shape=shape)

    def view(self, *shape) -> Tensor:
        """Same as `reshape` (NumPy decides whether it is a view; values never differ)."""
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer, tuple, list)):
            raise TypeError(f"view: expected a shape, got {shape[0]!r}; for a dtype use .to(dtype)")
        return self.reshape(*shape)

    def view_as(self, other: Tensor) -> Tensor:
        """`reshape(other.shape)`."""
        return self.reshape(other.shape)

    def reshape_as(self, other: Tensor) -> Tensor:
        """`reshape(other.shape)`."""
        return self.reshape(other.shape)

    def flatten(self, start_dim: builtins.int = 0, end_dim: builtins.int = -1) -> Tensor:
        """Merge dims start_dim..end_dim into one (`flatten(1)` keeps the batch dim)."""
        if self.ndim == 0:
            return self.reshape(1)
        start, end = self._dims(start_dim, "flatten"), self._dims(end_dim, "flatten")
        start, end = start % self.ndim, end % self.ndim
        if start > end:
            raise ValueError(
                f"flatten: start_dim {start_dim} comes after end_dim {end_dim} "
                f"for a tensor of shape {self.shape}"
            )
        merged = math.prod(self.shape[start : end + 1])
        return self.reshape(self.shape[:start] + (merged,) + self.shape[end + 1 :])

    def unsqueeze(self, dim: builtins.int) -> Tensor:
        """A new dim of size 1 at `dim` (-1: last), as `x[:, None]` for dim 1."""
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"unsqueeze: dim must be an int, got {dim!r}")
        if not -self.ndim - 1 <= dim <= self.ndim:
            raise ValueError(
                f"unsqueeze: dim {dim} is out of range for a tensor of shape {self.shape} "
                f"(expected -{self.ndim + 1} <= dim <= {self.ndim})"
            )
        dim = dim % (self.ndim + 1)
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def squeeze(self, dim=None) -> Tensor:
        """Drop dims of size 1: all of them, or only `dim` (an int or tuple) if its size is 1."""
        dims: Sequence[int]
        if dim is None:
            dims = range(self.ndim)
        else:
            dim = self._dims(dim, "squeeze")
            dims = [d % max(self.ndim, 1) for d in ((dim,) if isinstance(dim, int) else dim)]
        drop = {d for d in dims if self.ndim and self.shape[d] == 1}
        return self.reshape(tuple(n for d, n in enumerate(self.shape) if d not in drop))

    def permute(self, *dims) -> Tensor:
        """Reorder the dims: `permute(2, 0, 1)` makes dim 2 the first (d/dx permutes back)."""
        dims = _axes_of(dims)
        ok = all(isinstance(d, (int, np.integer)) and -self.ndim <= d < self.ndim for d in dims)
        if not ok or sorted(d % self.ndim for d in dims) != list(range(self.ndim)):
            raise ValueError(
                f"permute: {dims} is not a permutation of the {self.ndim} dims of a tensor "
                f"of shape {self.shape}"
            )
        return Tensor._apply(ops.Transpose, self, axes=tuple(d % self.ndim for d in dims))

    def transpose(self, *dims: builtins.int) -> Tensor:
        """Swap two dims, `transpose(dim0, dim1)`, as PyTorch (for a full reordering use
        `permute`, for all dims reversed `.T`)."""
        if len(dims) != 2:
            raise TypeError(
                f"transpose: takes the two dims to swap, transpose(dim0, dim1), got {dims}; "
                "to reorder all dims write permute(*dims), to reverse them .T"
            )
        dim0, dim1 = dims
        d0, d1 = self._dims(dim0, "transpose"), self._dims(dim1, "transpose")
        order = list(range(self.ndim))
        order[d0], order[d1] = order[d1], order[d0]
        return self.permute(order) if self.ndim else self

    def t(self) -> Tensor:
        """Transpose of a matrix (a vector stays as it is)."""
        if self.ndim > 2:
            raise ValueError(f"t: expects a tensor with <= 2 dims, got shape {self.shape}")
        return self.transpose(0, 1) if self.ndim == 2 else self

    @property
    def T(self) -> Tensor:
        """All dims reversed (a matrix's transpose)."""
        return self.permute(tuple(reversed(range(self.ndim)))) if self.ndim > 1 else self

    def expand(self, *sizes) -> Tensor:
        """Broadcast to `sizes` (-1 keeps a dim; new dims go in front). d/dx sums the copies."""
        sizes = _axes_of(sizes)
        new = len(sizes) - self.ndim
        shape = tuple(
            self.shape[i - new] if n == -1 and i >= new else n for i, n in enumerate(sizes)
        )
        try:
            if new < 0 or min(shape, default=0) < 0:
                raise ValueError
            np.broadcast_to(np.empty(self.shape, dtype=bool), shape)
        except ValueError:
            raise ValueError(
                f"expand: a tensor of shape {self.shape} cannot be expanded to {sizes}; each "
                "dim must match, be 1 in the tensor, or be -1"
            ) from None
        return Tensor._apply(ops.Expand, self, shape=shape)

    def expand_as(self, other: Tensor) -> Tensor:
        """`expand(other.shape)`."""
        return self.expand(other.shape)

    def repeat(self, *sizes) -> Tensor:
        """Tile the tensor `sizes[i]` times along dim i (extra leading sizes add dims), as
        `torch.Tensor.repeat`: an expand of a new dim before each dim, then a reshape."""
        sizes = _axes_of(sizes)
        if len(sizes) < self.ndim or any(r < 0 for r in sizes):
            raise ValueError(
                f"repeat: needs at least {self.ndim} non-negative sizes for a tensor of shape "
                f"{self.shape}, got {sizes}"
            )
        shape = (1,) * (len(sizes) - self.ndim) + self.shape
        spread = self.reshape(tuple(n for d in shape for n in (1, d)))
        tiled = spread.expand(tuple(n for r, d in zip(sizes, shape, strict=True) for n in (r, d)))
        return tiled.reshape(tuple(r * d for r, d in zip(sizes, shape, strict=True)))

    def split(self, split_size_or_sections, dim: builtins.int = 0) -> tuple[Tensor, ...]:
        """Pieces along dim: of `split_size` each (the last may be smaller), or of the listed
        sizes."""
        dim = self._dims(dim, "split")
        n = self.shape[dim]
        if isinstance(split_size_or_sections, (int, np.integer)):
            size = int(split_size_or_sections)
            if size < 1 and n:
                raise ValueError(f"split: split_size must be positive, got {size}")
            sizes = [min(size, n - start) for start in range(0, n, max(size, 1))]
        else:
            sizes = [int(s) for s in split_size_or_sections]
            if sum(sizes) != n or min(sizes, default=0) < 0:
                raise ValueError(
                    f"split: sizes {sizes} must be non-negative and add up to {n}, the size of "
                    f"dim {dim} (tensor shape {self.shape})"
                )
        prefix = (slice(None),) * (dim % self.ndim)
        starts = np.cumsum([0, *sizes[:-1]])
        return tuple(self[prefix + (slice(s, s + k),)] for s, k in zip(starts, sizes, strict=True))

    def chunk(self, chunks: builtins.int, dim: builtins.int = 0) -> tuple[Tensor, ...]:
        """At most `chunks` pieces of equal size along dim (the last may be smaller)."""
        if chunks < 1:
            raise ValueError(f"chunk: chunks must be positive, got {chunks}")
        n = self.shape[self._dims(dim, "chunk")]
        return self.split(max(-(-n // chunks), 1), dim)

    def __getitem__(self, index) -> Tensor:
        """Basic, integer-array and boolean-mask indexing.   d/dx scatters back; repeats add"""
        index = _plain_index(index)
        try:
            self.data[index]
        except IndexError as err:
            raise IndexError(f"getitem: {err} (tensor shape {self.shape})") from None
        return Tensor._apply(ops.GetItem, self, index=index)

    def detach_(self) -> Tensor:
        """Cut this tensor off the graph in place; returns self."""
        self._op, self._parents, self.requires_grad = None, (), False
        return self

    # ------------------------------------------------------------ processing

    def matmul(self, other) -> Tensor:
        """Matrix product (2-D, batched or with vectors, as `torch.matmul`); both operands must
        have the same dtype."""
        other = self._lift(other)
        checks.matmul_shapes(self.shape, other.shape)
        checks.same_dtype(
            "matmul", self.dtype, other.dtype, f" (shapes {self.shape} and {other.shape})"
        )
        return Tensor._apply(ops.MatMul, self, other)

    def mm(self, other) -> Tensor:
        """Product of two matrices."""
        return self.matmul(other)

    def conv2d(
        self,
        weight: Tensor,
        bias: Tensor | None = None,
        stride=1,
        padding=0,
        dilation=1,
        groups: builtins.int = 1,
    ) -> Tensor:
        """2-D cross-correlation, NCHW, as `torch.nn.functional.conv2d`.

        Shapes: self (N, C, H, W), weight (O, C/groups, kh, kw), bias (O,) -> (N, O, OH, OW)
        with OH = (H + 2*ph - dh*(kh-1) - 1) // sh + 1. `padding` is an int, a pair, "valid"
        (no padding) or "same" (output size = input size; stride 1 only).
        """
        inputs, attrs = self._conv2d_call(weight, bias, stride, padding, dilation, groups)
        return Tensor._apply(ops.Conv2d, *inputs, **attrs)

    def _conv2d_call(self, weight, bias, stride, padding, dilation, groups) -> tuple[tuple, dict]:
        """The Conv2d op's inputs (this tensor, or its padded copy for an uneven "same") and
        attributes for conv2d's arguments, checked."""
        stride = checks.pair(stride, "stride", "conv2d")
        dilation = checks.pair(dilation, "dilation", "conv2d")
        weight = self._lift(weight)
        bias = None if bias is None else self._lift(bias)
        x = self
        if isinstance(padding, str):
            x, padding = self._padding_for(padding, weight.shape, stride, dilation)
        else:
            padding = checks.pair(padding, "padding", "conv2d")
        checks.conv2d_arguments(
            x.shape,
            weight.shape,
            None if bias is None else bias.shape,
            stride,
            padding,
            dilation,
            groups,
        )
        if weight.dtype != self.dtype or (bias is not None and bias.dtype != self.dtype):
            shapes = f" (input shape {self.shape}, weight shape {weight.shape})"
            checks.same_dtype("conv2d", self.dtype, weight.dtype, shapes)
            if bias is not None:
                checks.same_dtype("conv2d", self.dtype, bias.dtype, shapes)
        inputs = (x, weight) if bias is None else (x, weight, bias)
        attrs = dict(stride=stride, padding=padding)
        if dilation != (1, 1) or groups != 1:  # only then, so graph labels stay short
            attrs.update(dilation=dilation, groups=int(groups))
        return inputs, attrs

    def _padding_for(self, padding: str, weight_shape, stride, dilation):
        """conv2d's "valid" and "same" as (input, symmetric padding); an odd total padding
        puts the extra row or column at the bottom or right, as PyTorch."""
        if padding == "valid":
            return self, (0, 0)
        if padding != "same":
            raise ValueError(
                f"conv2d: padding must be an int, a pair, 'valid' or 'same', got {padding!r}"
            )
        if stride != (1, 1):
            raise ValueError(
                f"conv2d: padding='same' is not supported for strided "
                f"convolutions (stride {stride})"
            )
        if len(weight_shape) != 4 or self.ndim != 4:
            return self, (0, 0)  # conv2d_arguments names the bad shape
        totals = [d * (k - 1) for d, k in zip(dilation, weight_shape[2:], strict=True)]
        even = tuple(t // 2 for t in totals)
        if all(t % 2 == 0 for t in totals):
            return self, even
        extra = ((0, 0), (0, 0), *((0, t % 2) for t in totals))
        return Tensor._apply(ops.Pad, self, widths=extra, value=0.0), even

    def max_pool2d(
        self,
        kernel_size=2,
        stride=None,
        padding=0,
        dilation=1,
        ceil_mode=False,
        return_indices=False,
    ) -> Tensor:
        """Max over kernel windows of an (N, C, H, W) tensor (padded with -inf); stride defaults
        to kernel_size. The gradient goes to one maximum per window, as PyTorch."""
        checks.unsupported(
            "max_pool2d",
            dilation=(dilation, 1),
            ceil_mode=(ceil_mode, False),
            return_indices=(return_indices, False),
        )
        return Tensor._apply(
            ops.MaxPool2d, self, **self._max_pool2d_attrs(kernel_size, stride, padding)
        )

    def _max_pool2d_attrs(self, kernel_size, stride, padding) -> dict:
        """The MaxPool2d op's attributes for these arguments, checked against this tensor."""
        kernel = checks.pair(kernel_size, "kernel_size", "max_pool2d")
        stride = kernel if stride is None else checks.pair(stride, "stride", "max_pool2d")
        padding = checks.pair(padding, "padding", "max_pool2d")
        checks.pool2d_arguments("max_pool2d", self.shape, kernel, stride, padding)
        attrs = dict(kernel_size=kernel, stride=stride)
        if padding != (0, 0):
            attrs["padding"] = padding
        return attrs

    def avg_pool2d(
        self,
        kernel_size=2,
        stride=None,
        padding=0,
        ceil_mode=False,
        count_include_pad=True,
        divisor_override=None,
    ) -> Tensor:
        """Mean over kernel windows of an (N, C, H, W) tensor (zero padding counted in the mean,
        PyTorch's default); stride defaults to kernel_size."""
        checks.unsupported(
            "avg_pool2d",
            ceil_mode=(ceil_mode, False),
            count_include_pad=(count_include_pad, True),
            divisor_override=(divisor_override, None),
        )
        kernel = checks.pair(kernel_size, "kernel_size", "avg_pool2d")
        stride = kernel if stride is None else checks.pair(stride, "stride", "avg_pool2d")
        padding = checks.pair(padding, "padding", "avg_pool2d")
        checks.pool2d_arguments("avg_pool2d", self.shape, kernel, stride, padding)
        x = self._floating("avg_pool2d")
        return Tensor._apply(ops.AvgPool2d, x, kernel_size=kernel, stride=stride, padding=padding)

    def softmax(self, dim: builtins.int = -1, *, axis=None) -> Tensor:
        """exp(x) / sum(exp(x)) along dim, stable for large logits."""
        dim = self._dims(checks.dim_argument("softmax", dim, axis, default=-1), "softmax")
        return Tensor._apply(ops.Softmax, self._floating("softmax"), axis=dim)

    def log_softmax(self, dim: builtins.int = -1, *, axis=None) -> Tensor:
        """log(softmax(x)) along dim, computed stably (fine at logits of +-1e4)."""
        dim = self._dims(checks.dim_argument("log_softmax", dim, axis, default=-1), "log_softmax")
        return Tensor._apply(ops.LogSoftmax, self._floating("log_softmax"), axis=dim)

    def nll_loss(self, targets) -> Tensor:
        """Mean negative log-likelihood of class indices `targets` (N,) under log-probs (N, C)."""
        targets = checks.class_targets(self.shape, _index_array(targets), "nll_loss")
        return Tensor._apply(ops.NLLLoss, self, targets=targets)

    def cross_entropy(self, targets) -> Tensor:
        """Mean cross-entropy of logits (N, C) against class indices (N,) (fused and stable)."""
        targets = checks.class_targets(self.shape, _index_array(targets), "cross_entropy")
        return Tensor._apply(ops.CrossEntropy, self, targets=targets)


class _Deferred(Tensor):
    """A recorded tensor whose array is made the first time something reads it; it is a plain
    Tensor from then on. The engine room leaves the full-size output of a ReLU unmade when the
    op after it does without it (a max-pool that took its max first, a Winograd conv that
    applies the ReLU itself: `kernels.deferred`); nothing else makes these."""

    _make: Callable[[], np.ndarray]

    @property
    def data(self) -> np.ndarray:
        self.data = array = self._make()
        return array

    @data.setter
    def data(self, array: np.ndarray) -> None:
        self.__class__ = Tensor  # type: ignore[assignment]  # data is an attribute again
        del self._make
        self.__dict__["data"] = array


def topological_order(
    root: Tensor, *, only_requiring_grad: bool = False, limit: int | None = None
) -> list[Tensor] | None:
    """Every tensor in the graph below `root`, inputs before outputs, each once.

    An iterative depth-first walk (no recursion, so a chain of 100,000 ops is fine) that visits
    each op's inputs in their order. `only_requiring_grad` skips inputs that need no gradient
    (what backward walks); `limit` stops the walk and returns None as soon as it has seen more
    than `limit` tensors (what the graph drawer uses to refuse huge graphs cheaply).
    """
    order: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        if limit is not None and len(seen) > limit:
            return None
        stack.append((node, True))
        stack.extend(
            [
                (parent, False)
                for parent in reversed(node._parents)
                if id(parent) not in seen and (parent.requires_grad or not only_requiring_grad)
            ]
        )
    return order


def _memory_owner(a: np.ndarray) -> np.ndarray:
    return a if a.base is None else a.base


def _unshared(g: np.ndarray, shared: set[int]) -> bool:
    """True when g's memory is g's alone: an array an op's backward just made, or a view of
    the whole of one (a transposed weight's gradient), that nothing in `shared` holds."""
    owner = _memory_owner(g)
    return (
        isinstance(owner, np.ndarray)
        and owner.size == g.size
        and id(g) not in shared
        and id(owner) not in shared
    )


def _index_array(targets) -> np.ndarray:
    return targets.data if isinstance(targets, Tensor) else np.asarray(targets)


def _plain_index(index):
    """Replace Tensors inside an index by their arrays."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def where(condition, input, other) -> Tensor:
    """`input` where `condition` is true, else `other` (numbers or tensors, broadcast).

    d/dinput = 1 where condition, d/dother = 1 elsewhere
    """
    cond = np.asarray(_plain(condition))
    if cond.dtype != np.bool_:
        raise TypeError(f"where: condition must be a bool tensor, got dtype {cond.dtype}")
    if not isinstance(input, Tensor):
        input = (other if isinstance(other, Tensor) else Tensor(np.float32(0)))._lift(input)
    other = input._lift(other)
    try:
        np.broadcast_shapes(cond.shape, input.shape, other.shape)
    except ValueError:
        raise ValueError(
            f"where: condition {cond.shape}, input {input.shape} and other {other.shape} "
            "cannot be broadcast together"
        ) from None
    dtype = result_dtype(input, other)
    return Tensor._apply(ops.Where, input.to(dtype), other.to(dtype), condition=cond)


def pad(x: Tensor, pad: Sequence[int], value: float = 0.0) -> Tensor:
    """Constant padding, PyTorch's `F.pad`: `pad` lists (before, after) pairs for the last dim
    first, then the one before it, ...: `pad(x, (1, 1, 2, 2))` pads W by 1 and H by 2.

    d/dx = the gradient with the padding cut off
    """
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(
            f"pad: expected an even number of pad sizes, at most 2 per dim, got {tuple(pad)} "
            f"for a tensor of shape {x.shape}"
        )
    if any(p < 0 for p in pad):
        raise NotImplementedError(f"pad: negative padding (cropping) is not supported: {pad}")
    pairs = [(int(pad[i]), int(pad[i + 1])) for i in range(0, len(pad), 2)]
    widths = ((0, 0),) * (x.ndim - len(pairs)) + tuple(reversed(pairs))
    return Tensor._apply(ops.Pad, x, widths=widths, value=value)


def cat(tensors: Sequence[Tensor], dim: int = 0, *, axis=None) -> Tensor:
    """Join tensors along an existing dim (shapes equal elsewhere).   d/dx_k = its slice"""
    dim = checks.dim_argument("cat", dim, axis, default=0)
    if isinstance(tensors, Tensor) or not tensors:
        raise TypeError("cat: expected a non-empty list or tuple of tensors")
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    first = tensors[0]
    d = first._dims(dim, "cat") % max(first.ndim, 1)
    for t in tensors[1:]:
        if t.ndim != first.ndim or t.shape[:d] + t.shape[d + 1 :] != (
            first.shape[:d] + first.shape[d + 1 :]
        ):
            raise ValueError(
                f"cat: shapes {[u.shape for u in tensors]} must match except in dim {dim}"
            )
    dtype = first.dtype
    for t in tensors[1:]:
        dtype = result_dtype(Tensor(np.empty((1,), dtype)), t)
    return Tensor._apply(ops.Cat, *(t.to(dtype) for t in tensors), axis=d)


def stack(tensors: Sequence[Tensor], dim: int = 0, *, axis=None) -> Tensor:
    """Join tensors of one shape along a new dim: `cat` of each unsqueezed at `dim`."""
    dim = checks.dim_argument("stack", dim, axis, default=0)
    if isinstance(tensors, Tensor) or not tensors:
        raise TypeError("stack: expected a non-empty list or tuple of tensors")
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if len({t.shape for t in tensors}) != 1:
        raise ValueError(f"stack: expects tensors of one shape, got {[t.shape for t in tensors]}")
    return cat([t.unsqueeze(dim) for t in tensors], dim)


def _plain(value):
    """A Tensor operand as its array; anything else as it is."""
    return value.data if isinstance(value, Tensor) else value


def is_device(name: str) -> bool:
    """Whether `name` names a device ("cpu", "cuda:0", ...) rather than a dtype."""
    return name.split(":")[0] in ("cpu", "cuda", "mps", "xla", "meta")


def check_device(device, op: str) -> None:
    name = str(device)
    if name.split(":")[0] != "cpu":
        raise RuntimeError(
            f"{op}: device {name!r} is not available: tinygrad_mnist runs on the CPU only "
            "(drop the .to(device) call or use device='cpu')"
        )


def as_dtype(dtype, op: str) -> np.dtype:
    """A dtype from a NumPy dtype, its name, or PyTorch-style names such as "torch.float32"."""
    if isinstance(dtype, str):
        dtype = {
            "float": "float32",
            "double": "float64",
            "long": "int64",
            "int": "int32",
            "bool": "bool",
        }.get(dtype.removeprefix("torch."), dtype.removeprefix("torch."))
    try:
        dtype = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"{op}: unknown dtype {dtype!r}; expected e.g. tm.float32") from err
    if dtype.kind not in _SUPPORTED_KINDS:
        raise TypeError(f"{op}: unsupported dtype {dtype}; expected a float, integer or bool dtype")
    return dtype
