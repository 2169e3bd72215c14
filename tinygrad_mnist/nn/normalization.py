"""Batch normalisation: BatchNorm1d and BatchNorm2d, with running statistics as buffers."""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from . import functional as F
from .module import Module, Parameter


class _BatchNorm(Module):
    """Normalise each channel over the batch (and the spatial dims), as PyTorch's BatchNorm.

    y = (x - mean) / sqrt(var + eps) * weight + bias, weight (C,) starting at 1 and bias (C,)
    at 0 (with `affine`). Training mode uses the batch's mean and biased variance and moves the
    buffers `running_mean` (from 0) and `running_var` (from 1) towards them:
    running = (1 - momentum) * running + momentum * batch (the UNBIASED variance for
    running_var; momentum=None: the cumulative average over batches); `num_batches_tracked`
    counts the batches. Eval mode normalises with the running statistics.
    """

    expected_dims: tuple[int, ...] = ()
    # buffers (register_buffer); None without track_running_stats
    running_mean: Tensor | None
    running_var: Tensor | None
    num_batches_tracked: Tensor | None

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        bias: bool = True,
    ):
        super().__init__()
        name = type(self).__name__
        if not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ValueError(f"{name}: num_features must be a positive int, got {num_features!r}")
        if not eps > 0:
            raise ValueError(f"{name}: eps must be > 0, got {eps!r}")
        if momentum is not None and not 0 <= momentum <= 1:
            raise ValueError(f"{name}: momentum must be in [0, 1] or None, got {momentum!r}")
        self.num_features, self.eps, self.momentum = int(num_features), eps, momentum
        self.affine, self.track_running_stats, self.has_bias = affine, track_running_stats, bias
        c = self.num_features
        self.weight = Parameter(np.ones(c, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(c, np.float32)) if affine and bias else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, np.float32))
            self.register_buffer("running_var", np.ones(c, np.float32))
            self.register_buffer("num_batches_tracked", np.array(0, np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        """Running mean back to 0, running variance to 1, the batch count to 0."""
        if self.running_mean is not None:
            self.running_mean.data = np.zeros_like(self.running_mean.data)
        if self.running_var is not None:
            self.running_var.data = np.ones_like(self.running_var.data)
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.data = np.zeros_like(self.num_batches_tracked.data)

    def forward(self, x: Tensor) -> Tensor:
        name = type(self).__name__
        if x.ndim not in self.expected_dims:
            shapes = " or ".join(
                {2: "(N, C)", 3: "(N, C, L)", 4: "(N, C, H, W)"}[d] for d in self.expected_dims
            )
            raise ValueError(f"{name}: expected input of shape {shapes}, got {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{name}: input has {x.shape[1]} channels but the layer expects "
                f"{self.num_features} (input shape {x.shape})"
            )
        use_batch = self.training or not self.track_running_stats
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked.data = self.num_batches_tracked.data + 1
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.data)
        tracking = self.training and self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean if tracking or not use_batch else None,
            self.running_var if tracking or not use_batch else None,
            self.weight,
            self.bias,
            use_batch,
            factor,
            self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.affine and self.has_bias}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) input, per channel C (see _BatchNorm)."""

    expected_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) input, per channel C over N, H and W."""

    expected_dims = (4,)
