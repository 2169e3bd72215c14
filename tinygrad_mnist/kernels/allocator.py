"""Keep freed memory in the process, so big arrays don't pay for fresh pages every step.

A training step allocates and frees the same large arrays (im2col patches, conv gradients) over
and over. By default glibc gives any allocation above 128 KiB its own mmap and returns it to
the kernel when freed, so every step faults in tens of MB of fresh zeroed pages again; on the
2-core machines we measure on that costs about as much as the GEMMs themselves (a lenet-cnn
step: ~75 ms -> ~62 ms with this tuning, benchmarks/bench_vs_torch.py). Raising glibc's mmap
and trim thresholds makes freed blocks reusable instead. Peak memory does not grow; memory is
just not handed back to the kernel between steps.

Importing the package changes nothing: the training entry points (`fit` and the
`tinygrad-mnist` command) call `tune_allocator()` when they start, because they are the programs
that run the same step thousands of times. A user's own loop can call it too. It is a
process-wide setting: it stays on for the rest of the process.

Linux/glibc only; elsewhere, or with TINYGRAD_MNIST_MALLOC_TUNING=0, nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def tune_allocator() -> bool:
    """Raise glibc's mmap/trim thresholds for this process; True when applied."""
    if os.environ.get("TINYGRAD_MNIST_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith(
        "linux"
    ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, 1 << 30)
        and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
        and mallopt(_M_TOP_PAD, 64 << 20)
    )
