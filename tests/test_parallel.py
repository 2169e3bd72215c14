"""parallel.split and parallel.matmul: the same results as one thread, in order, errors raised."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tinygrad_mnist.kernels import parallel

BIG = 1 << 30  # elements: a job always worth splitting


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setenv("TINYGRAD_MNIST_THREADS", "2")


def test_parts_cover_the_range_in_order_on_two_threads(two_cores):
    threads = set()

    def work(part):
        threads.add(threading.get_ident())
        return (part.start, part.stop)

    assert parallel.split(7, work, elements=BIG) == [(0, 3), (3, 7)]
    assert len(threads) == 2


def test_small_jobs_and_one_thread_run_here(two_cores, monkeypatch):
    here = threading.get_ident()
    assert parallel.split(8, lambda part: threading.get_ident(), elements=10) == [here]
    monkeypatch.setenv("TINYGRAD_MNIST_THREADS", "1")
    assert parallel.split(8, lambda part: (part.start, part.stop), elements=BIG) == [(0, 8)]


def test_a_part_inside_a_part_does_not_split_again(two_cores):
    inner = parallel.split(
        4, lambda part: parallel.split(6, lambda p: (p.start, p.stop), elements=BIG), elements=BIG
    )
    assert inner == [[(0, 6)], [(0, 6)]]


def test_an_error_in_a_helper_part_reaches_the_caller(two_cores):
    def work(part):
        if part.start > 0:
            raise ValueError("second part failed")
        return part

    with pytest.raises(ValueError, match="second part failed"):
        parallel.split(4, work, elements=BIG)


def test_bad_thread_setting_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TINYGRAD_MNIST_THREADS", "many")
    with pytest.raises(ValueError, match="TINYGRAD_MNIST_THREADS must be a positive integer"):
        parallel.workers()


@pytest.mark.parametrize(
    "a_shape, b_shape",
    [
        ((300, 200), (200, 50)),
        ((3, 4), (4, 5)),
        ((1, 900), (900, 400)),
        ((0, 5), (5, 3)),
        ((4, 70, 60), (60, 80)),
    ],
)
def test_matmul_equals_numpy(a_shape, b_shape, two_cores):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    np.testing.assert_allclose(parallel.matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    assert parallel.matmul(a32, b32).dtype == np.float32
    np.testing.assert_allclose(parallel.matmul(a.T.copy().T, b), a @ b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["seed-cnn", "lenet-cnn"])
def test_a_training_step_is_the_same_on_one_or_two_threads(name, monkeypatch):
    """Splitting the batch changes nothing but the speed."""
    from tinygrad_mnist import Tensor
    from tinygrad_mnist.models import build_model
    from tinygrad_mnist.nn.functional import nll_loss
    from tinygrad_mnist.nn.init import manual_seed

    x = np.random.default_rng(1).random((8, 1, 28, 28))
    grads = []
    for threads in ("1", "2"):
        monkeypatch.setenv("TINYGRAD_MNIST_THREADS", threads)
        monkeypatch.setattr(parallel, "MIN_SPLIT_ELEMENTS", 1)
        manual_seed(0)
        model = build_model(name).double()
        nll_loss(model(Tensor(x)), np.arange(8) % 10).backward()
        grads.append([p.grad for p in model.parameters()])
    for one, two in zip(*grads, strict=True):
        np.testing.assert_allclose(two, one, rtol=1e-12, atol=1e-14)
