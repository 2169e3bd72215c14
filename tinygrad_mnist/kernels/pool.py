"""Max-pool over non-overlapping tiles (kernel == stride), without copying windows.

Split H into (OH, kh) and W into (OW, kw): a view in any memory layout, so the max is an
elementwise max over the kh*kw offsets, on arrays in the input's own layout (`layouts`,
agreement 3). Forward records which offset won each tile; backward routes each tile's gradient
there with one multiply per offset. 2x2 tiles, the common case, get a shorter path: a max
within each row, then between the rows, with three boolean winners.
Same rules as the textbook `ops.MaxPool2d`: ties go to the first maximum in reading order, a
window holding NaN outputs NaN and sends its gradient to its last NaN.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from . import parallel
from .base import Kernel
from .elementwise import relu_into


def tiles(x: np.ndarray, oh: int, ow: int, kh: int, kw: int) -> np.ndarray:
    """The view (N, C, OH, kh, OW, kw) of x (N, C, H, W) cut into non-overlapping kh x kw tiles.

    Splitting an axis in two is always a view, so writing to the tiles writes to x."""
    n, c = x.shape[:2]
    return x[:, :, : oh * kh, : ow * kw].reshape(n, c, oh, kh, ow, kw)


def _split(x_tiles: np.ndarray, out: np.ndarray, work, elements: int) -> None:
    """Run work(index) on all cores over the batch or the channels, whichever is outermost in
    memory, in cache-sized pieces (`parallel.split_array`)."""
    # x, plus about four pooled-size arrays of temporaries and results
    working_bytes = x_tiles.nbytes + 4 * out.size * max(out.itemsize, 4)
    parallel.split_array(x_tiles, work, axes=(0, 1), elements=elements, working_bytes=working_bytes)


def _same_layout(a: np.ndarray, b: np.ndarray) -> bool:
    """True when a and b (same shape) store their elements in the same order."""
    return all(
        sa == sb // b.itemsize * a.itemsize or n == 1
        for sa, sb, n in zip(a.strides, b.strides, a.shape, strict=True)
    )


class TiledMaxPool2d(Kernel, ops.MaxPool2d):
    """MaxPool2d when the windows tile the input (kernel_size == stride)."""

    kernel = "tiled"
    offset_won: np.ndarray | None = None  # uint8 offset of each window's winner (kh x kw)
    pair_winners: list[np.ndarray] | None = None  # 2x2 tiles: three boolean comparisons
    out: np.ndarray | None = None  # the pooled output, for a fused backward (`fusion`)
    mask_by_output = False  # set around such a backward: the ReLU's mask, on the pooled values
    # set before forward by `deferred`: x is the input of a ReLU that comes before this pool,
    # and the output is relu(max) (= max(relu), the ReLU's own output never made)
    relu_after = False

    @classmethod
    def applies(cls, x, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)) -> bool:
        # winners are uint8 offsets: at most 256 per window; padded pools run from the textbook
        return (
            tuple(kernel_size) == tuple(stride)
            and kernel_size[0] * kernel_size[1] <= 256
            and tuple(padding) == (0, 0)
        )

    def forward(self, x, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)):
        kh, kw = kernel_size
        n, c, h, w = x.shape
        oh, ow = h // kh, w // kw
        self.geometry = (h, w, oh, ow, kh, kw)
        self.x, self.offset_won, self.pair_winners, self.out = x, None, None, None
        x_tiles = tiles(x, oh, ow, kh, kw)
        out = np.empty_like(x_tiles[:, :, :, 0, :, 0])  # x's memory layout
        if (kh, kw) == (2, 2):
            self._max_2x2(x_tiles, out)
        else:
            self._max_tiles(x_tiles, out)
        # a max is NaN when any number is (one pass, no temporary: ~1.5x faster than isnan.any)
        if self.needs_input_grad[0] and out.dtype.kind == "f" and out.size and np.isnan(out.max()):
            self._send_nan_gradients_to_last_nan(x_tiles)
        if self.needs_input_grad[0]:
            self.out = out
        return out

    def _max_2x2(self, x_tiles, out):
        """The max of 2x2 tiles as a max within each row, then between the rows.

        Three boolean arrays say which one won each comparison (ties: the first), which is
        the first maximum in reading order; backward routes the gradient with them.
        """
        corners = [x_tiles[:, :, :, i, :, j] for i in (0, 1) for j in (0, 1)]
        want = self.needs_input_grad[0]
        picks = [np.empty_like(out, dtype=bool) for _ in range(3)] if want else None

        def part_max(part):
            if picks is None:
                # no winners wanted: the max of the two rows first, whose pixels are long runs
                # of memory in every layout but batch-last, then of the two columns
                rows = np.maximum(x_tiles[part][:, :, :, 0], x_tiles[part][:, :, :, 1])
                np.maximum(rows[..., 0], rows[..., 1], out=out[part])
                self._relu_after(out[part])
                return
            top_left, top_right, bottom_left, bottom_right = (t[part] for t in corners)
            top = np.maximum(top_left, top_right)
            bottom = np.maximum(bottom_left, bottom_right)
            right_in_top, right_in_bottom, bottom_row = (p[part] for p in picks)
            # the right one won where the row's max is not the left one (a tie keeps the left;
            # NaN windows are redone below): one strided operand instead of two
            np.not_equal(top, top_left, out=right_in_top)
            np.not_equal(bottom, bottom_left, out=right_in_bottom)
            np.greater(bottom, top, out=bottom_row)
            np.maximum(top, bottom, out=out[part])
            self._relu_after(out[part])

        _split(x_tiles, out, part_max, elements=out.size * 8)  # ~6 passes
        self.pair_winners = picks

    def _max_tiles(self, x_tiles, out):
        """The max of general kh x kw tiles, with `winner` the offset of the first maximum."""
        kh, kw = x_tiles.shape[3], x_tiles.shape[5]
        offsets = [(i, j) for i in range(kh) for j in range(kw)]
        winner = np.empty_like(out, dtype=np.uint8) if self.needs_input_grad[0] else None

        def part_max(part):
            part_tiles, part_out = x_tiles[part], out[part]
            part_winner = None if winner is None else winner[part]
            part_out[...] = part_tiles[:, :, :, 0, :, 0]
            if part_winner is not None:
                part_winner[...] = 0
            for k, (i, j) in enumerate(offsets[1:], start=1):
                v = part_tiles[:, :, :, i, :, j]
                if part_winner is not None:
                    # winner = k where v beats the max so far, as uint8 arithmetic that
                    # wraps, (k - winner) * better + winner: 20x faster than a masked copy
                    step = np.subtract(np.uint8(k), part_winner, dtype=np.uint8)
                    step *= v > part_out
                    part_winner += step
                np.maximum(part_out, v, out=part_out)
            self._relu_after(part_out)

        _split(x_tiles, out, part_max, elements=x_tiles.size * 5)  # ~5 passes per offset
        self.offset_won = winner

    def _relu_after(self, out_part: np.ndarray) -> None:
        """max(out, 0) in place, when `relu_after`; the winners stay those of x itself, which
        differ from the ReLU's output's only in windows whose max is <= 0, and those windows'
        gradient the ReLU's backward zeroes either way."""
        if self.relu_after:
            relu_into(out_part, out_part)

    def _first_wins_where_relu_zeroed(self) -> None:
        """With `relu_after`, a window whose max was <= 0 is all zeros after the ReLU, so its
        first element is its (first) maximum: its winner moves there, and the ReLU's output
        gets the very gradient that pooling it would give. (Only this unfused backward needs
        it: the ReLU's backward zeroes those windows anyway.)"""
        assert self.out is not None  # kept by a forward that wants a gradient
        zeroed = self.out == 0  # not NaN
        if self.pair_winners is not None:
            for won in self.pair_winners:
                won &= ~zeroed
        if self.offset_won is not None:
            self.offset_won[zeroed] = 0

    def _send_nan_gradients_to_last_nan(self, x_tiles):
        """Rare: rewrite the winners as `winner` offsets, the last NaN winning a NaN window."""
        kh, kw = x_tiles.shape[3], x_tiles.shape[5]
        if self.pair_winners is not None:
            right_in_top, right_in_bottom, bottom_row = self.pair_winners
            right = np.where(bottom_row, right_in_bottom, right_in_top)
            self.offset_won = (2 * bottom_row + right).astype(np.uint8)
            self.pair_winners = None
        winner = self.offset_won
        assert winner is not None  # kept by a forward that wants a gradient
        offsets = [(i, j) for i in range(kh) for j in range(kw)]
        for k, (i, j) in enumerate(offsets):
            np.copyto(winner, k, where=np.isnan(x_tiles[:, :, :, i, :, j]))

    def backward(self, grad):
        if self.relu_after:
            self._first_wins_where_relu_zeroed()
        h, w, oh, ow, kh, kw = self.geometry
        # gx has x's memory layout, so its tiles line up with x's
        fresh = np.zeros_like if (h, w) != (oh * kh, ow * kw) else np.empty_like
        gx = fresh(self.x, dtype=grad.dtype)
        grad_tiles = tiles(gx, oh, ow, kh, kw)
        if self.pair_winners is not None:
            self._route_2x2(grad, grad_tiles)
        else:
            self._route_tiles(grad, grad_tiles)
        return (gx,)

    def _masked(self, g: np.ndarray, part) -> np.ndarray:
        """g, times (pooled > 0) when `mask_by_output` (a ReLU's backward fused in, `fusion`):
        done here on each piece, in the winners' layout and in cache, because on the whole
        gradient in another layout it is a slow strided loop."""
        if not self.mask_by_output:
            return g
        assert self.out is not None  # kept by a forward that wants a gradient
        return np.multiply(g, self.out[part] > 0)

    def _route_2x2(self, grad, grad_tiles):
        """Each 2x2 window's gradient to its winner, by the three comparisons of forward."""
        assert self.pair_winners is not None  # set by a forward that kept its winners
        right_in_top, right_in_bottom, bottom_row = self.pair_winners

        # grad in the memory layout of the winners (that of x): mixed layouts make every
        # multiply below a slow strided loop
        same_layout = _same_layout(grad, bottom_row)

        def part_grad(part):
            if same_layout:
                g = grad[part]
            else:
                g = np.empty_like(bottom_row[part], dtype=grad.dtype)
                g[...] = grad[part]
            g = self._masked(g, part)
            # what a comparison's winner does not take, the loser gets: g - g * won, a
            # subtraction of floats instead of a negated mask and a multiply by bools
            to_bottom = g * bottom_row[part]
            to_top = g - to_bottom
            part_tiles = grad_tiles[part]
            for row, right_won in ((0, right_in_top), (1, right_in_bottom)):
                row_grad = to_top if row == 0 else to_bottom
                right = part_tiles[:, :, :, row, :, 1]
                np.multiply(row_grad, right_won[part], out=right)
                np.subtract(row_grad, right, out=part_tiles[:, :, :, row, :, 0])

        _split(grad_tiles, grad, part_grad, elements=grad.size * 8)

    def _route_tiles(self, grad, grad_tiles):
        """Each tile's gradient to the offset recorded in `winner`."""
        kh, kw = grad_tiles.shape[3], grad_tiles.shape[5]
        winners = self.offset_won
        assert winners is not None  # kept by a forward that wants a gradient

        def part_grad(part):
            winner = winners[part]
            g = np.empty_like(winner, dtype=grad.dtype)
            g[...] = grad[part]
            g = self._masked(g, part)
            part_tiles = grad_tiles[part]
            for i in range(kh):
                for j in range(kw):
                    np.multiply(g, winner == i * kw + j, out=part_tiles[:, :, :, i, :, j])

        _split(grad_tiles, grad, part_grad, elements=grad.size * kh * kw * 2)
