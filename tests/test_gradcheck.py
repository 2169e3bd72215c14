"""gradcheck itself, and proof that `check_op` fails when an op is wrong."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import check_op, has_torch

from tinygrad_mnist import GradcheckError, Tensor, gradcheck, ops


class BrokenSquare(ops.Op):
    """x * x with a backward that forgets the factor 2."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, grad):
        return (grad * self.x,)


class BrokenSecondInput(ops.Op):
    """a * b whose gradient for b is off by 10%, and right for a."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        return grad * self.b, grad * self.a * 1.1


class UpcastingNeg(ops.Op):
    """-x computed in float64 whatever the input dtype: a silent upcast."""

    def forward(self, x):
        return -x.astype(np.float64)

    def backward(self, grad):
        return (-grad,)


def square(x):
    return Tensor._apply(BrokenSquare, x)


def f64(*shape, seed=0, requires_grad=True):
    return Tensor(np.random.default_rng(seed).normal(size=shape), requires_grad=requires_grad)


# ---------------------------------------------------------------- correct functions pass


@pytest.mark.parametrize(
    "fn, shapes",
    [
        (lambda a: (a * a).sum(), [(3, 4)]),
        (lambda a, b: a @ b, [(3, 4), (4, 2)]),
        (lambda a, b: (a / (b * b + 1)).tanh(), [(2, 3), (3,)]),
        (lambda x, w: x.conv2d(w, padding=1).relu().max_pool2d(2), [(1, 2, 4, 4), (2, 2, 3, 3)]),
        (lambda a: a.log_softmax(axis=0), [(4, 3)]),
    ],
)
def test_passes_on_correct_functions(fn, shapes):
    inputs = [f64(*s, seed=i) for i, s in enumerate(shapes)]
    assert gradcheck(fn, inputs) is True


def test_input_that_does_not_require_grad_is_a_constant():
    a, c = f64(3), f64(3, seed=1, requires_grad=False)
    assert gradcheck(lambda a, c: a * c, [a, c])
    c32 = Tensor(np.ones(3, dtype=np.float32))  # constants may be float32
    assert gradcheck(lambda a, c: a * c, [a, c32])


def test_unused_input_has_zero_gradient():
    assert gradcheck(lambda a, b: a * 2, [f64(3), f64(2, seed=1)])


def test_inputs_and_their_grads_are_restored():
    a = f64(2, 3)
    original = a.data.copy()
    previous_grad = np.full((2, 3), 7.0)
    a.grad = previous_grad
    gradcheck(lambda a: a.exp().sum(), [a])
    np.testing.assert_array_equal(a.data, original)
    assert a.grad is previous_grad


# ---------------------------------------------------------------- wrong gradients are caught


def test_wrong_backward_raises_with_input_element_and_values():
    x = Tensor(np.array([[0.5, -1.0, 2.0], [1.5, 3.0, -0.25]]), requires_grad=True)
    with pytest.raises(GradcheckError) as info:
        gradcheck(square, [x])
    message = str(info.value)
    found = re.search(
        r"input (\d+) \(shape \(2, 3\)\), element \((\d+), (\d+)\): "
        r"analytic (\S+), numeric (\S+)",
        message,
    )
    assert found, message
    assert found.group(1) == "0"
    assert "6 of 6 gradient elements disagree" in message
    analytic, numeric = float(found.group(4)), float(found.group(5).rstrip(","))
    # the broken rule gives v*x, the truth is 2*v*x (v the projection): numeric = 2 * analytic
    assert numeric == pytest.approx(2 * analytic, rel=1e-4)
    assert abs(numeric) > 0


def test_wrong_gradient_of_second_input_names_input_1():
    a, b = f64(2, 2), f64(2, 2, seed=1)
    with pytest.raises(GradcheckError, match=r"4 of 8 .*Worst: input 1 \(shape \(2, 2\)\)"):
        gradcheck(lambda a, b: Tensor._apply(BrokenSecondInput, a, b), [a, b])


def test_raise_exception_false_returns_false():
    assert gradcheck(square, [f64(3)], raise_exception=False) is False


def test_tolerances_are_used():
    a, b = f64(2, 2), f64(2, 2, seed=1)

    def fn(a, b):
        return Tensor._apply(BrokenSecondInput, a, b)

    assert gradcheck(fn, [a, b], rtol=0.2)
    with pytest.raises(GradcheckError):
        gradcheck(fn, [a, b], rtol=0.01)


# ---------------------------------------------------------------- bad arguments


def test_refuses_float32_inputs():
    x = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    with pytest.raises(TypeError, match=r"gradcheck: input 1 \(shape \(3,\)\) has dtype float32"):
        gradcheck(lambda a, b: a * b, [f64(3), x])


def test_refuses_non_tensor_inputs():
    with pytest.raises(TypeError, match="gradcheck: input 0 is a ndarray, expected a Tensor"):
        gradcheck(lambda a: a, [np.ones(3)])


def test_refuses_when_nothing_requires_grad():
    with pytest.raises(ValueError, match="no input requires grad"):
        gradcheck(lambda a: a * 2, [f64(3, requires_grad=False)])


def test_refuses_non_tensor_output():
    with pytest.raises(TypeError, match="fn must return a Tensor, got float"):
        gradcheck(lambda a: 1.0, [f64(3)])


# ---------------------------------------------------------------- samples


def test_samples_limits_the_elements_checked():
    calls = []

    def fn(a):
        calls.append(1)
        return (a * a).sum()

    assert gradcheck(fn, [f64(10, 10)], samples=5)
    assert len(calls) == 1 + 2 * 5  # one analytic pass, two evaluations per sampled element
    calls.clear()
    assert gradcheck(fn, [f64(2, 2)], samples=50)  # more samples than elements: all of them
    assert len(calls) == 1 + 2 * 4


def test_samples_still_catch_a_wrong_gradient():
    with pytest.raises(GradcheckError, match="3 of 3 gradient elements disagree"):
        gradcheck(square, [f64(20, 20)], samples=3)


# ---------------------------------------------------------------- check_op can fail


def test_check_op_catches_a_wrong_backward():
    with pytest.raises((AssertionError, GradcheckError)):
        check_op([(3, 4)], lambda a: a * a, square)


def test_check_op_catches_a_wrong_backward_without_torch(without_torch):
    assert not has_torch()
    with pytest.raises(GradcheckError):
        check_op([(3, 4)], lambda a: a * a, square)


def test_check_op_catches_a_float32_upcast(without_torch):
    with pytest.raises(AssertionError, match="float32 inputs gave a float64 output"):
        check_op([(3,)], None, lambda a: Tensor._apply(UpcastingNeg, a))


@pytest.mark.torch
def test_check_op_catches_a_wrong_forward():
    pytest.importorskip("torch")
    with pytest.raises(AssertionError, match="forward"):
        check_op([(3, 4)], lambda a: a.exp(), lambda a: a.exp() * 1.00001)


@pytest.mark.torch
def test_check_op_catches_a_wrong_but_self_consistent_gradient():
    """An op whose backward is right for its own (wrong) forward: only torch can tell."""
    pytest.importorskip("torch")
    with pytest.raises(AssertionError, match="forward"):
        check_op([(3, 4)], lambda a: a.sigmoid(), lambda a: a.tanh())
