"""What the package promises its users and CI, checked from the files that promise it: the
README's test command is what CI runs, the metadata is complete (SPDX license, classifiers,
py.typed), and the sdist carries the files its own tests read."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tinygrad_mnist"

if sys.version_info < (3, 11):
    pytest.skip("tomllib (Python 3.11) reads pyproject.toml", allow_module_level=True)
import tomllib  # noqa: E402


@pytest.fixture(scope="module")
def project() -> dict:
    path = ROOT / "pyproject.toml"
    if not path.is_file():
        pytest.skip("no pyproject.toml next to the tests: not a source tree")
    return tomllib.loads(path.read_text())["project"]


def bash_block_after(text: str, words: str) -> str:
    """The first ```bash block after `words` in `text`."""
    return re.search(r"```bash\n(.*?)\n```", text[text.index(words) :], re.S).group(1).strip()


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = bash_block_after(readme, "Run the tests:")
    assert command == "pip install -e '.[test]' && python3 -m pytest -q"
    ci_script = ROOT / ".ci" / "run"
    if not ci_script.is_file():
        pytest.skip("no .ci/run: not a git checkout (an sdist, say)")
    ci = [line.strip() for line in ci_script.read_text().splitlines()]
    assert ci[-1] == command  # after the system packages, nothing but the README's command
    # and the first command a reader meets is the quick start that installs the package
    assert bash_block_after(readme, "## Quick start").startswith("pip install -e . && ")


def test_metadata(project):
    assert project["license"] == "MIT"  # an SPDX expression, not the deprecated table
    assert project["license-files"] == ["LICENSE"]
    classifiers = project["classifiers"]
    assert "Typing :: Typed" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # the SPDX field says it
    lowest = re.fullmatch(r">=3\.(\d+)", project["requires-python"]).group(1)
    versions = [c.rsplit(".", 1)[1] for c in classifiers if re.fullmatch(r".*Python :: 3\.\d+", c)]
    assert versions and min(versions, key=int) == lowest


def test_type_hints_are_shipped():
    assert (PACKAGE / "py.typed").is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py.typed" in data["package-data"]["tinygrad_mnist"]


def test_extras(project):
    extras = project["optional-dependencies"]
    names = {e: {re.split(r"[=<>!~\[ ]", r)[0] for r in reqs} for e, reqs in extras.items()}
    assert {"pytest", "hypothesis", "ruff", "mypy", "nbclient", "ipywidgets"} <= names["test"]
    assert {"jupyterlab", "ipywidgets", "papermill", "ipykernel"} <= names["notebook"]
    # the code checks are pinned: a new release's new rules cannot break CI
    assert [r for r in extras["test"] if r.startswith(("ruff", "mypy"))] == [
        r for r in extras["test"] if r.startswith(("ruff==", "mypy=="))
    ]
    requirements = (ROOT / "requirements.txt").read_text().split()
    assert "-e" in requirements and ".[notebook]" in requirements


def test_the_sdist_carries_what_its_tests_read():
    manifest = (ROOT / "MANIFEST.in").read_text().split()
    grafted = {manifest[i + 1] for i, word in enumerate(manifest) if word == "graft"}
    # folders the tests open: their own helpers and data, the examples, notebook, benchmarks, docs
    read = {"tests", "examples", "notebooks", "benchmarks", "docs"}
    assert read <= grafted
    # pytest's settings, and what the README points at
    assert {"setup.cfg", "LICENSE", "README.md", "requirements.txt"} <= set(manifest)
