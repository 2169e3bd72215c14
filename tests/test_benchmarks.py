"""Smoke tests: the side-by-side benchmark runs for a couple of steps, so it cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_vs_torch.py"


def run_bench(*args: str) -> str:
    # the benchmark measures the fast kernels, whatever mode the test run itself is in
    env = {**os.environ, "TINYGRAD_MNIST_KERNELS": "fast"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_table_against_torch():
    pytest.importorskip("torch")
    out = run_bench("--iterations", "2", "--quick", "--models", "seed-cnn")
    assert "ours/torch" in out
    assert "seed-cnn   train" in out and "inference" in out
    assert "limit ms" in out and "ours/lim" in out and "GEMM rate" in out


def test_json_ours_only_with_memory():
    out = run_bench(
        "--iterations",
        "2",
        "--quick",
        "--no-torch",
        "--json",
        "--models",
        "seed-cnn",
        "--memory-steps",
        "1",
    )
    result = json.loads(out)
    modes = [(r["model"], r["mode"], r["batch"]) for r in result["results"]]
    assert modes == [("seed-cnn", "train", 64), ("seed-cnn", "inference", 100)]
    assert all(r["ours_img_s"] > 0 for r in result["results"])
    assert all(r["limit_ms"] > 0 and r["ours_vs_limit"] > 0 for r in result["results"])
    assert result["machine"]["cpus"] >= 1
    assert result["machine"]["limits"]["gemm_gflop_s"] > 0


def test_same_model_on_both_sides():
    """Both sides start from the same weights, so their outputs agree (float32 tolerance)."""
    pytest.importorskip("torch")
    out = run_bench(
        "--iterations", "2", "--quick", "--json", "--models", "lenet-cnn", "--no-memory"
    )
    for row in json.loads(out)["results"]:
        assert row["max_output_diff"] < 1e-4, row
        assert row["ratio"] > 0


def test_memory_child_reports_peak():
    out = run_bench("--memory-child", "ours", "seed-cnn", "8", "1")
    child = json.loads(out.strip().splitlines()[-1])
    assert child["peak_rss_mib"] >= child["rss_before_train_mib"] > 0


def test_profile_lists_ops_forward_and_backward():
    out = run_bench(
        "--profile", "--iterations", "2", "--quick", "--no-torch", "--json", "--models", "seed-cnn"
    )
    prof = json.loads(out)["profiles"][0]
    passes = {(r["op"].split()[0], r["pass"]) for r in prof["ops"]}
    expected = {
        ("Conv2d[batch-last]", "forward"),
        ("Conv2d[batch-last]", "backward"),  # with the pool's and the ReLU's (kernels/fusion.py)
        ("MaxPool2d[tiled]", "forward"),
    }
    assert expected <= passes
    assert prof["phases"]["step"] > 0


def test_conv2d_timing_prints_both_sides():
    pytest.importorskip("torch")
    script = SCRIPT.with_name("conv2d_timing.py")
    result = subprocess.run(
        [sys.executable, str(script), "--runs", "2"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "tinygrad_mnist" in result.stdout and "PyTorch" in result.stdout
    assert "time ours/PyTorch" in result.stdout


def test_conv2d_timing_algorithm_table():
    pytest.importorskip("torch")
    script = SCRIPT.with_name("conv2d_timing.py")
    result = subprocess.run(
        [sys.executable, str(script), "--algorithms", "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    assert len(rows) >= 10
    chosen = {(int(r[0]), r[-1]) for r in rows}
    assert (1, "im2col") in chosen and (32, "winograd") in chosen


def test_step_cost_counts_lenet_by_its_shapes():
    """FLOPs of a lenet-cnn training step at batch 64 as counted by hand from its shapes
    (a multiply-add is 2 FLOPs; counting rules in benchmarks/limits.py)."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import limits
    finally:
        sys.path.remove(str(SCRIPT.parent))
    from tinygrad_mnist.models import build_model

    n = 64
    conv1 = 2 * 2 * (n * 32 * 26 * 26 * 9)  # forward and d/dweight (images want no gradient)
    conv2 = 3 * 2 * (36 * (6 * 6) * 32 * 64 * n)  # Winograd: 36 products per 4x4 tile, 3 passes
    fc1, fc2 = 3 * 2 * (n * 9216 * 128), 3 * 2 * (n * 128 * 10)
    biases = 2 * n * (32 * 26 * 26 + 64 * 24 * 24 + 128 + 10)
    elementwise = 2 * n * (32 * 26 * 26 + 2 * 64 * 24 * 24 + 128 + 10)  # ReLUs, pool, softmax
    adam = 13 * 1_199_882
    cost = limits.step_cost(build_model("lenet-cnn"), n, True)
    assert cost.flops == conv1 + conv2 + fc1 + fc2 + biases + elementwise + adam
    assert cost.traffic_bytes == 112_885_096


def import_script(name: str):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(SCRIPT.parent))


@pytest.mark.parametrize(
    ("min_seconds", "rounds_run"),
    [(0.0, 2), (0.5, 18), (100.0, 40)],  # 2 asked; 50 steps of 0.01 s need 17, paired: 18; cap
)
def test_rounds_go_on_until_each_side_ran_min_seconds(monkeypatch, min_seconds, rounds_run):
    bench = import_script("bench_vs_torch")
    ticks = iter(range(10**6))
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(ticks) / 100)  # 0.01 s a step
    calls: dict[str, list[int]] = {"ours": [], "torch": []}
    runs = {side: calls[side].append for side in calls}
    times = bench.time_alternating(runs, 2, 3, 0, min_seconds)
    assert [len(times[side]) for side in calls] == [3 * rounds_run] * 2
    assert calls["ours"] == list(range(3 * rounds_run))  # each step gets its own index


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rounds", "0"], "argument --rounds: must be at least 1, got 0"),
        (["--min-seconds", "-1"], "argument --min-seconds: must be at least 0, got -1"),
        (["--iterations", "x"], "argument --iterations: expected a whole number, got 'x'"),
        (["--batch-sizes", "64", "0"], "argument --batch-sizes: must be at least 1, got 0"),
    ],
)
def test_bad_counts_are_refused_with_a_clear_error(args, message):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and message in result.stderr
    assert result.stdout == ""  # refused before anything ran
