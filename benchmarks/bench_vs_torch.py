"""Train and run the reference CNNs with tinygrad_mnist and with PyTorch, side by side.

For each model (seed-cnn, lenet-cnn) and training batch size it measures, in one process:

- training throughput (images/s): forward + backward + Adam step, same weights, same data;
- inference throughput (images/s) at batch 1000 (no graph recorded);
- peak memory (process RSS) while training, each framework in a fresh child process;
- the step-time limit: the time one step would take if it ran at this machine's GEMM rate or
  moved only its unavoidable memory traffic at this machine's bandwidth, whichever is longer
  (both measured at the end of the same run), and how many times that limit each framework
  takes. The FLOP and traffic counts per step come from the model's shapes; the counting rules
  are in benchmarks/limits.py.

The two frameworks are timed alternately (ours, torch, torch, ours, ...) in short rounds, and
every step is timed on its own, so a neighbour process that slows the machine down slows both
sides alike; the table shows medians and the ratio ours / PyTorch (above 1 means we are
faster), and a second table the FLOPs, traffic and limits behind the `limit ms` column.

    python benchmarks/bench_vs_torch.py                  # the full table
    python benchmarks/bench_vs_torch.py --json           # the same numbers as JSON
    python benchmarks/bench_vs_torch.py --profile        # time per op, forward and backward
    python benchmarks/bench_vs_torch.py --iterations 2 --quick   # a smoke run (seconds)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
import weakref
from collections import defaultdict
from collections.abc import Callable

import numpy as np
from limits import Machine, measure_machine, step_cost, step_limits  # beside this script
from torch_models import torch_model  # benchmarks/torch_models.py, beside this script

import tinygrad_mnist
from tinygrad_mnist import Tensor, no_grad, ops
from tinygrad_mnist.data import load_sample, preprocess
from tinygrad_mnist.kernels.allocator import tune_allocator
from tinygrad_mnist.models import build_model
from tinygrad_mnist.nn.functional import nll_loss
from tinygrad_mnist.optim import Adam

# as a training run (`fit`, the CLI) does; both frameworks share this process and its allocator
tune_allocator()

MODELS = ("seed-cnn", "lenet-cnn")
TORCH_THREADS = 2
LR = 1e-3


# ---------------------------------------------------------------- the two sides


def load_batches(batch_size: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` distinct batches of real digits from the bundled sample (float32, int64 labels)."""
    sample = load_sample()
    x = preprocess(sample.train_images)
    y = sample.train_labels.astype(np.int64)
    count = max(1, min(count, len(x) // batch_size))
    return [
        (x[i * batch_size : (i + 1) * batch_size], y[i * batch_size : (i + 1) * batch_size])
        for i in range(count)
    ]


class Ours:
    """tinygrad_mnist: one model, one Adam, a train step and an inference call."""

    label = "tinygrad_mnist"

    def __init__(self, name: str, seed: int = 0):
        np.random.seed(seed)
        self.model = build_model(name)
        self.optimizer = Adam(self.model.parameters(), lr=LR)

    def state(self) -> dict[str, np.ndarray]:
        return self.model.state_dict()

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        self.optimizer.zero_grad()
        loss = nll_loss(self.model(Tensor(x)), y)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.model.eval()
        with no_grad():
            out = self.model(Tensor(x)).data
        self.model.train()
        return out


class Torch:
    """PyTorch on the CPU with 2 threads: the same model (same initial weights) and Adam."""

    label = "PyTorch"

    def __init__(self, name: str, state: dict[str, np.ndarray]):
        import torch

        torch.set_num_threads(TORCH_THREADS)
        self.torch = torch
        self.model = torch_model(name, state)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LR)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        torch = self.torch
        self.optimizer.zero_grad(set_to_none=True)
        out = self.model(torch.from_numpy(x))
        loss = torch.nn.functional.nll_loss(out, torch.from_numpy(y))
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.model.eval()
        with self.torch.no_grad():
            out = self.model(self.torch.from_numpy(x)).numpy()
        self.model.train()
        return out


# ---------------------------------------------------------------- timing


def time_alternating(
    runs: dict[str, Callable[[int], None]],
    rounds: int,
    iterations: int,
    warmup: int,
    min_seconds: float = 0.0,
) -> dict[str, list[float]]:
    """Seconds per call of each `run(i)`, timed one call at a time, alternating the sides.

    Each round runs every side `iterations` times; the order flips every round
    (A B, B A, A B, ...) so that drift in machine load falls on both sides alike. After
    `rounds` rounds, more follow (in pairs, up to 20x as many) until every side has been timed
    for `min_seconds`: a step of a few ms would otherwise be sampled over a fraction of a
    second, and one quiet or busy moment of the machine would decide its median.
    """
    names = list(runs)
    for name in names:
        for i in range(warmup):
            runs[name](i)
    times: dict[str, list[float]] = {name: [] for name in names}

    def too_short() -> bool:
        return min(sum(ts) for ts in times.values()) < min_seconds

    r = 0
    while r < rounds or (r < 20 * rounds and (too_short() or (r - rounds) % 2 == 1)):
        for name in names if r % 2 == 0 else reversed(names):
            for i in range(iterations):
                start = time.perf_counter()
                runs[name](r * iterations + i)
                times[name].append(time.perf_counter() - start)
        r += 1
    return times


def check_same_model(ours: Ours, theirs: Torch | None, x: np.ndarray) -> float:
    """Largest difference of the two models' outputs on x (they start from the same weights)."""
    if theirs is None:
        return 0.0
    return float(np.abs(ours.infer(x) - theirs.infer(x)).max())


def bench_model(
    name: str,
    batch_sizes: list[int],
    rounds: int,
    iterations: int,
    warmup: int,
    infer_batch: int,
    with_torch: bool,
    min_seconds: float = 0.0,
) -> list[dict]:
    """One row per batch size (training) plus one for inference, as dicts."""
    rows = []
    infer_x = load_batches(infer_batch, 1)[0][0]
    for batch in batch_sizes:
        batches = load_batches(batch, 16)
        ours = Ours(name)
        theirs = Torch(name, ours.state()) if with_torch else None
        max_diff = check_same_model(ours, theirs, batches[0][0])

        def step(side, i, batches=batches):
            x, y = batches[i % len(batches)]
            side.train_step(x, y)

        runs = {"ours": lambda i, o=ours: step(o, i)}
        if theirs is not None:
            runs["torch"] = lambda i, t=theirs: step(t, i)
        times = time_alternating(runs, rounds, iterations, warmup, min_seconds)
        rows.append(_row(name, "train", batch, times, max_diff))

    ours = Ours(name)
    theirs = Torch(name, ours.state()) if with_torch else None
    runs = {"ours": lambda i: ours.infer(infer_x)}
    if theirs is not None:
        runs["torch"] = lambda i: theirs.infer(infer_x)
    times = time_alternating(runs, rounds, max(1, iterations // 4), min(warmup, 1), min_seconds)
    max_diff = check_same_model(ours, theirs, infer_x)
    rows.append(_row(name, "inference", infer_batch, times, max_diff))
    return rows


def _row(model: str, mode: str, batch: int, times: dict[str, list[float]], max_diff: float):
    row = {"model": model, "mode": mode, "batch": batch, "max_output_diff": max_diff}
    for side, ts in times.items():
        median = float(np.median(ts))
        row[f"{side}_ms"] = median * 1e3
        row[f"{side}_img_s"] = batch / median
        row[f"{side}_samples"] = len(ts)
    if "torch_img_s" in row:
        row["ratio"] = row["ours_img_s"] / row["torch_img_s"]
    return row


# ---------------------------------------------------------------- memory


def _rss_kib(field: str = "VmRSS") -> int:
    """This process's resident set size (VmRSS) or its peak (VmHWM) in KiB.

    Linux only (/proc/self/status); elsewhere the peak falls back to ru_maxrss. Not ru_maxrss
    on Linux: it survives exec, so a child would report its parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if field == "VmHWM" else 0


def memory_child(side: str, name: str, batch: int, steps: int) -> dict:
    """Run in a fresh process: train `steps` steps and report RSS before and the peak."""
    batches = load_batches(batch, 4)
    ours = Ours(name)
    runner = ours if side == "ours" else Torch(name, ours.state())
    if side != "ours":
        del ours
    before = _rss_kib()
    for i in range(steps):
        x, y = batches[i % len(batches)]
        runner.train_step(x, y)
    peak = _rss_kib("VmHWM")
    return {"rss_before_train_mib": before / 1024, "peak_rss_mib": peak / 1024}


def measure_memory(name: str, batch: int, steps: int, with_torch: bool) -> dict:
    """Peak process RSS while training, each side in its own fresh Python process."""
    result = {"model": name, "batch": batch}
    sides = ["ours", "torch"] if with_torch else ["ours"]
    for side in sides:
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--memory-child",
            side,
            name,
            str(batch),
            str(steps),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        child = json.loads(out.strip().splitlines()[-1])
        result[f"{side}_peak_rss_mib"] = child["peak_rss_mib"]
        result[f"{side}_train_growth_mib"] = child["peak_rss_mib"] - child["rss_before_train_mib"]
    if with_torch:
        result["ratio"] = result["ours_peak_rss_mib"] / result["torch_peak_rss_mib"]
    return result


# ---------------------------------------------------------------- per-op profile


@contextlib.contextmanager
def op_timer(totals: dict[tuple[str, str], float]):
    """Time every op's forward and backward while inside: totals[(op, pass)] += seconds.

    The op classes' methods are wrapped for the duration and restored afterwards; nothing in
    the framework knows about it.
    """
    originals = []
    for op_class in ops.op_classes():
        for method in ("forward", "backward"):
            if method in vars(op_class):
                original = vars(op_class)[method]
                originals.append((op_class, method, original))
                setattr(op_class, method, _timed(original, method, totals))
    try:
        yield totals
    finally:
        for op_class, method, original in originals:
            setattr(op_class, method, original)


_output_shapes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # op -> forward's


def _timed(fn, method: str, totals):
    """Wrap an op method; the key names the op and its output shape, so layers stay apart."""

    def wrapper(self, *args, **kwargs):
        start = time.perf_counter()
        op_name = self.name
        result = fn(self, *args, **kwargs)
        elapsed = time.perf_counter() - start
        if method == "forward":
            shape = _output_shapes[self] = result.shape
        else:  # a fused backward may feed the op its gradient another way (kernels/fusion.py)
            shape = args[0].shape if args[0] is not None else _output_shapes.get(self, ())
        # an op run by a kernel says which one (Conv2d[winograd])
        label = op_name if self.kernel == "reference" else f"{op_name}[{self.kernel}]"
        key = (f"{label} {'x'.join(map(str, shape)) or 'scalar'}", method)
        totals[key] = totals.get(key, 0.0) + elapsed
        return result

    return wrapper


def profile(name: str, batch: int, steps: int, warmup: int) -> dict:
    """Median ms per training step spent in each op's forward and backward, in the optimizer,
    and outside the ops (graph bookkeeping, Python), for tinygrad_mnist."""
    batches = load_batches(batch, 8)
    ours = Ours(name)
    for i in range(warmup):
        ours.train_step(*batches[i % len(batches)])
    per_op: dict[tuple[str, str], list[float]] = defaultdict(list)
    phases: dict[str, list[float]] = defaultdict(list)
    totals: dict[tuple[str, str], float] = {}
    with op_timer(totals):
        for i in range(steps):
            x, y = batches[i % len(batches)]
            totals.clear()
            t0 = time.perf_counter()
            ours.optimizer.zero_grad()
            loss = nll_loss(ours.model(Tensor(x)), y)
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            ours.optimizer.step()
            t3 = time.perf_counter()
            for key, seconds in totals.items():
                per_op[key].append(seconds)
            phases["forward"].append(t1 - t0)
            phases["backward"].append(t2 - t1)
            phases["optimizer (Adam)"].append(t3 - t2)
            phases["step"].append(t3 - t0)
    rows = [
        {"op": op_name, "pass": method, "ms": float(np.median(ts)) * 1e3}
        for (op_name, method), ts in per_op.items()
    ]
    rows.sort(key=lambda r: -r["ms"])
    op_ms = {p: sum(r["ms"] for r in rows if r["pass"] == p) for p in ("forward", "backward")}
    summary = {k: float(np.median(v)) * 1e3 for k, v in phases.items()}
    summary["forward: outside ops"] = summary["forward"] - op_ms["forward"]
    summary["backward: outside ops"] = summary["backward"] - op_ms["backward"]
    return {"model": name, "batch": batch, "steps": steps, "ops": rows, "phases": summary}


def torch_profile(name: str, batch: int, steps: int, warmup: int) -> list[dict]:
    """PyTorch's own per-op times for the same step (self CPU time per aten op), for reference."""
    import torch

    batches = load_batches(batch, 8)
    theirs = Torch(name, Ours(name).state())
    for i in range(warmup):
        theirs.train_step(*batches[i % len(batches)])
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            theirs.train_step(*batches[i % len(batches)])
    rows = [
        {"op": e.key, "ms": e.self_cpu_time_total / 1e3 / steps}
        for e in prof.key_averages()
        if e.self_cpu_time_total > 0
    ]
    rows.sort(key=lambda r: -r["ms"])
    return rows


# ---------------------------------------------------------------- limits


def add_limits(rows: list[dict], machine: Machine) -> None:
    """Give each row its step's FLOPs and traffic, the step-time limits on `machine`, and the
    multiple of the limit each side takes (ours_vs_limit, torch_vs_limit)."""
    for row in rows:
        cost = step_cost(build_model(row["model"]), row["batch"], training=row["mode"] == "train")
        row.update(cost._asdict())
        row.update(step_limits(cost, machine))
        for side in ("ours", "torch"):
            if f"{side}_ms" in row:
                row[f"{side}_vs_limit"] = row[f"{side}_ms"] / row["limit_ms"]


# ---------------------------------------------------------------- reporting


def machine_info() -> dict:
    info = {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "tinygrad_mnist": tinygrad_mnist.__version__,
        "env": {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP_", "MKL_"))},
    }
    try:
        import threadpoolctl  # optional: only reported when installed

        info["blas"] = [
            {k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for p in threadpoolctl.threadpool_info()
        ]
    except ImportError:
        pass
    with contextlib.suppress(ImportError):
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = TORCH_THREADS
    return info


def format_table(rows: list[dict], memory: list[dict]) -> str:
    has_torch = any("torch_img_s" in r for r in rows)
    has_limits = any("limit_ms" in r for r in rows)
    head = f"{'model':<10} {'mode':<10} {'batch':>5} {'ours img/s':>11} {'ours ms':>8}"
    if has_torch:
        head += f" {'torch img/s':>12} {'torch ms':>9} {'ours/torch':>10}"
    if has_limits:
        head += f" {'limit ms':>8} {'ours/lim':>8}" + (f" {'torch/lim':>9}" if has_torch else "")
    lines = [head, "-" * len(head)]
    for r in rows:
        line = (
            f"{r['model']:<10} {r['mode']:<10} {r['batch']:>5} {r['ours_img_s']:>11,.0f} "
            f"{r['ours_ms']:>8.2f}"
        )
        if has_torch:
            line += f" {r['torch_img_s']:>12,.0f} {r['torch_ms']:>9.2f} {r['ratio']:>9.2f}x"
        if has_limits:
            line += f" {r['limit_ms']:>8.2f} {r['ours_vs_limit']:>7.1f}x"
            if has_torch:
                line += f" {r['torch_vs_limit']:>8.1f}x"
        lines.append(line)
    for m in memory:
        line = (
            f"{m['model']:<10} {'peak RSS':<10} {m['batch']:>5} "
            f"{m['ours_peak_rss_mib']:>8,.0f} MiB {'':>8}"
        )
        if "torch_peak_rss_mib" in m:
            line += f" {m['torch_peak_rss_mib']:>8,.0f} MiB {'':>9} {m['ratio']:>9.2f}x"
        lines.append(line)
    return "\n".join(lines)


def format_machine(limits: dict) -> str:
    """The measured GEMM rate and memory bandwidth, as header lines."""
    return (
        f"GEMM rate {limits['gemm_gflop_s']:.0f} GFLOP/s ({limits['gemm']})\n"
        f"memory bandwidth {limits['memory_gb_s']:.1f} GB/s ({limits['memory']})"
    )


def format_limits(rows: list[dict]) -> str:
    """The work of each row's step and the time limits it sets on this machine."""
    head = (
        f"{'model':<10} {'mode':<10} {'batch':>5} {'GFLOP':>7} {'direct':>7} "
        f"{'traffic MB':>10} {'flop ms':>8} {'memory ms':>9} {'limit ms':>8}"
    )
    lines = [
        "per step: GFLOP with Winograd convs as the framework runs them (direct: every conv "
        "computed directly),",
        "least memory traffic, and the time each allows (counting rules: benchmarks/limits.py)",
        head,
        "-" * len(head),
    ]
    for r in rows:
        lines.append(
            f"{r['model']:<10} {r['mode']:<10} {r['batch']:>5} {r['flops'] / 1e9:>7.3f} "
            f"{r['direct_flops'] / 1e9:>7.3f} {r['traffic_bytes'] / 1e6:>10.1f} "
            f"{r['flop_limit_ms']:>8.2f} {r['memory_limit_ms']:>9.2f} {r['limit_ms']:>8.2f}"
        )
    return "\n".join(lines)


def format_profile(result: dict, torch_rows: list[dict] | None) -> str:
    lines = [
        f"per-op profile: {result['model']}, batch {result['batch']}, one Adam training "
        f"step (median of {result['steps']} steps), ms"
    ]
    total = result["phases"]["step"]
    for r in result["ops"]:
        share = 100 * r["ms"] / total
        lines.append(f"  {r['op']:<28} {r['pass']:<9} {r['ms']:>8.3f}  {share:5.1f}%")
    lines.append("  phases:")
    for k, v in result["phases"].items():
        lines.append(f"    {k:<22} {v:>8.3f}")
    if torch_rows:
        lines.append("  PyTorch, self CPU time per aten op (top 12):")
        for r in torch_rows[:12]:
            lines.append(f"    {r['op']:<40} {r['ms']:>8.3f}")
    return "\n".join(lines)


# ---------------------------------------------------------------- command line


def _at_least(minimum: float, kind: type = int) -> Callable[[str], float]:
    """An argparse type: a number of `kind` no smaller than `minimum`, else a clear error."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            noun = "whole number" if kind is int else "number"
            raise argparse.ArgumentTypeError(f"expected a {noun}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g}, got {text}")
        return value

    return parse


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--batch-sizes", nargs="+", type=_at_least(1), default=[64, 128])
    p.add_argument("--infer-batch", type=_at_least(1), default=1000)
    p.add_argument("--iterations", type=_at_least(1), default=10, help="steps per side per round")
    p.add_argument("--rounds", type=_at_least(1), default=6, help="alternations of the two sides")
    p.add_argument(
        "--min-seconds",
        type=_at_least(0, float),
        default=5.0,
        help="more rounds until each side of a row has run this long (0: just --rounds)",
    )
    p.add_argument("--warmup", type=_at_least(0), default=3)
    p.add_argument("--memory-steps", type=_at_least(1), default=5)
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory children")
    p.add_argument("--no-torch", action="store_true", help="time tinygrad_mnist only")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 1 round, 1 warmup step, batch 64 only, small inference "
        "batch, no memory children",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="per-op time for one training step instead of the table",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument(
        "--memory-child",
        nargs=4,
        metavar=("SIDE", "MODEL", "BATCH", "STEPS"),
        help=argparse.SUPPRESS,
    )
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.warmup, args.batch_sizes = 1, 1, args.batch_sizes[:1]
        args.min_seconds = 0.0
        args.infer_batch, args.no_memory = min(args.infer_batch, 100), True
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        side, name, batch, steps = args.memory_child
        print(json.dumps(memory_child(side, name, int(batch), int(steps))))
        return 0
    with_torch = not args.no_torch
    if with_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("PyTorch is not installed: timing tinygrad_mnist only", file=sys.stderr)
            with_torch = False
    result: dict = {"machine": machine_info(), "args": vars(args)}

    if args.profile:
        result["profiles"] = []
        for name in args.models:
            for batch in args.batch_sizes:
                prof = profile(name, batch, max(args.iterations, 1), args.warmup)
                theirs = (
                    torch_profile(name, batch, max(args.iterations, 1), args.warmup)
                    if with_torch
                    else None
                )
                prof["torch_ops"] = theirs
                result["profiles"].append(prof)
                if not args.json:
                    print(format_profile(prof, theirs), flush=True)
        if args.json:
            print(json.dumps(result, indent=2))
        return 0

    rows, memory = [], []
    for name in args.models:
        rows += bench_model(
            name,
            args.batch_sizes,
            args.rounds,
            args.iterations,
            args.warmup,
            args.infer_batch,
            with_torch,
            args.min_seconds,
        )
        if not args.no_memory:
            memory.append(measure_memory(name, args.batch_sizes[0], args.memory_steps, with_torch))
    # measured after the timings, so the big arrays and BLAS threads cannot disturb them
    machine = measure_machine(quick=args.quick)
    add_limits(rows, machine)
    result["machine"]["limits"] = machine.summary()
    result["results"], result["memory"] = rows, memory
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        m = result["machine"]
        print(
            f"{m['cpus']} CPUs ({m['cpus_usable']} usable), NumPy {m['numpy']}, "
            f"PyTorch {m.get('torch', '-')} on {TORCH_THREADS} threads; "
            f"medians of {args.rounds}+ alternating rounds x {args.iterations} steps, "
            f"at least {args.min_seconds:g} s per side"
        )
        print(format_machine(result["machine"]["limits"]))
        print(format_table(rows, memory))
        print()
        print(format_limits(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
