"""Neural-network building blocks: Module, layers, functional (losses) and init."""

from . import functional, init
from .layers import (
    Conv2d,
    Flatten,
    Linear,
    LogSoftmax,
    MaxPool2d,
    ReLU,
    Reshape,
    Sequential,
    Softmax,
)
from .module import Module

__all__ = [
    "Conv2d",
    "Flatten",
    "Linear",
    "LogSoftmax",
    "MaxPool2d",
    "Module",
    "ReLU",
    "Reshape",
    "Sequential",
    "Softmax",
    "functional",
    "init",
]
