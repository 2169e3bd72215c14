"""Functions on tensors: activations and the losses (mean over the batch)."""

from __future__ import annotations

from ..tensor import Tensor


def relu(x: Tensor) -> Tensor:
    """max(x, 0) elementwise."""
    return x.relu()


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along axis."""
    return x.softmax(axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log(softmax(x)) along axis, computed stably."""
    return x.log_softmax(axis)


def nll_loss(log_probs: Tensor, targets) -> Tensor:
    """Mean negative log-likelihood: log_probs (N, C), targets (N,) integer class indices."""
    return log_probs.nll_loss(targets)


def cross_entropy(logits: Tensor, targets) -> Tensor:
    """Mean cross-entropy of raw logits (N, C) against targets (N,): log_softmax + nll, fused."""
    return logits.cross_entropy(targets)
