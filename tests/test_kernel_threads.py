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


@pytest.mark.parametrize("k", [1, 2, 7, 64])
def test_inner_split_product_equals_matmul(monkeypatch, k):
    """Each core's share of the inner dimension, added up, is the product (to rounding)."""
    import numpy as np

    monkeypatch.setattr(parallel, "MIN_SPLIT_ELEMENTS", 0)
    monkeypatch.setattr(parallel, "BLAS_THREADING_MACS", 0)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, k)), rng.standard_normal((k, 3))
    np.testing.assert_allclose(parallel.matmul_inner_split(a, b), a @ b, rtol=1e-12, atol=1e-12)


def test_linear_forward_split_by_inner_dimension_equals_matmul(monkeypatch):
    """x @ W^T with W^T column-major (a Linear layer) takes the inner split: same values."""
    import numpy as np

    from tinygrad_mnist.kernels.matmul import ThreadedMatMul

    monkeypatch.setattr(parallel, "MIN_SPLIT_ELEMENTS", 0)
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((6, 40)), rng.standard_normal((4, 40))
    seen = []
    inner_split = parallel.matmul_inner_split
    monkeypatch.setattr(
        parallel, "matmul_inner_split", lambda a, b: seen.append(1) or inner_split(a, b)
    )
    out = ThreadedMatMul((True, True)).forward(x, w.T)
    assert seen, "the Linear layer's product did not take the inner split"
    np.testing.assert_allclose(out, x @ w.T, rtol=1e-12, atol=1e-12)
