"""The named reference networks: `seed-cnn` and `lenet-cnn`."""

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


MODELS: dict[str, Callable[[], nn.Sequential]] = {
    "seed-cnn": seed_cnn,
    "lenet-cnn": lenet_cnn,
}


def build_model(name: str) -> nn.Sequential:
    """A freshly initialised model by its name (`seed-cnn` or `lenet-cnn`)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return MODELS[name]()
