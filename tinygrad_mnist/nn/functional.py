"""Functions on tensors, as `torch.nn.functional`: layers without state, activations, dropout,
batch normalisation, padding, and the losses.

Everything here is composed from Tensor ops, so every gradient comes from the textbook ops'
backward rules. Where a function needs a rule the ops don't have (the slope of leaky_relu, the
sign in |x|), it multiplies by a constant mask: d/dx (x * m) = m.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..checks import pair
from ..tensor import Tensor
from . import init

REDUCTIONS = ("mean", "sum", "none")

# ---------------------------------------------------------------- layers without state


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = input @ weight^T + bias.   input (*, in), weight (out, in), bias (out,) -> (*, out)"""
    if input.ndim < 1 or weight.ndim != 2 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input has {input.shape[-1] if input.ndim else 0} features but the weight "
            f"expects {weight.shape[1] if weight.ndim == 2 else '?'} (input shape {input.shape}, "
            f"weight shape {weight.shape})"
        )
    out = input @ weight.permute(1, 0)
    return out + bias if bias is not None else out


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
) -> Tensor:
    """2-D cross-correlation of (N, C, H, W) input with weight (O, C/groups, kh, kw), as
    `torch.nn.functional.conv2d` (padding an int, a pair, "valid" or "same")."""
    extra = {}
    if dilation not in (1, (1, 1)):
        extra["dilation"] = dilation
    if groups != 1:
        extra["groups"] = groups
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise ValueError(
                f"conv2d: padding must be 'valid', 'same', an int or a pair, got {padding!r}"
            )
        if padding == "valid":
            padding = 0
    return input.conv2d(weight, bias, stride=stride, padding=padding, **extra)


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    """Max over kernel windows of (N, C, H, W) input; stride defaults to kernel_size; padding
    (at most half the kernel) adds -inf borders, so a padded cell is never the max."""
    return input.max_pool2d(kernel_size, stride, padding)


def avg_pool2d(
    input: Tensor, kernel_size, stride=None, padding=0, count_include_pad: bool = True
) -> Tensor:
    """Mean over kernel windows of (N, C, H, W) input; stride defaults to kernel_size.

    out[n, c, i, j] = sum_{a, b} x[n, c, i*sh + a, j*sw + b] / (kh * kw), the zero padding
    counted (the textbook op); with count_include_pad=False each window is divided by the
    number of its cells inside the input instead (composed: the sum of kh*kw strided slices).
    d/dx: each window's gradient spread evenly over it.
    """
    if count_include_pad:
        return input.avg_pool2d(kernel_size, stride, padding)
    kh, kw = kernel = pair(kernel_size, "kernel_size", "avg_pool2d")
    sh, sw = kernel if stride is None else pair(stride, "stride", "avg_pool2d")
    ph, pw = padding = pair(padding, "padding", "avg_pool2d")
    _check_4d("avg_pool2d", input)
    _check_pool_padding("avg_pool2d", kernel, padding)
    height, width = input.shape[2] + 2 * ph, input.shape[3] + 2 * pw
    if height < kh or width < kw:
        raise ValueError(
            f"avg_pool2d: kernel {kernel} is larger than the padded input "
            f"({height}, {width}) (input shape {input.shape}, padding {padding})"
        )
    if padding != (0, 0):
        input = pad(input, (pw, pw, ph, ph))
    oh, ow = (height - kh) // sh + 1, (width - kw) // sw + 1
    windows = [
        (slice(a, a + sh * (oh - 1) + 1, sh), slice(b, b + sw * (ow - 1) + 1, sw))
        for a in range(kh)
        for b in range(kw)
    ]
    total = None
    for rows, cols in windows:
        part = input[:, :, rows, cols]
        total = part if total is None else total + part
    inside = np.pad(np.ones((height - 2 * ph, width - 2 * pw)), ((ph, ph), (pw, pw)))
    count = np.sum([inside[rows, cols] for rows, cols in windows], axis=0)
    return total / Tensor(count.astype(input.dtype))


def _check_4d(op: str, x: Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"{op}: expected input of shape (N, C, H, W), got {x.shape}")


def _check_pool_padding(op: str, kernel, padding) -> None:
    if min(padding) < 0 or padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(
            f"{op}: padding {padding} must be >= 0 and at most half the kernel size {kernel}"
        )


def pad(input: Tensor, pad: tuple[int, ...] | list[int], value: float = 0.0) -> Tensor:
    """Constant padding, as `torch.nn.functional.pad(x, pad, value=...)`.

    `pad` pairs (before, after) start from the LAST dimension: (left, right) pads the last
    dim, (left, right, top, bottom) the last two. Negative amounts crop. (An infinite value on
    the input's edge would turn its border cells into NaN: borders are 0 * edge + value.)
    d/dx: the gradient of the output cropped back to the input (padding cells get none).
    """
    pad = tuple(pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim or not all(isinstance(p, int) for p in pad):
        raise ValueError(
            f"pad: expected an even number of ints, at most two per dimension of the input "
            f"(shape {input.shape}), got {pad}"
        )
    crop, grow = [slice(None)] * input.ndim, [(0, 0)] * input.ndim
    for k in range(len(pad) // 2):
        dim = input.ndim - 1 - k
        before, after = pad[2 * k], pad[2 * k + 1]
        size = input.shape[dim]
        if size + before + after < 0:
            raise ValueError(f"pad: padding {pad} leaves dimension {dim} of {input.shape} empty")
        crop[dim] = slice(max(-before, 0), size - max(-after, 0))
        grow[dim] = (max(before, 0), max(after, 0))
    out = input[tuple(crop)] if any(s != slice(None) for s in crop) else input
    if not any(b or a for b, a in grow):
        return out
    # one gather: each output cell reads its input cell (border cells read the nearest edge),
    # then the borders are zeroed by a constant mask (so they pass no gradient back) and set
    # to `value`
    positions = [np.arange(-b, n + a) for (b, a), n in zip(grow, out.shape, strict=True)]
    inside = [(p >= 0) & (p < n) for p, n in zip(positions, out.shape, strict=True)]
    index = np.ix_(
        *[np.clip(p, 0, max(n - 1, 0)) for p, n in zip(positions, out.shape, strict=True)]
    )
    mask = np.ones((1,) * input.ndim, dtype=bool)
    for dim, m in enumerate(inside):
        mask = mask & m.reshape([-1 if d == dim else 1 for d in range(input.ndim)])
    out = out[index] * Tensor(mask.astype(out.dtype))
    if value != 0:
        out = out + Tensor(np.where(mask, 0.0, value).astype(out.dtype))
    return out


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dimensions start_dim..end_dim into one, as `torch.flatten`."""
    return input.flatten(start_dim, end_dim)


def one_hot(tensor, num_classes: int = -1) -> Tensor:
    """Class indices (any shape) -> int64 (*shape, num_classes) with a 1 at each index.

    num_classes=-1 takes the largest index + 1.
    """
    indices = tensor.data if isinstance(tensor, Tensor) else np.asarray(tensor)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expected integer class indices, got dtype {indices.dtype}")
    if num_classes == -1:
        num_classes = int(indices.max()) + 1 if indices.size else 0
    if indices.size and (indices.min() < 0 or indices.max() >= num_classes):
        raise ValueError(
            f"one_hot: class indices must be in [0, {num_classes - 1}], got values from "
            f"{indices.min()} to {indices.max()}"
        )
    return Tensor((indices[..., None] == np.arange(num_classes)).astype(np.int64))


def embedding(input, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Rows of `weight` (num, dim) picked by integer indices (any shape) -> (*shape, dim).

    d/dweight: each picked row gets its output's gradient, repeated indices add; the row
    `padding_idx` gets none.
    """
    indices = input.data if isinstance(input, Tensor) else np.asarray(input)
    if indices.dtype.kind not in "iu":
        raise TypeError(
            f"embedding: indices must be integers, got dtype {indices.dtype} (shape "
            f"{indices.shape})"
        )
    num = weight.shape[0]
    if indices.size and (indices.min() < 0 or indices.max() >= num):
        raise ValueError(
            f"embedding: indices must be in [0, {num - 1}] for a weight of shape "
            f"{weight.shape}, got values from {indices.min()} to {indices.max()}"
        )
    out = weight[indices.astype(np.intp)]
    if padding_idx is None or not np.any(indices == padding_idx):
        return out
    # the padding row's value without a gradient: out * mask + constant rows
    pad_rows = (indices == padding_idx)[..., None]
    keep = Tensor((~pad_rows).astype(weight.dtype))
    frozen = Tensor(np.where(pad_rows, weight.data[padding_idx], 0).astype(weight.dtype))
    return out * keep + frozen


# ---------------------------------------------------------------- activations


def relu(input: Tensor) -> Tensor:
    """max(x, 0) elementwise.   d/dx = 1 where x > 0, else 0"""
    return input.relu()


def leaky_relu(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x where x > 0, negative_slope * x elsewhere.   d/dx = 1 where x > 0, else negative_slope"""
    return input.leaky_relu(negative_slope)


def sigmoid(input: Tensor) -> Tensor:
    """1 / (1 + e^-x).   d/dx = s (1 - s)"""
    return input.sigmoid()


def tanh(input: Tensor) -> Tensor:
    """tanh(x).   d/dx = 1 - tanh(x)^2"""
    return input.tanh()


def softmax(input: Tensor, dim: int = -1, *, axis: int | None = None) -> Tensor:
    """exp(x) / sum(exp(x)) along dim (`axis=` the NumPy spelling)."""
    return input.softmax(dim if axis is None else axis)


def log_softmax(input: Tensor, dim: int = -1, *, axis: int | None = None) -> Tensor:
    """log(softmax(x)) along dim, computed stably (`axis=` the NumPy spelling)."""
    return input.log_softmax(dim if axis is None else axis)


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Inverted dropout: in training, zero each element with probability p and scale the
    others by 1 / (1 - p), so the expected value is unchanged; identity otherwise.

    y = x * m / (1 - p), m ~ Bernoulli(1 - p) drawn from the package's seeded generator
    (`manual_seed`).   d/dx = m / (1 - p)
    """
    if not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise ValueError(f"dropout: probability p must be in [0, 1], got {p!r}")
    if not training or p == 0:
        return input
    if p == 1:
        return input * Tensor(np.zeros(input.shape, input.dtype))
    keep = init.generator().random(input.shape) >= p
    return input * Tensor((keep / (1 - p)).astype(input.dtype))


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise each channel (dim 1) of (N, C), (N, C, L) or (N, C, H, W) input.

    y = (x - mean) / sqrt(var + eps) * weight + bias. In training, mean and var are the
    batch's (biased var, over every dim but 1) and the running statistics move towards them:
    running = (1 - momentum) * running + momentum * batch stat, with the UNBIASED batch
    variance (var * n / (n - 1)) for running_var. Otherwise the running statistics are used.
    Gradients flow through the batch statistics (composed from mean, mul, sqrt).
    """
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected input of shape (N, C, ...), got {input.shape}")
    channels = input.shape[1]
    for name, t in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        if t is not None and t.shape != (channels,):
            raise ValueError(
                f"batch_norm: {name} has shape {t.shape} but the input (shape {input.shape}) "
                f"has {channels} channels; expected ({channels},)"
            )
    axes = (0, *range(2, input.ndim))
    shape = (1, channels) + (1,) * (input.ndim - 2)
    if training:
        n = input.data.size // channels
        if n <= 1:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel when training, got input "
                f"shape {input.shape}"
            )
        mean = input.mean(axes, True)
        centred = input - mean
        var = centred.square().mean(axes, True)
        if running_mean is not None:
            running_mean.data = (
                (1 - momentum) * running_mean.data + momentum * mean.data.reshape(channels)
            ).astype(running_mean.dtype)
        if running_var is not None:
            unbiased = var.data.reshape(channels) * (n / (n - 1))
            running_var.data = ((1 - momentum) * running_var.data + momentum * unbiased).astype(
                running_var.dtype
            )
        # the per-channel factor is computed on the small (1, C, 1, 1) tensors, so the full
        # activations see one multiply (and one add) rather than a divide, a multiply and an add
        scale = (var + eps).sqrt() ** -1
        if weight is not None:
            scale = scale * weight.reshape(shape)
        out = centred * scale
        return out + bias.reshape(shape) if bias is not None else out
    if running_mean is None or running_var is None:
        raise ValueError("batch_norm: running_mean and running_var are needed when not training")
    # y = x * scale - running_mean * scale + bias with scale = weight / sqrt(running_var + eps),
    # the per-channel factors computed on the small tensors
    mean = running_mean.reshape(shape)
    inverse_std = ((running_var + eps).sqrt() ** -1).reshape(shape)
    # named after the buffers they come from, so the graph drawer can label them
    mean.name, inverse_std.name = "running_mean", "1/sqrt(running_var + eps)"
    scale = inverse_std * weight.reshape(shape) if weight is not None else inverse_std
    out = input * scale - mean * scale
    return out + bias.reshape(shape) if bias is not None else out


# ---------------------------------------------------------------- losses


def _reduce(loss: Tensor, reduction: str, op: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_reduction(reduction, op: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _class_targets(scores: Tensor, target, op: str, ignore_index: int = -100) -> np.ndarray:
    """Class indices (N,) for scores (N, C), checked (ignore_index allowed), as intp."""
    indices = target.data if isinstance(target, Tensor) else np.asarray(target)
    if scores.ndim != 2:
        raise ValueError(f"{op}: expected input of shape (N, classes), got {scores.shape}")
    if indices.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got dtype {indices.dtype}")
    if indices.shape != (scores.shape[0],):
        raise ValueError(
            f"{op}: target has shape {indices.shape} but input has shape {scores.shape}; "
            f"expected target of shape ({scores.shape[0]},)"
        )
    used = indices[indices != ignore_index]
    if used.size and (used.min() < 0 or used.max() >= scores.shape[1]):
        raise ValueError(
            f"{op}: target must hold class indices in [0, {scores.shape[1] - 1}], got values "
            f"from {used.min()} to {used.max()}"
        )
    return indices.astype(np.intp)


def _class_weight(weight, classes: int, dtype, op: str) -> np.ndarray | None:
    if weight is None:
        return None
    w = np.asarray(weight.data if isinstance(weight, Tensor) else weight, dtype=dtype)
    if w.shape != (classes,):
        raise ValueError(f"{op}: weight has shape {w.shape}, expected ({classes},)")
    return w


def nll_loss(
    input: Tensor, target, weight=None, ignore_index: int = -100, reduction: str = "mean"
) -> Tensor:
    """Negative log-likelihood of class indices under log-probabilities (N, C).

    loss_i = -w[t_i] * input[i, t_i] (w = 1 without weight); "mean" divides the sum by
    sum_i w[t_i] (targets equal to ignore_index count for nothing).
    """
    _check_reduction(reduction, "nll_loss")
    t = _class_targets(input, target, "nll_loss", ignore_index)
    w = _class_weight(weight, input.shape[1], input.dtype, "nll_loss")
    ignored = t == ignore_index
    if reduction == "mean" and w is None and not ignored.any():
        return input.nll_loss(t)  # the fused op
    safe = np.where(ignored, 0, t)
    per_example = (w[safe] if w is not None else np.ones(len(t))) * ~ignored
    per_example = per_example.astype(input.dtype)
    loss = -input[np.arange(len(t)), safe] * Tensor(per_example)
    if reduction == "mean":
        return loss.sum() / float(per_example.sum())
    return _reduce(loss, reduction, "nll_loss")


def cross_entropy(
    input: Tensor,
    target,
    weight=None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy of raw logits (N, C) against class indices (N,) or class probabilities
    (N, C), as `torch.nn.functional.cross_entropy`.

    loss_i = -sum_c q_ic log softmax(x_i)_c with q the one-hot target smoothed to
    (1 - label_smoothing) q + label_smoothing / C. Class-index targets without weight,
    ignore_index or smoothing use the fused, stable op (d/dx = softmax(x) - q).
    """
    _check_reduction(reduction, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(
            f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing!r}"
        )
    target_array = target.data if isinstance(target, Tensor) else np.asarray(target)
    if target_array.dtype.kind == "f":  # class probabilities
        if target_array.ndim == input.ndim - 1:
            raise TypeError(
                f"cross_entropy: target of shape {target_array.shape} looks like class indices "
                f"but has dtype {target_array.dtype}; class indices must be integers (a float "
                f"target is read as class probabilities of the input's shape {input.shape})"
            )
        if target_array.shape != input.shape:
            raise ValueError(
                f"cross_entropy: probability targets have shape {target_array.shape}, expected "
                f"the input's {input.shape}"
            )
        q = target if isinstance(target, Tensor) else Tensor(target_array.astype(input.dtype))
        classes = input.shape[1]
        if label_smoothing:
            q = q * (1 - label_smoothing) + label_smoothing / classes
        logp = input.log_softmax(1)
        w = _class_weight(weight, classes, input.dtype, "cross_entropy")
        if w is not None:
            logp = logp * Tensor(w.reshape(1, -1))
        return _reduce(-(logp * q).sum(1), reduction, "cross_entropy")
    t = _class_targets(input, target, "cross_entropy", ignore_index)
    if (
        reduction == "mean"
        and weight is None
        and not label_smoothing
        and not (t == ignore_index).any()
    ):
        return input.cross_entropy(t)
    logp = input.log_softmax(1)
    nll = nll_loss(logp, t, weight, ignore_index, reduction)
    if not label_smoothing:
        return nll
    classes = input.shape[1]
    w = _class_weight(weight, classes, input.dtype, "cross_entropy")
    ignored = t == ignore_index
    keep = Tensor((~ignored).astype(input.dtype))
    smooth = -(logp * Tensor(w.reshape(1, -1)) if w is not None else logp).sum(1) * keep
    if reduction == "mean":
        denominator = (
            (w[np.where(ignored, 0, t)] * ~ignored).sum() if w is not None else ((~ignored).sum())
        )
        smooth = smooth.sum() / float(denominator)
    else:
        smooth = _reduce(smooth, reduction, "cross_entropy")
    return nll * (1 - label_smoothing) + smooth * (label_smoothing / classes)


def _paired_target(input: Tensor, target, op: str) -> Tensor:
    t = target if isinstance(target, Tensor) else Tensor(np.asarray(target, dtype=input.dtype))
    if t.shape != input.shape:
        raise ValueError(
            f"{op}: target has shape {t.shape} but input has shape {input.shape}; they must "
            "be equal"
        )
    return t


def mse_loss(input: Tensor, target, reduction: str = "mean") -> Tensor:
    """Mean squared error: (x - y)^2.   d/dx = 2 (x - y) (over n for "mean")"""
    _check_reduction(reduction, "mse_loss")
    diff = input - _paired_target(input, target, "mse_loss")
    return _reduce(diff * diff, reduction, "mse_loss")


def l1_loss(input: Tensor, target, reduction: str = "mean") -> Tensor:
    """Mean absolute error: |x - y|.   d/dx = sign(x - y) (0 at x = y)"""
    _check_reduction(reduction, "l1_loss")
    diff = input - _paired_target(input, target, "l1_loss")
    return _reduce(diff * Tensor(np.sign(diff.data)), reduction, "l1_loss")


def binary_cross_entropy(input: Tensor, target, weight=None, reduction: str = "mean") -> Tensor:
    """-w (y log x + (1 - y) log(1 - x)) for probabilities x in [0, 1]; each log is clamped
    at -100, as PyTorch's.   d/dx = w (x - y) / (x (1 - x))"""
    _check_reduction(reduction, "binary_cross_entropy")
    t = _paired_target(input, target, "binary_cross_entropy")
    if input.data.size and (np.nanmin(input.data) < 0 or np.nanmax(input.data) > 1):
        raise ValueError(
            "binary_cross_entropy: input must hold probabilities in [0, 1] (apply sigmoid, or "
            "use binary_cross_entropy_with_logits on raw scores), got values from "
            f"{input.data.min():.4g} to {input.data.max():.4g}"
        )
    loss = -(t * _clamped_log(input) + (1 - t) * _clamped_log(1 - input))
    if weight is not None:
        loss = loss * (
            weight if isinstance(weight, Tensor) else Tensor(np.asarray(weight, dtype=input.dtype))
        )
    return _reduce(loss, reduction, "binary_cross_entropy")


def _clamped_log(x: Tensor) -> Tensor:
    """max(log x, -100), with no gradient where clamped."""
    small = x.data < math.exp(-100)
    safe = x * Tensor((~small).astype(x.dtype)) + Tensor(small.astype(x.dtype))  # log 1 = 0
    return safe.log() + Tensor(np.where(small, -100.0, 0.0).astype(x.dtype))


def binary_cross_entropy_with_logits(
    input: Tensor, target, weight=None, reduction: str = "mean", pos_weight=None
) -> Tensor:
    """BCE of sigmoid(x), computed stably from logits x:

    loss = (1 - y) x + (1 + (p - 1) y) (log(1 + e^-|x|) + max(-x, 0))   (p = pos_weight, 1)
    d/dx = (1 + (p - 1) y) sigmoid(x) - p y   (sigmoid(x) - y when p = 1)
    """
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    t = _paired_target(input, target, "binary_cross_entropy_with_logits")
    # |x| and max(-x, 0) as x times constant masks (d|x|/dx = 1 at x = 0, with max(-x, 0)
    # contributing 0 there, so the gradient at 0 is the true 1/2 - y)
    positive = input.data >= 0
    abs_x = input * Tensor(np.where(positive, 1.0, -1.0).astype(input.dtype))
    relu_neg_x = input * Tensor(np.where(positive, 0.0, -1.0).astype(input.dtype))
    softplus_neg_x = ((-abs_x).exp() + 1).log() + relu_neg_x  # log(1 + e^-x)
    if pos_weight is None:
        loss = (1 - t) * input + softplus_neg_x
    else:
        p = (
            pos_weight
            if isinstance(pos_weight, Tensor)
            else Tensor(np.asarray(pos_weight, dtype=input.dtype))
        )
        loss = (1 - t) * input + (1 + (p - 1) * t) * softplus_neg_x
    if weight is not None:
        loss = loss * (
            weight if isinstance(weight, Tensor) else Tensor(np.asarray(weight, dtype=input.dtype))
        )
    return _reduce(loss, reduction, "binary_cross_entropy_with_logits")
