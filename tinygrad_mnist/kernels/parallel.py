"""Run the parts of a batch on all CPU cores at once.

NumPy does copies and elementwise arithmetic on one core, and BLAS spreads each product over
all cores but waits on memory when the products are small. Giving each core its own share of
the batch, with a one-thread BLAS inside, keeps every core busy through the whole op.

All of the ops' large matrix products run this way, never on BLAS's own threads: after a
threaded product, OpenBLAS keeps its idle threads spinning for about 0.1 s, and in a training
loop, where the next product always comes sooner, they never stop and take a core from
everything else (lenet-cnn at batch 64: 54 ms a step with BLAS threads, 46 ms with one-thread
BLAS everywhere, and less once the ops split their batches here).

NumPy releases the GIL inside ufunc loops, copies and BLAS calls, so plain threads run in
parallel. Set TINYGRAD_MNIST_THREADS=1 to run everything on the calling thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from typing import TypeVar

import numpy as np

from . import caches

R = TypeVar("R")

# A job costing less than this many array elements' worth of elementwise work runs in one piece:
# handing a part to another thread and getting it back costs about as much as a few hundred
# thousand elements (seed-cnn, whose ops are that small, trains faster unsplit).
MIN_SPLIT_ELEMENTS = 1 << 20
# A BLAS multiply-add costs about this fraction of an elementwise element.
MACS_PER_ELEMENT = 16
# OpenBLAS runs products of at least this many multiply-adds on its own threads.
BLAS_THREADING_MACS = 1 << 18

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_blas_libraries: list | None = None  # threadpoolctl's controllers of the BLAS libraries
_inside = threading.local()  # set while a thread runs a part: parts never split again


def workers() -> int:
    """How many parts a batch is cut into: the usable cores, or TINYGRAD_MNIST_THREADS."""
    setting = os.environ.get("TINYGRAD_MNIST_THREADS", "").strip()
    if setting:
        try:
            return max(1, int(setting))
        except ValueError:
            raise ValueError(
                f"TINYGRAD_MNIST_THREADS must be a positive integer, got {setting!r}"
            ) from None
    return _usable_cores()


@lru_cache(maxsize=1)
def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS and Windows have no affinity call
        return os.cpu_count() or 1


@contextmanager
def _one_thread_blas() -> Iterator[None]:
    """A context in which BLAS runs on the calling thread only.

    threadpoolctl finds the BLAS libraries once; each entry then sets and restores their
    thread counts directly (~5 us, where a `threadpoolctl.limit` takes ~15 us: it runs
    around every large product, a dozen times in a training step).
    """
    global _blas_libraries
    if _blas_libraries is None:
        from threadpoolctl import ThreadpoolController

        controllers = ThreadpoolController().lib_controllers
        _blas_libraries = [lib for lib in controllers if lib.user_api == "blas"]
    saved = [(lib, lib.num_threads) for lib in _blas_libraries]
    for lib, _ in saved:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, threads in saved:
            lib.set_num_threads(threads)


def split(n: int, work: Callable[[slice], R], *, elements: int = 0, macs: int = 0) -> list[R]:
    """`work(part)` for consecutive parts of range(n), one per core, run at the same time.

    Returns the results in order. `work` must only write to memory that belongs to its part.
    `elements` and `macs` tell the size of the whole job: array elements of elementwise work
    and multiply-adds of matrix products. A small job runs in one piece, here. While a job
    with products runs, BLAS is held to one thread, so the parts don't fight over the cores.
    """
    small = elements + macs // MACS_PER_ELEMENT < MIN_SPLIT_ELEMENTS
    if (small and macs < BLAS_THREADING_MACS) or getattr(_inside, "active", False):
        return [work(slice(0, n))]  # the common small case, at the least cost
    cores = workers()
    one_thread_blas = _one_thread_blas() if macs >= BLAS_THREADING_MACS else nullcontext()
    if small or cores == 1:  # TINYGRAD_MNIST_THREADS=1: BLAS on this thread too
        with one_thread_blas:
            return [work(slice(0, n))]
    count = max(1, min(n, cores))
    bounds = [n * i // count for i in range(count + 1)]
    parts = [slice(bounds[i], bounds[i + 1]) for i in range(count)]
    with one_thread_blas:
        if count == 1:
            return [work(parts[0])]
        pool = _get_pool(count - 1)
        futures = [pool.submit(_run_part, work, part) for part in parts[1:]]
        try:
            first = _run_part(work, parts[0])
        finally:
            wait(futures)  # never leave a part running on memory the caller gets back
        return [first] + [f.result() for f in futures]


def split_array(
    x: np.ndarray,
    work: Callable[[tuple[slice, ...]], None],
    *,
    axes: tuple[int, ...] = (0,),
    elements: int = 0,
    working_bytes: int = 0,
) -> None:
    """`split` over whichever of x's `axes` is outermost in its memory; `work(index)` gets the
    index (slices) of its part of x, which selects the same part of any array sharing x's
    leading axes.

    Cutting the outermost axis gives each core whole runs of memory: a batch-last (C, H, W, N)
    array is cut by channels, not into half-length runs of N. When that axis is also outermost
    of all, each core hands its part to `work` in pieces of `caches.piece_bytes`, with
    `working_bytes` what the whole job keeps in memory, temporaries included: a chain of
    elementwise steps on a piece then runs in the cache and reads and writes main memory once.
    """
    axis = max(axes, key=lambda a: abs(x.strides[a]))
    lead = (slice(None),) * axis
    n = x.shape[axis]
    piece = n
    if working_bytes and abs(x.strides[axis]) == max(abs(s) for s in x.strides):
        piece = max(1, caches.piece_bytes() * n // working_bytes)
    split_in_pieces(n, piece, lambda span: work((*lead, span)), elements=elements)


def split_in_pieces(
    n: int, piece: int, work: Callable[[slice], None], *, elements: int = 0
) -> None:
    """`split` of range(n), each core handing its part to `work` `piece` items at a time."""

    def in_pieces(part: slice) -> None:
        for start in range(part.start, part.stop, piece):
            work(slice(start, min(start + piece, part.stop)))

    split(n, in_pieces, elements=elements)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b as np.matmul; a large 2-D product is split across the cores.

    The split is by rows of a or by columns of b, whichever are more, so each core reads its
    own share of the larger operand.
    """
    if a.ndim != 2 or b.ndim != 2:
        big = a.size * b.shape[-1] >= BLAS_THREADING_MACS
        with _one_thread_blas() if big else nullcontext():
            return np.matmul(a, b)
    m, n = a.shape[0], b.shape[1]
    out = np.empty((m, n), dtype=np.result_type(a, b))

    def rows(part: slice) -> None:
        np.matmul(a[part], b, out=out[part])

    def columns(part: slice) -> None:
        np.matmul(a, b[:, part], out=out[:, part])

    split(max(m, n), rows if m >= n else columns, macs=m * a.shape[1] * n)
    return out


def matmul_inner_split(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for 2-D a and b, each core multiplying its share of the inner dimension, then the
    shares added: for a product whose inner size dwarfs the others (a Linear layer's forward,
    64 x 9216 times 9216 x 128), where cutting rows or columns leaves each core a skinnier one."""
    k = a.shape[1]

    def share(part: slice) -> np.ndarray:
        return np.matmul(a[:, part], b[part])

    parts = split(k, share, macs=a.shape[0] * k * b.shape[1])
    return parts[0] if len(parts) == 1 else sum(parts[1:], start=parts[0])


def _run_part(work: Callable[[slice], R], part: slice) -> R:
    _inside.active = True
    try:
        return work(part)
    finally:
        _inside.active = False


def _get_pool(helpers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size < helpers:
        _pool = ThreadPoolExecutor(helpers, thread_name_prefix="tinygrad_mnist")
        _pool_size = helpers
    return _pool
