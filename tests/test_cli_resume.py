"""`tinygrad-mnist train` under faults: Ctrl-C and SIGTERM (a real signal to a real process),
--resume, divergence, broken weights, and nothing left behind by a failed start."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tinygrad_mnist import cli


def seed_cnn_args(iterations: int) -> list[str]:
    """`train` arguments: seed-cnn on 20 images per digit of the bundled sample."""
    args = ["--data", "sample", "--model", "seed-cnn", "--limit-per-digit", "20"]
    return [*args, "--iterations", str(iterations), "--quiet"]


LONG = seed_cnn_args(600)  # long enough (a few seconds) to be stopped half way
QUICK = seed_cnn_args(12)


def run(argv, capsys) -> tuple[int, str, str]:
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinygrad-mnist: "), err
    assert "Traceback" not in err
    return lines[0]


def weights(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "model.npz") as archive:
        return {k: archive[k] for k in archive.files}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "run"
    assert cli.main(["train", *LONG, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    "signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_signal_saves_a_checkpoint_and_resume_finishes_the_same_run(
    uninterrupted, tmp_path, capsys, signum, status
):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinygrad_mnist", "train", *LONG, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout.readline().startswith("training seed-cnn")  # fit is starting
        time.sleep(0.4)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == status, stderr
    line = one_error_line(stderr)
    assert f"continue it with `tinygrad-mnist train --resume {out}`" in line
    assert "at iteration" in line
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz", "run.json"]

    code, stdout, stderr = run(["train", "--resume", out], capsys)
    assert code == 0, stderr
    assert stdout.startswith("resuming seed-cnn")
    for name, array in weights(uninterrupted).items():
        np.testing.assert_array_equal(weights(out)[name], array, err_msg=name)
    accuracy = json.loads((uninterrupted / "model.json").read_text())["test_accuracy"]
    assert json.loads((out / "model.json").read_text())["test_accuracy"] == accuracy
    expected = json.loads((uninterrupted / "history.json").read_text())
    resumed = json.loads((out / "history.json").read_text())
    del expected["seconds"], resumed["seconds"]
    assert resumed == expected
    assert not (out / "checkpoint.npz").exists() and not (out / "run.json").exists()


def test_resume_errors(tmp_path, capsys):
    status, _, err = run(["train", "--resume", tmp_path, "--lr", "0.1"], capsys)
    assert status == 2 and "drop --lr" in one_error_line(err)
    status, _, err = run(["train", "--resume", tmp_path], capsys)
    assert status == 1 and "nothing to resume in" in one_error_line(err)
    (tmp_path / "checkpoint.npz").write_bytes(b"junk")
    status, _, err = run(["train", "--out", tmp_path, *QUICK], capsys)
    assert status == 1 and "holds an interrupted run" in one_error_line(err)


def test_failed_start_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, _, err = run(["train", "--data", tmp_path / "nonexistent", *QUICK[2:]], capsys)
    assert status == 1 and "does not exist" in one_error_line(err)
    status, _, err = run(["train", "--data", tmp_path / "nonexistent", "--out", "deep/a/b"], capsys)
    assert status == 1
    assert list(tmp_path.iterdir()) == []  # no runs/, no deep/a/


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_is_not_success(tmp_path, capsys):
    status, _, err = run(
        ["train", *QUICK, "--optimizer", "sgd", "--lr", "1e6", "--out", tmp_path / "sgd"], capsys
    )
    line = one_error_line(err)
    assert status == 1 and "training diverged at iteration" in line and "lower --lr" in line
    assert not (tmp_path / "sgd").exists()
    for lr in ("1000", "10"):
        status, out, err = run(
            ["train", *QUICK, "--iterations", "60", "--lr", lr, "--out", tmp_path / lr], capsys
        )
        line = one_error_line(err)
        assert status == 1 and "no better than chance" in line and "lower --lr" in line


def test_evaluate_refuses_broken_weights(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["train", *QUICK, "--out", out], capsys)[0] == 0
    state = weights(out)
    state[next(iter(state))][0] = np.nan
    np.savez(out / "model.npz", **state)
    status, _, err = run(["evaluate", out / "model.npz", "--data", "sample"], capsys)
    assert status == 1 and "NaN or Inf value(s)" in one_error_line(err)
    npy = tmp_path / "single.npz"
    with open(npy, "wb") as f:
        np.save(f, np.zeros(3))
    status, _, err = run(["evaluate", npy, "--data", "sample"], capsys)
    assert status == 1 and "an .npy file?" in one_error_line(err)


# the command as its console script runs it, after a line that says Python itself has started
# (a Ctrl-C before that is the interpreter's start-up, which no program can answer)
STARTED_LAUNCHER = (
    "import sys; print('started', flush=True); import tinygrad_mnist_launcher as launcher; "
    "sys.exit(launcher.main())"
)


@pytest.mark.parametrize("delay", [0.02, 0.1, 0.25])
def test_ctrl_c_while_the_command_starts_is_one_line_not_a_traceback(tmp_path, delay):
    """The installed command starts in `tinygrad_mnist_launcher`, which imports the package under
    its own Ctrl-C handling: a Ctrl-C during the import is the usual one line and status 130."""
    proc = subprocess.Popen(
        [sys.executable, "-c", STARTED_LAUNCHER, "train", *QUICK, "--out", str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout.readline().strip() == "started"
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert proc.returncode == 130 and "interrupted (Ctrl-C)" in err, (proc.returncode, err)


def test_the_installed_command_starts_in_the_launcher():
    from importlib.metadata import entry_points

    (command,) = [e for e in entry_points(group="console_scripts") if e.name == "tinygrad-mnist"]
    assert command.value == "tinygrad_mnist_launcher:main"
