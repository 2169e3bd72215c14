"""Optimizers (SGD, Adam, AdamW, RMSprop) and learning-rate schedulers, as `torch.optim`."""

from . import lr_scheduler
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSprop

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "RMSprop", "lr_scheduler"]
