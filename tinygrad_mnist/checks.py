"""Argument checks shared by the Tensor methods and the nn layers.

Each check raises the error a user should see (which op, which shapes or values, what was
expected) before any NumPy code runs, so no NumPy traceback ever reaches them. They work on
shapes, dtypes and plain values; they know nothing of Tensor.
"""

from __future__ import annotations

import numpy as np

Shape = tuple[int, ...]


def pair(value, name: str, op: str) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, as conv and pool arguments are given, as a pair."""
    if _is_int(value):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def matmul_shapes(a: Shape, b: Shape) -> None:
    """Check that a @ b is defined for these shapes (as np.matmul, vectors included)."""
    inner_b = None if not b else (b[0] if len(b) == 1 else b[-2])
    if not a or not b or a[-1] != inner_b:
        raise ValueError(
            f"matmul: shapes {a} and {b} do not fit; the last axis of the first must equal "
            "the second-to-last axis of the second"
        )
    try:
        np.broadcast_shapes(a[:-2], b[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch shapes of {a} and {b} cannot be broadcast") from None


def conv2d_arguments(
    x: Shape,
    w: Shape,
    b: Shape | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
) -> None:
    """Check conv2d's input (N, C, H, W), weight (O, C/groups, kh, kw), bias (O,), stride,
    padding, dilation and groups."""
    shapes = f"(input shape {x}, weight shape {w})"
    if len(x) != 4:
        raise ValueError(f"conv2d: expected a 4-D input (N, C, H, W) {shapes}")
    if len(w) != 4:
        raise ValueError(f"conv2d: expected a 4-D weight (out, in/groups, kh, kw) {shapes}")
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    if x[1] % groups or w[0] % groups:
        raise ValueError(
            f"conv2d: groups={groups} must divide both the input channels ({x[1]}) and the "
            f"output channels ({w[0]}) {shapes}"
        )
    if x[1] != w[1] * groups:
        expects = w[1] if groups == 1 else f"{w[1]} per group x {groups} groups = {w[1] * groups}"
        raise ValueError(f"conv2d: input has {x[1]} channels but weight expects {expects} {shapes}")
    if min(stride) < 1 or min(padding) < 0 or min(dilation) < 1:
        raise ValueError(
            f"conv2d: stride {stride} and dilation {dilation} must be >= 1 and padding "
            f"{padding} >= 0 {shapes}"
        )
    h, wd = x[2] + 2 * padding[0], x[3] + 2 * padding[1]
    span = (dilation[0] * (w[2] - 1) + 1, dilation[1] * (w[3] - 1) + 1)
    if span[0] > h or span[1] > wd:
        raise ValueError(
            f"conv2d: kernel {w[2:]} is larger than the padded input {(h, wd)}"
            + (f" (it spans {span} with dilation {dilation})" if span != w[2:] else "")
            + f" {shapes}"
        )
    if b is not None and b != (w[0],):
        raise ValueError(
            f"conv2d: bias has shape {b} but the weight has {w[0]} output channels; "
            f"expected bias shape ({w[0]},)"
        )


def same_dtype(op: str, a: np.dtype, b: np.dtype, shapes: str = "") -> None:
    """Check that two operands of a product (matmul, conv2d) have the same dtype, as PyTorch
    requires: a float64 batch into a float32 model is an error, not a silent float64 model."""
    if a != b:
        raise TypeError(
            f"{op}: expected both operands to have the same dtype, got {a} and {b}{shapes}; "
            f"convert one, e.g. x.float() for float32 or x.double() for float64"
        )


def pool2d_arguments(
    op: str,
    x: Shape,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int] = (0, 0),
) -> None:
    """Check a 2-D pooling's input (N, C, H, W), kernel size, stride and padding."""
    if len(x) != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got shape {x}")
    if min(kernel) < 1 or min(stride) < 1:
        raise ValueError(f"{op}: kernel_size {kernel} and stride {stride} must be positive")
    if min(padding) < 0 or 2 * padding[0] > kernel[0] or 2 * padding[1] > kernel[1]:
        raise ValueError(
            f"{op}: padding {padding} must be >= 0 and at most half the kernel size {kernel}"
        )
    if kernel[0] > x[2] + 2 * padding[0] or kernel[1] > x[3] + 2 * padding[1]:
        raise ValueError(
            f"{op}: kernel {kernel} is larger than the input's padded spatial size "
            f"{(x[2] + 2 * padding[0], x[3] + 2 * padding[1])} (input shape {x})"
        )


def unsupported(op: str, **given) -> None:
    """Refuse PyTorch options we do not implement, instead of silently ignoring them.

    Call with each option's value and its only supported value, as name=(value, supported)."""
    for name, (value, supported) in given.items():
        if value != supported:
            raise NotImplementedError(
                f"{op}: {name}={value!r} is not supported (only {name}={supported!r})"
            )


def dim_argument(op: str, dim, axis, default=None):
    """PyTorch's `dim=`, or NumPy's `axis=` (PyTorch accepts both); never both at once."""
    if axis is not None:
        if dim is not None and dim is not default:
            raise TypeError(f"{op}: got both dim={dim!r} and axis={axis!r}; pass only dim=")
        return axis
    return dim


def class_targets(scores: Shape, targets: np.ndarray, op: str) -> np.ndarray:
    """Class indices (N,) that fit scores (N, classes), as an index array."""
    if len(scores) != 2:
        raise ValueError(f"{op}: expected scores of shape (N, classes), got {scores}")
    if targets.dtype.kind not in "iu":
        raise TypeError(f"{op}: targets must be integer class indices, got dtype {targets.dtype}")
    if targets.shape != (scores[0],):
        raise ValueError(
            f"{op}: targets have shape {targets.shape} but scores have shape {scores}; "
            f"expected targets of shape ({scores[0]},)"
        )
    if targets.size and (targets.min() < 0 or targets.max() >= scores[1]):
        raise ValueError(
            f"{op}: targets must be class indices in [0, {scores[1] - 1}], "
            f"got values from {targets.min()} to {targets.max()}"
        )
    return targets.astype(np.intp, copy=False)
