"""`tinygrad-mnist predict WEIGHTS IMAGE...` and `tinygrad-mnist serve WEIGHTS`."""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sample_model import drawn_digit_png, save_weights, well_read_test_digits

from tinygrad_mnist.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_weights(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory) -> list[tuple[Path, int]]:
    """Three PNGs of digits drawn dark on white, named after their labels."""
    folder = tmp_path_factory.mktemp("digits")
    files = []
    for i, (image, label) in enumerate(well_read_test_digits(3)):
        path = folder / f"digit{i}_{label}.png"
        path.write_bytes(drawn_digit_png(image))
        files.append((path, label))
    return files


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_predict_prints_one_line_per_image(capsys, weights, digit_files) -> None:
    status, out, err = run(capsys, "predict", weights, *(path for path, _ in digit_files))
    assert status == 0, err
    lines = out.splitlines()
    assert len(lines) == len(digit_files)
    for line, (path, label) in zip(lines, digit_files, strict=True):
        match = f"{path}: {label}  ({label} "
        assert line.startswith(match), line
        assert line.count("%") == 3


def test_predict_json(capsys, weights, digit_files) -> None:
    status, out, _ = run(capsys, "predict", weights, *(p for p, _ in digit_files), "--json")
    assert status == 0
    answer = json.loads(out)
    assert answer["model"] == "seed-cnn"
    for prediction, (path, label) in zip(answer["predictions"], digit_files, strict=True):
        assert prediction["image"] == str(path) and prediction["digit"] == label
        assert len(prediction["probabilities"]) == 10
        assert abs(sum(prediction["probabilities"]) - 1) < 1e-4
        assert int(np.argmax(prediction["probabilities"])) == label


def test_predict_top_and_invert(capsys, weights, digit_files) -> None:
    path, label = digit_files[0]
    status, out, _ = run(capsys, "predict", weights, path, "--top", "1", "--invert", "yes")
    assert status == 0 and out.count("%") == 1 and f": {label}  " in out
    status, out, err = run(capsys, "predict", weights, path, "--invert", "no")
    assert status == 1 and out == ""
    assert err.startswith("tinygrad-mnist: error: found no ink") and err.count("\n") == 1


def test_predict_errors_are_one_line(capsys, weights, digit_files, tmp_path: Path) -> None:
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), "white").save(blank)
    good = digit_files[0][0]
    cases = [
        (("predict", weights, good, tmp_path / "missing.png"), 1, "no image file at"),
        (("predict", weights, not_image), 1, "notes.png is not a readable image"),
        (("predict", weights, blank), 1, "found no ink"),
        (("predict", tmp_path / "none.npz", good), 1, "no weights file at"),
        (("predict", weights, good, "--invert", "maybe"), 2, "invalid choice"),
        (("predict", weights, good, "--top", "0"), 2, "expected a whole number >= 1"),
    ]
    for argv, expected_status, message in cases:
        if expected_status == 2:
            with pytest.raises(SystemExit) as exit_info:
                main([str(a) for a in argv])
            status = exit_info.value.code
            out, err = capsys.readouterr()
        else:
            status, out, err = run(capsys, *argv)
        assert status == expected_status, argv
        assert err.startswith("tinygrad-mnist") and message in err, err
        assert err.count("\n") == 1 and "Traceback" not in err


def test_serve_prints_its_url_answers_and_stops_on_ctrl_c(weights, digit_files) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tinygrad_mnist", "serve", str(weights), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "serve printed nothing within 60 s"
        first = process.stdout.readline()
        assert "seed-cnn" in first and "Ctrl-C" in first, first
        url = first.split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/model", timeout=30) as response:
            assert json.loads(response.read())["model"] == "seed-cnn"
        path, label = digit_files[0]
        png = base64.b64encode(path.read_bytes()).decode()
        body = json.dumps({"image": "data:image/png;base64," + png})
        answer_request = urllib.request.Request(url + "api/predict", data=body.encode())
        with urllib.request.urlopen(answer_request, timeout=30) as response:
            assert json.loads(response.read())["digit"] == label
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


def test_serve_on_a_busy_port_is_a_one_line_error(capsys, weights) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        start = time.perf_counter()
        status, out, err = run(capsys, "serve", weights, "--port", port)
    assert time.perf_counter() - start < 30
    assert status == 1
    assert err.startswith(f"tinygrad-mnist: error: cannot serve on 127.0.0.1:{port}")
    assert err.count("\n") == 1
