"""What the fast convolutions share: channels-last input, padding, bias and input gradients.

Each fast Conv2d kernel (im2col, batch-last, Winograd) works on the input as channels-last
(N, H, W, C) memory, already padded, and produces an output that is an (N, OH, OW, O) view of
whatever memory order it chose (see `layouts`). This base class does the parts they have in
common, so each kernel only writes its own `_forward` and `_backward`.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import ops
from . import parallel
from .base import Kernel


class Geometry(NamedTuple):
    """The sizes of one convolution; h and w are of the padded input."""

    n: int
    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    oh: int
    ow: int
    sh: int
    sw: int
    ph: int
    pw: int


class FastConv2d(Kernel, ops.Conv2d):
    """The frame of a fast Conv2d: subclasses fill in `_forward` and `_backward`.

    The fast convolutions do one group without dilation (every conv of the reference CNNs);
    dilated and grouped convolutions run from the textbook.
    """

    @classmethod
    def applies(
        cls, x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1
    ) -> bool:
        return tuple(dilation) == (1, 1) and groups == 1

    # the bias gradient, g summed per channel, when `_backward` got it from its own pass over g
    summed_grad: np.ndarray | None = None
    # kernels whose `_backward` applies `input_mask` (a ReLU's output before this conv: d/dx
    # zeroed where it is not > 0, as the ReLU's backward would), for `fusion`
    masks_input_grad: ClassVar[bool] = False
    input_mask: np.ndarray | None = None  # channels-last (N, H, W, C), set around a backward

    def wants_bias_grad(self) -> bool:
        return self.has_bias and self.needs_input_grad[2]

    def forward(
        self, x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1
    ):
        (sh, sw), (ph, pw) = stride, padding
        o, c, kh, kw = weight.shape
        # channels-last: a window's patch is kh*kw runs of C adjacent numbers, and when x is
        # the NCHW view of a previous conv's channels-last output this transpose is free
        x = x.transpose(0, 2, 3, 1)
        if ph or pw:
            x = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        n, h, w, _ = x.shape
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        self.geometry = Geometry(n, c, h, w, o, kh, kw, oh, ow, sh, sw, ph, pw)
        self.has_bias = bias is not None
        out = self._forward(x, weight, bias)  # an (N, OH, OW, O) view
        return out.transpose(0, 3, 1, 2)

    def backward(self, grad):
        """The op's gradients; grad is None when a fused backward hands the kernel its output
        gradient another way (`fusion`, Winograd's `grad_tiles`)."""
        geo = self.geometry
        g = None if grad is None else grad.transpose(0, 2, 3, 1)  # free in the output's layout
        self.summed_grad = None
        gx, grad_w = self._backward(g)
        grad_b = None
        if self.wants_bias_grad():
            if self.summed_grad is not None:
                grad_b = self.summed_grad
            else:
                assert g is not None  # kernels fed without grad sum their own bias gradient
                grad_b = sum_per_channel(g)
        grad_x = None
        if gx is not None:  # (N, H, W, C) of the padded input: drop the padding
            grad_x = gx[:, geo.ph : geo.h - geo.ph, geo.pw : geo.w - geo.pw].transpose(0, 3, 1, 2)
        return grad_x, grad_w, grad_b

    @abstractmethod
    def _forward(self, x: np.ndarray, weight: np.ndarray, bias) -> np.ndarray:
        """out (N, OH, OW, O view) from padded channels-last x (N, H, W, C)."""

    @abstractmethod
    def _backward(self, g: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(d/dx as padded (N, H, W, C) or None, d/dweight (O, C, kh, kw) or None) from g
        (None only for a kernel that a fused backward feeds another way)."""


def sum_per_channel(g: np.ndarray) -> np.ndarray:
    """g (N, OH, OW, O) summed over all but its last axis, as one vector-matrix product
    (NumPy's sum down a tall, narrow array is ~20x slower). The other axes are read in their
    memory order, so the (O, N*OH*OW) matrix is a view for every layout the convs produce."""
    pixel_axes = sorted(range(3), key=lambda axis: -g.strides[axis])
    g2 = g.transpose(3, *pixel_axes).reshape(g.shape[3], -1)
    return parallel.matmul(g2, np.ones((g2.shape[1], 1), dtype=g2.dtype))[:, 0]


def read_only_view(x: np.ndarray, shape: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """A read-only view of x's memory with the given shape and strides (a window view).

    For a gapless C-ordered x it is made directly from x's buffer, ~10x faster than
    `numpy.lib.stride_tricks.as_strided` (~0.5 against ~5.7 us): Winograd takes one per batch
    chunk, 334 of them in a lenet-cnn inference of 1000 images.
    """
    if not x.flags.c_contiguous:
        return as_strided(x, shape, strides, writeable=False)
    view = np.ndarray(shape, x.dtype, x, 0, strides)
    view.flags.writeable = False
    return view
