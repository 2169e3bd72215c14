"""The layers a CNN is built from, each a thin Module over Tensor ops."""

from __future__ import annotations

import numpy as np

from ..checks import pair
from ..tensor import Tensor
from . import init
from .module import Module


def _parameter(shape: tuple[int, ...], bound: float) -> Tensor:
    """A float32 parameter drawn uniformly from [-bound, bound)."""
    return Tensor(init.uniform(shape, bound), requires_grad=True)


class Conv2d(Module):
    """2-D convolution over (N, C, H, W) input, as `torch.nn.Conv2d`.

    weight: (out_channels, in_channels, kh, kw), bias: (out_channels,), both initialised
    uniformly in +-1/sqrt(in_channels * kh * kw) (PyTorch's default).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        bias: bool = True,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2d")
        self.stride = pair(stride, "stride", "Conv2d")
        self.padding = pair(padding, "padding", "Conv2d")
        if in_channels < 1 or out_channels < 1 or min(self.kernel_size) < 1:
            raise ValueError(
                f"Conv2d: channels and kernel size must be positive, got in_channels="
                f"{in_channels}, out_channels={out_channels}, kernel_size={self.kernel_size}"
            )
        bound = init.fan_in_bound(in_channels * self.kernel_size[0] * self.kernel_size[1])
        shape = (out_channels, in_channels, *self.kernel_size)
        self.weight = _parameter(shape, bound)
        self.bias = _parameter((out_channels,), bound) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return x.conv2d(self.weight, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
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
        out = x @ self.weight.T
        return out + self.bias if self.bias is not None else out

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class ReLU(Module):
    """max(x, 0) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return x.relu()


class MaxPool2d(Module):
    """Max over kernel windows of (N, C, H, W) input; stride defaults to kernel_size."""

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size", "MaxPool2d")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", "MaxPool2d")

    def forward(self, x: Tensor) -> Tensor:
        return x.max_pool2d(self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        k, s = self.kernel_size, self.stride
        k = k[0] if k[0] == k[1] else k
        s = s[0] if s[0] == s[1] else s
        return f"kernel_size={k}, stride={s}"


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
    """exp(x) / sum(exp(x)) along axis."""

    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor) -> Tensor:
        return x.softmax(self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class LogSoftmax(Module):
    """log(softmax(x)) along axis, computed stably."""

    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor) -> Tensor:
        return x.log_softmax(self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


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
        for layer in self._modules.values():
            x = layer(x)
        return x

    def __getitem__(self, index):
        layers = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*layers[index])
        return layers[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
