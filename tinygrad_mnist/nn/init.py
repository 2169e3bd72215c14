"""Weight initialisation and the random generator that layers draw from."""

from __future__ import annotations

import math

import numpy as np

_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the generator used by layer initialisation, for reproducible models."""
    global _rng
    _rng = np.random.default_rng(seed)


def uniform(shape: tuple[int, ...], bound: float, dtype=np.float32) -> np.ndarray:
    """An array of `shape` drawn uniformly from [-bound, bound)."""
    return _rng.uniform(-bound, bound, size=shape).astype(dtype)


def fan_in_bound(fan_in: int) -> float:
    """PyTorch's default bound for Linear and Conv2d weights and biases: 1 / sqrt(fan_in).

    (kaiming_uniform with a=sqrt(5) gives exactly this bound for the weights.)
    """
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
