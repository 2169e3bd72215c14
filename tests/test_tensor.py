"""Tensor semantics: dtypes, autograd bookkeeping, no_grad, deep graphs, and error messages."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
from helpers import check_op

from tinygrad_mnist import Tensor, is_grad_enabled, no_grad


def shapes_in(*shapes) -> str:
    """A regex matching a message that mentions every shape, in order."""
    return ".*".join(re.escape(str(tuple(s))) for s in shapes)


# ---------------------------------------------------------------- construction and dtypes


@pytest.mark.parametrize("data", [[1, 2, 3], [[1.5, 2.0]], 3, 2.5, True, [True, False]], ids=repr)
def test_lists_and_scalars_become_float32(data):
    t = Tensor(data)
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t.data, np.asarray(data, dtype=np.float32))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_float_arrays_keep_their_dtype(dtype):
    assert Tensor(np.ones(3, dtype=dtype)).dtype == dtype
    assert Tensor(np.ones(3, dtype=dtype), requires_grad=True).dtype == dtype


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_integer_and_bool_arrays_keep_their_dtype(dtype):
    assert Tensor(np.zeros(3, dtype=dtype)).dtype == dtype


def test_explicit_dtype_converts():
    t = Tensor([1, 2], dtype="float64")
    assert t.dtype == np.float64
    assert Tensor(np.arange(3), dtype=np.float32).dtype == np.float32


def test_array_data_is_shared_not_copied():
    a = np.ones(3)
    t = Tensor(a)
    assert t.data is a and t.numpy() is a


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_requires_grad_on_integer_data_raises(dtype):
    with pytest.raises(TypeError, match=rf"only floating-point.*{np.dtype(dtype)}"):
        Tensor(np.zeros(3, dtype=dtype), requires_grad=True)


def test_requires_grad_on_integer_dtype_argument_raises():
    with pytest.raises(TypeError, match="only floating-point"):
        Tensor([1.0, 2.0], dtype="int32", requires_grad=True)


@pytest.mark.parametrize("dtype", ["complex64", "foo", object, "U3"])
def test_unknown_or_unsupported_dtype_raises(dtype):
    with pytest.raises(TypeError, match="Tensor: (unknown|unsupported) dtype"):
        Tensor([1.0, 2.0], dtype=dtype)


@pytest.mark.parametrize(
    "data",
    [
        np.array([1, "a"], dtype=object),
        np.array([1 + 2j]),
        np.array(["a", "b"]),
        {"a": 1},
        "123",
        None,
    ],
    ids=["object", "complex", "str-array", "dict", "str", "None"],
)
def test_unsupported_data_raises_type_error(data):
    with pytest.raises(TypeError, match="Tensor"):
        Tensor(data)


def test_ragged_list_raises_value_error():
    with pytest.raises(ValueError, match="rectangular"):
        Tensor([[1.0, 2.0], [3.0]])


def test_properties():
    t = Tensor(np.zeros((2, 3, 4)))
    assert t.shape == (2, 3, 4)
    assert t.ndim == 3
    assert t.size() == (2, 3, 4) and t.size(1) == 3 and t.size(-1) == 4
    assert t.numel() == 24 and t.dim() == 3 and t.device == "cpu"
    assert t.dtype == np.float64
    assert t.requires_grad is False
    assert t.grad is None
    assert t.is_leaf


# ---------------------------------------------------------------- conversions


def test_item():
    assert Tensor(np.array([[2.5]])).item() == 2.5
    assert isinstance(Tensor([3.0]).sum().item(), float)
    with pytest.raises(ValueError, match=r"item: .*one-element.*\(2,\)"):
        Tensor([1.0, 2.0]).item()


def test_len():
    assert len(Tensor(np.zeros((5, 2)))) == 5
    with pytest.raises(TypeError, match="0-d"):
        len(Tensor(1.0))


def test_array_protocol():
    data = np.arange(6.0).reshape(2, 3)
    t = Tensor(data)
    assert np.asarray(t) is data
    np.testing.assert_array_equal(np.asarray(t, dtype=np.float32), data.astype(np.float32))
    assert np.asarray(t, dtype=np.float32).dtype == np.float32
    assert t.numpy() is data


def test_repr():
    assert repr(Tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert "dtype=float64" in repr(Tensor(np.zeros(2)))
    assert "dtype=int64" in repr(Tensor(np.zeros(2, dtype=np.int64)))
    a = Tensor([1.0, 2.0], requires_grad=True)
    assert repr(a) == "tensor([1., 2.], requires_grad=True)"
    assert repr(a * 2) == "tensor([2., 4.], grad_fn=<Mul>)"


def test_bool_of_one_element_tensors_and_ambiguity():
    assert bool(Tensor(0.0)) is False and bool(Tensor([2.0])) is True
    assert bool(Tensor(np.array([[1]]))) is True
    with pytest.raises(ValueError, match=r"bool: .*\(3,\) is ambiguous"):
        bool(Tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(Tensor(np.zeros(0)))


def test_ndarray_on_the_left_defers_to_tensor():
    a = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    m = np.arange(6.0).reshape(2, 3)
    out = (np.full(3, 2.0) * a + np.ones(3) - np.ones(3) / a).sum() + (m @ a).sum()
    assert isinstance(out, Tensor)
    out.backward()
    np.testing.assert_allclose(a.grad, 2.0 + 1 / a.data**2 + m.sum(axis=0))


# ---------------------------------------------------------------- comparisons

COMPARISONS = {
    "==": (lambda a, b: a == b, np.equal),
    "!=": (lambda a, b: a != b, np.not_equal),
    "<": (lambda a, b: a < b, np.less),
    "<=": (lambda a, b: a <= b, np.less_equal),
    ">": (lambda a, b: a > b, np.greater),
    ">=": (lambda a, b: a >= b, np.greater_equal),
}


@pytest.mark.parametrize("op", COMPARISONS)
def test_comparisons_give_bool_tensors_without_grad(op):
    ours, reference = COMPARISONS[op]
    a_data, b_data = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0])
    a = Tensor(a_data, requires_grad=True)
    b = Tensor(b_data, requires_grad=True)
    for out, expected in [
        (ours(a, b), reference(a_data, b_data)),
        (ours(a, 2.0), reference(a_data, 2.0)),
        (ours(a, Tensor(np.array([[2.0], [1.0]]))), reference(a_data, [[2.0], [1.0]])),
    ]:
        assert isinstance(out, Tensor)
        assert out.dtype == np.bool_
        assert out.requires_grad is False and out.op is None
        np.testing.assert_array_equal(out.data, expected)


def test_comparison_with_mismatched_shapes_names_op_and_shapes():
    with pytest.raises(ValueError, match="lt: shapes " + shapes_in((2, 3), (4,))):
        _ = Tensor(np.zeros((2, 3))) < Tensor(np.zeros(4))


def test_tensors_stay_hashable():
    a = Tensor([1.0])
    assert {a: 1}[a] == 1


# ---------------------------------------------------------------- type promotion


def test_python_numbers_do_not_upcast_float32():
    t = Tensor([1.0, 2.0])
    for out in (t * 2.0, 2.0 * t, t + 1, 1 - t, t / 3, 1 / t, t**2, -t):
        assert out.dtype == np.float32, out


def test_integer_tensors_follow_pytorch_promotion():
    i = Tensor(np.arange(3))
    assert (i * 2).dtype == np.int64
    assert (i * 2.5).dtype == np.float32  # a float number makes an integer tensor float32
    assert (i / 2).dtype == np.float32  # true division
    assert (i + Tensor(np.ones(3, dtype=np.float32))).dtype == np.float32
    assert (Tensor(np.ones(3)) + Tensor(np.ones(3, np.float32))).dtype == np.float64
    assert (Tensor(np.ones(3, np.float32)) + Tensor(np.float64(1))).dtype == np.float32  # 0-d


def test_numpy_scalars_do_not_upcast_float32():
    """Old main: x * np.float64(2) was float64."""
    t = Tensor([1.0, 2.0])
    for out in (t * np.float64(2), np.float64(2) * t, t + np.float64(1), t / np.int64(2)):
        assert out.dtype == np.float32, out


def test_float32_leaf_gets_float32_grad_after_mixed_dtype_op():
    a = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    b = Tensor(np.full(3, 2.0), requires_grad=True)  # float64
    out = (a * b).sum()
    assert out.dtype == np.float64  # NumPy's promotion in the forward pass
    out.backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_array_equal(a.grad, [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(b.grad, [1.0, 1.0, 1.0])


def test_backward_seed_takes_the_output_dtype():
    a = Tensor(np.ones(2, dtype=np.float32), requires_grad=True)
    (a * 3).backward(np.array([1.0, 2.0]))  # a float64 seed
    assert a.grad.dtype == np.float32
    np.testing.assert_array_equal(a.grad, [3.0, 6.0])


# ---------------------------------------------------------------- autograd semantics


def test_graph_records_op_and_ordered_parents():
    a = Tensor([1.0], requires_grad=True)
    b = Tensor([2.0], requires_grad=True)
    out = b - a
    assert out.op.name == "Sub"
    assert len(out.parents) == 2 and out.parents[0] is b and out.parents[1] is a
    square = a * a
    assert square.parents[0] is a and square.parents[1] is a
    assert not out.is_leaf and a.is_leaf


def test_tensor_used_twice_gets_summed_gradient():
    data = np.array([1.0, -2.0, 3.0])
    a = Tensor(data, requires_grad=True)
    (a * a).sum().backward()
    np.testing.assert_array_equal(a.grad, 2 * data)
    b = Tensor(data, requires_grad=True)
    (b + b).sum().backward()
    np.testing.assert_array_equal(b.grad, [2.0, 2.0, 2.0])


def _diamond(a):
    b = a * 2
    return (b.exp() + b * b).sum()


def test_diamond_graph_gradient():
    data = np.array([0.1, -0.3, 0.7])
    a = Tensor(data, requires_grad=True)
    _diamond(a).backward()
    np.testing.assert_allclose(a.grad, 2 * np.exp(2 * data) + 8 * data, rtol=1e-12)


SHARED_GRAPHS = [
    pytest.param([(3, 4)], lambda a: a * a, id="a*a"),
    pytest.param([(3, 4)], lambda a: a + a + a, id="a+a+a"),
    pytest.param([(3, 4)], lambda a: (a * 2).exp() + (a * 2) * (a * 2), id="diamond"),
    pytest.param(
        [(3, 4), (4,)], lambda a, b: (lambda c: c * c.tanh() - c)(a * b + b), id="shared-node"
    ),
    pytest.param([(3, 4)], lambda a: a @ a.T + a.sum(), id="matmul-self"),
    pytest.param([(3, 4)], lambda a: a[0] * a[1] + a[[0, 2, 0]].sum(axis=0), id="getitem-twice"),
]


@pytest.mark.parametrize("shapes, fn", SHARED_GRAPHS)
def test_shared_subgraphs_against_torch_and_numerics(shapes, fn):
    check_op(shapes, fn)


def test_second_backward_accumulates():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = Tensor(np.array([3.0, 4.0]), requires_grad=True)
    out = (a * b).sum()
    out.backward()
    out.backward()
    np.testing.assert_array_equal(a.grad, [6.0, 8.0])
    np.testing.assert_array_equal(b.grad, [2.0, 4.0])


def test_backward_on_separate_graphs_accumulates():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (a * 3).sum().backward()
    (a * a).sum().backward()
    np.testing.assert_array_equal(a.grad, [3.0 + 2.0, 3.0 + 4.0])


def test_leaf_grad_is_a_fresh_array():
    a = Tensor(np.ones((2, 3)), requires_grad=True)
    out = a.sum()
    out.backward()
    a.grad *= 10  # an optimizer may change grad in place; the next backward must not see it
    out.backward()
    np.testing.assert_array_equal(a.grad, np.full((2, 3), 11.0))
    assert a.grad.flags.writeable


def test_intermediates_keep_grad_only_with_retain_grad():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = a * 3
    c = b.retain_grad() * b
    d = c.sum()
    d.backward()
    np.testing.assert_array_equal(b.grad, 2 * b.data)
    assert c.grad is None and d.grad is None
    np.testing.assert_array_equal(a.grad, 18 * a.data)


def test_retain_grad_on_root_and_accumulation():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    out = (a * 2).sum().retain_grad()
    out.backward()
    out.backward()
    assert out.grad == 2.0


def test_retain_grad_without_grad_raises():
    with pytest.raises(RuntimeError, match="retain_grad"):
        Tensor([1.0]).retain_grad()


def test_constants_get_no_grad():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    c = Tensor(np.array([5.0, 6.0]))
    (a * c).sum().backward()
    assert c.grad is None
    np.testing.assert_array_equal(a.grad, [5.0, 6.0])


def test_zero_grad_sets_none():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (a * a).sum().backward()
    a.zero_grad()
    assert a.grad is None
    (a * 2).sum().backward()
    np.testing.assert_array_equal(a.grad, [2.0, 2.0])


def test_detach_cuts_the_graph_and_shares_data():
    data = np.array([1.0, 2.0])
    a = Tensor(data, requires_grad=True)
    d = a.detach()
    assert d.requires_grad is False and d.is_leaf and d.data is data
    (d * a).sum().backward()
    np.testing.assert_array_equal(a.grad, data)  # not 2 * data: d is a constant
    assert d.grad is None
    assert (a * 2).detach().requires_grad is False


def test_no_grad_context_manager():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    with no_grad():
        assert not is_grad_enabled()
        out = (a * 2).exp().sum()
    assert is_grad_enabled()
    assert out.requires_grad is False and out.op is None and out.parents == ()
    with pytest.raises(RuntimeError, match="does not require grad"):
        out.backward()
    assert (a * 2).requires_grad is True


def test_no_grad_decorator():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)

    @no_grad()
    def predict(x):
        assert not is_grad_enabled()
        return x * 3

    out = predict(a)
    assert out.requires_grad is False and out.op is None
    assert is_grad_enabled()


def test_no_grad_decorator_survives_recursion_and_nesting():
    @no_grad()
    def depth(n):
        return 0 if n == 0 else 1 + depth(n - 1)

    assert depth(3) == 3
    assert is_grad_enabled()
    guard = no_grad()
    with guard:
        with guard:
            pass
        assert not is_grad_enabled()
    assert is_grad_enabled()


def test_no_grad_restores_state_after_exception():
    with pytest.raises(KeyError):
        with no_grad():
            raise KeyError("boom")
    assert is_grad_enabled()


def test_backward_with_explicit_ndarray_and_tensor_grad():
    a = Tensor(np.array([[1.0, 2.0], [3.0, 4.0]]), requires_grad=True)
    seed = np.array([[1.0, 0.5], [2.0, -1.0]])
    (a * a).backward(seed)
    np.testing.assert_array_equal(a.grad, 2 * a.data * seed)
    a.zero_grad()
    (a * 3).backward(Tensor(seed))
    np.testing.assert_array_equal(a.grad, 3 * seed)


def test_backward_on_one_element_non_scalar():
    a = Tensor(np.array([2.0]), requires_grad=True)
    (a * a).reshape(1, 1).backward()
    np.testing.assert_array_equal(a.grad, [4.0])


def test_backward_on_leaf():
    a = Tensor(np.array(3.0), requires_grad=True)
    a.backward()
    assert a.grad == 1.0


def test_long_mul_chain_has_no_recursion_error():
    x = Tensor(np.array([2.0, 3.0]), requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    limit = sys.getrecursionlimit()
    y.sum().backward()
    assert sys.getrecursionlimit() == limit
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])
    del y  # freeing a 100,000-deep chain must not overflow the stack either


def test_long_add_chain_has_no_recursion_error():
    x = Tensor(np.array(1.5), requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + x
    y.backward()
    assert x.grad == 100_001.0
    assert y.item() == 1.5 * 100_001


# ---------------------------------------------------------------- backward errors


def test_backward_non_scalar_without_grad():
    a = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"backward: .*one-element.*\(2, 3\)"):
        (a * 2).backward()


def test_backward_grad_of_wrong_shape():
    a = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match="backward: grad has shape " + shapes_in((3, 2), (2, 3))):
        (a * 2).backward(np.ones((3, 2)))


def test_backward_without_graph():
    with pytest.raises(RuntimeError, match="backward: .*requires_grad=True"):
        Tensor([1.0]).backward()


# ---------------------------------------------------------------- op errors


@pytest.mark.parametrize(
    "name, fn",
    [
        ("add", lambda a, b: a + b),
        ("sub", lambda a, b: a - b),
        ("mul", lambda a, b: a * b),
        ("div", lambda a, b: a / b),
        ("add", lambda a, b: b.data + a),
        ("mul", lambda a, b: b.data * a),
    ],
)
def test_binary_shape_mismatch_names_op_and_shapes(name, fn):
    a = Tensor(np.ones((2, 3)), requires_grad=True)
    b = Tensor(np.ones((4,)))
    with pytest.raises(ValueError, match=rf"{name}: shapes .*cannot be broadcast") as info:
        fn(a, b)
    message = str(info.value)
    assert "(2, 3)" in message and "(4,)" in message
    assert "must match or be 1" in message


def test_unsupported_operand_type():
    with pytest.raises(TypeError, match="unsupported operand type.*str"):
        Tensor([1.0]) + "a"


def test_pow_needs_a_number_or_a_tensor():
    with pytest.raises(TypeError, match="pow: the exponent must be a number or a Tensor"):
        Tensor([1.0]) ** "2"
    with pytest.raises(ValueError, match="pow: integers to negative integer powers"):
        Tensor(np.arange(3)) ** -1


EXACT_CONV_MESSAGE = (
    "conv2d: input has 3 channels but weight expects 1 "
    "(input shape (8, 3, 28, 28), weight shape (16, 1, 3, 3))"
)


def test_conv2d_channel_mismatch_message_is_exact():
    x = Tensor(np.zeros((8, 3, 28, 28), dtype=np.float32))
    w = Tensor(np.zeros((16, 1, 3, 3), dtype=np.float32), requires_grad=True)
    with pytest.raises(ValueError) as info:
        x.conv2d(w)
    assert str(info.value) == EXACT_CONV_MESSAGE


@pytest.mark.parametrize(
    "x_shape, w_shape, b_shape, kwargs, pattern",
    [
        ((3, 28, 28), (16, 3, 3, 3), None, {}, "conv2d: expected a 4-D input"),
        ((2, 3, 8, 8), (16, 3, 3), None, {}, "conv2d: expected a 4-D weight"),
        ((2, 3, 8, 8), (4, 3, 3, 3), (3,), {}, r"conv2d: bias has shape \(3,\).*\(4,\)"),
        ((2, 3, 8, 8), (4, 3, 3, 3), (4, 1), {}, r"conv2d: bias has shape \(4, 1\)"),
        ((1, 1, 4, 4), (1, 1, 5, 5), None, {}, r"conv2d: kernel \(5, 5\) is larger"),
        ((1, 1, 4, 4), (1, 1, 7, 3), None, {"padding": 1}, r"larger than the padded input"),
        ((1, 1, 4, 4), (1, 1, 3, 3), None, {"stride": 0}, "conv2d: stride"),
        ((1, 1, 4, 4), (1, 1, 3, 3), None, {"padding": -1}, "conv2d: stride.*padding"),
    ],
)
def test_conv2d_bad_shapes(x_shape, w_shape, b_shape, kwargs, pattern):
    x = Tensor(np.zeros(x_shape))
    w = Tensor(np.zeros(w_shape))
    b = None if b_shape is None else Tensor(np.zeros(b_shape))
    with pytest.raises(ValueError, match=pattern) as info:
        x.conv2d(w, b, **kwargs)
    if "bias" not in pattern:
        assert f"input shape {x_shape}, weight shape {w_shape}" in str(info.value)


def test_conv2d_kernel_fits_after_padding():
    x = Tensor(np.zeros((1, 1, 3, 3)))
    assert x.conv2d(Tensor(np.zeros((1, 1, 5, 5))), padding=1).shape == (1, 1, 1, 1)


@pytest.mark.parametrize("bad", [1.5, (1, 2, 3), "2", (1, 1.0), True])
def test_conv2d_and_pool_bad_argument_types(bad):
    x = Tensor(np.zeros((1, 1, 6, 6)))
    with pytest.raises(TypeError, match="conv2d: stride must be an int or a pair"):
        x.conv2d(Tensor(np.zeros((1, 1, 3, 3))), stride=bad)
    with pytest.raises(TypeError, match="max_pool2d: kernel_size must be an int or a pair"):
        x.max_pool2d(bad)


@pytest.mark.parametrize(
    "shape, kwargs, pattern",
    [
        ((3, 8, 8), {}, r"max_pool2d: expected a 4-D input .*\(3, 8, 8\)"),
        ((8, 8), {}, r"max_pool2d: expected a 4-D input .*\(8, 8\)"),
        ((1, 1, 3, 3), {"kernel_size": 4}, r"max_pool2d: kernel \(4, 4\) is larger.*\(3, 3\)"),
        ((1, 1, 6, 6), {"kernel_size": 0}, "max_pool2d: .*must be positive"),
        ((1, 1, 6, 6), {"kernel_size": 2, "stride": 0}, "max_pool2d: .*must be positive"),
    ],
)
def test_max_pool2d_bad_input(shape, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        Tensor(np.zeros(shape)).max_pool2d(**kwargs)


def test_reshape_to_wrong_size():
    pattern = r"reshape: cannot reshape a tensor of shape \(2, 3\) \(6 elements\) into \(4, 2\)"
    with pytest.raises(ValueError, match=pattern):
        Tensor(np.zeros((2, 3))).reshape(4, 2)
    with pytest.raises(ValueError, match="reshape: "):
        Tensor(np.zeros((2, 3))).reshape(-1, -1)


@pytest.mark.parametrize("axes", [(0, 0, 1), (0, 1), (0, 1, 3), (0, 1, -4), (0, 1, 2, 3)])
def test_permute_with_bad_permutation(axes):
    with pytest.raises(ValueError, match=r"permute: .*not a permutation.*\(2, 3, 4\)"):
        Tensor(np.zeros((2, 3, 4))).permute(*axes)


@pytest.mark.parametrize("kwargs", [{"start_dim": 3}, {"start_dim": -4}, {"end_dim": 5}])
def test_flatten_dim_out_of_range(kwargs):
    with pytest.raises(ValueError, match=r"flatten: .*out of range.*\(2, 3, 4\)"):
        Tensor(np.zeros((2, 3, 4))).flatten(**kwargs)


def test_flatten_start_after_end():
    with pytest.raises(ValueError, match="flatten: start_dim 2 comes after end_dim 1"):
        Tensor(np.zeros((2, 3, 4))).flatten(2, 1)


@pytest.mark.parametrize(
    "a_shape, b_shape, pattern",
    [
        ((3, 4), (5, 6), "matmul: shapes .*do not fit"),
        ((4,), (5,), "matmul: shapes .*do not fit"),
        ((2, 3, 4), (3, 5), "matmul: shapes .*do not fit"),
        ((2, 3, 4), (3, 4, 5), "matmul: batch shapes .*cannot be broadcast"),
        ((), (3,), "matmul: shapes"),
    ],
)
def test_matmul_shape_errors(a_shape, b_shape, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        Tensor(np.zeros(a_shape)) @ Tensor(np.zeros(b_shape))
    assert str(a_shape) in str(info.value) and str(b_shape) in str(info.value)


REDUCERS = {
    "sum": lambda t, axis: t.sum(axis=axis),
    "mean": lambda t, axis: t.mean(axis=axis),
    "amax": lambda t, axis: t.amax(axis=axis),
    "softmax": lambda t, axis: t.softmax(axis=axis),
    "log_softmax": lambda t, axis: t.log_softmax(axis=axis),
}


@pytest.mark.parametrize("name", REDUCERS)
@pytest.mark.parametrize("axis", [2, -3, (0, 5)])
def test_axis_out_of_range(name, axis):
    with pytest.raises(ValueError, match=rf"{name}: dim .*out of range.*\(2, 3\)"):
        REDUCERS[name](Tensor(np.zeros((2, 3))), axis)


def test_repeated_axis():
    with pytest.raises(ValueError, match="sum: repeated dim"):
        Tensor(np.zeros((2, 3))).sum(axis=(1, -1))


def test_max_of_empty_tensor():
    with pytest.raises(ValueError, match=r"max: .*empty.*\(0, 3\)"):
        Tensor(np.zeros((0, 3))).max()


def test_getitem_out_of_range():
    with pytest.raises(IndexError, match=r"getitem: .*\(2, 3\)"):
        Tensor(np.zeros((2, 3)))[5]


@pytest.mark.parametrize("method", ["nll_loss", "cross_entropy"])
@pytest.mark.parametrize(
    "scores_shape, targets, error, pattern",
    [
        ((4, 3), np.array([0, 1, 2]), ValueError, r"targets have shape \(3,\).*\(4, 3\).*\(4,\)"),
        ((4, 3), np.zeros((4, 1), dtype=int), ValueError, r"targets have shape \(4, 1\)"),
        ((4, 3), np.array([0, 1, 3, 0]), ValueError, r"class indices in \[0, 2\].*3"),
        ((4, 3), np.array([0, -1, 2, 0]), ValueError, r"class indices in \[0, 2\].*-1"),
        ((4, 3), np.array([0.0, 1.0, 2.0, 0.0]), TypeError, "integer class indices.*float64"),
        ((4, 3), Tensor([0, 1, 2, 0]), TypeError, "integer class indices.*float32"),
        ((4, 3), np.array([True, False, True, True]), TypeError, "integer class indices"),
        ((2, 4, 3), np.array([0, 1]), ValueError, r"expected scores of shape \(N, classes\)"),
    ],
)
def test_loss_target_errors(method, scores_shape, targets, error, pattern):
    scores = Tensor(np.zeros(scores_shape), requires_grad=True)
    with pytest.raises(error, match=rf"{method}: .*{pattern}"):
        getattr(scores, method)(targets)


def test_gradients_never_share_memory():
    """Each .grad is its own array, even where an op hands one gradient to several inputs,
    where a tensor keeps its grad (retain_grad) and passes it on, and for the caller's seed."""
    x = Tensor(np.ones((3, 4)), requires_grad=True)
    y = Tensor(np.ones((3, 4)), requires_grad=True)
    h = x + y
    h.retain_grad()
    z = h * 1.0 + x
    seed = np.full((3, 4), 2.0)
    z.backward(seed)
    arrays = [x.grad, y.grad, h.grad, seed]
    for i, a in enumerate(arrays):
        for b in arrays[i + 1 :]:
            assert not np.shares_memory(a, b)
    x.grad += 100
    assert np.all(y.grad == 2.0) and np.all(h.grad == 2.0) and np.all(seed == 2.0)
    leaf = Tensor(np.ones(3), requires_grad=True)
    leaf.backward(seed[0, :3])
    assert not np.shares_memory(leaf.grad, seed)


def test_ops_save_nothing_for_backward_under_no_grad(monkeypatch):
    """Under no_grad an op is told no input needs a gradient, so it skips what only backward
    would use (max-pool's winners, conv's im2col copy)."""
    from tinygrad_mnist import ops

    seen = []

    def spy(self, needs_input_grad):  # on the textbook op and on the kernels derived from it
        seen.append(needs_input_grad)
        ops.Op.__init__(self, needs_input_grad)

    monkeypatch.setattr(ops.MaxPool2d, "__init__", spy)
    x = Tensor(np.ones((1, 1, 4, 4)), requires_grad=True)
    with no_grad():
        x.max_pool2d(2)
    x.max_pool2d(2)
    assert seen == [(False,), (True,)]


# ---------------------------------------------------------------- PyTorch's meanings (issue 12)


def test_sgd_by_hand_updates_the_parameters_in_place():
    """Old main: `w -= lr * w.grad` under no_grad rebound w, leaving the model unchanged."""
    from tinygrad_mnist import nn, no_grad

    model = nn.Linear(3, 2)
    before = [p.data.copy() for p in model.parameters()]
    arrays = [p.data for p in model.parameters()]
    loss = model(Tensor(np.ones((4, 3), np.float32))).sum()
    loss.backward()
    with no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
    for p, old, array in zip(model.parameters(), before, arrays, strict=True):
        assert p.data is array  # the same array, changed in place
        np.testing.assert_allclose(p.data, old - 0.1 * p.grad)


def test_in_place_on_a_leaf_that_requires_grad_raises_as_pytorch():
    """Old main: `w -= 1` silently turned the leaf into a non-leaf."""
    w = Tensor([1.0, 2.0], requires_grad=True)
    for update in (lambda: w.__isub__(1), lambda: w.add_(1), lambda: w.zero_()):
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
            update()
    assert w.is_leaf and w.tolist() == [1.0, 2.0]


def test_in_place_methods_on_a_used_result_are_refused():
    """Its gradient would go through the new values: PyTorch refuses such cases at backward."""
    w = Tensor([1.0, 2.0], requires_grad=True)
    x = w * 2
    y = x * x  # Mul saved x for its backward
    with pytest.raises(RuntimeError, match="already used by an op of the graph"):
        x.add_(1)
    y.sum().backward()
    assert w.grad.tolist() == [8.0, 16.0]


def test_in_place_on_a_recorded_tensor_records_and_rebinds():
    w = Tensor([1.0, 2.0], requires_grad=True)
    x = w * 2
    x += 1
    x.sum().backward()
    assert x.tolist() == [3.0, 5.0] and w.grad.tolist() == [2.0, 2.0]


def test_in_place_on_plain_tensors_keeps_the_object():
    x = Tensor([1.0, 2.0, 3.0])
    same = x
    x += 1
    x *= 2
    x.sub_(Tensor([1.0, 1.0, 1.0]), alpha=2).clamp_(max=5.0)
    assert x is same and x.tolist() == [2.0, 4.0, 5.0]
    x.fill_(7).add_(1)
    assert x.tolist() == [8.0] * 3
    x.zero_()
    assert x.tolist() == [0.0] * 3
    x.copy_(Tensor([1.0, 2.0, 3.0]))
    x[x > 1] = 0
    assert x.tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(TypeError, match="can't be cast"):
        Tensor(np.arange(3)).add_(0.5)


def test_max_with_a_dim_returns_values_and_indices():
    """Old main: `_, predicted = outputs.max(1)` unpacked the per-row maxima."""
    outputs = Tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    _, predicted = outputs.max(1)
    assert predicted.dtype == np.int64 and predicted.tolist() == [1, 0]
    values, indices = outputs.max(dim=1, keepdim=True)
    assert values.shape == (2, 1) and indices.tolist() == [[1], [0]]
    four = Tensor(np.eye(4, dtype=np.float32))
    assert four.max(1).indices.tolist() == [0, 1, 2, 3]
    assert four.min(0).values.tolist() == [0.0] * 4
    assert outputs.max().item() == pytest.approx(0.9)


def test_transpose_swaps_two_dims():
    """Old main: x.transpose(0, 1) on a 2-D tensor was the identity permutation."""
    x = Tensor(np.arange(6.0).reshape(2, 3))
    assert x.transpose(0, 1).shape == (3, 2)
    np.testing.assert_array_equal(x.transpose(0, 1).data, x.data.T)
    assert Tensor(np.zeros((2, 3, 4))).transpose(0, 2).shape == (4, 3, 2)
    for old_numpy_style in ((1, 0, 2), ()):
        with pytest.raises(TypeError, match=r"transpose\(dim0, dim1\).*permute"):
            x.transpose(*old_numpy_style)


def test_a_float64_batch_into_a_float32_model_is_an_error():
    """Old main: nn.Linear(2, 2)(Tensor(np.ones((1, 2)))) silently gave a float64 output."""
    from tinygrad_mnist import nn

    with pytest.raises(TypeError, match="matmul: expected both operands to have the same dtype"):
        nn.Linear(2, 2)(Tensor(np.ones((1, 2))))
    with pytest.raises(TypeError, match="conv2d: expected both operands to have the same dtype"):
        nn.Conv2d(1, 2, 3)(Tensor(np.ones((1, 1, 5, 5))))


def test_size_is_a_method_and_dim_is_a_keyword():
    """Old main: x.size() failed with "'int' object is not callable"; sum(dim=1) a TypeError."""
    x = Tensor(np.ones((2, 3), np.float32))
    assert x.size() == (2, 3) and x.size(0) == 2 and x.size(-1) == 3
    assert x.sum(dim=1).tolist() == [3.0, 3.0]
    assert x.mean(dim=0, keepdim=True).shape == (1, 3)
    assert x.sum(axis=1, keepdims=True).shape == (2, 1)  # NumPy's spelling, as PyTorch allows
    with pytest.raises(TypeError, match="pass only dim="):
        x.sum(dim=0, axis=1)


def test_unsupported_pytorch_options_are_refused_by_name():
    x = Tensor(np.ones((1, 1, 4, 4), np.float32))
    with pytest.raises(NotImplementedError, match="ceil_mode=True is not supported"):
        x.max_pool2d(2, ceil_mode=True)
    with pytest.raises(NotImplementedError, match="count_include_pad=False"):
        x.avg_pool2d(2, count_include_pad=False)
    with pytest.raises(RuntimeError, match="CPU only"):
        x.to("cuda")
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        x.conv2d(Tensor(np.ones((1, 1, 3, 3), np.float32)), stride=2, padding="same")


def test_manual_seed_seeds_constructors_and_initialisation():
    import tinygrad_mnist as tm

    tm.manual_seed(3)
    a, la = tm.randn(3), tm.nn.Linear(2, 2).weight.data.copy()
    tm.manual_seed(3)
    b, lb = tm.randn(3), tm.nn.Linear(2, 2).weight.data.copy()
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(la, lb)
    tm.nn.init.manual_seed(3)
    np.testing.assert_array_equal(tm.randn(3).data, a.data)


def test_grad_mode_switches():
    import tinygrad_mnist as tm

    w = Tensor([1.0], requires_grad=True)

    @tm.no_grad
    def f():
        return w * 2

    assert not f().requires_grad
    with tm.no_grad():
        with tm.enable_grad():
            assert (w * 2).requires_grad
        assert not (w * 2).requires_grad
    with tm.set_grad_enabled(False):
        assert not (w * 2).requires_grad
    assert (w * 2).requires_grad


def test_writing_into_a_tensor_already_used_in_the_graph_is_refused():
    """Its gradient would flow into the new values: PyTorch's version counters refuse it too."""
    w = Tensor([1.0, 2.0], requires_grad=True)
    out = Tensor(np.zeros((3, 2), np.float32))
    out[0] = w  # a plain tensor joins the graph
    h = out.sum() * 2
    with pytest.raises(RuntimeError, match="already used in the graph"):
        out[1] = h
    with pytest.raises(RuntimeError, match="a leaf Variable|already used"):
        w[0] = h


@pytest.mark.parametrize(
    "call, error, names",
    [
        (lambda x: x.max(dim=(0, 1)), TypeError, r"x\.amax\(dims\)"),
        (lambda x: x.min(keepdim=True), TypeError, r"x\.amin\(keepdim=True\)"),
        (lambda x: x.view(np.float64), TypeError, r"\.to\(dtype\)"),
        (lambda x: x.long().mean(), TypeError, r"x\.float\(\)\.mean\(\)"),
        (lambda x: x.long().requires_grad_(), TypeError, r"\.float\(\)"),
        (lambda x: x.var(unbiased=True, correction=1), TypeError, "correction= or unbiased="),
        (lambda x: x.cuda(), RuntimeError, "CPU only"),
        (lambda x: x.avg_pool2d(2, divisor_override=3), NotImplementedError, "divisor_override"),
        (lambda x: x.norm(p=3), NotImplementedError, "p=2"),
    ],
)
def test_unsupported_spellings_name_what_to_write(call, error, names):
    x = Tensor(np.ones((1, 1, 4, 4), np.float32))
    with pytest.raises(error, match=names):
        call(x)
