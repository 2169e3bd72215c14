"""The glibc allocator tuning: on where it can be, off when asked, never at import."""

import json
import subprocess
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


def test_importing_the_package_changes_no_process_setting():
    """Only the training entry points tune the allocator; import leaves the process alone:
    no malloc tuning, no environment, NumPy error-state, print-option or BLAS-thread change."""
    script = """
import ctypes, json, os, numpy as np
from threadpoolctl import threadpool_info
loaded = []
real_cdll = ctypes.CDLL
before = (dict(os.environ), np.geterr(), np.get_printoptions(), threadpool_info())
# libraries loaded by the import itself (threadpool_info's own libc, as in threadpoolctl 3.1,
# is not the package's doing)
ctypes.CDLL = lambda name, *a, **k: loaded.append(str(name)) or real_cdll(name, *a, **k)
import tinygrad_mnist, tinygrad_mnist.cli
ctypes.CDLL = real_cdll
after = (dict(os.environ), np.geterr(), np.get_printoptions(), threadpool_info())
print(json.dumps({"libc": [n for n in loaded if "libc" in n], "same": repr(before) == repr(after)}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out.strip().splitlines()[-1]) == {"libc": [], "same": True}
