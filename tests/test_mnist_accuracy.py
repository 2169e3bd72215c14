"""On real MNIST: one epoch of lenet-cnn (Adam, lr 1e-3, batch 64) reaches 98% test accuracy.

Needs the four MNIST files in /work/shared/data/mnist (next to the repository); skipped
otherwise. Slow (a few minutes on 2 cores), but it runs in CI.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tinygrad_mnist import data, nn, optim, train
from tinygrad_mnist.models import build_model

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.mark.slow
@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"no MNIST files in {MNIST_DIR}")
def test_lenet_one_epoch_reaches_98_percent():
    mnist = data.load_mnist(MNIST_DIR, download=False)
    x = data.preprocess(mnist.train_images, normalize=True)
    xt = data.preprocess(mnist.test_images, normalize=True)
    assert len(x) == 60_000 and len(xt) == 10_000

    nn.init.manual_seed(0)
    model = build_model("lenet-cnn")
    history = train.fit(
        model,
        optim.Adam(model.parameters(), lr=1e-3),
        (x, mnist.train_labels),
        (xt, mnist.test_labels),
        epochs=1,
        batch_size=64,
        eval_every=200,
        test_subset=1000,
        progress=False,
    )
    result = train.evaluate(model, xt, mnist.test_labels)
    assert history.iteration[-1] == 938
    assert history.test_accuracy[-1] == pytest.approx(result.accuracy)
    assert result.accuracy >= 0.98, str(result)


def test_accuracy_benchmark_runs():
    """benchmarks/accuracy_vs_torch.py, a few steps on the sample, so that it cannot rot."""
    pytest.importorskip("torch")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy_vs_torch.py"
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            "--data",
            "sample",
            "--models",
            "seed-cnn",
            "--best",
            "--iterations",
            "3",
            "--cli-args",
            "--model seed-cnn --iterations 3 --limit-per-digit 20",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 4  # header, seed-cnn, the best recipe, CLI
    assert rows[2].startswith("| bn-cnn (`--recipe best`) | 3 steps")
    ours, torch_ = (float(rows[1].split(" | ")[i].rstrip("%")) for i in (2, 4))
    assert abs(ours - torch_) <= 0.2  # same init, batches and updates: (almost) same predictions
