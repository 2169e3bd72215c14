"""BLAS is held to one thread inside the kernels' split products, and given back after."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from tinygrad_mnist.kernels import parallel


def blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_one_thread_blas_holds_blas_to_one_thread_and_restores_it():
    if not blas_threads():
        pytest.skip("NumPy's BLAS is not visible to threadpoolctl here")
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        with parallel._one_thread_blas():
            assert blas_threads() == [1] * len(before)
        assert blas_threads() == before
        with pytest.raises(RuntimeError), parallel._one_thread_blas():
            raise RuntimeError("a failing part")
        assert blas_threads() == before


def test_one_worker_runs_blas_on_the_calling_thread_too(monkeypatch):
    """TINYGRAD_MNIST_THREADS=1 means one thread for everything, BLAS's products included."""
    if not blas_threads():
        pytest.skip("NumPy's BLAS is not visible to threadpoolctl here")
    monkeypatch.setenv("TINYGRAD_MNIST_THREADS", "1")
    seen = []
    with threadpool_limits(limits=2, user_api="blas"):
        parallel.split(4, lambda part: seen.append(blas_threads()), macs=1 << 30)
        assert blas_threads() == [2] * len(seen[0])
    assert seen == [[1] * len(seen[0])]
