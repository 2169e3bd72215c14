"""notebooks/mnist_walkthrough.ipynb runs from top to bottom on the bundled sample.

The test executes a copy of the notebook with nbclient (as papermill would: a cell of
overrides is inserted right after the cell tagged "parameters"), in a temporary working
folder, and fails on any cell error. The committed notebook is never modified; its outputs come
from a full-MNIST run (see the README), which the last tests check without executing anything.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "mnist_walkthrough.ipynb"

# fast settings: about a minute on 2 cores
OVERRIDES = {
    "DATA": "sample",
    "LIMIT_PER_DIGIT": 100,
    "MODEL": "seed-cnn",
    "LR": 3e-3,
    "ITERATIONS": 40,
    "BATCH_SIZE": 32,
    "GRADCHECK_IMAGES": 2,
    "GRADCHECK_SAMPLES": 5,
}
STEPS = [
    "## 1. Tensors and autograd",
    "## 2. Data",
    "## 3. The network",
    "## 4. Training",
    "## 5. Evaluation",
    "## 6. Training curves",
    "## 7. Gradient check",
    "## 8. Your own handwriting",
]


def parameters_index(nb) -> int:
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def with_overrides(nb, overrides: dict):
    """A copy of `nb` with a cell assigning `overrides` right after the parameters cell."""
    nb = nbformat.from_dict(nb)  # a deep copy
    source = "# Injected parameters\n" + "\n".join(f"{k} = {v!r}" for k, v in overrides.items())
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(parameters_index(nb) + 1, cell)
    return nb


def outputs_text(cell) -> str:
    """Everything a code cell printed: streams and text/plain results."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out and "text/plain" in out.data:
            parts.append(out.data["text/plain"])
    return "".join(parts)


def mime_types(cell) -> list[str]:
    return [mime for out in cell.get("outputs", []) for mime in out.get("data", {})]


def all_text(nb) -> str:
    return "\n".join(outputs_text(c) for c in nb.cells if c.cell_type == "code")


@pytest.fixture(scope="module")
def committed():
    return nbformat.read(NOTEBOOK, as_version=4)


@pytest.fixture(scope="module")
def executed(committed, tmp_path_factory):
    """The notebook executed on the sample with fast settings, in a temporary folder."""
    workdir = tmp_path_factory.mktemp("notebook")
    nb = with_overrides(committed, OVERRIDES)
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
        coalesce_streams=True,
    )
    client.execute()  # raises CellExecutionError on any error
    nbformat.write(nb, workdir / "executed.ipynb")
    return nb


def test_structure(committed):
    nbformat.validate(committed)
    headings = [c.source.splitlines()[0] for c in committed.cells if c.cell_type == "markdown"]
    positions = [next(i for i, h in enumerate(headings) if h.startswith(s)) for s in STEPS]
    assert positions == sorted(positions), "the steps are out of order"
    params = committed.cells[parameters_index(committed)].source
    for name in (
        "DATA",
        "LIMIT_PER_DIGIT",
        "MODEL",
        "EPOCHS",
        "ITERATIONS",
        "LR",
        "BATCH_SIZE",
        "OPTIMIZER",
        *OVERRIDES,
    ):
        assert re.search(rf"^{name} = ", params, re.M), f"{name} is not in the parameters cell"
    # every step is a markdown explanation followed by code
    for step in STEPS:
        i = next(i for i, c in enumerate(committed.cells) if c.source.startswith(step))
        assert committed.cells[i].cell_type == "markdown"
        assert len(committed.cells[i].source.split()) > 20, f"{step}: no explanation"
        assert committed.cells[i + 1].cell_type == "code", f"{step}: not followed by code"


def test_runs_on_the_sample_without_errors(executed):
    errors = [
        out
        for c in executed.cells
        if c.cell_type == "code"
        for out in c.outputs
        if out.output_type == "error"
    ]
    assert not errors
    text = all_text(executed)
    assert "DATA = 'sample': using the bundled sample" in text
    assert "data: the bundled sample: 5,000 training and 1,000 test images" in text
    assert "LIMIT_PER_DIGIT = 100: kept 1,000 training examples" in text
    assert "seed-cnn: 13,610 parameters" in text
    assert re.search(r"^test accuracy: \d+\.\d\d% \(error rate \d+\.\d\d%\)$", text, re.M)
    assert "40 steps" in text
    assert "tinygrad_mnist.gradcheck of the whole network: passed" in text
    assert "caught: gradcheck:" in text
    assert re.search(r"^a drawn 7: read as \d with probability", text, re.M)


def test_shows_graphs_and_figures(executed):
    code = [c for c in executed.cells if c.cell_type == "code"]
    svgs = sum("image/svg+xml" in mime_types(c) for c in code)
    pngs = sum("image/png" in mime_types(c) for c in code)
    assert svgs == 3  # the scalar expression before and after backward, the network
    assert pngs == 7  # digits, per-digit errors, confusion, mistakes, filters, curves, own digits
    training = next(c for c in code if "history = fit(" in c.source)
    assert progress_reached(executed, training, 40)


def progress_reached(nb, cell, steps: int) -> bool:
    """Did the cell's progress bar get to `steps`? tqdm.auto draws a text bar, or, where
    ipywidgets is installed, a widget whose last state the notebook's metadata keeps."""
    if "application/vnd.jupyter.widget-view+json" not in mime_types(cell):
        return f"{steps}/{steps}" in outputs_text(cell)
    models = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    bars = [m["state"] for m in models.values() if m["model_name"] == "FloatProgressModel"]
    return any(bar["value"] == bar["max"] == steps for bar in bars)


def test_committed_notebook_comes_from_a_full_mnist_run(committed):
    """The outputs on GitHub: lenet-cnn trained on full MNIST to at least 99% test accuracy."""
    text = all_text(committed)
    assert "data: full MNIST: 60,000 training and 10,000 test images" in text
    assert "lenet-cnn: 1,199,882 parameters" in text
    match = re.search(r"^test accuracy: (\d+\.\d\d)% \(error rate \d+\.\d\d%\)$", text, re.M)
    assert match, "the committed notebook has no test accuracy line"
    assert float(match.group(1)) >= 99.0, match.group(0)
    assert "tinygrad_mnist.gradcheck of the whole network: passed" in text
    assert not [
        out
        for c in committed.cells
        if c.cell_type == "code"
        for out in c.outputs
        if out.output_type == "error"
    ]
    assert NOTEBOOK.stat().st_size < 2_000_000
