"""Every differentiable operation: one class per op, forward and backward side by side.

Ops work on NumPy arrays only and know nothing of `Tensor`. `forward(*arrays, **attrs)` computes
the output and saves what the backward pass needs on `self`; `backward(grad)` receives the
gradient of the loss with respect to the output and returns one gradient per input (or `None`
for inputs that do not need one, as told by `self.needs_input_grad`).

Grouped by kind: unary elementwise, binary elementwise (with broadcasting), reductions,
movement (reshape, transpose, indexing), and processing (matmul, conv2d, pooling, softmax, loss).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .kernels import parallel, winograd


class Op(ABC):
    """Base class: an op instance is one node of the recorded graph.

    `attrs` holds the keyword arguments given to `forward` (axis, stride, ...) so that the graph
    drawer and error messages can read them; `needs_input_grad` says which inputs want a gradient.
    """

    kernel = "reference"  # which implementation ran: the textbook's, or a kernel's name

    def __init__(self, needs_input_grad: tuple[bool, ...]):
        self.needs_input_grad = needs_input_grad
        self.attrs: dict = {}

    @property
    def name(self) -> str:
        return type(self).__name__

    @abstractmethod
    def forward(self, *inputs: np.ndarray, **attrs) -> np.ndarray:
        """The op's result from its input arrays; saves what backward needs on self."""

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


RELU_ZEROS_BYTES = 2 << 20


class ReLU(Op):
    """max(x, 0).   d/dx = 1 where x > 0, else 0"""

    def forward(self, x):
        # one pass that keeps x's memory layout (np.where would make it C-contiguous)
        if x.ndim == 0:
            self.out = np.maximum(x, x.dtype.type(0))
            return self.out
        out = np.empty_like(x)

        def part_relu(part):
            # NumPy's max with a scalar skips its SIMD loop: on arrays that fit in cache a max
            # against zeros is ~2x faster even with their allocation; on larger ones memory
            # is the limit either way and the zeros would only add traffic
            piece = x[part]
            zero = np.zeros_like(piece) if piece.nbytes <= RELU_ZEROS_BYTES else piece.dtype.type(0)
            np.maximum(piece, zero, out=out[part])

        parallel.split(len(x), part_relu, elements=x.size)
        self.out = out
        return out

    def backward(self, grad):
        out = self.out
        if grad.ndim == 0:
            return (grad * (out > 0),)
        gx = np.empty_like(grad, dtype=np.result_type(grad, out))

        def part_grad(part):
            np.multiply(grad[part], out[part] > 0, out=gx[part])

        parallel.split(len(grad), part_grad, elements=grad.size)
        return (gx,)


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


# ---------------------------------------------------------------- processing


def _matmul_shapes_ok(a: np.ndarray, b: np.ndarray) -> bool:
    if a.ndim == 0 or b.ndim == 0:
        return False
    inner_a = a.shape[-1]
    inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    return inner_a == inner_b


class MatMul(Op):
    """a @ b (2-D, batched, or with 1-D vectors, as np.matmul).

    d/da = grad @ b^T,  d/db = a^T @ grad  (summed over broadcast batch axes)
    """

    def forward(self, a, b):
        self.a, self.b = a, b
        return parallel.matmul(a, b)

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
            if a.ndim == 2 and b.ndim == 2 and a.flags.f_contiguous and not a.flags.c_contiguous:
                # a column-major a (a flattened batch-last conv output) gets a column-major
                # gradient, so the ops before it see their own memory layout again
                ga = parallel.matmul(b2, g.T).T
            else:
                ga = parallel.matmul(g, np.swapaxes(b2, -1, -2))
            ga = unbroadcast(ga, a2.shape)
            grad_a = ga.reshape(a.shape)
        if self.needs_input_grad[1]:
            gb = parallel.matmul(np.swapaxes(a2, -1, -2), g)
            gb = unbroadcast(gb, b2.shape)
            grad_b = gb.reshape(b.shape)
        return grad_a, grad_b


def _pair(value, name: str, op: str) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, as conv and pool arguments are given."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")


def _windows(x: np.ndarray, kh: int, kw: int, sh: int, sw: int) -> np.ndarray:
    """A read-only strided view (N, C, OH, OW, kh, kw) of every kh x kw window of x (N, C, H, W)."""
    n, c, h, w = x.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    s0, s1, s2, s3 = x.strides
    return as_strided(
        x, (n, c, oh, ow, kh, kw), (s0, s1, s2 * sh, s3 * sw, s2, s3), writeable=False
    )


# im2col convolutions with fewer output channels than this store their output channel-major
CHANNEL_MAJOR_BELOW = 16


def _sum_per_channel(g: np.ndarray) -> np.ndarray:
    """g (N, OH, OW, O) summed over all but its last axis, as one vector-matrix product
    (NumPy's sum down a tall, narrow array is ~20x slower). The other axes are read in their
    memory order, so the (O, N*OH*OW) matrix is a view for every layout the convs produce."""
    pixel_axes = sorted(range(3), key=lambda axis: -g.strides[axis])
    g2 = g.transpose(3, *pixel_axes).reshape(g.shape[3], -1)
    return parallel.matmul(g2, np.ones((g2.shape[1], 1), dtype=g2.dtype))[:, 0]


class Conv2d(Op):
    """Cross-correlation of x (N, C, H, W) with weight (O, C, kh, kw), plus bias (O,).

    Three algorithms (`self.algorithm` tells which ran):
    - "im2col": every window becomes a row of `cols` (N*OH*OW, kh*kw*C), channels-last, and
      out = cols @ W^T with W the weight as (O, kh*kw*C). Backward is GEMMs too: d/dW =
      grad^T @ cols, and d/dcols = grad @ W one kernel offset at a time, each slice added back
      into the (padded) input pixels it came from.
    - "winograd": 3x3 kernels at stride 1 with 2+ input channels, F(4x4, 3x3) in
      `winograd.py`, 4x fewer multiplies.
    - "batch-last": im2col for one input channel and few output channels, with the batch as
      the innermost axis of cols and of the output memory (O, OH, OW, N).
    d/dbias = grad summed over batch and pixels.
    """

    def forward(self, x, weight, bias=None, stride=(1, 1), padding=(0, 0)):
        (sh, sw), (ph, pw) = stride, padding
        o, c, kh, kw = weight.shape
        # channels-last (N, H, W, C): a window's patch is then kh*kw runs of C adjacent numbers,
        # and when x is the NCHW view of a previous conv's output this is its memory order
        x = x.transpose(0, 2, 3, 1)
        if ph or pw:
            x = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        n, hp, wp, _ = x.shape
        oh, ow = (hp - kh) // sh + 1, (wp - kw) // sw + 1
        self.geometry = (n, c, hp, wp, oh, ow, kh, kw, sh, sw, ph, pw)
        self.has_bias = bias is not None
        if winograd.applies(weight.shape, stride, np.result_type(x, weight)):
            self.algorithm = "winograd"
            out, self.saved = winograd.forward(
                x, weight, bias, keep_patches=self.needs_input_grad[1]
            )
        elif c == 1 and o < CHANNEL_MAJOR_BELOW:
            self.algorithm = "batch-last"
            out = self._batch_last_forward(x, weight, bias)
        else:
            self.algorithm = "im2col"
            out = self._im2col_forward(x, weight, bias)
        # out is an (N, OH, OW, O) view whatever its memory order; the result is NCHW
        return out.transpose(0, 3, 1, 2)

    def _batch_last_forward(self, x, weight, bias):
        """One input channel, few output channels (a first layer): memory (O, OH, OW, N).

        With the batch innermost, every view the ReLU and 2x2 max-pool after this conv take
        is made of runs of N numbers, instead of runs of a few channels or a 13-pixel half row;
        NumPy's per-run cost then vanishes and those ops run 3-5x faster.
        """
        n, c, hp, wp, oh, ow, kh, kw, sh, sw, ph, pw = self.geometry
        o = weight.shape[0]
        image = np.empty((hp, wp, n), dtype=x.dtype)  # the input with the batch last

        def part_transpose(rows):
            np.copyto(image[rows], x[:, rows, :, 0].transpose(1, 2, 0))

        parallel.split(hp, part_transpose, elements=image.size * 4)  # a strided gather
        s0, s1, s2 = image.strides
        windows = as_strided(
            image, (kh, kw, oh, ow, n), (s0, s1, s0 * sh, s1 * sw, s2), writeable=False
        )
        store = np.empty(windows.shape, dtype=x.dtype)
        w2 = weight.reshape(o, kh * kw)
        out = np.empty((o, oh, ow, n), dtype=np.result_type(x, weight))

        def part_forward(rows):  # output rows
            np.copyto(store[:, :, rows], windows[:, :, rows])
            cols = store[:, :, rows].reshape(kh * kw, -1)
            np.matmul(w2, cols, out=out[:, rows].reshape(o, -1))
            if bias is not None:
                out[:, rows] += bias[:, None, None, None]

        parallel.split(oh, part_forward, elements=store.size, macs=store.size * o)
        self.cols = store.reshape(kh * kw, -1) if self.needs_input_grad[1] else None
        self.w2 = w2
        return out.transpose(3, 1, 2, 0)

    def _batch_last_backward(self, g):
        n, c, hp, wp, oh, ow, kh, kw, sh, sw, ph, pw = self.geometry
        o = self.w2.shape[0]
        g2 = g.transpose(3, 1, 2, 0).reshape(o, oh * ow * n)  # a view in forward's layout
        gx = grad_w = None
        if self.needs_input_grad[1]:

            def part_weight_grad(part):
                # g @ cols^T sums over every pixel of the batch: one product per output row,
                # then a sum. OpenBLAS is ~5x slower on one product with such a huge inner size.
                rows = slice(part.start * ow * n, part.stop * ow * n)
                a = g2[:, rows].reshape(o, -1, ow * n).transpose(1, 0, 2)
                b = self.cols[:, rows].reshape(kh * kw, -1, ow * n).transpose(1, 2, 0)
                return np.matmul(a, b).sum(axis=0)

            parts = parallel.split(oh, part_weight_grad, macs=g2.size * kh * kw)
            grad_w = sum(parts[1:], start=parts[0]).reshape(o, 1, kh, kw)
        if self.needs_input_grad[0]:
            dcols = parallel.matmul(self.w2.T, g2).reshape(kh, kw, oh, ow, n)
            image_grad = np.zeros((hp, wp, n), dtype=g.dtype)
            for i in range(kh):
                for j in range(kw):
                    image_grad[i : i + sh * oh : sh, j : j + sw * ow : sw] += dcols[i, j]
            gx = image_grad.transpose(2, 0, 1)[..., None]  # (N, Hp, Wp, 1)
        return gx, grad_w

    def _im2col_forward(self, x, weight, bias):
        n, c, hp, wp, oh, ow, kh, kw, sh, sw, ph, pw = self.geometry
        o = weight.shape[0]
        s0, s1, s2, s3 = x.strides
        windows = as_strided(
            x, (n, oh, ow, kh, kw, c), (s0, s1 * sh, s2 * sw, s1, s2, s3), writeable=False
        )
        if c == 1:
            # one input channel: a window row would be kh*kw scattered numbers, slow to gather;
            # store cols offset-major instead, (kh*kw, N*OH*OW), where each offset's pixels are
            # long runs, and read it as its transpose, which BLAS takes as it is
            store = np.empty((kh, kw, n, oh, ow), dtype=x.dtype)
            source = windows[..., 0].transpose(3, 4, 0, 1, 2)
            cols = store.reshape(kh * kw, n * oh * ow).T
        else:
            store = np.empty(windows.shape, dtype=x.dtype)
            source = windows
            cols = store.reshape(n * oh * ow, kh * kw * c)
        batch_axis = 2 if c == 1 else 0
        w2 = weight.transpose(0, 2, 3, 1).reshape(o, kh * kw * c)
        dtype, pixels = np.result_type(x, weight), oh * ow
        # The output's memory: channels-last (N, OH, OW, O) in general; with few output channels
        # channel-major (O, N, OH, OW) instead, whose long rows make the ReLU and max-pool that
        # usually follow ~30% faster than runs of a few channels do. Either is returned as the
        # same (N, OH, OW, O) view.
        if o < CHANNEL_MAJOR_BELOW:
            out = np.empty((o, n, oh, ow), dtype=dtype).transpose(1, 2, 3, 0)
        else:
            out = np.empty((n, oh, ow, o), dtype=dtype)

        def part_forward(part):
            # the one copy: im2col
            index = (slice(None),) * batch_axis + (part,)
            np.copyto(store[index], source[index])
            rows = cols[part.start * pixels : part.stop * pixels]
            # reshape is a view in both memory layouts: (N, OH, OW) are adjacent in each
            np.matmul(rows, w2.T, out=out[part].reshape(-1, o))
            if bias is not None:
                out[part] += bias

        parallel.split(n, part_forward, elements=cols.size, macs=cols.size * o)
        self.cols = cols if self.needs_input_grad[1] else None
        self.w2 = w2
        return out

    def backward(self, grad):
        n, c, hp, wp, oh, ow, kh, kw, sh, sw, ph, pw = self.geometry
        # a free view when grad is channels-last in memory, as the ops here produce it
        g = grad.transpose(0, 2, 3, 1)
        need_x, need_w = self.needs_input_grad[0], self.needs_input_grad[1]
        if self.algorithm == "winograd":
            gx, grad_w = winograd.backward(self.saved, g, need_x, need_w)
        elif self.algorithm == "batch-last":
            gx, grad_w = self._batch_last_backward(g)
        else:
            gx, grad_w = self._im2col_backward(g)
        grad_b = None
        if self.has_bias and self.needs_input_grad[2]:
            grad_b = _sum_per_channel(g)
        grad_x = None if gx is None else gx[:, ph : hp - ph, pw : wp - pw].transpose(0, 3, 1, 2)
        return grad_x, grad_w, grad_b

    def _im2col_backward(self, g):
        n, c, hp, wp, oh, ow, kh, kw, sh, sw, ph, pw = self.geometry
        o = self.w2.shape[0]
        g2 = g.reshape(n * oh * ow, o)
        pixels = oh * ow
        gx = grad_w = None
        if self.needs_input_grad[1]:

            def part_weight_grad(part):
                # cols^T @ g sums over every pixel of the batch: one product per image, then a
                # sum. OpenBLAS is ~5x slower on the single product with its huge inner size.
                rows = slice(part.start * pixels, part.stop * pixels)
                images = part.stop - part.start
                cols = self.cols[rows].T.reshape(-1, images, pixels).transpose(1, 0, 2)
                return np.matmul(cols, g2[rows].reshape(images, pixels, o)).sum(axis=0)

            parts = parallel.split(n, part_weight_grad, macs=self.cols.size * o)
            gw = sum(parts[1:], start=parts[0])  # (kh*kw*C, O)
            grad_w = gw.T.reshape(o, kh, kw, c).transpose(0, 3, 1, 2)
        if self.needs_input_grad[0]:
            # col2im one kernel offset at a time: d/dcols for offset (i, j) is g2 @ W[:, i, j, :],
            # added into the input pixels that offset touched. One small scratch product is
            # reused instead of materialising all of d/dcols (N*OH*OW x kh*kw*C), whose fresh
            # pages cost more than the GEMM itself.
            w4 = self.w2.reshape(o, kh, kw, c)
            gx = np.zeros((n, hp, wp, c), dtype=g.dtype)

            def part_input_grad(part):
                g_rows = g2[part.start * pixels : part.stop * pixels]
                scratch = np.empty((len(g_rows), c), dtype=np.result_type(g2, w4))
                target = gx[part]
                for i in range(kh):
                    for j in range(kw):
                        np.matmul(g_rows, w4[:, i, j, :], out=scratch)
                        target[:, i : i + sh * oh : sh, j : j + sw * ow : sw] += scratch.reshape(
                            -1, oh, ow, c
                        )

            parallel.split(
                n, part_input_grad, elements=g2.size * kh * kw, macs=g2.size * kh * kw * c
            )
        return gx, grad_w


class MaxPool2d(Op):
    """Max over each kh x kw window of x (N, C, H, W), moving by (sh, sw).

    d/dx = the window's gradient at its maximum, 0 elsewhere; overlapping windows add. Like
    PyTorch: ties go to the first maximum, a window holding NaN outputs NaN and its gradient
    goes to the last NaN.
    """

    def forward(self, x, kernel_size=(2, 2), stride=(2, 2)):
        (kh, kw), (sh, sw) = kernel_size, stride
        n, c, h, w = x.shape
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        self.geometry = (n, c, h, w, oh, ow, kh, kw, sh, sw)
        self.x, self.winner, self.pair_winners = x, None, None
        if (kh, kw) != (sh, sw):
            flat = _windows(x, kh, kw, sh, sw).reshape(n, c, oh, ow, kh * kw)
            argmax = flat.argmax(axis=-1)
            if flat.dtype.kind == "f":
                nan = np.isnan(flat)
                last_nan = kh * kw - 1 - nan[..., ::-1].argmax(axis=-1)
                argmax = np.where(nan.any(axis=-1), last_nan, argmax)
            self.argmax = argmax[..., None]
            return np.take_along_axis(flat, self.argmax, axis=-1)[..., 0]
        # non-overlapping windows: split H into (OH, kh) and W into (OW, kw), a view in any
        # memory layout; the max is then an elementwise max over the kh*kw offsets
        tiles = _tiles(x, oh, ow, kh, kw)
        out = np.empty_like(tiles[:, :, :, 0, :, 0])  # x's memory layout
        if (kh, kw) == (2, 2):
            self._max_2x2(tiles, out)
        else:
            self._max_tiles(tiles, out)
        if self.needs_input_grad[0] and out.dtype.kind == "f" and np.isnan(out).any():
            self._send_nan_gradients_to_last_nan(tiles)
        return out

    def _max_2x2(self, tiles, out):
        """The max of 2x2 tiles as a max within each row, then between the rows.

        Three boolean arrays say which one won each comparison (ties: the first), which is
        the first maximum in reading order; backward routes the gradient with them.
        """
        corners = [tiles[:, :, :, i, :, j] for i in (0, 1) for j in (0, 1)]
        want = self.needs_input_grad[0]
        picks = [np.empty_like(out, dtype=bool) for _ in range(3)] if want else None

        def part_max(part):
            top_left, top_right, bottom_left, bottom_right = (t[part] for t in corners)
            top = np.maximum(top_left, top_right)
            bottom = np.maximum(bottom_left, bottom_right)
            if want:
                right_in_top, right_in_bottom, bottom_row = (p[part] for p in picks)
                np.greater(top_right, top_left, out=right_in_top)
                np.greater(bottom_right, bottom_left, out=right_in_bottom)
                np.greater(bottom, top, out=bottom_row)
            np.maximum(top, bottom, out=out[part])

        parallel.split(len(out), part_max, elements=out.size * 8)  # ~6 passes
        self.pair_winners = picks

    def _max_tiles(self, tiles, out):
        """The max of general kh x kw tiles, with `winner` the offset of the first maximum."""
        kh, kw = tiles.shape[3], tiles.shape[5]
        offsets = [(i, j) for i in range(kh) for j in range(kw)]
        winner = np.empty_like(out, dtype=np.uint8) if self.needs_input_grad[0] else None

        def part_max(part):
            part_tiles, part_out = tiles[part], out[part]
            part_winner = None if winner is None else winner[part]
            part_out[...] = part_tiles[:, :, :, 0, :, 0]
            if part_winner is not None:
                part_winner[...] = 0
            for k, (i, j) in enumerate(offsets[1:], start=1):
                v = part_tiles[:, :, :, i, :, j]
                if part_winner is not None:
                    # winner = k where v beats the max so far, as uint8 arithmetic that
                    # wraps, (k - winner) * better + winner: 20x faster than a masked copy
                    step = np.subtract(np.uint8(k), part_winner, dtype=np.uint8)
                    step *= v > part_out
                    part_winner += step
                np.maximum(part_out, v, out=part_out)

        parallel.split(len(out), part_max, elements=tiles.size * 5)  # ~5 passes per offset
        self.winner = winner

    def _send_nan_gradients_to_last_nan(self, tiles):
        """Rare: rewrite the winners as `winner` offsets, the last NaN winning a NaN window."""
        kh, kw = tiles.shape[3], tiles.shape[5]
        if self.pair_winners is not None:
            right_in_top, right_in_bottom, bottom_row = self.pair_winners
            right = np.where(bottom_row, right_in_bottom, right_in_top)
            self.winner = (2 * bottom_row + right).astype(np.uint8)
            self.pair_winners = None
        offsets = [(i, j) for i in range(kh) for j in range(kw)]
        for k, (i, j) in enumerate(offsets):
            np.copyto(self.winner, k, where=np.isnan(tiles[:, :, :, i, :, j]))

    def backward(self, grad):
        n, c, h, w, oh, ow, kh, kw, sh, sw = self.geometry
        if (kh, kw) != (sh, sw):
            gx = np.zeros((n, c, h, w), dtype=grad.dtype)
            winner = self.argmax[..., 0]
            for i in range(kh):
                for j in range(kw):
                    hit = winner == i * kw + j
                    gx[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw] += grad * hit
            return (gx,)
        # gx has x's memory layout, so its tiles line up with x's
        gx = (np.zeros_like if (h, w) != (oh * kh, ow * kw) else np.empty_like)(
            self.x, dtype=grad.dtype
        )
        grad_tiles = _tiles(gx, oh, ow, kh, kw)
        if self.pair_winners is not None:
            self._route_2x2(grad, grad_tiles)
        else:
            self._route_tiles(grad, grad_tiles)
        return (gx,)

    def _route_2x2(self, grad, grad_tiles):
        """Each 2x2 window's gradient to its winner, by the three comparisons of forward."""
        right_in_top, right_in_bottom, bottom_row = self.pair_winners

        def part_grad(part):
            # grad in the memory layout of the winners (that of x): mixed layouts make every
            # multiply below a slow strided loop
            g = np.empty_like(bottom_row[part], dtype=grad.dtype)
            g[...] = grad[part]
            to_bottom = g * bottom_row[part]
            to_top = g * ~bottom_row[part]
            tiles = grad_tiles[part]
            np.multiply(to_top, right_in_top[part], out=tiles[:, :, :, 0, :, 1])
            np.multiply(to_top, ~right_in_top[part], out=tiles[:, :, :, 0, :, 0])
            np.multiply(to_bottom, right_in_bottom[part], out=tiles[:, :, :, 1, :, 1])
            np.multiply(to_bottom, ~right_in_bottom[part], out=tiles[:, :, :, 1, :, 0])

        parallel.split(len(grad), part_grad, elements=grad.size * 8)

    def _route_tiles(self, grad, grad_tiles):
        """Each tile's gradient to the offset recorded in `winner`."""
        kh, kw = grad_tiles.shape[3], grad_tiles.shape[5]

        def part_grad(part):
            winner = self.winner[part]
            g = np.empty_like(winner, dtype=grad.dtype)
            g[...] = grad[part]
            tiles = grad_tiles[part]
            for i in range(kh):
                for j in range(kw):
                    np.multiply(g, winner == i * kw + j, out=tiles[:, :, :, i, :, j])

        parallel.split(len(grad), part_grad, elements=grad.size * kh * kw * 2)


def _tiles(x: np.ndarray, oh: int, ow: int, kh: int, kw: int) -> np.ndarray:
    """The view (N, C, OH, kh, OW, kw) of x (N, C, H, W) cut into non-overlapping kh x kw tiles."""
    n, c = x.shape[:2]
    tiles = x[:, :, : oh * kh, : ow * kw].reshape(n, c, oh, kh, ow, kw)
    assert np.may_share_memory(tiles, x), "splitting an axis is always a view"
    return tiles


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
