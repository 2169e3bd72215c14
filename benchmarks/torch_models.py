"""The reference CNNs written in PyTorch, for the side-by-side benchmarks."""

from __future__ import annotations

import numpy as np


def torch_model(name: str, state: dict[str, np.ndarray] | None = None):
    """`seed-cnn`, `lenet-cnn` or `bn-cnn` as a torch.nn.Sequential, loaded with `state` (a
    state_dict, buffers included) when given."""
    import torch
    from torch import nn

    if name == "seed-cnn":
        model = nn.Sequential(
            nn.Conv2d(1, 8, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * 13 * 13, 10),
            nn.LogSoftmax(dim=1),
        )
    elif name == "lenet-cnn":
        model = nn.Sequential(
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
    elif name == "bn-cnn":
        model = nn.Sequential(
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
    else:
        raise ValueError(f"unknown model {name!r}; expected seed-cnn, lenet-cnn or bn-cnn")
    if state is not None:
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    return model
