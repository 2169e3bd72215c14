"""A seed-cnn trained for two epochs on the bundled sample, shared by the tests that need a
model that reads digits (prepare_image, predict, the drawing page): about a second, offline."""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from tinygrad_mnist import data, nn, optim, train
from tinygrad_mnist.models import build_model


def seed_cnn_trained_on(images: np.ndarray, labels: np.ndarray, epochs: int) -> nn.Module:
    """seed-cnn (seed 0) after `epochs` epochs of Adam (lr 3e-3) on the images, normalised."""
    nn.init.manual_seed(0)
    model = build_model("seed-cnn")
    x = data.preprocess(images, normalize=True)
    train.fit(
        model, optim.Adam(model.parameters(), lr=3e-3), (x, labels), epochs=epochs, progress=False
    )
    model.eval()
    return model


@functools.lru_cache(maxsize=1)
def trained_seed_cnn() -> nn.Module:
    """seed-cnn after 2 epochs on the sample (`seed_cnn_trained_on`); ~93% test."""
    sample = data.load_sample()
    return seed_cnn_trained_on(sample.train_images, sample.train_labels, epochs=2)


def save_weights(folder: Path) -> Path:
    """model.npz and its model.json sidecar in `folder`, as `tinygrad-mnist train` writes them."""
    weights = folder / "model.npz"
    trained_seed_cnn().save(weights)
    sidecar = {
        "model": "seed-cnn",
        "normalize": True,
        "data": "the bundled sample",
        "test_accuracy": 0.93,
    }
    weights.with_suffix(".json").write_text(json.dumps(sidecar))
    return weights


def drawn_digit_png(digit: np.ndarray, size: int = 280) -> bytes:
    """An MNIST digit as a person would draw it: dark ink on white, size x size, as PNG bytes."""
    big = Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    Image.fromarray(255 - np.asarray(big)).save(buffer, "PNG")
    return buffer.getvalue()


def well_read_test_digits(count: int = 5) -> list[tuple[np.ndarray, int]]:
    """(image, label) of sample test digits the model reads right, drawn or not, with > 90%."""
    sample = data.load_sample()
    model = trained_seed_cnn()
    chosen = []
    for image, label in zip(sample.test_images, sample.test_labels, strict=True):
        drawn = data.prepare_image(io.BytesIO(drawn_digit_png(image)), normalize=True)
        if train.predict_proba(model, drawn)[0, label] > 0.9:
            chosen.append((image, int(label)))
        if len(chosen) == count:
            break
    return chosen
