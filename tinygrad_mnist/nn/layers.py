"""The layers a network is built from, each a thin Module over Tensor ops (see functional)."""

from __future__ import annotations

import numbers

import numpy as np

from .. import kernels
from ..checks import pair
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module, Parameter


def _parameter(shape: tuple[int, ...], bound: float) -> Parameter:
    """A float32 parameter drawn uniformly from [-bound, bound)."""
    return Parameter(init.uniform(shape, bound))


def _given(value):
    """An argument as PyTorch prints it: an int stays an int, a pair a tuple."""
    return tuple(value) if isinstance(value, (tuple, list)) else value


class Conv2d(Module):
    """2-D convolution over (N, C, H, W) input, as `torch.nn.Conv2d`.

    weight: (out_channels, in_channels / groups, kh, kw), bias: (out_channels,), both
    initialised uniformly in +-1/sqrt(in_channels / groups * kh * kw) (PyTorch's default).
    padding: an int, a pair, "valid" (none) or "same" (output as large as the input).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2d")
        self.stride = pair(stride, "stride", "Conv2d")
        self.padding: str | tuple[int, int]
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"Conv2d: padding must be 'same', 'valid', an int or a pair, got {padding!r}"
                )
            if padding == "same" and self.stride != (1, 1):
                raise ValueError("Conv2d: padding='same' needs stride 1 (as in PyTorch)")
            self.padding = padding
        else:
            self.padding = pair(padding, "padding", "Conv2d")
        self.dilation = pair(dilation, "dilation", "Conv2d")
        if in_channels < 1 or out_channels < 1 or min(self.kernel_size) < 1:
            raise ValueError(
                f"Conv2d: channels and kernel size must be positive, got in_channels="
                f"{in_channels}, out_channels={out_channels}, kernel_size={self.kernel_size}"
            )
        if (
            not isinstance(groups, int)
            or groups < 1
            or in_channels % groups
            or (out_channels % groups)
        ):
            raise ValueError(
                f"Conv2d: groups must be a positive int dividing in_channels ({in_channels}) and "
                f"out_channels ({out_channels}), got {groups!r}"
            )
        self.groups = groups
        fan_in = in_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        bound = init.fan_in_bound(fan_in)
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = _parameter(shape, bound)
        self.bias = _parameter((out_channels,), bound) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class Linear(Module):
    """y = x @ weight^T + bias, as `torch.nn.Linear`; weight (out_features, in_features)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"Linear: in_features and out_features must be positive, got {in_features} "
                f"and {out_features}"
            )
        self.in_features, self.out_features = in_features, out_features
        bound = init.fan_in_bound(in_features)
        self.weight = _parameter((out_features, in_features), bound)
        self.bias = _parameter((out_features,), bound) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear: input has {x.shape[-1] if x.ndim else 0} features but the layer "
                f"expects {self.in_features} (input shape {x.shape}, weight shape "
                f"{self.weight.shape})"
            )
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. for a removed layer)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x


class ReLU(Module):
    """max(x, 0) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return x.relu()


class LeakyReLU(Module):
    """x where x > 0, negative_slope * x elsewhere."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        if not isinstance(negative_slope, numbers.Real):
            raise TypeError(f"LeakyReLU: negative_slope must be a number, got {negative_slope!r}")
        self.negative_slope: float = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    """1 / (1 + e^-x) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return x.sigmoid()


class Tanh(Module):
    """tanh(x) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return x.tanh()


class MaxPool2d(Module):
    """Max over kernel windows of (N, C, H, W) input; stride defaults to kernel_size;
    padding (at most half the kernel) adds -inf borders."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        pair(kernel_size, "kernel_size", "MaxPool2d")
        self.kernel_size = _given(kernel_size)
        self.stride = self.kernel_size if stride is None else _given(stride)
        pair(self.stride, "stride", "MaxPool2d")
        self.padding = _given(padding)
        F._check_pool_padding(
            "MaxPool2d",
            pair(kernel_size, "kernel_size", "MaxPool2d"),
            pair(padding, "padding", "MaxPool2d"),
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            "dilation=1, ceil_mode=False"
        )


class AvgPool2d(Module):
    """Mean over kernel windows of (N, C, H, W) input; stride defaults to kernel_size; zero
    padding (at most half the kernel) is counted in the mean unless count_include_pad=False."""

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad: bool = True):
        super().__init__()
        kernel = pair(kernel_size, "kernel_size", "AvgPool2d")
        self.kernel_size = _given(kernel_size)
        self.stride = self.kernel_size if stride is None else _given(stride)
        pair(self.stride, "stride", "AvgPool2d")
        self.padding = _given(padding)
        F._check_pool_padding("AvgPool2d", kernel, pair(padding, "padding", "AvgPool2d"))
        self.count_include_pad = count_include_pad

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class Dropout(Module):
    """Inverted dropout: in training mode each element is zeroed with probability p and the
    rest scaled by 1 / (1 - p); in eval mode the identity. Draws from the package's seeded
    generator (`manual_seed`)."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not isinstance(p, numbers.Real) or not 0 <= p <= 1:
            raise ValueError(f"Dropout: probability p must be in [0, 1], got {p!r}")
        if inplace:
            raise ValueError("Dropout: inplace=True is not supported; use inplace=False")
        self.p: float = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace=False"


class Embedding(Module):
    """A lookup table: integer indices (any shape) -> rows of weight (num_embeddings,
    embedding_dim), initialised N(0, 1) as PyTorch's; the row padding_idx starts at zero and
    gets no gradient."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None):
        super().__init__()
        if num_embeddings < 1 or embedding_dim < 1:
            raise ValueError(
                f"Embedding: num_embeddings and embedding_dim must be positive, got "
                f"{num_embeddings} and {embedding_dim}"
            )
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(
                    f"Embedding: padding_idx {padding_idx} is out of range for "
                    f"{num_embeddings} embeddings"
                )
            padding_idx %= num_embeddings
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = padding_idx
        weight = init.generator().standard_normal((num_embeddings, embedding_dim))
        if padding_idx is not None:
            weight[padding_idx] = 0
        self.weight = Parameter(weight.astype(np.float32))

    def forward(self, indices) -> Tensor:
        return F.embedding(indices, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            text += f", padding_idx={self.padding_idx}"
        return text


class Flatten(Module):
    """Merge all axes from start_dim on (default: all but the batch axis)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Reshape(Module):
    """The "dimension layer": reshape each example, giving (batch, *shape)."""

    def __init__(self, *shape):
        super().__init__()
        self.shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], tuple) else shape

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 1:
            raise ValueError(f"Reshape: expected a batch of examples, got shape {x.shape}")
        per_example = int(np.prod(x.shape[1:]))
        try:
            np.empty(per_example, dtype=bool).reshape(self.shape)
        except ValueError:
            raise ValueError(
                f"Reshape: each example has {per_example} elements (input shape {x.shape}) "
                f"and cannot be reshaped to {self.shape}"
            ) from None
        return x.reshape((x.shape[0], *self.shape))

    def extra_repr(self) -> str:
        return ", ".join(str(s) for s in self.shape)


class Softmax(Module):
    """exp(x) / sum(exp(x)) along dim (`axis=` accepted, NumPy's spelling)."""

    def __init__(self, dim: int | None = None, *, axis: int | None = None):
        super().__init__()
        self.dim = _dim_argument("Softmax", dim, axis)

    @property
    def axis(self) -> int:
        return self.dim

    def forward(self, x: Tensor) -> Tensor:
        return x.softmax(self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """log(softmax(x)) along dim, computed stably (`axis=` accepted, NumPy's spelling)."""

    def __init__(self, dim: int | None = None, *, axis: int | None = None):
        super().__init__()
        self.dim = _dim_argument("LogSoftmax", dim, axis)

    @property
    def axis(self) -> int:
        return self.dim

    def forward(self, x: Tensor) -> Tensor:
        return x.log_softmax(self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


def _dim_argument(layer: str, dim, axis) -> int:
    if dim is not None and axis is not None and dim != axis:
        raise TypeError(f"{layer}: got dim={dim} and axis={axis}; pass one (dim, as PyTorch)")
    dim = dim if dim is not None else axis
    if dim is None:
        # PyTorch guesses a dim here (with a deprecation warning); we ask for it
        raise TypeError(f"{layer}: pass the dim to normalise over, e.g. {layer}(dim=1)")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{layer}: dim must be an int, got {dim!r}")
    return int(dim)


class Sequential(Module):
    """Layers applied one after another; indexable (`model[0]`) and printable like PyTorch's."""

    def __init__(self, *layers: Module):
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(
                    f"Sequential: layer {i} is a {type(layer).__name__}, expected a Module"
                )
            setattr(self, str(i), layer)

    def forward(self, x: Tensor) -> Tensor:
        layers = [m for m in self._modules.values() if m is not None]
        i = 0
        while i < len(layers):
            fused = _relu_then(layers, i, x)
            if fused is not None:  # layers i and i + 1 at once
                x, i = fused, i + 2
            else:
                x, i = layers[i](x), i + 1
        return x

    def __getitem__(self, index):
        layers = [m for m in self._modules.values() if m is not None]
        if isinstance(index, slice):
            return Sequential(*layers[index])
        return layers[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


def _relu_then(layers: list[Module], i: int, x: Tensor) -> Tensor | None:
    """The output of layers[i + 1] when layers i - 1 to i + 1 are a Conv2d, a ReLU and a
    MaxPool2d or Conv2d that no hook watches, run as one by the engine room: the ReLU's
    output left unmade until read, the pool taking its max before the ReLU, the conv applying
    the ReLU as it reads its input (`kernels.deferred`); else None, and nothing has run.
    x is the output of layers[i - 1], which no one else holds."""
    if not (0 < i < len(layers) - 1 and type(layers[i]) is ReLU and type(layers[i - 1]) is Conv2d):
        return None
    relu, after = layers[i], layers[i + 1]
    if layers[i - 1]._forward_hooks or relu._forward_hooks or after._forward_hooks:
        return None
    if type(after) is MaxPool2d:
        fused = kernels.relu_max_pool(x, after.kernel_size, after.stride, after.padding)
    elif type(after) is Conv2d:
        fused = kernels.relu_conv2d(
            x, after.weight, after.bias, after.stride, after.padding, after.dilation, after.groups
        )
    else:
        return None
    if fused is None:
        return None
    relu_out, out = fused
    relu._note_call((x,), relu_out)
    after._note_call((relu_out,), out)
    return out
