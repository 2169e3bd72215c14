"""The tinygrad-mnist command: train and evaluate end to end on the bundled sample, and one clear
error line (no traceback, no half-written files) for every bad input."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinygrad_mnist import cli, data
from tinygrad_mnist.train import History

RESULT = re.compile(r"^test accuracy: \d+\.\d\d% \(error rate \d+\.\d\d%\)$")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OUTPUTS = [
    "confusion.png",
    "curves.png",
    "filters.png",
    "history.csv",
    "history.json",
    "misclassified.png",
    "model.json",
    "model.npz",
]
# a run that takes a few seconds: seed-cnn, 12 steps on 30 images per digit
QUICK = ["--model", "seed-cnn", "--iterations", "12", "--limit-per-digit", "30", "--quiet"]


def run(argv, capsys) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit status, stdout, stderr)."""
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status, err, *fragments, code=None):
    assert status != 0
    if code is not None:
        assert status == code
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tinygrad-mnist")
    assert "error" in lines[0]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def write_idx_folder(folder: Path, per_digit: int = 20) -> Path:
    """The four MNIST IDX files (gzipped) holding a few sample digits."""
    sample = data.load_sample()
    folder.mkdir(parents=True, exist_ok=True)
    splits = [
        (data.TRAIN_IMAGES, data.TRAIN_LABELS, sample.train_images, sample.train_labels),
        (data.TEST_IMAGES, data.TEST_LABELS, sample.test_images, sample.test_labels),
    ]
    for images_name, labels_name, images, labels in splits:
        images, labels = data.limit_per_digit(images, labels, per_digit)
        header = struct.pack(">IIII", 2051, len(images), 28, 28)
        (folder / (images_name + ".gz")).write_bytes(gzip.compress(header + images.tobytes()))
        header = struct.pack(">II", 2049, len(labels))
        (folder / (labels_name + ".gz")).write_bytes(gzip.compress(header + labels.tobytes()))
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One quick training run on the bundled sample, through `python -m tinygrad_mnist`."""
    out = tmp_path_factory.mktemp("run") / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tinygrad_mnist",
            "train",
            "--data",
            "sample",
            "--out",
            str(out),
            *QUICK,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, out


def test_train_end_to_end(trained):
    proc, out = trained
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert RESULT.match(last), last
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS  # and no temp files
    for name in OUTPUTS:
        if name.endswith(".png"):
            raw = (out / name).read_bytes()
            assert raw[:8] == PNG_SIGNATURE and len(raw) > 5000, name
    weights = np.load(out / "model.npz")
    assert sorted(weights.files) == ["0.bias", "0.weight", "4.bias", "4.weight"]
    history = History.from_json(out / "history.json")
    assert history == History.from_csv(out / "history.csv")
    assert history.iteration[-1] == 12
    info = json.loads((out / "model.json").read_text())
    assert info["model"] == "seed-cnn" and info["recipe"]["iterations"] == 12
    accuracy = float(last.split()[2].rstrip("%")) / 100
    assert info["test_accuracy"] == pytest.approx(accuracy, abs=5e-5)
    assert history.test_accuracy[-1] == pytest.approx(accuracy, abs=5e-5)
    assert accuracy > 0.3  # far better than chance even after 12 steps


def test_evaluate_saved_weights(trained, capsys, tmp_path):
    proc, out = trained
    expected = proc.stdout.strip().splitlines()[-1]
    status, stdout, err = run(["evaluate", out / "model.npz", "--data", "sample"], capsys)
    assert status == 0, err
    assert stdout.strip().splitlines()[-1] == expected
    assert "seed-cnn" in stdout and "error rate per digit" in stdout
    # without the sidecar, the model is recognised from the weight shapes
    lone = tmp_path / "weights.npz"
    lone.write_bytes((out / "model.npz").read_bytes())
    status, stdout, err = run(["evaluate", lone, "--data", "sample"], capsys)
    assert status == 0, err
    assert stdout.strip().splitlines()[-1] == expected
    # the wrong model is a clear error
    status, _, err = run(["evaluate", lone, "--data", "sample", "--model", "lenet-cnn"], capsys)
    assert_one_line_error(status, err, "does not fit lenet-cnn")


def test_reproducible_and_data_folder(tmp_path, capsys):
    folder = write_idx_folder(tmp_path / "mnist")
    results = []
    for name in ("a", "b"):
        status, out, err = run(
            ["train", "--data", folder, "--out", tmp_path / name, *QUICK], capsys
        )
        assert status == 0, err
        assert f"MNIST in {folder}" in out and "200 train" in out
        results.append(out.strip().splitlines()[-1])
    assert results[0] == results[1]
    first, second = (History.from_json(tmp_path / n / "history.json") for n in "ab")
    first.seconds = second.seconds = []
    assert first == second


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["train", "--model", "resnet"], "invalid choice: 'resnet'"),
        (["train", "--epochs", "1", "--iterations", "5"], "not allowed with argument"),
        (["train", "--lr", "-0.1"], "expected a number > 0"),
        (["train", "--lr", "fast"], "expected a number > 0"),
        (["train", "--epochs", "0"], "expected a whole number >= 1"),
        (["train", "--batch-size", "x"], "expected a whole number >= 1"),
        (["train", "--optimizer", "rmsprop"], "invalid choice"),
        (["evaluate"], "required"),
        (["fly"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_arguments_exit_2(argv, fragment, capsys, tmp_path):
    status, out, err = run(
        [*argv, "--out", tmp_path / "out"] if argv[:1] == ["train"] else argv, capsys
    )
    assert_one_line_error(status, err, fragment, code=2)
    assert not (tmp_path / "out").exists()


def test_missing_data_folder(tmp_path, capsys):
    status, _, err = run(
        ["train", "--data", tmp_path / "nowhere", "--out", tmp_path / "out", *QUICK], capsys
    )
    assert_one_line_error(status, err, "does not exist", code=1)
    assert not (tmp_path / "out").exists()


def test_incomplete_data_folder(tmp_path, capsys):
    folder = write_idx_folder(tmp_path / "mnist")
    (folder / (data.TEST_LABELS + ".gz")).unlink()
    status, _, err = run(["train", "--data", folder, "--out", tmp_path / "out", *QUICK], capsys)
    assert_one_line_error(status, err, "t10k-labels-idx1-ubyte", code=1)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["truncate", "magic", "gzip"])
def test_corrupt_idx_file(tmp_path, capsys, damage):
    folder = write_idx_folder(tmp_path / "mnist")
    path = folder / (data.TRAIN_IMAGES + ".gz")
    raw = gzip.decompress(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(gzip.compress(raw[:-100]))
    elif damage == "magic":
        path.write_bytes(gzip.compress(struct.pack(">I", 2049) + raw[4:]))
    else:
        path.write_bytes(path.read_bytes()[:50])
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier file")
    status, _, err = run(["train", "--data", folder, "--out", out, *QUICK], capsys)
    assert_one_line_error(status, err, "train-images-idx3-ubyte", code=1)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]  # an existing folder is left alone


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    status, _, err = run(["train", "--data", "sample", "--out", blocker / "run", *QUICK], capsys)
    assert_one_line_error(status, err, "cannot write to output folder", code=1)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores modes")
def test_read_only_out(tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir(mode=0o500)
    status, _, err = run(["train", "--data", "sample", "--out", out, *QUICK], capsys)
    assert_one_line_error(status, err, "cannot write to output folder", code=1)
    assert not list(out.iterdir())


def test_evaluate_bad_weights(tmp_path, capsys):
    status, _, err = run(["evaluate", tmp_path / "missing.npz", "--data", "sample"], capsys)
    assert_one_line_error(status, err, "no weights file", code=1)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip file")
    status, _, err = run(["evaluate", junk, "--data", "sample"], capsys)
    assert_one_line_error(status, err, "not a valid .npz", code=1)
    other = tmp_path / "other.npz"
    np.savez(other, w=np.zeros(3))
    status, _, err = run(["evaluate", other, "--data", "sample"], capsys)
    assert_one_line_error(status, err, "match none of the models", code=1)


def test_default_data_falls_back_to_the_sample(tmp_path, capsys, monkeypatch):
    def unavailable(*args, **kwargs):
        raise data.DownloadError("could not download train-images-idx3-ubyte.gz\n  (offline)")

    monkeypatch.setattr(data, "load_mnist", unavailable)
    status, out, err = run(["train", "--out", tmp_path / "out", *QUICK], capsys)
    assert status == 0
    warning = [line for line in err.splitlines() if "WARNING" in line]
    assert len(warning) == 1
    assert "could not download" in warning[0] and "bundled" in warning[0]
    assert "--data DIR" in warning[0] and "$TINYGRAD_MNIST_DATA" in warning[0]
    assert "the bundled sample" in out
    assert RESULT.match(out.strip().splitlines()[-1])


def test_damaged_file_in_data_env_is_an_error(tmp_path, capsys, monkeypatch):
    folder = write_idx_folder(tmp_path / "mnist")
    path = folder / (data.TRAIN_LABELS + ".gz")
    path.write_bytes(path.read_bytes()[:40])  # truncated
    monkeypatch.setenv("TINYGRAD_MNIST_DATA", str(folder))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    status, _, err = run(["train", "--out", tmp_path / "out", *QUICK], capsys)
    assert_one_line_error(status, err, str(path), "not a valid gzip file", code=1)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_damaged_cache_is_moved_aside_and_the_fallback_says_why(tmp_path, capsys, monkeypatch):
    cache = write_idx_folder(tmp_path / "cache" / "tinygrad_mnist")
    contents = {name: gzip.decompress((cache / (name + ".gz")).read_bytes()) for name in data.FILES}
    monkeypatch.setattr(
        data,
        "CONTENT_CHECKSUMS",  # the tiny files pass for MNIST in the cache
        {name: hashlib.sha256(raw).hexdigest() for name, raw in contents.items()},
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    damaged = cache / (data.TEST_LABELS + ".gz")
    damaged.write_bytes(damaged.read_bytes()[:-8])  # truncated: no gzip trailer
    status, out, err = run(["train", "--out", tmp_path / "out", *QUICK], capsys)
    assert status == 0 and "Traceback" not in err
    moved, fallback = [line for line in err.splitlines() if "WARNING" in line]
    assert moved.startswith(f"tinygrad-mnist: WARNING: {damaged}: not a valid gzip file")
    assert moved.endswith(f"moved it aside to {damaged.name}.corrupt, downloading it again")
    url = os.environ["TINYGRAD_MNIST_MIRRORS"] + damaged.name  # conftest's closed port
    assert f"(could not download {damaged.name}: {url}: " in fallback
    assert "refused" in fallback and "the bundled sample" in out
    assert (cache / (damaged.name + ".corrupt")).is_file() and not damaged.exists()


def test_help_lists_the_commands(capsys):
    status, out, _ = run(["--help"], capsys)
    assert status == 0
    assert "train" in out and "evaluate" in out and "graph" in out
    status, out, _ = run(["train", "--help"], capsys)
    assert status == 0 and "--limit-per-digit" in out and "--iterations" in out
