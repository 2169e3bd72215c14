"""Optimizer updates in place, across the cores: the fast twin of `optim.Adam`'s update.

The textbook update in `optim.Adam.step` makes a fresh array for every term; on lenet-cnn's
1.2 M parameters those ten passes over memory cost more than the arithmetic. This kernel does
them in place with one scratch array, m and v never leaving their buffers, each core taking a
share of the rows. `optim.Adam` uses it in kernel mode "fast"; `tests/test_optim.py` runs
both ways.
"""

from __future__ import annotations

import numpy as np

from . import parallel


def adam_update_(data, g, m, v, b1, b2, step_size, root_correction2, eps) -> None:
    """data -= step_size * m / (sqrt(v) / root_correction2 + eps), after m and v take g in."""

    def update(part) -> None:
        p_m, p_v, p_g = m[part], v[part], g[part]
        scratch = np.empty_like(p_m)
        np.multiply(p_g, 1 - b1, out=scratch)
        p_m *= b1
        p_m += scratch
        np.multiply(p_g, p_g, out=scratch)
        scratch *= 1 - b2
        p_v *= b2
        p_v += scratch
        np.sqrt(p_v, out=scratch)
        scratch /= root_correction2
        scratch += eps
        np.divide(p_m, scratch, out=scratch)
        scratch *= step_size
        data[part] -= scratch

    if data.ndim == 0:
        update(...)  # a 0-d parameter: all of it
    else:
        parallel.split(len(data), update, elements=data.size * 6)  # ~10 passes
