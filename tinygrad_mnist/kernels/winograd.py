"""Winograd F(4x4, 3x3): a stride-1 3x3 convolution with 4x fewer multiplies than im2col.

Cut the output into 4x4 tiles. Each tile depends on one 6x6 patch d of the input (patches start
every 4 pixels, so neighbours overlap by 2). For one input and one output channel,

    tile = A^T [ (G w G^T) * (B^T d B) ] A        (* is elementwise, over 6x6 numbers)

with the constant matrices below (interpolation points 0, 1, -1, 2, -2 and infinity; Lavin and
Gray, "Fast Algorithms for Convolutional Neural Networks", 2015). The elementwise product takes
36 multiplies where the direct 3x3 correlation of a 4x4 tile takes 144. Summed over input
channels, each of the 36 positions p of the product is a matrix product:

    M[p] = V[p] @ U[p],   V[p]: (tiles, C) transformed patches,  U[p]: (C, O) transformed weights

so a convolution becomes 36 small GEMMs plus the transforms, which are products with B^T, G
and A^T along both patch axes.

Everything is linear, so backward is the same machinery read in reverse:
    dM[p] = (A (x) A) applied to the output gradient's tiles
    dU[p] = V[p]^T @ dM[p]   ->  d/dweight = (G (x) G)^T dU
    dV[p] = dM[p] @ U[p]^T   ->  d/dpatches = (B (x) B) dV, overlapping patches added up

Arrays here are channels-last (N, H, W, C), as the fast convolutions keep them (`layouts`);
`WinogradConv2d` at the end is the kernel that the table uses.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from . import caches, parallel
from .convolution import FastConv2d, read_only_view
from .elementwise import relu_into

TILE = 4  # output pixels per tile side
PATCH = TILE + 2  # input pixels per patch side (a 3x3 kernel adds 2)

_BT = np.array(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    dtype=np.float64,
)
_G = np.array(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    dtype=np.float64,
)
_AT = np.array(
    [
        [1, 1, 1, 1, 1, 0],
        [0, 1, -1, 2, -2, 0],
        [0, 1, 1, 4, 4, 0],
        [0, 1, -1, 8, -8, 1],
    ],
    dtype=np.float64,
)
# the position whose column of A^T (x) A^T is all ones: adding the bias to M there adds it to
# every output pixel, at 1/16 of the cost of adding it to the output
_BIAS_POSITION = int(np.flatnonzero((np.kron(_AT, _AT) == 1).all(axis=0))[0])

# With one input channel the im2col GEMM is tiny and the transforms cost more than the
# multiplies they save; from two channels on Winograd is faster at every output channel count
# measured (`python benchmarks/conv2d_timing.py --algorithms`: 1-64 in, 4-64 out channels).
MIN_IN_CHANNELS = 2


class Transforms(NamedTuple):
    """The transform matrices in one dtype."""

    data: np.ndarray  # B^T, (6, 6): patch -> Winograd domain, on both sides
    weight: np.ndarray  # G (x) G, (36, 9): 3x3 kernel -> Winograd domain
    output: np.ndarray  # A^T, (4, 6): Winograd domain -> 4x4 output tile, on both sides


@lru_cache(maxsize=None)
def transforms(dtype: np.dtype) -> Transforms:
    """The transform matrices in `dtype` (built once per dtype)."""
    return Transforms(_BT.astype(dtype), np.kron(_G, _G).astype(dtype), _AT.astype(dtype))


def _both_sides(m: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(m (x) m) @ x for x (k*k, ...) -> (r*r, ...): m applied to both patch axes.

    Two products with m (r x k) cost 2k multiply-adds per output where one with the
    Kronecker product (r*r x k*k) costs k*k: lenet-cnn's second conv at batch 64 takes
    4.4 / 9.0 ms forward / backward this way, 6.6 / 11.0 ms with the Kronecker product."""
    r, k = m.shape
    first = (m @ x.reshape(k, -1)).reshape(r, k, -1)  # along the patch rows
    return np.matmul(m, first).reshape(r * r, -1)  # along the columns, row by row


class Saved(NamedTuple):
    """What backward needs from forward."""

    patches: list[np.ndarray] | None  # V per batch chunk: (36, tiles, C); None: no d/dweight
    weights_t: np.ndarray  # U^T, (36, O, C), C-ordered: NumPy's batched matmul runs a
    # transposed view ~1.7x slower than a C-ordered operand
    input_shape: tuple[int, int, int, int]  # (N, H, W, C) of the (padded) input
    tiles: tuple[int, int]  # tile rows and columns
    chunks: list[slice]  # the batch chunks, see `_chunks`


# Working on a few images at a time keeps every intermediate array in the CPU's caches, and the
# chunks are shared out among the cores (`parallel.split`): lenet-cnn's second conv at batch 64,
# forward / backward, whole batch on one thread 9.9 / 16.7 ms, 1 MiB chunks on 2 cores 4.4 / 8.5
# ms. The best size follows the core's L2 cache: a chunk's largest Winograd-domain array takes
# half of it, the chunk's other arrays the rest (with 2 MiB of L2, one thread, a busy machine:
# chunks of L2 / 4, L2 / 2 and L2 took 11.1 / 17.5, 11.2 / 16.2 and 14.9 / 18.6 ms).
CHUNK_BYTES = caches.l2_bytes() // 2


def _chunks(n: int, th: int, tw: int, channels: int, itemsize: int) -> list[slice]:
    """Batch slices whose largest Winograd-domain array, (36, tiles, channels), fits CHUNK_BYTES."""
    per_image = PATCH * PATCH * th * tw * channels * itemsize
    size = max(1, min(n, CHUNK_BYTES // per_image))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _tile_counts(h: int, w: int) -> tuple[int, int]:
    """Tiles per column and row for an (h, w) input: enough 4x4 tiles to cover the output."""
    return -(-(h - 2) // TILE), -(-(w - 2) // TILE)


def forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    keep_patches: bool = True,
    relu_input: bool = False,
) -> tuple[np.ndarray, Saved]:
    """Correlate x (N, H, W, C) with weight (O, C, 3, 3); returns (out (N, H-2, W-2, O), saved).

    `keep_patches=False` drops the transformed input, which only the weight gradient needs.
    `relu_input`: correlate max(x, 0) instead, each chunk's ReLU done in cache (`deferred`).
    """
    n, h, w, c = x.shape
    o = weight.shape[0]
    th, tw = _tile_counts(h, w)
    covered_h, covered_w = TILE * th + 2, TILE * tw + 2
    if (covered_h, covered_w) != (h, w):
        # the last tiles hang over the edge: give them zeros to read
        grown = np.zeros((n, covered_h, covered_w, c), dtype=x.dtype)
        grown[:, :h, :w] = x
        x = grown
    mats = transforms(np.result_type(x, weight))
    u = parallel.matmul(mats.weight, weight.transpose(2, 3, 1, 0).reshape(9, c * o))
    u = u.reshape(-1, c, o)
    out = np.empty((n, TILE * th, TILE * tw, o), dtype=mats.data.dtype)
    chunks = _chunks(n, th, tw, max(c, o), out.itemsize)

    def run(part: slice) -> list[np.ndarray]:
        kept = []  # V of each chunk, when the weight gradient will need it
        for chunk in chunks[part]:
            images = x[chunk]
            if relu_input:  # into a copy: x is the ReLU's input, which its output may need
                images = relu_into(images, np.empty_like(images))
            v = _transform_input(images, mats.data, th, tw)
            m = np.matmul(v, u)  # (36, tiles, O): 36 GEMMs
            if bias is not None:
                m[_BIAS_POSITION] += bias
            y = _both_sides(mats.output, m).reshape(TILE, TILE, -1, th, tw, o)
            out[chunk].reshape(-1, th, TILE, tw, TILE, o)[...] = y.transpose(2, 3, 0, 4, 1, 5)
            if keep_patches:
                kept.append(v)
        return kept

    macs = PATCH * PATCH * n * th * tw * c * o
    kept = [v for part in parallel.split(len(chunks), run, macs=macs) for v in part]
    u_t = np.ascontiguousarray(u.transpose(0, 2, 1))
    saved = Saved(kept if keep_patches else None, u_t, (n, h, w, c), (th, tw), chunks)
    return out[:, : h - 2, : w - 2], saved


def _transform_input(x: np.ndarray, data_transform: np.ndarray, th: int, tw: int) -> np.ndarray:
    """V (36, N*th*tw, C): every 6x6 patch of x (N, H, W, C) in the Winograd domain."""
    n, _, _, c = x.shape
    s0, s1, s2, s3 = x.strides
    windows = read_only_view(
        x, (PATCH, PATCH, n, th, tw, c), (s1, s2, s0, TILE * s1, TILE * s2, s3)
    )
    # one copy puts the 36 patch positions first; the transform is then a single GEMM
    patches = np.ascontiguousarray(windows).reshape(PATCH * PATCH, -1)
    return _both_sides(data_transform, patches).reshape(PATCH * PATCH, n * th * tw, c)


def backward(
    saved: Saved,
    grad: np.ndarray | None,
    need_input: bool = True,
    need_weight: bool = True,
    need_bias: bool = False,
    input_mask: np.ndarray | None = None,
    grad_tiles: Callable[[slice], np.ndarray] | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Gradients (d/dx (N, H, W, C), d/dweight (O, C, 3, 3), d/dbias (O,)) from grad
    (N, H-2, W-2, O); None for those not asked for.

    The bias gradient, grad summed per channel, is taken from each chunk's tiles while they
    are in cache. `input_mask` (N, H, W, C), when given, zeroes d/dx where it is not > 0: the
    backward of a ReLU before this conv, done chunk by chunk in cache (`fusion`).
    `grad_tiles(chunk)`, when given instead of grad, returns a batch chunk's output gradient
    already cut into tiles, (16, tiles * O) as below: a max-pool after this conv makes them
    from its own gradient (`fusion`), and the whole output gradient never exists.
    """
    n, h, w, c = saved.input_shape
    th, tw = saved.tiles
    o, dtype = saved.weights_t.shape[1], saved.weights_t.dtype
    mats = transforms(dtype)
    patches = saved.patches if need_weight else None
    if need_weight and patches is None:
        raise ValueError("winograd.backward: d/dweight needs forward(..., keep_patches=True)")
    if grad is not None and grad.shape[1:3] != (TILE * th, TILE * tw):
        grown = np.zeros((n, TILE * th, TILE * tw, o), dtype=grad.dtype)
        grown[:, : grad.shape[1], : grad.shape[2]] = grad
        grad = grown

    def output_tiles(chunk: slice) -> np.ndarray:
        """The output gradient of `chunk` tile by tile, the 16 in-tile positions first."""
        if grad_tiles is not None:
            return grad_tiles(chunk)
        assert grad is not None
        tiles = grad[chunk].reshape(-1, th, TILE, tw, TILE, o).transpose(2, 4, 0, 1, 3, 5)
        return np.ascontiguousarray(tiles).reshape(TILE * TILE, -1)

    # every pixel is written once (`_put_patches`), so no zeros are needed
    gx = np.empty((n, TILE * th + 2, TILE * tw + 2, c), dtype) if need_input else None

    def run(part: slice) -> tuple[np.ndarray | None, np.ndarray | None]:
        du = None if patches is None else np.zeros((PATCH * PATCH, c, o), dtype=dtype)
        db = np.zeros(o, dtype=dtype) if need_bias else None
        for k in range(part.start, part.stop):
            chunk = saved.chunks[k]
            tiles = output_tiles(chunk)
            dm = _both_sides(mats.output.T, tiles).reshape(PATCH * PATCH, -1, o)
            if db is not None:
                # at the bias position dM is each tile's sum of grad (the forward added the bias
                # there), so the bias gradient sums 16x fewer numbers; a product with ones,
                # because NumPy's sum down columns is ~20x slower
                tile_sums = dm[_BIAS_POSITION]
                db += np.ones(len(tile_sums), dtype=dtype) @ tile_sums
            if du is not None and patches is not None:
                du += np.matmul(patches[k].transpose(0, 2, 1), dm)  # (36, C, O)
            if gx is not None:
                dv = np.matmul(dm, saved.weights_t)  # (36, tiles, C)
                dpatches = _both_sides(mats.data.T, dv).reshape(PATCH, PATCH, -1, th, tw, c)
                _put_patches(dpatches, gx[chunk])
                if input_mask is not None:
                    gx[chunk, :h, :w] *= input_mask[chunk] > 0
        return du, db

    parts = parallel.split(len(saved.chunks), run, macs=2 * PATCH * PATCH * n * th * tw * c * o)
    grad_w = grad_b = None
    dus = [du for du, _ in parts if du is not None]
    if dus:
        du = sum(dus[1:], start=dus[0])
        dw = parallel.matmul(mats.weight.T, du.reshape(PATCH * PATCH, -1)).reshape(3, 3, c, o)
        grad_w = np.ascontiguousarray(dw.transpose(3, 2, 0, 1))
    dbs = [db for _, db in parts if db is not None]
    if dbs:
        grad_b = sum(dbs[1:], start=dbs[0])
    return (None if gx is None else gx[:, :h, :w]), grad_w, grad_b


def _put_patches(dpatches: np.ndarray, gx: np.ndarray) -> None:
    """Write the sum of the overlapping 6x6 patch gradients (6, 6, N, th, tw, C) into gx
    (N, 4*th+2, 4*tw+2, C). dpatches is used up.

    Patch rows 4-5 of a tile are rows 0-1 of the tile below, and columns 4-5 are columns 0-1 of
    the tile to the right. Adding them there first leaves every pixel in one place: rows and
    columns 0-3 of each tile, plus rows 4-5 of the last tile row and columns 4-5 of the last
    tile column. Those two adds run over whole rows of tiles; four plain copies then put the
    pixels in gx (adding into gx directly runs over pieces of C numbers: ~1.8x slower).
    """
    th, tw, c = dpatches.shape[3:]
    dpatches[:2, :, :, 1:] += dpatches[TILE:, :, :, :-1]
    dpatches[:, :2, :, :, 1:] += dpatches[:, TILE:, :, :, :-1]
    rows, cols = TILE * th, TILE * tw
    inner = gx[:, :rows, :cols].reshape(-1, th, TILE, tw, TILE, c)
    inner[...] = dpatches[:TILE, :TILE].transpose(2, 3, 0, 4, 1, 5)
    bottom = gx[:, rows:, :cols].reshape(-1, 2, tw, TILE, c)  # rows 4-5 of the last tile row
    bottom[...] = dpatches[TILE:, :TILE, :, -1].transpose(2, 0, 3, 1, 4)
    right = gx[:, :rows, cols:].reshape(-1, th, TILE, 2, c)  # columns 4-5 of the last column
    right[...] = dpatches[:TILE, TILE:, :, :, -1].transpose(2, 3, 0, 1, 4)
    gx[:, rows:, cols:] = dpatches[TILE:, TILE:, :, -1, -1].transpose(2, 0, 1, 3)


class WinogradConv2d(FastConv2d):
    """3x3 stride-1 convolutions with two or more input channels, by F(4x4, 3x3).

    Not exact: the transforms' rounding makes float32 results ~10x less accurate than a
    direct computation, so it only runs at `set_float32_precision("high")` (the default).
    """

    kernel = "winograd"
    exact = False
    masks_input_grad = True
    takes_relu_input = True  # `relu_input`: this conv may apply a ReLU before it (`deferred`)
    relu_input = False
    # set around a fused backward (`fusion`): the output gradient's tiles, chunk by chunk
    grad_tiles: Callable[[slice], np.ndarray] | None = None

    @classmethod
    def applies(
        cls, x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1
    ) -> bool:
        _, c, kh, kw = weight.shape
        return (
            super().applies(x, weight, bias, stride, padding, dilation, groups)
            and (kh, kw) == (3, 3)
            and tuple(stride) == (1, 1)
            and np.result_type(x, weight).kind == "f"
            and c >= MIN_IN_CHANNELS
        )

    def _forward(self, x, weight, bias):
        out, self.saved = forward(x, weight, bias, self.needs_input_grad[1], self.relu_input)
        return out

    def _backward(self, g):
        gx, grad_w, self.summed_grad = backward(
            self.saved,
            g,
            self.needs_input_grad[0],
            self.needs_input_grad[1],
            need_bias=self.wants_bias_grad(),
            input_mask=self.input_mask,
            grad_tiles=self.grad_tiles,
        )
        return gx, grad_w
