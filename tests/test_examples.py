"""Every script in examples/ runs on the bundled sample and writes what it promises."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_example(name: str, *args: str, cwd: Path, timeout: float = 300) -> str:
    """Run examples/NAME with `args` in `cwd`; return its stdout, failing on a non-zero exit."""
    env = dict(os.environ, MPLBACKEND="Agg", TINYGRAD_MNIST_MIRRORS="http://127.0.0.1:9/")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{name} exited with {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} was not written"
    assert path.read_bytes()[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert path.stat().st_size > 1000


def assert_svg(path: Path) -> None:
    assert path.is_file(), f"{path} was not written"
    text = path.read_text()
    assert "<svg" in text and text.rstrip().endswith("</svg>"), f"{path} is not an SVG"


def test_every_example_is_tested():
    tested = {
        "tensor_expressions.py",
        "train_mnist.py",
        "visualize_graph.py",
        "gradcheck_demo.py",
        "pytorch_mnist.py",
    }
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_tensor_expressions(tmp_path, fmt):
    out = run_example(
        "tensor_expressions.py", "--out", str(tmp_path / "graphs"), "--format", fmt, cwd=tmp_path
    )
    assert "L = (a * b + c) * f = (2.0 * -3.0 + 10.0) * -2.0 = -8.0" in out
    assert "dL/da =   6.0   (by hand:   6.0)" in out
    assert "dL/db =  -4.0   (by hand:  -4.0)" in out
    check = assert_png if fmt == "png" else assert_svg
    check(tmp_path / "graphs" / f"before.{fmt}")
    check(tmp_path / "graphs" / f"after.{fmt}")
    if fmt == "svg":
        after = (tmp_path / "graphs" / "after.svg").read_text()
        assert "grad 6" in after and "grad &#45;4" in after  # "-" is escaped in SVG


def test_train_mnist_is_short_and_trains(tmp_path):
    source = (EXAMPLES / "train_mnist.py").read_text()
    assert len(source.splitlines()) < 40
    out = run_example("train_mnist.py", "--out", str(tmp_path / "run"), cwd=tmp_path)
    line = next(line for line in out.splitlines() if line.startswith("test accuracy: "))
    accuracy = float(line.split()[2].rstrip("%"))
    assert accuracy >= 85.0, line  # 2 epochs of seed-cnn on the 5,000-digit sample
    assert "(error rate " in line
    assert (tmp_path / "run" / "model.npz").is_file()
    assert (tmp_path / "run" / "history.csv").read_text().startswith("iteration,")
    assert_png(tmp_path / "run" / "curves.png")


def test_visualize_graph(tmp_path):
    out = run_example("visualize_graph.py", "--out", str(tmp_path), "--format", "svg", cwd=tmp_path)
    assert "seed-cnn: loss " in out
    for kind in ("layers", "collapsed", "highlight"):
        assert_svg(tmp_path / f"seed-cnn-{kind}.svg")
    layers = (tmp_path / "seed-cnn-layers.svg").read_text()
    assert "0: Conv2d(1, 8" in layers and "4.weight" in layers and "NLLLoss" in layers


def test_visualize_graph_png_lenet(tmp_path):
    run_example(
        "visualize_graph.py",
        "--model",
        "lenet-cnn",
        "--format",
        "png",
        "--out",
        str(tmp_path),
        cwd=tmp_path,
    )
    for kind in ("layers", "collapsed", "highlight"):
        assert_png(tmp_path / f"lenet-cnn-{kind}.png")


def test_gradcheck_demo(tmp_path):
    out = run_example("gradcheck_demo.py", cwd=tmp_path)
    assert "gradcheck of the whole network: passed" in out
    assert "the broken log-softmax is caught" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("input", "0.", "4."))]
    assert [row[0] for row in rows] == ["input", "0.weight", "0.bias", "4.weight", "4.bias"]
    assert max(float(row[-1]) for row in rows) < 1e-4  # max relative error per tensor


def test_pytorch_mnist_runs_pytorchs_loops(tmp_path):
    """PyTorch's MNIST example with tinygrad_mnist imported as torch: a few quick steps."""
    out = run_example("pytorch_mnist.py", "--limit", "512", "--log-interval", "2",
                      "--epochs", "2", cwd=tmp_path)  # fmt: skip
    losses = [float(line.split("Loss: ")[1]) for line in out.splitlines() if "Loss: " in line]
    assert len(losses) == 2 * 4 and all(math.isfinite(v) for v in losses), out
    assert losses[-1] < losses[0], out  # it learns
    assert out.count("Test set: Average loss:") == 2 and "/1000 (" in out
