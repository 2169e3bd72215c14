"""Tensor: a NumPy array plus the bookkeeping of reverse-mode automatic differentiation.

Every op applied to tensors records itself: the result keeps the op instance (`_op`, with its
saved arrays and attributes) and its ordered inputs (`_parents`). `backward()` sorts that graph
topologically without recursion and walks it in reverse, calling each op's backward rule and
adding the gradients up.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Sequence

import numpy as np

from . import checks, kernels, ops

_grad_enabled = True

# dtypes a Tensor may hold; anything else (object, strings, complex) is refused up front
_SUPPORTED_KINDS = "fiub"


class no_grad(contextlib.ContextDecorator):
    """Context manager and decorator: inside it, ops record no graph and results need no grad.

    >>> with no_grad():
    ...     y = model(x)
    """

    def __init__(self):
        # a stack, because one decorator instance is re-entered by recursive or nested calls
        self._previous: list[bool] = []

    def __enter__(self):
        global _grad_enabled
        self._previous.append(_grad_enabled)
        _grad_enabled = False
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._previous.pop()
        return False


def is_grad_enabled() -> bool:
    """True unless inside `no_grad()`."""
    return _grad_enabled


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

    # ------------------------------------------------------------ graph building

    @staticmethod
    def _apply(op_class: type[ops.Op], *inputs: Tensor, **attrs) -> Tensor:
        """Run `op_class` forward on the inputs' arrays and record it when a gradient is needed."""
        # under no_grad nothing is recorded, so ops save nothing for a backward pass
        needs = tuple(_grad_enabled and t.requires_grad for t in inputs)
        arrays = [t.data for t in inputs]
        # the textbook op, or a faster kernel for it where the kernels' table has one
        op = kernels.choose(op_class, arrays, attrs)(needs)
        op.attrs = attrs
        out = Tensor.__new__(Tensor)
        out.data = op.forward(*arrays, **attrs)
        out.grad = None
        out.name = None
        out._retains_grad = False
        out.requires_grad = _grad_enabled and any(needs)
        if out.requires_grad:
            out._op, out._parents = op, inputs
        else:
            out._op, out._parents = None, ()
        return out

    def _lift(self, other) -> Tensor:
        """Turn a number or array operand into a constant Tensor (NumPy's promotion rules)."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, numbers.Number) and not isinstance(other, np.generic):
            # a Python number is "weak": float32 * 2.0 stays float32, as in NumPy
            return Tensor(np.asarray(other, dtype=np.result_type(self.data, other)))
        if isinstance(other, (np.ndarray, np.generic, list, tuple)):
            return Tensor(other if isinstance(other, (np.ndarray, np.generic)) else np.asarray(
                other, dtype=self.data.dtype if self.data.dtype.kind == "f" else np.float32))
        raise TypeError(
            f"unsupported operand type for a Tensor op: {type(other).__name__}; "
            "expected a Tensor, a NumPy array or a number"
        )

    # ------------------------------------------------------------ properties

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
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

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", prefix="tensor(", precision=4)
        extras = [] if self.dtype == np.float32 else [f"dtype={self.dtype}"]
        if self._op is not None:
            extras.append(f"grad_fn=<{self._op.name}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body, *extras]) + ")"

    __hash__ = object.__hash__

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
        # arrays a tensor's .grad may not take over without a copy: the caller's, and those
        # already stored as some .grad (an op like add hands one array to both its inputs)
        shared = {id(seed)} if grad is not None else set()
        for node in reversed(topological_order(self, only_requiring_grad=True)):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._op is None or node._retains_grad:
                if node.grad is not None:
                    node.grad = node.grad + g
                elif g.base is None and id(g) not in shared:
                    node.grad = g  # a fresh array from an op's backward: no copy needed
                else:
                    node.grad = g.copy(order="K")  # in g's memory layout
                shared.add(id(node.grad))
                if node._op is None:
                    continue
            input_grads = node._op.backward(g)
            for parent, pg in zip(node._parents, input_grads, strict=False):
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

    # ------------------------------------------------------------ arithmetic

    def __add__(self, other) -> Tensor:
        return self._binary(ops.Add, "add", self, self._lift(other))

    def __radd__(self, other) -> Tensor:
        return self._binary(ops.Add, "add", self._lift(other), self)

    def __sub__(self, other) -> Tensor:
        return self._binary(ops.Sub, "sub", self, self._lift(other))

    def __rsub__(self, other) -> Tensor:
        return self._binary(ops.Sub, "sub", self._lift(other), self)

    def __mul__(self, other) -> Tensor:
        return self._binary(ops.Mul, "mul", self, self._lift(other))

    def __rmul__(self, other) -> Tensor:
        return self._binary(ops.Mul, "mul", self._lift(other), self)

    def __truediv__(self, other) -> Tensor:
        return self._binary(ops.Div, "div", self, self._lift(other))

    def __rtruediv__(self, other) -> Tensor:
        return self._binary(ops.Div, "div", self._lift(other), self)

    def __neg__(self) -> Tensor:
        return Tensor._apply(ops.Neg, self)

    def __pow__(self, exponent) -> Tensor:
        """x ** p for a number p.   d/dx = p x^(p-1)"""
        if not isinstance(exponent, numbers.Number) or isinstance(exponent, bool):
            raise TypeError(
                f"pow: the exponent must be a number, got {type(exponent).__name__}"
            )
        if self.dtype.kind != "f" and (not float(exponent).is_integer() or exponent < 0):
            raise TypeError(f"pow: integer tensor of dtype {self.dtype} to power {exponent}")
        return Tensor._apply(ops.Pow, self, exponent=exponent)

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
        return Tensor._apply(op_class, a, b)

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

    # ------------------------------------------------------------ elementwise functions

    def exp(self) -> Tensor:
        """e^x elementwise.   d/dx = e^x"""
        return Tensor._apply(ops.Exp, self)

    def log(self) -> Tensor:
        """Natural log elementwise.   d/dx = 1/x"""
        return Tensor._apply(ops.Log, self)

    def sqrt(self) -> Tensor:
        """Square root elementwise.   d/dx = 1/(2 sqrt(x))"""
        return Tensor._apply(ops.Sqrt, self)

    def relu(self) -> Tensor:
        """max(x, 0) elementwise.   d/dx = 1 where x > 0, else 0"""
        return Tensor._apply(ops.ReLU, self)

    def sigmoid(self) -> Tensor:
        """1/(1+e^-x) elementwise.   d/dx = s(1-s)"""
        return Tensor._apply(ops.Sigmoid, self)

    def tanh(self) -> Tensor:
        """tanh(x) elementwise.   d/dx = 1 - tanh(x)^2"""
        return Tensor._apply(ops.Tanh, self)

    # ------------------------------------------------------------ reductions

    def _check_axis(self, axis, name: str):
        if axis is None:
            return None
        axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
        for a in axes:
            if not isinstance(a, (int, np.integer)) or not -self.ndim <= a < max(self.ndim, 1):
                raise ValueError(
                    f"{name}: axis {axis} is out of range for a tensor of shape {self.shape} "
                    f"(expected -{self.ndim} <= axis < {self.ndim})"
                )
        if len({a % max(self.ndim, 1) for a in axes}) != len(axes):
            raise ValueError(f"{name}: repeated axis in {axis}")
        return int(axis) if isinstance(axis, (int, np.integer)) else tuple(int(a) for a in axes)

    def sum(self, axis=None, keepdims: bool = False) -> Tensor:
        """Sum over `axis` (int, tuple, or None for all).   d/dx = 1"""
        return Tensor._apply(ops.Sum, self, axis=self._check_axis(axis, "sum"), keepdims=keepdims)

    def mean(self, axis=None, keepdims: bool = False) -> Tensor:
        """Mean over `axis` (int, tuple, or None for all).   d/dx = 1/n"""
        axis = self._check_axis(axis, "mean")
        return Tensor._apply(ops.Mean, self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims: bool = False) -> Tensor:
        """Maximum over `axis`.   d/dx = 1 at the maximum (ties share it equally)"""
        if self.size == 0:
            raise ValueError(f"max: cannot take the max of an empty tensor of shape {self.shape}")
        return Tensor._apply(ops.Max, self, axis=self._check_axis(axis, "max"), keepdims=keepdims)

    # ------------------------------------------------------------ movement

    def reshape(self, *shape) -> Tensor:
        """The same elements in a new shape; accepts `reshape(2, 3)`, `reshape((2, 3))` and -1."""
        shape = _axes_of(shape)
        try:
            np.empty(self.shape, dtype=bool).reshape(shape)
        except (ValueError, TypeError):
            raise ValueError(
                f"reshape: cannot reshape a tensor of shape {self.shape} ({self.size} elements) "
                f"into {shape}"
            ) from None
        return Tensor._apply(ops.Reshape, self, shape=shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Merge axes start_dim..end_dim into one (`flatten(1)` keeps the batch axis)."""
        if self.ndim == 0:
            return self.reshape(1)
        for name, dim in (("start_dim", start_dim), ("end_dim", end_dim)):
            if not -self.ndim <= dim < self.ndim:
                raise ValueError(
                    f"flatten: {name} {dim} is out of range for a tensor of shape {self.shape} "
                    f"(expected -{self.ndim} <= {name} < {self.ndim})"
                )
        start, end = start_dim % self.ndim, end_dim % self.ndim
        if start > end:
            raise ValueError(
                f"flatten: start_dim {start_dim} comes after end_dim {end_dim} "
                f"for a tensor of shape {self.shape}"
            )
        merged = int(np.prod(self.shape[start : end + 1]))
        return self.reshape(self.shape[:start] + (merged,) + self.shape[end + 1 :])

    def transpose(self, *axes) -> Tensor:
        """Permute the axes (a NumPy permutation); no arguments reverses them."""
        axes = _axes_of(axes) or tuple(reversed(range(self.ndim)))
        in_range = all(-self.ndim <= a < self.ndim for a in axes)
        if not in_range or sorted(a % self.ndim for a in axes) != list(range(self.ndim)):
            raise ValueError(
                f"transpose: {axes} is not a permutation of the {self.ndim} axes of a tensor "
                f"of shape {self.shape}"
            )
        return Tensor._apply(ops.Transpose, self, axes=tuple(a % self.ndim for a in axes))

    def permute(self, *axes) -> Tensor:
        """Same as `transpose(*axes)`."""
        return self.transpose(*axes)

    @property
    def T(self) -> Tensor:
        """All axes reversed, as NumPy's `.T`."""
        return self.transpose()

    def __getitem__(self, index) -> Tensor:
        """Basic and integer-array indexing.   d/dx scatters back; repeated indices add up"""
        index = _plain_index(index)
        try:
            self.data[index]
        except IndexError as err:
            raise IndexError(f"getitem: {err} (tensor shape {self.shape})") from None
        return Tensor._apply(ops.GetItem, self, index=index)

    # ------------------------------------------------------------ processing

    def matmul(self, other) -> Tensor:
        """Matrix product (2-D, batched or with vectors, as `np.matmul`)."""
        other = self._lift(other)
        checks.matmul_shapes(self.shape, other.shape)
        return Tensor._apply(ops.MatMul, self, other)

    def conv2d(self, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0) -> Tensor:
        """2-D cross-correlation, NCHW, as `torch.nn.functional.conv2d`.

        Shapes: self (N, C, H, W), weight (O, C, kh, kw), bias (O,) -> (N, O, OH, OW) with
        OH = (H + 2*ph - kh) // sh + 1.
        """
        stride = checks.pair(stride, "stride", "conv2d")
        padding = checks.pair(padding, "padding", "conv2d")
        weight = self._lift(weight)
        bias = None if bias is None else self._lift(bias)
        checks.conv2d_arguments(
            self.shape, weight.shape, None if bias is None else bias.shape, stride, padding
        )
        inputs = (self, weight) if bias is None else (self, weight, bias)
        return Tensor._apply(ops.Conv2d, *inputs, stride=stride, padding=padding)

    def max_pool2d(self, kernel_size=2, stride=None) -> Tensor:
        """Max over kernel windows of an (N, C, H, W) tensor; stride defaults to kernel_size."""
        kernel = checks.pair(kernel_size, "kernel_size", "max_pool2d")
        stride = kernel if stride is None else checks.pair(stride, "stride", "max_pool2d")
        checks.pool2d_arguments("max_pool2d", self.shape, kernel, stride)
        return Tensor._apply(ops.MaxPool2d, self, kernel_size=kernel, stride=stride)

    def softmax(self, axis: int = -1) -> Tensor:
        """exp(x) / sum(exp(x)) along axis, stable for large logits."""
        return Tensor._apply(ops.Softmax, self, axis=self._check_axis(axis, "softmax"))

    def log_softmax(self, axis: int = -1) -> Tensor:
        """log(softmax(x)) along axis, computed stably (fine at logits of +-1e4)."""
        return Tensor._apply(ops.LogSoftmax, self, axis=self._check_axis(axis, "log_softmax"))

    def nll_loss(self, targets) -> Tensor:
        """Mean negative log-likelihood of class indices `targets` (N,) under log-probs (N, C)."""
        targets = checks.class_targets(self.shape, _index_array(targets), "nll_loss")
        return Tensor._apply(ops.NLLLoss, self, targets=targets)

    def cross_entropy(self, targets) -> Tensor:
        """Mean cross-entropy of logits (N, C) against class indices (N,) (fused and stable)."""
        targets = checks.class_targets(self.shape, _index_array(targets), "cross_entropy")
        return Tensor._apply(ops.CrossEntropy, self, targets=targets)


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
            (parent, False)
            for parent in reversed(node._parents)
            if id(parent) not in seen and (parent.requires_grad or not only_requiring_grad)
        )
    return order


def _index_array(targets) -> np.ndarray:
    return targets.data if isinstance(targets, Tensor) else np.asarray(targets)


def _plain_index(index):
    """Replace Tensors inside an index by their arrays."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index
