"""Shared fixtures for the autograd tests (the `check_op` helper lives in helpers.py)."""

from __future__ import annotations

import helpers
import numpy as np
import pytest

from tinygrad_mnist import tensor as tensor_module


@pytest.fixture(autouse=True)
def _grad_mode_is_restored():
    """Every test starts with gradient recording on, whatever the test before it did."""
    tensor_module._grad_enabled = True
    yield
    tensor_module._grad_enabled = True


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def without_torch(monkeypatch):
    """Make `check_op` behave as on a machine where PyTorch is not installed."""
    monkeypatch.setattr(helpers, "torch", None)
