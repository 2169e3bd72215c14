"""The CPU's cache sizes, read from the machine the kernels run on.

Kernels that stream through large arrays do it in pieces that fit a core's L2 cache, so that a
chain of elementwise steps reads and writes main memory once instead of once per step. The
right piece size differs between machines (256 KiB to 2 MiB of L2 per core on today's x86), so
it is read here rather than fixed: Linux reports it in sysfs; elsewhere, or when it is hidden,
a conservative 256 KiB is assumed.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

FALLBACK_L2_BYTES = 256 << 10
CACHE_INFO = Path("/sys/devices/system/cpu/cpu0/cache")


def parse_size(text: str) -> int:
    """Bytes in a sysfs cache size such as "2048K", "1M" or "65536"."""
    text = text.strip().upper()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


@lru_cache(maxsize=1)
def l2_bytes() -> int:
    """The L2 (per-core) cache size of CPU 0 in bytes, or FALLBACK_L2_BYTES when unknown."""
    try:
        for index in sorted(CACHE_INFO.glob("index*")):
            if (index / "level").read_text().strip() == "2":
                if (index / "type").read_text().strip() in ("Unified", "Data"):
                    return parse_size((index / "size").read_text())
    except (OSError, ValueError):
        pass
    return FALLBACK_L2_BYTES


# The least a piece holds, whatever the cache. Every NumPy call on a piece costs a few
# microseconds before its loop starts, and with two threads each call also waits its turn
# for the interpreter: pieces of half a 2 MiB L2 made seed-cnn's batch-128 step 9% slower than
# pieces of 4 MiB, and lenet-cnn's 1.5-2% (in-process A/B, `benchmarks/bench_vs_torch.py` models).
MIN_PIECE_BYTES = 4 << 20


def piece_bytes() -> int:
    """How many bytes one piece of a chain of elementwise steps may touch: half of L2, so the
    chain runs in cache, but no less than MIN_PIECE_BYTES.

    Half, because the core's L2 also holds the code's other data and the lines that the
    hardware prefetcher brings in ahead of the loop.
    """
    return max(l2_bytes() // 2, MIN_PIECE_BYTES)


def elements_per_piece(arrays: int, itemsize: int = 4) -> int:
    """How many elements of each of `arrays` arrays fit together in one piece (`piece_bytes`)."""
    return max(4096, piece_bytes() // (arrays * itemsize))
