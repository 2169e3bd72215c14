"""Accuracy and wall time of tinygrad_mnist against PyTorch on the same recipe, side by side.

    python benchmarks/accuracy_vs_torch.py [--data DIR|sample] [--models lenet-cnn seed-cnn]

For each model: one epoch of Adam on full MNIST (lenet-cnn lr 1e-3, seed-cnn lr 3e-3, batch 64),
trained once with tinygrad_mnist and once with the identical network in PyTorch
(torch.set_num_threads(2)) starting from the same initial weights (copied from ours) and seeing
the same batches in the same order. Then the CLI's default recipe (`tinygrad-mnist train`, run
as a subprocess) for its accuracy and total wall time. Prints a Markdown table.

With --best, also the `best` recipe (`tinygrad-mnist train --recipe best`: bn-cnn, Adam with
OneCycleLR, random shifts; cli.RECIPES["bn-cnn"]) trained by tinygrad_mnist and by the identical
network and recipe in PyTorch (torch.optim.lr_scheduler.OneCycleLR), from the same initial
weights, on the same batches shifted the same way (only the dropout masks differ).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from torch_models import torch_model  # benchmarks/torch_models.py, beside this script

from tinygrad_mnist import augment, data, nn, optim, train
from tinygrad_mnist.cli import RECIPES as CLI_RECIPES
from tinygrad_mnist.models import build_model

RECIPES = {"lenet-cnn": 1e-3, "seed-cnn": 3e-3}  # Adam learning rate; 1 epoch, batch 64
BATCH = 64
RESULT = re.compile(r"^test accuracy: (\d+\.\d\d)% \(error rate \d+\.\d\d%\)$", re.M)


def load(choice: str | None):
    """Preprocessed (train, test) pairs from --data."""
    mnist = data.load_sample() if choice == "sample" else data.load_mnist(choice)
    x = data.preprocess(mnist.train_images, normalize=True)
    xt = data.preprocess(mnist.test_images, normalize=True)
    return (x, mnist.train_labels), (xt, mnist.test_labels)


def train_ours(name, lr, train_set, test_set, iterations, seed):
    """(accuracy, train seconds, initial state_dict) of one epoch (or `iterations` steps)."""
    nn.init.manual_seed(seed)
    model = build_model(name)
    initial = model.state_dict()
    opt = optim.Adam(model.parameters(), lr=lr)
    start = time.perf_counter()
    history = train.fit(
        model,
        opt,
        train_set,
        epochs=1,
        iterations=iterations,
        batch_size=BATCH,
        eval_every=10**9,
        seed=seed,
        progress=False,
    )
    seconds = time.perf_counter() - start
    accuracy = train.evaluate(model, *test_set).accuracy
    return accuracy, seconds, initial, history.iteration[-1]


def train_torch(name, lr, initial, train_set, test_set, steps, seed):
    """(accuracy, train seconds) of the same recipe in PyTorch, same init and batch order."""
    import torch

    torch.set_num_threads(2)
    model = torch_model(name, initial)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    stream = train._batch_stream(*train_set, BATCH, seed)  # the batches fit() uses
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        _, xb, yb = next(stream)
        opt.zero_grad()
        out = model(torch.from_numpy(xb))
        loss = torch.nn.functional.nll_loss(out, torch.from_numpy(yb).long())
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    x, y = test_set
    with torch.no_grad():
        predictions = np.concatenate(
            [
                model(torch.from_numpy(x[i : i + 1000])).argmax(1).numpy()
                for i in range(0, len(x), 1000)
            ]
        )
    return float(np.mean(predictions == y)), seconds


def best_ours(train_set, test_set, iterations, seed):
    """(accuracy, train seconds, initial state_dict, steps) of the best recipe, by fit()."""
    recipe = CLI_RECIPES["bn-cnn"]
    nn.init.manual_seed(seed)
    model = build_model("bn-cnn")
    initial = model.state_dict()
    opt = optim.Adam(model.parameters(), lr=recipe["lr"])
    steps = iterations or recipe["epochs"] * -(-len(train_set[1]) // recipe["batch_size"])
    scheduler = optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["lr"], total_steps=steps)
    start = time.perf_counter()
    train.fit(
        model,
        opt,
        train_set,
        iterations=steps,
        batch_size=recipe["batch_size"],
        eval_every=10**9,
        seed=seed,
        progress=False,
        scheduler=scheduler,
        augment=augment.random_shifts,
    )
    seconds = time.perf_counter() - start
    return train.evaluate(model, *test_set).accuracy, seconds, initial, steps


def best_torch(initial, train_set, test_set, steps, seed):
    """(accuracy, train seconds) of the same best recipe in PyTorch."""
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(seed)
    recipe = CLI_RECIPES["bn-cnn"]
    model = torch_model("bn-cnn", initial)
    opt = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["lr"], total_steps=steps)
    stream = train._batch_stream(*train_set, recipe["batch_size"], seed)
    model.train()
    start = time.perf_counter()
    for step in range(1, steps + 1):
        _, xb, yb = next(stream)
        xb = augment.random_shifts(xb, np.random.default_rng([seed, step]))  # as fit() does
        opt.zero_grad()
        loss = torch.nn.functional.nll_loss(
            model(torch.from_numpy(xb)), torch.from_numpy(yb).long()
        )
        loss.backward()
        opt.step()
        scheduler.step()
    seconds = time.perf_counter() - start
    model.eval()
    x, y = test_set
    with torch.no_grad():
        predictions = np.concatenate(
            [
                model(torch.from_numpy(x[i : i + 1000])).argmax(1).numpy()
                for i in range(0, len(x), 1000)
            ]
        )
    return float(np.mean(predictions == y)), seconds


def run_cli(data_arg: str | None, extra: list[str]):
    """(accuracy, wall seconds, command) of `tinygrad-mnist train` with its default recipe."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "tinygrad_mnist", "train", "--out", out, "--quiet"]
        if data_arg:
            command += ["--data", data_arg]
        command += extra
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    match = RESULT.search(proc.stdout)
    if proc.returncode != 0 or not match:
        raise SystemExit(f"the CLI failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    shown = "tinygrad-mnist train" + "".join(f" {a}" for a in command[7:])
    return float(match.group(1)) / 100, seconds, shown


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="'sample' or an MNIST folder (default: load_mnist())")
    parser.add_argument("--models", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--iterations", type=int, help="steps instead of one epoch (smoke test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch runs")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI default recipe")
    parser.add_argument("--cli-args", default="", help="extra arguments for the CLI run")
    parser.add_argument(
        "--best",
        action="store_true",
        help="also the best recipe (--recipe best), here and in PyTorch",
    )
    args = parser.parse_args(argv)

    train_set, test_set = load(args.data)
    print(f"data: {len(train_set[1])} train, {len(test_set[1])} test images", flush=True)
    rows = []
    for name in args.models:
        lr = RECIPES[name]
        recipe = f"{args.iterations} steps" if args.iterations else "1 epoch"
        recipe += f", Adam lr {lr:g}, batch {BATCH}"
        acc, secs, initial, steps = train_ours(
            name, lr, train_set, test_set, args.iterations, args.seed
        )
        row = [name, recipe, f"{100 * acc:.2f}%", f"{secs:.0f} s"]
        print(f"{name}: tinygrad_mnist {100 * acc:.2f}% in {secs:.1f} s", flush=True)
        if args.no_torch:
            row += ["-", "-"]
        else:
            tacc, tsecs = train_torch(name, lr, initial, train_set, test_set, steps, args.seed)
            row += [f"{100 * tacc:.2f}%", f"{tsecs:.0f} s"]
            print(f"{name}: PyTorch {100 * tacc:.2f}% in {tsecs:.1f} s", flush=True)
        rows.append(row)
    if args.best:
        recipe = CLI_RECIPES["bn-cnn"]
        acc, secs, initial, steps = best_ours(train_set, test_set, args.iterations, args.seed)
        what = (
            f"{steps} steps, Adam max lr {recipe['lr']:g} OneCycleLR, batch "
            f"{recipe['batch_size']}, random shifts"
        )
        row = ["bn-cnn (`--recipe best`)", what, f"{100 * acc:.2f}%", f"{secs:.0f} s"]
        print(f"best: tinygrad_mnist {100 * acc:.2f}% in {secs:.1f} s", flush=True)
        if args.no_torch:
            row += ["-", "-"]
        else:
            tacc, tsecs = best_torch(initial, train_set, test_set, steps, args.seed)
            row += [f"{100 * tacc:.2f}%", f"{tsecs:.0f} s"]
            print(f"best: PyTorch {100 * tacc:.2f}% in {tsecs:.1f} s", flush=True)
        rows.append(row)
    if not args.no_cli:
        acc, secs, shown = run_cli(args.data, args.cli_args.split())
        what = "CLI with " + args.cli_args if args.cli_args else "CLI default recipe"
        rows.append(
            [f"`{shown}`", what, f"{100 * acc:.2f}%", f"{secs:.0f} s (whole command)", "-", "-"]
        )
        print(f"CLI: {100 * acc:.2f}% in {secs:.1f} s", flush=True)

    header = [
        "model",
        "recipe",
        "tinygrad_mnist accuracy",
        "tinygrad_mnist train time",
        "PyTorch accuracy",
        "PyTorch train time",
    ]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
