"""Shared fixtures for the autograd tests (the `check_op` helper lives in helpers.py)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import helpers
import numpy as np
import pytest

from tinygrad_mnist import kernels
from tinygrad_mnist import tensor as tensor_module

# The op tests run twice, with the fast kernels and with the textbook ops only; the tests of the
# kernels themselves always run with the kernels allowed; the rest in the environment's mode.
KERNEL_MODES = {
    "test_ops.py": ["fast", "reference"],
    "test_tensor.py": ["fast", "reference"],
    "test_properties.py": ["fast", "reference"],
    "test_gradcheck.py": ["fast", "reference"],
    "test_optim.py": ["fast", "reference"],
    "test_kernels.py": ["fast"],
    "test_speed_paths.py": ["fast"],
    "test_winograd.py": ["fast"],
}


def pytest_configure(config):
    """Tests never touch the internet or the user's MNIST cache, subprocesses included.

    Downloads go to a closed port on 127.0.0.1 (refused at once), the cache is a fresh temp
    folder, and $TINYGRAD_MNIST_DATA is cleared; tests that need real MNIST name its folder.
    """
    os.environ["TINYGRAD_MNIST_MIRRORS"] = "http://127.0.0.1:9/"
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="tinygrad_mnist_test_cache_")
    os.environ.pop("TINYGRAD_MNIST_DATA", None)
    os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _grad_mode_is_restored():
    """Every test starts with gradient recording on, whatever the test before it did."""
    tensor_module._grad_enabled = True
    yield
    tensor_module._grad_enabled = True


def pytest_generate_tests(metafunc):
    modes = KERNEL_MODES.get(Path(str(metafunc.definition.fspath)).name)
    if modes:
        metafunc.parametrize("kernel_mode", modes, indirect=True)


@pytest.fixture(autouse=True)
def kernel_mode(request):
    """The kernel mode a test runs in (see KERNEL_MODES)."""
    mode = getattr(request, "param", None)
    if mode is None:
        yield kernels.mode()
        return
    with kernels.use(mode):
        yield mode


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def without_torch(monkeypatch):
    """Make `check_op` behave as on a machine where PyTorch is not installed."""
    monkeypatch.setattr(helpers, "torch", None)
