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


@pytest.mark.parametrize("batch, inner_split", [(6, True), (40, False)])
def test_linear_forward_split_by_inner_dimension_equals_matmul(monkeypatch, batch, inner_split):
    """x @ W^T with W^T column-major (a Linear layer) takes the inner split when its inner
    size dwarfs the batch, and cuts the batch otherwise: the same values either way."""
    import numpy as np

    from tinygrad_mnist.kernels.matmul import ThreadedMatMul

    monkeypatch.setattr(parallel, "MIN_SPLIT_ELEMENTS", 0)
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((batch, 200)), rng.standard_normal((4, 200))
    seen = []
    original = parallel.matmul_inner_split
    monkeypatch.setattr(
        parallel, "matmul_inner_split", lambda a, b: seen.append(1) or original(a, b)
    )
    out = ThreadedMatMul((True, True)).forward(x, w.T)
    assert bool(seen) == inner_split
    np.testing.assert_allclose(out, x @ w.T, rtol=1e-12, atol=1e-12)


def _force_split(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_SPLIT_ELEMENTS", 0)
    monkeypatch.setattr(parallel, "workers", lambda: 2)


def test_split_returns_every_part_in_order(monkeypatch):
    _force_split(monkeypatch)
    assert parallel.split(10, lambda part: (part.start, part.stop), elements=1) == [(0, 5), (5, 10)]


def test_a_helper_part_error_reaches_the_caller_and_the_helper_lives_on(monkeypatch):
    _force_split(monkeypatch)

    def work(part):
        if part.start > 0:
            raise ValueError("helper part failed")
        return part.start

    with pytest.raises(ValueError, match="helper part failed"):
        parallel.split(4, work, elements=1)
    assert parallel.split(4, lambda part: part.start, elements=1) == [0, 2]


def test_a_failing_first_part_still_waits_for_the_helper(monkeypatch):
    """The caller gets its exception only once the helper's part is done: no part may still
    be writing to memory the caller then reuses."""
    import time

    _force_split(monkeypatch)
    finished = []

    def work(part):
        if part.start == 0:
            raise KeyError("first part failed")
        time.sleep(0.05)
        finished.append(part.start)

    with pytest.raises(KeyError):
        parallel.split(2, work, elements=1)
    assert finished == [1]


def _split_in_child(queue):
    queue.put(parallel.split(6, lambda part: part.stop - part.start, elements=1))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork on this platform")
def test_a_forked_child_starts_its_own_helpers(monkeypatch):
    """After a fork the parent's helper threads do not exist in the child; its first split
    must start new ones rather than wait forever on the old."""
    import multiprocessing

    _force_split(monkeypatch)
    parallel.split(2, lambda part: None, elements=1)  # the parent's helper now exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_split_in_child, args=(queue,))
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung in parallel.split")
    assert queue.get(timeout=5) == [3, 3]


def test_splits_from_two_threads_at_once_both_finish(monkeypatch):
    """Two threads of a program (a threaded web server, say) splitting at the same time: one
    gets the helpers, the other runs its job in one piece; both get every part's result."""
    import threading

    _force_split(monkeypatch)
    results: dict[int, list] = {}
    start = threading.Barrier(2)

    def caller(k):
        start.wait()
        for _ in range(200):
            results[k] = parallel.split(
                8, lambda part: list(range(part.start, part.stop)), elements=1
            )

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for k in range(2):
        assert sum(results[k], []) == list(range(8))
