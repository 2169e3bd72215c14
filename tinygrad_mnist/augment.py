"""Data augmentation for training batches: functions `(x, rng) -> x'` that `fit(augment=...)`
applies to each batch, with a generator seeded per step (so runs stay reproducible).

Kept apart from data.py (which reads and prepares MNIST): these change images on the fly.
"""

from __future__ import annotations

import numpy as np


def random_shifts(x: np.ndarray, rng: np.random.Generator, max_shift: int = 2) -> np.ndarray:
    """Move each image of x (N, C, H, W) by its own random whole-pixel offset, up to
    `max_shift` pixels each way, filling the uncovered border with the image's background (its
    smallest value: 0 for raw pixels, the standardised black for normalised ones).

    A shifted digit is still the same digit: the network learns not to depend on the exact
    position (MNIST digits are centred by their centre of mass, only to within a pixel or two).
    """
    if x.ndim != 4:
        raise ValueError(f"random_shifts: expected images of shape (N, C, H, W), got {x.shape}")
    if max_shift == 0 or len(x) == 0:
        return x.copy()
    n, c, h, w = x.shape
    m = max_shift
    background = x.min(axis=(1, 2, 3))
    padded = np.empty((n, c, h + 2 * m, w + 2 * m), dtype=x.dtype)
    padded[...] = background[:, None, None, None]
    padded[:, :, m : m + h, m : m + w] = x
    dy = np.asarray(rng.integers(-m, m + 1, size=n))
    dx = np.asarray(rng.integers(-m, m + 1, size=n))
    rows = (np.arange(h)[None, :] + m - dy[:, None])[:, None, :, None]  # (n, 1, h, 1)
    cols = (np.arange(w)[None, :] + m - dx[:, None])[:, None, None, :]  # (n, 1, 1, w)
    return padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None], rows, cols]
