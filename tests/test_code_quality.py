"""The code checks CI runs, as tests: ruff's lint rules and formatting over the whole tree, and
mypy over the package (configuration in pyproject.toml). Both tools are pinned in the `test`
extra, so a new release cannot change the verdict; without them installed these tests skip."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_tool(module: str, *args: str) -> subprocess.CompletedProcess:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[test]')")
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("no pyproject.toml next to the tests: not a source tree")
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_ruff_check():
    result = run_tool("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format():
    result = run_tool("ruff", "format", "--check", "--no-cache", ".")
    assert result.returncode == 0, "run `ruff format .`:\n" + result.stdout + result.stderr


def test_mypy():
    # the files to check and every option come from [tool.mypy] in pyproject.toml
    import numpy as np

    if int(np.__version__.split(".")[0]) < 2:
        # the code runs on NumPy 1.24 too (tested), but is type-checked against NumPy 2's stubs:
        # older stubs lack arguments it passes behind a version check (reshape's copy=)
        pytest.skip(f"type-checked against NumPy 2's stubs, NumPy {np.__version__} installed")
    result = run_tool("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
