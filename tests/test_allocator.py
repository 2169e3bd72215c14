"""The glibc allocator tuning applied at import: on where it can be, off when asked."""

import sys

import pytest

from tinygrad_mnist.kernels.allocator import tune_allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tuning is Linux-only")
def test_tuning_applies_on_linux(monkeypatch):
    monkeypatch.delenv("TINYGRAD_MNIST_MALLOC_TUNING", raising=False)
    assert tune_allocator() is True


def test_tuning_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("TINYGRAD_MNIST_MALLOC_TUNING", "0")
    assert tune_allocator() is False
