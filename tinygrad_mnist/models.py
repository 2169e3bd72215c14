"""The named reference networks: `seed-cnn`, `lenet-cnn` and `bn-cnn`."""

from __future__ import annotations

from collections.abc import Callable

from . import nn


def seed_cnn() -> nn.Sequential:
    """The small CNN of the original notebook: one 3x3 conv with 8 filters, pool, dense.

    (N, 1, 28, 28) -> log-probabilities (N, 10); 13,610 parameters.
    """
    return nn.Sequential(
        nn.Conv2d(1, 8, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 13 * 13, 10),
        nn.LogSoftmax(dim=1),
    )


def lenet_cnn() -> nn.Sequential:
    """Two 3x3 convs (32, 64 filters), pool, dense 128, dense 10 (PyTorch's MNIST example).

    (N, 1, 28, 28) -> log-probabilities (N, 10); 1,199,882 parameters.
    """
    return nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 12 * 12, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
        nn.LogSoftmax(dim=1),
    )


def bn_cnn() -> nn.Sequential:
    """Three 3x3-or-5x5 convs with batch normalisation, two pools, a dense 128 with batch
    normalisation and dropout: the network of the `best` recipe (99.5% on MNIST).

    (N, 1, 28, 28) -> log-probabilities (N, 10); 459,370 parameters. Convolutions and the
    hidden dense layer have no bias: the BatchNorm after each adds its own.
    """
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128, bias=False),
        nn.BatchNorm1d(128),
        nn.ReLU(),
        nn.Dropout(0.25),
        nn.Linear(128, 10),
        nn.LogSoftmax(dim=1),
    )


MODELS: dict[str, Callable[[], nn.Sequential]] = {
    "seed-cnn": seed_cnn,
    "lenet-cnn": lenet_cnn,
    "bn-cnn": bn_cnn,
}


def build_model(name: str) -> nn.Sequential:
    """A freshly initialised model by its name (`seed-cnn`, `lenet-cnn` or `bn-cnn`)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return MODELS[name]()
