"""Conv2d as one big matrix product (im2col), in two memory arrangements.

- `Im2colConv2d`: every window becomes a row of `cols` (N*OH*OW, kh*kw*C), channels-last, and
  out = cols @ W^T with W the weight as (O, kh*kw*C). Backward is GEMMs too: d/dW = grad^T @
  cols, and d/dcols = grad @ W one kernel offset at a time, each slice added back into the
  (padded) input pixels it came from.
- `BatchLastConv2d`: the same for one input channel and few output channels (a first layer),
  with the batch as the innermost axis of cols and of the output memory (O, OH, OW, N).
Both split their batch (or output rows) across the cores (`parallel.split`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import caches, layouts, parallel
from .convolution import FastConv2d, read_only_view


def _offset_major_store(
    shape: tuple[int, ...], dtype, bias: bool, ones: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """An empty offset-major cols store of `shape` (kh, kw, ...) and, for a conv with a bias,
    the same memory as (kh*kw + 1, pixels) with a last row of ones after it (left for the
    caller to fill when not `ones`). Multiplied by the weight with the bias beside it, that adds
    the bias in the forward product itself, and the weight-gradient products sum g per channel
    too: no pass over the output or g of its own."""
    if not bias:
        return np.empty(shape, dtype=dtype), None
    offsets, pixels = shape[0] * shape[1], int(np.prod(shape[2:]))
    memory = np.empty((offsets + 1, pixels), dtype=dtype)
    if ones:
        memory[-1] = 1
    return memory[:-1].reshape(shape), memory


def _matmul_in_column_blocks(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out = a @ b for a short, wide b, in blocks of columns holding at most an eighth of L2
    of output each. OpenBLAS runs such products about twice as fast in blocks as in one call
    (measured on a 2 MiB L2: seed-cnn's first conv, 8 x 10 weights times 10 x 43,264 cols,
    137-170 us in blocks of 256 KiB of output, 274 us in one call; blocks of 512 KiB as slow as
    one call). lenet-cnn's first conv, tall rather than wide, was slower in blocks of rows."""
    block = max(1, caches.l2_bytes() // 8 // (out.shape[0] * out.itemsize))
    for start in range(0, out.shape[1], block):
        np.matmul(a, b[:, start : start + block], out=out[:, start : start + block])


class Im2colConv2d(FastConv2d):
    """Any convolution: im2col and one GEMM per batch share, channels-last."""

    kernel = "im2col"

    def _forward(self, x, weight, bias):
        n, c, h, w, o, kh, kw, oh, ow, sh, sw, ph, pw = self.geometry
        s0, s1, s2, s3 = x.strides
        windows = read_only_view(x, (n, oh, ow, kh, kw, c), (s0, s1 * sh, s2 * sw, s1, s2, s3))
        if c == 1:
            # one input channel: a window row would be kh*kw scattered numbers, slow to gather;
            # store cols offset-major instead, (kh*kw, N*OH*OW), where each offset's pixels are
            # long runs, and read it as its transpose, which BLAS takes as it is
            store, rows_of_ones = _offset_major_store((kh, kw, n, oh, ow), x.dtype, self.has_bias)
            source = windows[..., 0].transpose(3, 4, 0, 1, 2)
            cols = store.reshape(kh * kw, n * oh * ow).T
        else:
            store, rows_of_ones = np.empty(windows.shape, dtype=x.dtype), None
            source = windows
            cols = store.reshape(n * oh * ow, kh * kw * c)
        batch_axis = 2 if c == 1 else 0
        w2 = weight.transpose(0, 2, 3, 1).reshape(o, kh * kw * c)
        pixels = oh * ow
        out = layouts.conv_output(n, oh, ow, o, np.result_type(x, weight))
        # with a row of ones under cols, the bias rides along as one more weight column
        product_cols = cols if rows_of_ones is None else rows_of_ones.T
        product_w = w2 if rows_of_ones is None else np.concatenate([w2, bias[:, None]], axis=1)

        def part_forward(part):
            # the one copy: im2col
            index = (slice(None),) * batch_axis + (part,)
            np.copyto(store[index], source[index])
            rows = product_cols[part.start * pixels : part.stop * pixels]
            # reshape is a view in both memory layouts: (N, OH, OW) are adjacent in each
            np.matmul(rows, product_w.T, out=out[part].reshape(-1, o))
            if bias is not None and rows_of_ones is None:
                out[part] += bias

        parallel.split(n, part_forward, elements=cols.size, macs=cols.size * o)
        self.cols = cols if self.needs_input_grad[1] else None
        self.cols_with_ones = rows_of_ones if c == 1 and self.needs_input_grad[1] else None
        self.w2 = w2
        return out

    def _backward(self, g):
        n, c, h, w, o, kh, kw, oh, ow, sh, sw, ph, pw = self.geometry
        g2 = g.reshape(n * oh * ow, o)
        pixels = oh * ow
        gx = grad_w = None
        if self.needs_input_grad[1]:
            saved = self.cols
            assert saved is not None  # kept by forward when the weight wants a gradient

            # with its row of ones (one input channel, a bias), the same products also sum g
            # per channel: the bias gradient without another pass over g
            with_ones = self.cols_with_ones
            cols_t = saved.T if with_ones is None else with_ones  # (kh*kw*C [+1], N*OH*OW)

            def part_weight_grad(part):
                # cols^T @ g sums over every pixel of the batch: one product per image, then a
                # sum. OpenBLAS is ~5x slower on the single product with its huge inner size.
                rows = slice(part.start * pixels, part.stop * pixels)
                images = part.stop - part.start
                cols = cols_t[:, rows].reshape(-1, images, pixels).transpose(1, 0, 2)
                return np.matmul(cols, g2[rows].reshape(images, pixels, o)).sum(axis=0)

            parts = parallel.split(n, part_weight_grad, macs=saved.size * o)
            gw = sum(parts[1:], start=parts[0])  # (kh*kw*C [+1], O)
            if with_ones is not None:
                gw, self.summed_grad = gw[:-1], gw[-1]
            grad_w = gw.T.reshape(o, kh, kw, c).transpose(0, 3, 1, 2)
        if self.needs_input_grad[0]:
            # col2im one kernel offset at a time: d/dcols for offset (i, j) is g2 @ W[:, i, j, :],
            # added into the input pixels that offset touched. One small scratch product is
            # reused instead of materialising all of d/dcols (N*OH*OW x kh*kw*C), whose fresh
            # pages cost more than the GEMM itself.
            w4 = self.w2.reshape(o, kh, kw, c)
            gx = np.zeros((n, h, w, c), dtype=g.dtype)

            def part_input_grad(part):
                g_rows = g2[part.start * pixels : part.stop * pixels]
                scratch = np.empty((len(g_rows), c), dtype=np.result_type(g2, w4))
                target = gx[part]
                for i in range(kh):
                    for j in range(kw):
                        np.matmul(g_rows, w4[:, i, j, :], out=scratch)
                        target[:, i : i + sh * oh : sh, j : j + sw * ow : sw] += scratch.reshape(
                            -1, oh, ow, c
                        )

            parallel.split(
                n, part_input_grad, elements=g2.size * kh * kw, macs=g2.size * kh * kw * c
            )
        return gx, grad_w


class BatchLastConv2d(FastConv2d):
    """One input channel, few output channels (a first layer): output memory (O, OH, OW, N).

    With the batch innermost, every view the ReLU and 2x2 max-pool after this conv take is made
    of runs of N numbers, instead of runs of a few channels or a 13-pixel half row; NumPy's
    per-run cost then vanishes and those ops run 3-5x faster.
    """

    kernel = "batch-last"
    # set around a fused backward (`fusion`): the output gradient of whole pairs of output
    # rows, (O, rows, OW, N), in place of the whole gradient
    grad_rows: Callable[[slice], np.ndarray] | None = None

    @classmethod
    def applies(
        cls, x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1
    ) -> bool:
        return (
            super().applies(x, weight, bias, stride, padding, dilation, groups)
            and weight.shape[1] == 1
            and weight.shape[0] < layouts.CHANNEL_MAJOR_BELOW
        )

    def _forward(self, x, weight, bias):
        n, c, h, w, o, kh, kw, oh, ow, sh, sw, ph, pw = self.geometry
        store, rows_of_ones = _offset_major_store(
            (kh, kw, oh, ow, n), x.dtype, self.has_bias, ones=False
        )
        w2 = weight.reshape(o, kh * kw)
        out = np.empty((o, oh, ow, n), dtype=np.result_type(x, weight))
        # with a row of ones under cols, the bias rides along as one more weight column
        product_w = w2 if rows_of_ones is None else np.concatenate([w2, bias[:, None]], axis=1)

        def part_forward(rows):  # output rows
            # everything a part reads it writes itself, in its own core's cache: its input rows
            # with the batch last, its cols and its ones (the helper's part had run ~1.7x slower
            # reading them from the calling core's cache; seed-cnn's first conv at batch 128:
            # 0.74 -> 0.65 ms, at batch 64 unchanged)
            first, last = rows.start * sh, (rows.stop - 1) * sh + kh  # its input rows
            image = np.empty((last - first, w, n), dtype=x.dtype)
            np.copyto(image, x[:, first:last, :, 0].transpose(1, 2, 0))
            s0, s1, s2 = image.strides
            shape = (kh, kw, rows.stop - rows.start, ow, n)
            windows = read_only_view(image, shape, (s0, s1, s0 * sh, s1 * sw, s2))
            np.copyto(store[:, :, rows], windows)
            if rows_of_ones is None:
                cols = store[:, :, rows].reshape(kh * kw, -1)
            else:
                cols = rows_of_ones[:, rows.start * ow * n : rows.stop * ow * n]
                cols[-1] = 1
            _matmul_in_column_blocks(product_w, cols, out[:, rows].reshape(o, -1))

        parallel.split(oh, part_forward, elements=store.size, macs=store.size * o)
        self.cols = store.reshape(kh * kw, -1) if self.needs_input_grad[1] else None
        self.cols_with_ones = rows_of_ones if self.needs_input_grad[1] else None
        self.w2 = w2
        return out.transpose(3, 1, 2, 0)

    def _backward(self, g):
        n, c, h, w, o, kh, kw, oh, ow, sh, sw, ph, pw = self.geometry
        # (O, OH*OW*N), a view in forward's layout; None when a fused max-pool hands the
        # gradient over two output rows at a time (`grad_rows`, `fusion`)
        g2 = None if g is None else g.transpose(3, 1, 2, 0).reshape(o, oh * ow * n)
        unit = 1 if self.grad_rows is None else 2  # output rows per unit of work
        gx = grad_w = None
        if self.needs_input_grad[1]:
            saved = self.cols
            assert saved is not None  # kept by forward when the weight wants a gradient

            # with a row of ones (a bias), the same products also give the bias gradient
            cols = saved if self.cols_with_ones is None else self.cols_with_ones

            def grad_of_rows(rows: slice) -> np.ndarray:  # (O, rows, OW*N)
                if self.grad_rows is not None:
                    return self.grad_rows(rows).reshape(o, -1, ow * n)
                assert g2 is not None
                return g2[:, rows.start * ow * n : rows.stop * ow * n].reshape(o, -1, ow * n)

            def part_weight_grad(part):
                # g @ cols^T sums over every pixel of the batch: one product per output row,
                # then a sum. OpenBLAS is ~5x slower on one product with such a huge inner size.
                rows = slice(part.start * unit, part.stop * unit)
                a = grad_of_rows(rows).transpose(1, 0, 2)
                b = cols[:, rows.start * ow * n : rows.stop * ow * n]
                b = b.reshape(len(cols), -1, ow * n).transpose(1, 2, 0)
                return np.matmul(a, b).sum(axis=0)

            parts = parallel.split(oh // unit, part_weight_grad, macs=o * oh * ow * n * kh * kw)
            gw = sum(parts[1:], start=parts[0])  # (O, kh*kw [+1])
            if self.cols_with_ones is not None:
                gw, self.summed_grad = gw[:, :-1], np.ascontiguousarray(gw[:, -1])
            grad_w = gw.reshape(o, 1, kh, kw)
        if self.needs_input_grad[0]:
            assert g2 is not None  # no fused backward when the input wants a gradient
            dcols = parallel.matmul(self.w2.T, g2).reshape(kh, kw, oh, ow, n)
            image_grad = np.zeros((h, w, n), dtype=g2.dtype)
            for i in range(kh):
                for j in range(kw):
                    image_grad[i : i + sh * oh : sh, j : j + sw * ow : sw] += dcols[i, j]
            gx = image_grad.transpose(2, 0, 1)[..., None]  # (N, H, W, 1)
        return gx, grad_w
