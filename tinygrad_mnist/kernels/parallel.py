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
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np

from . import caches

R = TypeVar("R")

# A job costing less than this many array elements' worth of elementwise work runs in one piece:
# handing a part to another thread and getting it back (~35 us on a 2-core VM, most of it
# waking the other core) costs about as much as a hundred thousand elements. In-process A/B
# against 1 << 20: seed-cnn b64 1.10-1.16x faster, b128 1.04x; 1 << 16 lost again.
MIN_SPLIT_ELEMENTS = 1 << 18
# A BLAS multiply-add costs about this fraction of an elementwise element: one-thread OpenBLAS
# runs the ops' small, skinny products (8 x 10 x 43K, 10 x 128 x 1352) at 25-50 GFLOP/s.
# In-process A/B against 16: seed-cnn b64 1.03-1.08x, b128 1.03-1.04x; lenet-cnn 1.00x.
MACS_PER_ELEMENT = 4
# OpenBLAS runs products of at least this many multiply-adds on its own threads.
BLAS_THREADING_MACS = 1 << 18

_helpers: list[_Helper] = []  # one per extra core, started on first use
_helpers_busy = threading.Lock()  # held by the thread whose job the helpers run
_fork_hook_registered = False  # `_forget_helpers` runs in forked children once this is set
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
        if not _helpers_busy.acquire(blocking=False):
            # another thread of the program is splitting a job right now: run this one here
            return [work(slice(0, n))]
        try:
            helpers = _get_helpers(count - 1)
            for helper, part in zip(helpers, parts[1:], strict=True):
                helper.start(work, part)
            try:
                first = _run_part(work, parts[0])
            finally:
                # never leave a part running on memory the caller gets back
                done = [helper.finish() for helper in helpers]
        finally:
            _helpers_busy.release()
        for _, error in done:
            if error is not None:
                raise error
        return [first] + [result for result, _ in done]


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


class _Helper:
    """A thread that runs one part at a time, handed over with two locks.

    A ThreadPoolExecutor's submit and wait cost ~95 us a split on a 2-core VM, more than many
    of the ops' whole parts; these two lock hand-offs ~35 us, most of it waking the other core.
    """

    def __init__(self) -> None:
        self._go = threading.Lock()
        self._done = threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._task: tuple[Callable[[slice], object], slice] | None = None
        self._result: object = None
        self._error: BaseException | None = None
        threading.Thread(target=self._serve, name="tinygrad_mnist", daemon=True).start()

    def _serve(self) -> None:
        while True:
            self._go.acquire()
            assert self._task is not None
            work, part = self._task
            try:
                self._result, self._error = _run_part(work, part), None
            except BaseException as error:  # handed to the caller in finish()
                self._result, self._error = None, error
            self._task = None
            self._done.release()

    def start(self, work: Callable[[slice], object], part: slice) -> None:
        self._task = (work, part)
        self._go.release()

    def finish(self) -> tuple[Any, BaseException | None]:
        """(the part's result, its exception or None), once it is done."""
        self._done.acquire()
        result, error = self._result, self._error
        self._result = self._error = None
        return result, error


def _get_helpers(count: int) -> list[_Helper]:
    """The first `count` helpers, started when missing."""
    global _fork_hook_registered
    if not _fork_hook_registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_forget_helpers)
        _fork_hook_registered = True
    while len(_helpers) < count:
        _helpers.append(_Helper())
    return _helpers[:count]


def _forget_helpers() -> None:
    """In a forked child the helper threads are gone: start new ones when needed."""
    global _helpers_busy
    _helpers.clear()
    _helpers_busy = threading.Lock()
