"""Optimizer updates in place, across the cores, a cache-sized piece at a time: the fast twin
of `optim.Adam`'s update.

The textbook update in `optim.Adam.step` makes a fresh array for every term; on lenet-cnn's
1.2 M parameters those ten passes over memory cost more than the arithmetic. This kernel does
them in place with one scratch array, m and v never leaving their buffers, each core taking a
share of the elements, and each core working through its share in pieces that fit its L2
cache (`caches`), so the ten steps read and write main memory once. `optim.Adam` uses it in
kernel mode "fast"; `tests/test_optim.py` runs both ways.
"""

from __future__ import annotations

import numpy as np

from . import caches, parallel

# the arrays one piece touches: parameter, gradient, m, v and the scratch
ARRAYS_PER_PIECE = 5


def adam_update_(data, g, m, v, b1, b2, step_size, root_correction2, eps) -> None:
    """data -= step_size * m / (sqrt(v) / root_correction2 + eps), after m and v take g in."""
    if not (data.flags.c_contiguous and m.flags.c_contiguous and v.flags.c_contiguous):
        _update(data, g, m, v, b1, b2, step_size, root_correction2, eps)
        return
    if g.shape != data.shape or not g.flags.c_contiguous:
        g = np.ascontiguousarray(np.broadcast_to(g, data.shape))  # data's memory order
    flat = [a.reshape(-1) for a in (data, g, m, v)]
    piece = caches.elements_per_piece(ARRAYS_PER_PIECE, data.itemsize)

    def update(span: slice) -> None:
        p_data, p_g, p_m, p_v = (a[span] for a in flat)
        _update(p_data, p_g, p_m, p_v, b1, b2, step_size, root_correction2, eps)

    # ~10 passes, each piece's done in cache
    parallel.split_in_pieces(data.size, piece, update, elements=data.size * 6)


def _update(data, g, m, v, b1, b2, step_size, root_correction2, eps) -> None:
    """The update on whole arrays, in place, with one scratch array."""
    scratch = np.empty_like(m)
    np.multiply(g, 1 - b1, out=scratch)
    m *= b1
    m += scratch
    np.multiply(g, g, out=scratch)
    scratch *= 1 - b2
    v *= b2
    v += scratch
    if step_size == 0:  # lr 0 (a warm-up's first step): m and v move, the weights don't
        return
    # step_size * m / (sqrt(v) / rc2 + eps) = m / ((sqrt(v) + eps * rc2) / (step_size * rc2)):
    # the two scalings folded into one, a pass less over memory
    np.sqrt(v, out=scratch)
    scratch += eps * root_correction2
    scratch *= 1 / (step_size * root_correction2)
    np.divide(m, scratch, out=scratch)
    data -= scratch
