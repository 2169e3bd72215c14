"""Matplotlib figures of a training run: curves, confusion matrix, mistakes, conv filters.

Each function returns a `matplotlib.figure.Figure` (shown inline by Jupyter) and, given `path`,
also saves it as a PNG, atomically. Figures are made without pyplot, so no window opens and
nothing needs a display: the PNGs are drawn by matplotlib's Agg renderer.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator

from . import nn
from .files import write_atomically
from .train import Evaluation, History

__all__ = [
    "plot_confusion",
    "plot_curves",
    "plot_filters",
    "plot_misclassified",
    "save_figure",
]

TRAIN_COLOR = "tab:blue"
TEST_COLOR = "tab:orange"
TRAIN_LABEL = "train (recent batches)"


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save `fig` as a PNG at `path`, atomically (temp file in the same folder, then rename)."""
    return write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=dpi), binary=True)


def _finish(fig: Figure, path: str | os.PathLike | None) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def _percent(values) -> np.ndarray:
    """Fractions (None allowed) -> percentages as floats (None -> nan)."""
    return np.array([math.nan if v is None else 100.0 * v for v in values], dtype=float)


def plot_curves(
    history: History, path: str | os.PathLike | None = None, title: str | None = None
) -> Figure:
    """Three panels against the iteration: training loss, error rate (train and test, log
    scale) and accuracy (train and test), from a `History`.
    """
    if len(history) == 0:
        raise ValueError("plot_curves: the history is empty (fit recorded no evaluation point)")
    it = np.asarray(history.iteration)
    train_err = _percent(history.train_error)
    test_err = _percent(history.test_error)
    has_test = not np.all(np.isnan(test_err))

    fig = Figure(figsize=(13, 4.2), layout="constrained")
    loss_ax, err_ax, acc_ax = fig.subplots(1, 3)

    loss_ax.plot(it, history.train_loss, "o-", color=TRAIN_COLOR, ms=3, label=TRAIN_LABEL)
    loss_ax.set_title("Training loss")
    loss_ax.set_ylabel("mean loss")

    err_ax.plot(it, train_err, "o-", color=TRAIN_COLOR, ms=3, label=TRAIN_LABEL)
    if has_test:
        err_ax.plot(it, test_err, "s-", color=TEST_COLOR, ms=3, label="test")
    if np.nanmin(np.concatenate([train_err, test_err])) > 0:
        err_ax.set_yscale("log")
        err_ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        err_ax.yaxis.set_major_formatter(lambda v, _: f"{v:g}%")
        err_ax.yaxis.set_minor_formatter(lambda v, _: "")
    else:
        err_ax.yaxis.set_major_formatter(lambda v, _: f"{v:g}%")
    err_ax.set_title("Error rate")
    err_ax.set_ylabel("error rate (%)")

    acc_ax.plot(it, 100 - train_err, "o-", color=TRAIN_COLOR, ms=3, label=TRAIN_LABEL)
    if has_test:
        final = f"test (final {100 - test_err[-1]:.2f}%)"
        acc_ax.plot(it, 100 - test_err, "s-", color=TEST_COLOR, ms=3, label=final)
    acc_ax.set_title("Accuracy")
    acc_ax.set_ylabel("accuracy (%)")

    for ax in (loss_ax, err_ax, acc_ax):
        ax.set_xlabel("iteration (optimizer steps)")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_confusion(
    confusion: np.ndarray | Evaluation,
    path: str | os.PathLike | None = None,
    title: str | None = None,
) -> Figure:
    """The confusion matrix (rows: true digit, columns: predicted digit) with counts in cells.

    `confusion` is a (10, 10) count array or an `Evaluation`. Colour is the fraction of each
    true digit's examples (log scale), so rare mistakes stay visible next to the diagonal.
    """
    counts = confusion.confusion if isinstance(confusion, Evaluation) else np.asarray(confusion)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"plot_confusion: expected a square (K, K) matrix, got {counts.shape}")
    k = counts.shape[0]
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        fractions = np.where(totals > 0, counts / np.maximum(totals, 1), 0.0)

    fig = Figure(figsize=(7.2, 6.2), layout="constrained")
    ax = fig.subplots()
    shown = np.where(fractions > 0, fractions, np.nan)
    image = ax.imshow(shown, cmap="Blues", norm=LogNorm(vmin=1e-4, vmax=1.0))
    cbar = fig.colorbar(image, ax=ax, shrink=0.85)
    cbar.set_label("fraction of the true digit's examples")
    for i in range(k):
        for j in range(k):
            if counts[i, j]:
                dark = fractions[i, j] > 0.1
                ax.text(
                    j,
                    i,
                    str(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else ("black" if i == j else "tab:red"),
                )
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    total = counts.sum()
    correct = np.trace(counts)
    accuracy = f"accuracy {100 * correct / total:.2f}% of {total}" if total else "no examples"
    ax.set_title(title or f"Confusion matrix ({accuracy})")
    return _finish(fig, path)


def plot_misclassified(
    images: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    path: str | os.PathLike | None = None,
    n: int = 24,
    title: str | None = None,
) -> Figure:
    """A grid of up to `n` misclassified digits, each titled "true -> predicted".

    images (N, 28, 28) or (N, 1, 28, 28) (uint8 or preprocessed floats), labels (N,),
    predictions (N,), e.g. `Evaluation.predictions`.
    """
    images = np.asarray(images)
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if not (len(images) == len(labels) == len(predictions)):
        raise ValueError(
            f"plot_misclassified: {len(images)} images, {len(labels)} labels and "
            f"{len(predictions)} predictions must agree"
        )
    wrong = np.flatnonzero(labels != predictions)
    shown = wrong[:n]
    cols = 8
    rows = max(1, math.ceil(len(shown) / cols))
    fig = Figure(figsize=(cols * 1.25, rows * 1.45 + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, idx in zip(axes, shown, strict=False):
        ax.imshow(images[idx].reshape(images[idx].shape[-2:]), cmap="gray_r")
        ax.set_title(f"{labels[idx]} \u2192 {predictions[idx]}", fontsize=10, color="tab:red")
    if len(shown) == 0:
        axes[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(
        title or f"Misclassified digits (true \u2192 predicted): {len(shown)} of {len(wrong)} shown"
    )
    return _finish(fig, path)


def plot_filters(
    weights: nn.Module | np.ndarray,
    path: str | os.PathLike | None = None,
    max_filters: int = 32,
    title: str | None = None,
) -> Figure:
    """The learned filters of the first Conv2d layer (one small image per output channel).

    `weights` is a model (its first `Conv2d` is used) or a weight array (out, in, kh, kw);
    each filter shows its first input channel, on a blue-white-red scale centred at 0.
    """
    if isinstance(weights, nn.Module):
        convs = [m for _, m in weights.named_modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ValueError("plot_filters: the model has no Conv2d layer")
        w = convs[0].weight.data
    else:
        w = np.asarray(weights)
    if w.ndim != 4:
        raise ValueError(f"plot_filters: expected weights (out, in, kh, kw), got shape {w.shape}")
    w = w[:max_filters, 0]
    count = len(w)
    cols = min(8, count)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(cols * 1.2 + 1.2, rows * 1.2 + 0.7), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    limit = float(np.abs(w).max()) or 1.0
    image = None
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < count:
            image = ax.imshow(w[i], cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_title(f"#{i}", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label="weight")
    fig.suptitle(title or f"First conv layer: {count} learned {w.shape[1]}x{w.shape[2]} filters")
    return _finish(fig, path)
