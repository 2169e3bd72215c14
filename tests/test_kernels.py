"""Every kernel equals its textbook op: forward and every gradient, run on the same arrays.

For each (op, kernel) pair of `kernels.KERNELS` the cases below run the textbook op and the
kernel side by side on NumPy arrays: float64 to 1e-10, float32 to 1e-5 of the largest value,
inputs in both memory layouts (and upstream gradients in the output's own layout or plain C
order), with ties and NaN. Each case first asserts that the table really picks that kernel
for those inputs, so no case silently tests the textbook against itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinygrad_mnist import Tensor, kernels, ops
from tinygrad_mnist.kernels.base import Kernel
from tinygrad_mnist.kernels.conv_im2col import BatchLastConv2d, Im2colConv2d
from tinygrad_mnist.kernels.elementwise import ThreadedReLU, ThreadedReshape
from tinygrad_mnist.kernels.matmul import ThreadedMatMul
from tinygrad_mnist.kernels.pool import TiledMaxPool2d
from tinygrad_mnist.kernels.winograd import WinogradConv2d
from tinygrad_mnist.models import build_model
from tinygrad_mnist.nn.functional import nll_loss
from tinygrad_mnist.tensor import topological_order


def conv(x, w, bias=True, stride=(1, 1), padding=(0, 0), **more):
    return [x, w, (w[0],)] if bias else [x, w], dict(stride=stride, padding=padding, **more)


# kernel -> cases: (input shapes, attributes, what the inputs hold)
CASES: dict[type[Kernel], list] = {
    WinogradConv2d: [
        (*conv((2, 3, 9, 8), (4, 3, 3, 3)), "random"),
        (*conv((2, 3, 9, 8), (4, 3, 3, 3), padding=(1, 1)), "random"),
        (*conv((3, 8, 10, 10), (16, 8, 3, 3), bias=False), "random"),  # whole 4x4 tiles
        (*conv((1, 2, 3, 3), (5, 2, 3, 3)), "random"),  # one output pixel
        (*conv((2, 4, 11, 28), (3, 4, 3, 3), padding=(2, 2)), "random"),
        (*conv((2, 3, 9, 8), (4, 3, 3, 3), dilation=(1, 1), groups=1), "random"),
    ],
    BatchLastConv2d: [
        (*conv((3, 1, 12, 12), (8, 1, 3, 3)), "random"),
        (*conv((2, 1, 11, 9), (4, 1, 5, 5), stride=(2, 2), padding=(1, 2)), "random"),
        (*conv((2, 1, 7, 7), (15, 1, 2, 3), bias=False), "random"),
        (*conv((3, 1, 12, 12), (8, 1, 3, 3), dilation=(1, 1), groups=1), "random"),
    ],
    Im2colConv2d: [
        (*conv((2, 1, 12, 12), (16, 1, 3, 3)), "random"),  # one input channel, many outputs
        (*conv((2, 3, 9, 8), (16, 3, 3, 3), stride=(2, 2), padding=(1, 1)), "random"),
        (*conv((2, 5, 11, 10), (6, 5, 3, 2), stride=(2, 3), padding=(1, 2)), "random"),
        (*conv((1, 4, 7, 7), (2, 4, 1, 1), stride=(2, 2), bias=False), "random"),
        (*conv((2, 3, 8, 8), (4, 3, 5, 5), padding=(2, 2)), "random"),  # 5x5: not Winograd
        (*conv((2, 3, 9, 8), (16, 3, 3, 3), stride=(2, 2), dilation=(1, 1), groups=1), "random"),
    ],
    TiledMaxPool2d: [
        ([(2, 3, 8, 8)], dict(kernel_size=(2, 2), stride=(2, 2)), "random"),
        ([(2, 3, 9, 7)], dict(kernel_size=(2, 2), stride=(2, 2)), "random"),  # rows left over
        ([(2, 3, 8, 8)], dict(kernel_size=(2, 2), stride=(2, 2)), "ties"),
        ([(2, 3, 8, 8)], dict(kernel_size=(2, 2), stride=(2, 2)), "nan"),
        ([(2, 2, 9, 10)], dict(kernel_size=(3, 3), stride=(3, 3)), "random"),
        ([(2, 2, 9, 10)], dict(kernel_size=(3, 2), stride=(3, 2)), "ties"),
        ([(2, 2, 9, 10)], dict(kernel_size=(3, 3), stride=(3, 3)), "nan"),
        ([(2, 3, 8, 8)], dict(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)), "random"),
    ],
    ThreadedReshape: [
        ([(3, 4, 5, 6)], dict(shape=(3, -1)), "random"),  # a view in C order, a copy otherwise
        ([(3, 4, 5, 6)], dict(shape=(12, 5, 6)), "random"),
        ([(64, 32, 16, 16)], dict(shape=(64, -1)), "random"),  # large enough to split
    ],
    ThreadedReLU: [
        ([(4, 5)], {}, "random"),
        ([(3, 4, 5, 6)], {}, "ties"),  # many exact zeros
        ([(3, 4, 5, 6)], {}, "nan"),
    ],
    ThreadedMatMul: [
        ([(5, 7), (7, 3)], {}, "random"),
        ([(1, 4), (4, 9)], {}, "ties"),
    ],
}

TOLERANCE = {np.float64: 1e-10, np.float32: 1e-5}


def make_arrays(shapes, holds: str, dtype, layout: str, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = []
    for shape in shapes:
        if holds == "random":
            a = rng.standard_normal(shape)
        else:  # few distinct values: ties everywhere, exact zeros
            a = rng.integers(-1, 2, size=shape).astype(np.float64)
            if holds == "nan" and len(arrays) == 0:
                a[rng.random(shape) < 0.15] = np.nan
        arrays.append(in_layout(a.astype(dtype), layout))
    return arrays


def in_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values stored in the other memory order (channels-last, or column-major)."""
    if layout == "c" or a.ndim < 2:
        return a
    if a.ndim == 4:
        return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return np.asfortranarray(a)


def run(op_class, arrays, attrs, upstream):
    op = op_class((True,) * len(arrays))
    out = op.forward(*arrays, **attrs)
    grads = op.backward(upstream)
    return out, grads[: len(arrays)]


def textbook_of(kernel: type[Kernel]) -> type[ops.Op]:
    return next(op for op, row in kernels.KERNELS.items() if kernel in row)


def case_ids():
    for kernel, cases in CASES.items():
        for k, case in enumerate(cases):
            yield pytest.param(kernel, case, id=f"{kernel.__name__}-{k}-{case[2]}")


@pytest.mark.parametrize("kernel, case", list(case_ids()))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["c", "other"])
@pytest.mark.parametrize("upstream_layout", ["output", "c"])
def test_kernel_equals_textbook_op(kernel, case, dtype, layout, upstream_layout):
    shapes, attrs, holds = case
    arrays = make_arrays(shapes, holds, dtype, layout)
    op_class = textbook_of(kernel)
    with kernels.use("fast"):
        assert kernels.choose(op_class, arrays, attrs) is kernel, "the table picks another"

    kernel_out = kernel((True,) * len(arrays)).forward(*arrays, **attrs)
    values = np.random.default_rng(1).standard_normal(kernel_out.shape).astype(dtype)
    if upstream_layout == "output":  # as the next op hands it back: in the output's layout
        upstream = np.empty_like(kernel_out)
        upstream[...] = values
    else:
        upstream = values
    expected, expected_grads = run(op_class, arrays, attrs, upstream)
    got, got_grads = run(kernel, arrays, attrs, upstream)

    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert_close(got, expected, dtype, "forward")
    for i, (g, e) in enumerate(zip(got_grads, expected_grads, strict=True)):
        assert g is not None and g.shape == arrays[i].shape, f"input {i}: gradient shape"
        assert g.dtype == e.dtype, f"input {i}: gradient dtype {g.dtype}, expected {e.dtype}"
        assert_close(g, e, dtype, f"gradient of input {i}")


@pytest.mark.parametrize("kernel, case", list(case_ids()))
@pytest.mark.parametrize("layout", ["c", "other"])
def test_kernel_forward_without_gradients_equals_textbook_op(kernel, case, layout):
    """Inference (no input wants a gradient) takes shorter paths in some kernels."""
    shapes, attrs, holds = case
    for dtype in (np.float64, np.float32):
        arrays = make_arrays(shapes, holds, dtype, layout)
        wants = (False,) * len(arrays)
        expected = textbook_of(kernel)(wants).forward(*arrays, **attrs)
        got = kernel(wants).forward(*arrays, **attrs)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        assert_close(got, expected, dtype, "forward without gradients")


def assert_close(got, expected, dtype, what: str) -> None:
    tol = TOLERANCE[dtype]
    scale = max(1.0, float(np.nanmax(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * scale, err_msg=what)
    # NaN where the textbook has NaN, nowhere else
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=what + " (NaN)")


def test_every_kernel_in_the_table_has_cases():
    in_table = {kernel for row in kernels.KERNELS.values() for kernel in row}
    assert in_table == set(CASES)
    for op_class, row in kernels.KERNELS.items():
        for kernel in row:
            assert issubclass(kernel, op_class) and issubclass(kernel, Kernel)
            assert kernel.kernel != "reference"


def test_a_kernel_keeps_the_textbook_name():
    x = Tensor(np.ones((1, 2, 6, 6), np.float32))
    w = Tensor(np.ones((4, 2, 3, 3), np.float32), requires_grad=True)
    with kernels.use("fast"):
        op = x.conv2d(w).op
    assert op.name == "Conv2d" and op.kernel == "winograd" and isinstance(op, ops.Conv2d)


def training_step_kernels(name: str) -> set[str]:
    model = build_model(name)
    x = Tensor(np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32))
    loss = nll_loss(model(x), np.array([0, 1, 2, 3]))
    loss.backward()
    return {f"{t.op.name}:{t.op.kernel}" for t in topological_order(loss) if t.op is not None}


def test_reference_mode_runs_only_the_textbook():
    with kernels.use("reference"):
        ran = training_step_kernels("lenet-cnn")
    assert ran and all(k.endswith(":reference") for k in ran), ran


def test_fast_mode_runs_the_kernels_of_the_table():
    with kernels.use("fast"):
        assert {"Conv2d:batch-last", "MaxPool2d:tiled", "ReLU:threaded"} <= training_step_kernels(
            "seed-cnn"
        )
        assert {"Conv2d:im2col", "Conv2d:winograd", "MatMul:threaded"} <= training_step_kernels(
            "lenet-cnn"
        )


def test_highest_precision_skips_inexact_kernels():
    x = np.ones((1, 2, 6, 6), np.float32)
    w = np.ones((4, 2, 3, 3), np.float32)
    attrs = dict(stride=(1, 1), padding=(0, 0))
    previous = kernels.get_float32_precision()
    try:
        kernels.set_float32_precision("highest")
        with kernels.use("fast"):
            assert kernels.choose(ops.Conv2d, [x, w], attrs) is Im2colConv2d
        kernels.set_float32_precision("high")
        with kernels.use("fast"):
            assert kernels.choose(ops.Conv2d, [x, w], attrs) is WinogradConv2d
    finally:
        kernels.set_float32_precision(previous)


@pytest.mark.parametrize(
    "x_shape, w_shape, padding",
    [((4, 3, 11, 28), (5, 3, 3, 3), 2), ((8, 16, 28, 28), (16, 16, 3, 3), 1)],
)
def test_highest_precision_is_as_accurate_as_a_direct_float32_conv(x_shape, w_shape, padding):
    """Winograd's float32 error is ~10x a direct product's; "highest" brings it back down."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    exact = Tensor(x).conv2d(Tensor(w), padding=padding).data  # float64
    with kernels.use("reference"):
        direct = Tensor(x.astype(np.float32)).conv2d(Tensor(w.astype(np.float32)), padding=padding)
    direct_error = np.abs(direct.data - exact).max()
    errors = {}
    previous = kernels.get_float32_precision()
    try:
        for precision in ("high", "highest"):
            kernels.set_float32_precision(precision)
            with kernels.use("fast"):
                out = Tensor(x.astype(np.float32)).conv2d(
                    Tensor(w.astype(np.float32)), padding=padding
                )
            errors[precision] = np.abs(out.data - exact).max()
    finally:
        kernels.set_float32_precision(previous)
    assert errors["highest"] <= 2 * direct_error, (errors, direct_error)
    assert errors["high"] > 2 * direct_error  # Winograd ran at "high": the test can fail


# attributes the fast kernels do not handle: the table runs the textbook op
TEXTBOOK_ONLY = [
    (ops.Conv2d, conv((2, 4, 9, 8), (4, 4, 3, 3), dilation=(2, 2), groups=1)),
    (ops.Conv2d, conv((2, 4, 9, 8), (4, 2, 3, 3), dilation=(1, 1), groups=2)),
    (ops.Conv2d, conv((2, 1, 12, 12), (8, 1, 3, 3), dilation=(1, 2), groups=1)),
    (ops.Conv2d, conv((2, 2, 12, 12), (16, 1, 3, 3), bias=False, dilation=(1, 1), groups=2)),
    (ops.MaxPool2d, ([(2, 3, 8, 8)], dict(kernel_size=(2, 2), stride=(2, 2), padding=(1, 1)))),
]


@pytest.mark.parametrize("op_class, case", TEXTBOOK_ONLY)
def test_attributes_the_kernels_do_not_handle_run_the_textbook(op_class, case):
    shapes, attrs = case
    arrays = make_arrays(shapes, "random", np.float32, "c")
    with kernels.use("fast"):
        assert kernels.choose(op_class, arrays, attrs) is op_class


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="'fast' or 'reference'"), kernels.use("quick"):
        pass
    with pytest.raises(ValueError, match="'highest' or 'high'"):
        kernels.set_float32_precision("medium")
