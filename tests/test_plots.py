"""plots: every figure has labelled axes and saves as a valid PNG, atomically."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from matplotlib.figure import Figure

from tinygrad_mnist import data, nn, plots, train
from tinygrad_mnist.models import build_model

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """(width, height) of a PNG file, after checking its signature and IHDR chunk."""
    raw = path.read_bytes()
    assert raw[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert raw[12:16] == b"IHDR"
    return struct.unpack(">II", raw[16:24])


def _history(with_test: bool = True) -> train.History:
    history = train.History()
    for i, (loss, err) in enumerate([(2.0, 0.6), (0.8, 0.2), (0.3, 0.05), (0.1, 0.01)]):
        test = err * 1.2 if with_test else None
        history.append(
            iteration=10 * (i + 1),
            epoch=(i + 1) / 4,
            train_loss=loss,
            train_error=err,
            test_error=test,
            test_accuracy=None if test is None else 1 - test,
            lr=1e-3,
            seconds=i,
        )
    return history


def _texts(fig: Figure) -> list[str]:
    out = [fig._suptitle.get_text()] if fig._suptitle else []
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
    return [t for t in out if t]


@pytest.mark.parametrize("with_test", [True, False])
def test_plot_curves(tmp_path, with_test):
    path = tmp_path / "curves.png"
    fig = plots.plot_curves(_history(with_test), path, title="a run")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Training loss", "Error rate", "Accuracy"]
    assert all(ax.get_xlabel().startswith("iteration") and ax.get_ylabel() for ax in fig.axes)
    assert all(ax.lines for ax in fig.axes)
    labels = [line.get_label() for line in fig.axes[2].lines]
    assert any(label.startswith("test (final 98.80%") for label in labels) == with_test
    width, height = png_size(path)
    assert width >= 800 and height >= 300


def test_plot_curves_without_saving_and_empty_history(tmp_path):
    fig = plots.plot_curves(_history())
    assert isinstance(fig, Figure) and not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="empty"):
        plots.plot_curves(train.History())


def test_plot_confusion(tmp_path):
    confusion = np.diag(np.full(10, 95))
    confusion[3, 5] = 4
    confusion[7, 1] = 1
    path = tmp_path / "confusion.png"
    fig = plots.plot_confusion(confusion, path)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "predicted digit" and ax.get_ylabel() == "true digit"
    assert "accuracy 99.48% of 955" in ax.get_title()
    cell_texts = {t.get_text() for t in ax.texts}
    assert {"95", "4", "1"} <= cell_texts
    assert png_size(path)[0] >= 400
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion(np.zeros((3, 4)))


def test_plot_confusion_from_an_evaluation(tmp_path):
    ev = train.Evaluation(0.5, 0.5, np.zeros(10), np.eye(10, dtype=int), np.arange(10))
    fig = plots.plot_confusion(ev, tmp_path / "c.png", title="mine")
    assert fig.axes[0].get_title() == "mine"


def test_plot_misclassified(tmp_path):
    sample = data.load_sample()
    images, labels = sample.test_images[:40], sample.test_labels[:40]
    predictions = labels.copy()
    predictions[[3, 8, 20]] = (labels[[3, 8, 20]] + 1) % 10
    path = tmp_path / "mis.png"
    fig = plots.plot_misclassified(images, labels, predictions, path)
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titled == [f"{labels[i]} \u2192 {predictions[i]}" for i in (3, 8, 20)]
    assert "3 of 3" in fig._suptitle.get_text()
    png_size(path)
    # preprocessed (N, 1, 28, 28) images work too, and no mistakes is not an error
    x = data.preprocess(images)
    plots.plot_misclassified(x, labels, labels, tmp_path / "none.png")
    with pytest.raises(ValueError, match="agree"):
        plots.plot_misclassified(images, labels[:-1], predictions)


def test_plot_filters(tmp_path):
    nn.init.manual_seed(0)
    model = build_model("lenet-cnn")
    path = tmp_path / "filters.png"
    fig = plots.plot_filters(model, path)
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 32
    assert "32 learned 3x3 filters" in fig._suptitle.get_text()
    png_size(path)
    fig = plots.plot_filters(model[0].weight.data[:5])
    assert len([ax for ax in fig.axes if ax.images]) == 5
    with pytest.raises(ValueError, match="Conv2d"):
        plots.plot_filters(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)))


def test_every_figure_is_labelled():
    sample = data.load_sample()
    figures = [
        plots.plot_curves(_history()),
        plots.plot_confusion(np.eye(10, dtype=int)),
        plots.plot_misclassified(sample.test_images[:3], np.array([1, 2, 3]), np.array([1, 2, 4])),
        plots.plot_filters(np.ones((4, 1, 3, 3))),
    ]
    for fig in figures:
        assert _texts(fig), "figure has no title or axis labels"


def test_save_figure_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "f.png"
    path.write_bytes(b"old")
    fig = plots.plot_confusion(np.eye(10, dtype=int))

    def broken(*args, **kwargs):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError):
        plots.save_figure(fig, path)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]
