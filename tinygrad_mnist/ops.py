"""Every differentiable operation: one class per op, forward and backward side by side.

Ops work on NumPy arrays only and know nothing of `Tensor`. `forward(*arrays, **attrs)` computes
the output and saves what the backward pass needs on `self`; `backward(grad)` receives the
gradient of the loss with respect to the output and returns one gradient per input (or `None`
for inputs that do not need one, as told by `self.needs_input_grad`).

Grouped by kind: unary elementwise, binary elementwise (with broadcasting), reductions,
movement (reshape, transpose, indexing), and processing (matmul, conv2d, pooling, softmax, loss).

This is the textbook: each op is the plainest correct NumPy, written to be read. Some heavy ops
also have faster twins in `kernels/` (same inputs, outputs and rules, tested equal to these);
`kernels.use("reference")` or TINYGRAD_MNIST_KERNELS=reference runs everything from here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import as_strided


class Op(ABC):
    """Base class: an op instance is one node of the recorded graph.

    `attrs` holds the keyword arguments given to `forward` (axis, stride, ...) so that the graph
    drawer and error messages can read them; `needs_input_grad` says which inputs want a gradient.
    """

    # which implementation ran: the textbook's, or a kernel's name
    kernel: ClassVar[str] = "reference"
    # set by Tensor.backward before each backward(): True when the gradient passed in is a
    # temporary that nothing else holds, so a kernel may write its result into it
    grad_is_scratch = False

    def __init__(self, needs_input_grad: tuple[bool, ...]):
        self.needs_input_grad = needs_input_grad
        self.attrs: dict[str, Any] = {}

    @property
    def name(self) -> str:
        """The op's textbook name ("Conv2d"), also when a kernel (a subclass) ran it."""
        textbook = next(c for c in type(self).__mro__ if c.__module__ == __name__)
        return textbook.__name__

    @abstractmethod
    def forward(self, *inputs: Any, **attrs: Any) -> np.ndarray:
        """The op's result from its input arrays; saves what backward needs on self.

        Each op names its own inputs (`x`, `weight`, ...) and attributes (`axis`, `stride`, ...).
        """

    @abstractmethod
    def backward(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        """One gradient per input (None where not needed) from the output's gradient."""


def op_classes() -> list[type[Op]]:
    """Op and every class derived from it, at any depth (for profilers and tests)."""
    found, stack = [], [Op]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum `grad` over the axes that broadcasting added or stretched, giving an array of `shape`."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


# ---------------------------------------------------------------- unary elementwise


class Neg(Op):
    """-x.   d/dx = -1"""

    def forward(self, x):
        return -x

    def backward(self, grad):
        return (-grad,)


class Exp(Op):
    """exp(x).   d/dx = exp(x)"""

    def forward(self, x):
        self.out = np.exp(x)
        return self.out

    def backward(self, grad):
        return (grad * self.out,)


class Log(Op):
    """log(x).   d/dx = 1 / x"""

    def forward(self, x):
        self.x = x
        return np.log(x)

    def backward(self, grad):
        return (grad / self.x,)


class Sqrt(Op):
    """sqrt(x).   d/dx = 1 / (2 sqrt(x))"""

    def forward(self, x):
        self.out = np.sqrt(x)
        return self.out

    def backward(self, grad):
        return (grad / (2 * self.out),)


class Pow(Op):
    """x ** p for a constant number p.   d/dx = p x^(p-1)"""

    def forward(self, x, exponent):
        self.x, self.exponent = x, exponent
        return x**exponent

    def backward(self, grad):
        p = self.exponent
        if p == 0:  # x**0 is constant; p * x**-1 would give 0 * inf = nan at x = 0
            return (np.zeros_like(grad),)
        return (grad * (p * self.x ** (p - 1)),)


class ReLU(Op):
    """max(x, 0).   d/dx = 1 where x > 0, else 0"""

    def forward(self, x):
        self.x = x
        return np.maximum(x, x.dtype.type(0))

    def backward(self, grad):
        return (grad * (self.x > 0),)


class Sigmoid(Op):
    """1 / (1 + exp(-x)).   d/dx = s (1 - s)"""

    def forward(self, x):
        # exp of a non-positive number only, so large |x| never overflows
        e = np.exp(-np.abs(x))
        self.out = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return self.out

    def backward(self, grad):
        return (grad * self.out * (1 - self.out),)


class Tanh(Op):
    """tanh(x).   d/dx = 1 - tanh(x)^2"""

    def forward(self, x):
        self.out = np.tanh(x)
        return self.out

    def backward(self, grad):
        return (grad * (1 - self.out * self.out),)


class Abs(Op):
    """|x|.   d/dx = sign(x) (0 at x = 0, as PyTorch)"""

    def forward(self, x):
        self.x = x
        return np.abs(x)

    def backward(self, grad):
        return (grad * np.sign(self.x),)


class LeakyReLU(Op):
    """x where x > 0, else slope * x.   d/dx = 1 where x > 0, else slope"""

    def forward(self, x, negative_slope=0.01):
        self.x, self.slope = x, negative_slope
        return np.where(x > 0, x, x * x.dtype.type(negative_slope))

    def backward(self, grad):
        return (np.where(self.x > 0, grad, grad * grad.dtype.type(self.slope)),)


class Clamp(Op):
    """min(max(x, low), high) for constant bounds (None: no bound).

    d/dx = 1 where low <= x <= high (the bounds included, as PyTorch), else 0
    """

    def forward(self, x, min=None, max=None):
        self.x, self.low, self.high = x, min, max
        return np.clip(x, min, max).astype(x.dtype, copy=False)

    def backward(self, grad):
        inside = np.ones(self.x.shape, dtype=bool)
        if self.low is not None:
            inside &= self.x >= self.low
        if self.high is not None:
            inside &= self.x <= self.high
        return (grad * inside,)


class Cast(Op):
    """x converted to another dtype (always a copy: `clone` is a cast to the same dtype).

    d/dx = 1, the gradient converted back to x's dtype
    """

    def forward(self, x, dtype):
        self.in_dtype = x.dtype
        return x.astype(dtype, copy=True)

    def backward(self, grad):
        return (grad.astype(self.in_dtype, copy=False),)


# ---------------------------------------------------------------- binary elementwise


class Add(Op):
    """a + b.   d/da = 1, d/db = 1"""

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, grad):
        sa, sb = self.shapes
        return (
            unbroadcast(grad, sa) if self.needs_input_grad[0] else None,
            unbroadcast(grad, sb) if self.needs_input_grad[1] else None,
        )


class Sub(Op):
    """a - b.   d/da = 1, d/db = -1"""

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, grad):
        sa, sb = self.shapes
        return (
            unbroadcast(grad, sa) if self.needs_input_grad[0] else None,
            unbroadcast(-grad, sb) if self.needs_input_grad[1] else None,
        )


class Mul(Op):
    """a * b.   d/da = b, d/db = a"""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        a, b = self.a, self.b
        return (
            unbroadcast(grad * b, a.shape) if self.needs_input_grad[0] else None,
            unbroadcast(grad * a, b.shape) if self.needs_input_grad[1] else None,
        )


class Div(Op):
    """a / b.   d/da = 1 / b, d/db = -a / b^2"""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, grad):
        a, b = self.a, self.b
        return (
            unbroadcast(grad / b, a.shape) if self.needs_input_grad[0] else None,
            unbroadcast(-grad * a / (b * b), b.shape) if self.needs_input_grad[1] else None,
        )


class Power(Op):
    """a ** b for two tensors (`x ** t`, `2 ** t`).

    d/da = b a^(b-1),  d/db = a^b log(a)  (taken as 0 where a = 0 and b >= 0, as PyTorch)
    """

    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = a**b
        return self.out

    def backward(self, grad):
        a, b = self.a, self.b
        grad_a = grad_b = None
        if self.needs_input_grad[0]:
            grad_a = unbroadcast(
                grad * b * np.where(b == 0, 0, a ** np.where(b == 0, 1, b - 1)), a.shape
            )
        if self.needs_input_grad[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                log_a = np.where((a == 0) & (b >= 0), 0, np.log(np.where(a == 0, 1, a)))
            grad_b = unbroadcast(grad * self.out * log_a, b.shape)
        return grad_a, grad_b


class Maximum(Op):
    """The larger of a and b, elementwise (NaN wins).

    d/da = 1 where a > b, d/db = 1 where b > a; where they are equal each gets half (as PyTorch)
    """

    def forward(self, a, b):
        self.a, self.b = a, b
        return np.maximum(a, b)

    def backward(self, grad):
        a, b = self.a, self.b
        half = (a == b) * 0.5
        return (
            unbroadcast(grad * ((a > b) + half), a.shape) if self.needs_input_grad[0] else None,
            unbroadcast(grad * ((b > a) + half), b.shape) if self.needs_input_grad[1] else None,
        )


class Where(Op):
    """a where condition, else b (condition a constant bool array, broadcast with both).

    d/da = 1 where condition, else 0;  d/db = the opposite
    """

    def forward(self, a, b, condition):
        self.shapes, self.condition = (a.shape, b.shape), condition
        return np.where(condition, a, b)

    def backward(self, grad):
        (sa, sb), c = self.shapes, self.condition
        return (
            unbroadcast(np.where(c, grad, 0), sa) if self.needs_input_grad[0] else None,
            unbroadcast(np.where(c, 0, grad), sb) if self.needs_input_grad[1] else None,
        )


# ---------------------------------------------------------------- reductions


def _expand_reduced(grad: np.ndarray, shape: tuple, axis, keepdims: bool) -> np.ndarray:
    """Give a reduced gradient back its reduced axes (as size 1) so it broadcasts to `shape`."""
    if axis is None:
        return grad.reshape((1,) * len(shape))
    if keepdims:
        return grad
    axes = sorted(a % len(shape) for a in ((axis,) if isinstance(axis, int) else axis))
    return np.expand_dims(grad, tuple(axes))


class Sum(Op):
    """x.sum(axis).   d/dx = 1 for every element that was summed"""

    def forward(self, x, axis=None, keepdims=False):
        self.shape, self.axis, self.keepdims = x.shape, axis, keepdims
        return np.asarray(x.sum(axis=axis, keepdims=keepdims))

    def backward(self, grad):
        g = _expand_reduced(grad, self.shape, self.axis, self.keepdims)
        return (np.broadcast_to(g, self.shape),)


class Mean(Op):
    """x.mean(axis).   d/dx = 1 / n, n the number of elements averaged"""

    def forward(self, x, axis=None, keepdims=False):
        self.shape, self.axis, self.keepdims = x.shape, axis, keepdims
        out = np.asarray(x.mean(axis=axis, keepdims=keepdims))
        self.count = x.size // max(out.size, 1) if x.size else 0
        return out

    def backward(self, grad):
        g = _expand_reduced(grad, self.shape, self.axis, self.keepdims)
        return (np.broadcast_to(g / self.count, self.shape),)


class Max(Op):
    """x.max(axis).   d/dx = 1 at the maximum; ties share the gradient equally (as torch.amax)"""

    def forward(self, x, axis=None, keepdims=False):
        self.x, self.axis, self.keepdims = x, axis, keepdims
        self.out = np.asarray(x.max(axis=axis, keepdims=keepdims))
        return self.out

    def backward(self, grad):
        shape = self.x.shape
        out = _expand_reduced(self.out, shape, self.axis, self.keepdims)
        g = _expand_reduced(grad, shape, self.axis, self.keepdims)
        is_max = self.x == out
        ties = is_max.sum(axis=self.axis, keepdims=True).astype(grad.dtype)
        return (is_max * (g / ties),)


# ---------------------------------------------------------------- movement


class Reshape(Op):
    """x.reshape(shape).   the gradient is reshaped back"""

    def forward(self, x, shape):
        self.in_shape = x.shape
        return x.reshape(shape)

    def backward(self, grad):
        return (grad.reshape(self.in_shape),)


class Transpose(Op):
    """x.transpose(axes).   the gradient is transposed by the inverse permutation"""

    def forward(self, x, axes):
        self.axes = axes
        return x.transpose(axes)

    def backward(self, grad):
        return (grad.transpose(np.argsort(self.axes)),)


class Expand(Op):
    """x broadcast to a larger shape (a view).   d/dx = the gradient summed over the copies"""

    def forward(self, x, shape):
        self.in_shape = x.shape
        return np.broadcast_to(x, shape)

    def backward(self, grad):
        return (unbroadcast(grad, self.in_shape),)


class Pad(Op):
    """x with `widths` ((before, after) per axis) of a constant value around it.

    d/dx = the gradient with the padding cut off
    """

    def forward(self, x, widths, value=0.0):
        self.widths = widths
        return np.pad(x, widths, constant_values=value)

    def backward(self, grad):
        inside = tuple(
            slice(lo, n - hi) for (lo, hi), n in zip(self.widths, grad.shape, strict=True)
        )
        return (grad[inside],)


class Cat(Op):
    """Inputs joined along `axis`.   d/dinput_k = the gradient's slice where input k went"""

    def forward(self, *xs, axis=0):
        self.axis, self.sizes = axis, [x.shape[axis] for x in xs]
        return np.concatenate(xs, axis=axis)

    def backward(self, grad):
        ends = np.cumsum(self.sizes)[:-1]
        parts = np.split(grad, ends, axis=self.axis)
        return tuple(
            p if need else None for p, need in zip(parts, self.needs_input_grad, strict=True)
        )


def _has_array_index(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, (np.ndarray, list)) for p in parts)


class GetItem(Op):
    """x[index].   the gradient is scattered back; repeated integer indices add up"""

    def forward(self, x, index):
        self.shape, self.dtype, self.index = x.shape, x.dtype, index
        return np.asarray(x[index])

    def backward(self, grad):
        full = np.zeros(self.shape, dtype=self.dtype)
        if _has_array_index(self.index):
            np.add.at(full, self.index, grad)
        else:
            full[self.index] = grad
        return (full,)


class SetItem(Op):
    """A copy of x with x[index] = value (value broadcast to the indexed part).

    d/dx = the gradient, 0 where value was written;  d/dvalue = the gradient at index
    """

    def forward(self, x, value, index):
        self.index, self.value_shape = index, value.shape
        out = x.copy()
        out[index] = value
        return out

    def backward(self, grad):
        grad_x = grad_value = None
        if self.needs_input_grad[0]:
            grad_x = grad.copy()
            grad_x[self.index] = 0
        if self.needs_input_grad[1]:
            grad_value = unbroadcast(np.asarray(grad[self.index]), self.value_shape)
        return grad_x, grad_value


# ---------------------------------------------------------------- processing


class MatMul(Op):
    """a @ b (2-D, batched, or with 1-D vectors, as np.matmul).

    d/da = grad @ b^T,  d/db = a^T @ grad  (summed over broadcast batch axes)
    """

    def forward(self, a, b):
        self.a, self.b = a, b
        return np.matmul(a, b)

    def backward(self, grad):
        a, b = self.a, self.b
        # promote 1-D operands to matrices, as np.matmul does, so one rule covers all cases
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g = grad[..., None] if b.ndim == 1 else grad
        if a.ndim == 1:
            g = np.expand_dims(g, -2)
        grad_a = grad_b = None
        if self.needs_input_grad[0]:
            grad_a = unbroadcast(g @ np.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
        if self.needs_input_grad[1]:
            grad_b = unbroadcast(np.swapaxes(a2, -1, -2) @ g, b2.shape).reshape(b.shape)
        return grad_a, grad_b


def windows(
    x: np.ndarray,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
) -> np.ndarray:
    """A read-only view (N, C, OH, OW, kh, kw) of every kh x kw window of x (N, C, H, W), the
    windows starting every (sh, sw) pixels and reading every (dh, dw)-th pixel: element (i, j)
    of window (y, x) is x[:, :, y*sh + i*dh, x*sw + j*dw]."""
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    n, c, h, w = x.shape
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    s0, s1, s2, s3 = x.strides
    return as_strided(
        x, (n, c, oh, ow, kh, kw), (s0, s1, s2 * sh, s3 * sw, s2 * dh, s3 * dw), writeable=False
    )


class Conv2d(Op):
    """Cross-correlation of x (N, C, H, W) with weight (O, C/G, kh, kw), plus bias (O,).

    With P the zero-padded x, stride (sh, sw), dilation (dh, dw) and one group (G = 1):
        out[n, o, y, x] = bias[o] + sum_{c,i,j} P[n, c, y*sh + i*dh, x*sw + j*dw] * w[o, c, i, j]
    Each output pixel reads one window of P, so forward is one contraction over the windows
    view. With G groups the channels split into G equal blocks and output block g reads only
    input block g (the index g below). The chain rule, read off the same sum:
        d/dw[o, c, i, j] = sum_{n,y,x} grad[n, o, y, x] * P[n, c, y*sh + i*dh, x*sw + j*dw]
        d/dbias[o] = sum_{n,y,x} grad[n, o, y, x]
        d/dP[n, c, y*sh + i*dh, x*sw + j*dw] += sum_o grad[n, o, y, x] * w[o, c, i, j]
    and d/dx is d/dP without the padding.
    """

    def forward(
        self, x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1
    ):
        (ph, pw), (o, cg, kh, kw), n, g = padding, weight.shape, x.shape[0], groups
        padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        win = windows(padded, (kh, kw), stride, dilation)  # (N, C, OH, OW, kh, kw)
        self.windows = win.reshape(n, g, cg, *win.shape[2:])  # (N, G, C/G, OH, OW, kh, kw)
        self.weight = weight.reshape(g, o // g, cg, kh, kw)
        self.x_shape, self.stride, self.padding, self.dilation = x.shape, stride, padding, dilation
        out = np.einsum("ngcyxij,gocij->ngoyx", self.windows, self.weight, optimize=True)
        out = out.reshape(n, o, *out.shape[3:])
        return out if bias is None else out + bias[:, None, None]

    def backward(self, grad):
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        (n, c, h, w), (g, og, cg, kh, kw) = self.x_shape, self.weight.shape
        oh, ow = grad.shape[2:]
        grad_g = grad.reshape(n, g, og, oh, ow)
        grad_x = grad_w = grad_b = None
        if self.needs_input_grad[0]:
            grad_padded = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=grad.dtype)
            for i in range(kh):  # add each kernel offset's share to the pixels it read
                for j in range(kw):
                    w_ij = self.weight[:, :, :, i, j]
                    share = np.einsum("ngoyx,goc->ngcyx", grad_g, w_ij, optimize=True)
                    rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
                    cols = slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)
                    grad_padded[:, :, rows, cols] += share.reshape(n, c, oh, ow)
            grad_x = grad_padded[:, :, ph : ph + h, pw : pw + w]
        if self.needs_input_grad[1]:
            grad_w = np.einsum("ngoyx,ngcyxij->gocij", grad_g, self.windows, optimize=True)
            grad_w = grad_w.reshape(g * og, cg, kh, kw)
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            grad_b = grad.sum(axis=(0, 2, 3))
        return grad_x, grad_w, grad_b


class MaxPool2d(Op):
    """Max over each kh x kw window of x (N, C, H, W), windows starting every (sh, sw) pixels,
    x first padded by (ph, pw) pixels of -inf on each side.

        out[n, c, y, x] = max_{i,j} x[n, c, y*sh + i, x*sw + j]
    d/dx = the window's gradient at the pixel that won, 0 elsewhere; overlapping windows add.
    The winner is the first maximum in reading order; a window holding NaN outputs NaN and its
    gradient goes to its last NaN (both as PyTorch).
    """

    def forward(self, x, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)):
        (kh, kw), (ph, pw) = kernel_size, padding
        if ph or pw:  # -inf never wins (a window always holds a real pixel)
            x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
        view = windows(x, kernel_size, stride)
        flat = view.reshape(*view.shape[:4], kh * kw)  # (N, C, OH, OW, kh*kw), a copy
        winner = flat.argmax(axis=-1)
        if flat.dtype.kind == "f":
            is_nan = np.isnan(flat)
            last_nan = kh * kw - 1 - is_nan[..., ::-1].argmax(axis=-1)
            winner = np.where(is_nan.any(axis=-1), last_nan, winner)
        self.x_shape, self.kernel_size, self.stride = x.shape, kernel_size, stride
        self.winner, self.padding = winner, padding
        return np.take_along_axis(flat, winner[..., None], axis=-1)[..., 0]

    def backward(self, grad):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh, ow = grad.shape[2:]
        grad_x = np.zeros(self.x_shape, dtype=grad.dtype)
        for i in range(kh):  # each offset's pixels get the gradient of the windows it won
            for j in range(kw):
                won = self.winner == i * kw + j
                grad_x[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw] += grad * won
        h, w = grad_x.shape[2:]
        return (grad_x[:, :, ph : h - ph, pw : w - pw],)


class AvgPool2d(Op):
    """Mean over each kh x kw window of x (N, C, H, W) zero-padded by (ph, pw), windows every
    (sh, sw) pixels; the padding counts in the mean (PyTorch's count_include_pad=True).

        out[n, c, y, x] = 1/(kh kw) sum_{i,j} P[n, c, y*sh + i, x*sw + j]
    d/dP = each window's gradient / (kh kw), to every pixel it read; overlapping windows add.
    """

    def forward(self, x, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)):
        ph, pw = padding
        padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        self.padded_shape, self.kernel_size, self.stride = padded.shape, kernel_size, stride
        self.padding = padding
        return windows(padded, kernel_size, stride).mean(axis=(4, 5))

    def backward(self, grad):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh, ow = grad.shape[2:]
        grad_x = np.zeros(self.padded_shape, dtype=grad.dtype)
        share = grad / (kh * kw)
        for i in range(kh):  # each offset's pixels get a share of every window that read them
            for j in range(kw):
                grad_x[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw] += share
        h, w = grad_x.shape[2:]
        return (grad_x[:, :, ph : h - ph, pw : w - pw],)


class Softmax(Op):
    """exp(x) / sum(exp(x)) along `axis`, shifted by the max for stability.

    d/dx = s * (grad - sum(grad * s))
    """

    def forward(self, x, axis=-1):
        self.axis = axis
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        self.out = e / e.sum(axis=axis, keepdims=True)
        return self.out

    def backward(self, grad):
        s = self.out
        return (s * (grad - (grad * s).sum(axis=self.axis, keepdims=True)),)


class LogSoftmax(Op):
    """x - logsumexp(x) along `axis`, computed stably.

    d/dx = grad - softmax(x) * sum(grad)
    """

    def forward(self, x, axis=-1):
        self.axis = axis
        shifted = x - x.max(axis=axis, keepdims=True)
        self.out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        return self.out

    def backward(self, grad):
        return (grad - np.exp(self.out) * grad.sum(axis=self.axis, keepdims=True),)


class NLLLoss(Op):
    """Mean negative log-likelihood: -mean(log_probs[i, targets[i]]) over the batch.

    d/dlog_probs = -1/N at each row's target class, 0 elsewhere
    """

    def forward(self, log_probs, targets):
        self.shape, self.targets = log_probs.shape, targets
        rows = np.arange(log_probs.shape[0])
        return np.asarray(-log_probs[rows, targets].mean())

    def backward(self, grad):
        n = self.shape[0]
        full = np.zeros(self.shape, dtype=grad.dtype)
        full[np.arange(n), self.targets] = -grad / n
        return (full, None)


class CrossEntropy(Op):
    """Fused log_softmax + nll_loss over logits (N, classes): one pass, stable at any scale.

    d/dlogits = (softmax(logits) - onehot(targets)) / N
    """

    def forward(self, logits, targets):
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.log_probs, self.targets = log_probs, targets
        rows = np.arange(logits.shape[0])
        return np.asarray(-log_probs[rows, targets].mean())

    def backward(self, grad):
        n = self.log_probs.shape[0]
        g = np.exp(self.log_probs)
        g[np.arange(n), self.targets] -= 1
        return (g * (grad / n), None)
