"""Which implementations may run: the kernel mode and the float32 precision.

- Kernel mode "fast" (the default) lets the table in `kernels.table` replace a textbook op by a
  faster kernel where one applies; "reference" runs every op as written in `ops.py`. Set it for
  the process with TINYGRAD_MNIST_KERNELS=reference, or for a block with
  `with tinygrad_mnist.kernels.use("reference"):`.
- Float32 precision "high" (the default) allows kernels that trade a little accuracy for speed
  (Winograd convolution); "highest" keeps every result as accurate as a direct computation, as
  PyTorch's `torch.set_float32_matmul_precision` does for its own fast paths.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

MODES = ("fast", "reference")
PRECISIONS = ("highest", "high")


def _mode_from_environment() -> str:
    setting = os.environ.get("TINYGRAD_MNIST_KERNELS", "").strip().lower() or "fast"
    if setting not in MODES:
        raise ValueError(f"TINYGRAD_MNIST_KERNELS must be 'fast' or 'reference', got {setting!r}")
    return setting


_mode = _mode_from_environment()
_precision = "high"


def mode() -> str:
    """The kernel mode now in force: "fast" or "reference"."""
    return _mode


@contextlib.contextmanager
def use(new_mode: str) -> Iterator[None]:
    """Run the block with kernel mode `new_mode` ("fast" or "reference"), then restore it.

    >>> with use("reference"):
    ...     loss = model(x).cross_entropy(y)   # every op as the textbook writes it
    """
    global _mode
    if new_mode not in MODES:
        raise ValueError(f"kernels.use: mode must be 'fast' or 'reference', got {new_mode!r}")
    previous, _mode = _mode, new_mode
    try:
        yield
    finally:
        _mode = previous


def set_float32_precision(precision: str) -> None:
    """Precision "high" (default): allow kernels that trade a little accuracy for speed (Winograd);
    "highest": only kernels as accurate as a direct computation."""
    global _precision
    if precision not in PRECISIONS:
        raise ValueError(f"set_float32_precision: expected 'highest' or 'high', got {precision!r}")
    _precision = precision


def get_float32_precision() -> str:
    """The float32 precision now in force: "highest" or "high"."""
    return _precision
