"""The `tinygrad-mnist` command: train, evaluate and graph the reference models.

    tinygrad-mnist train [--model lenet-cnn] [--epochs N | --iterations N] [--lr X] ...
    tinygrad-mnist evaluate WEIGHTS.npz [--model NAME] [--data DIR|sample]
    tinygrad-mnist graph --model NAME --out FILE.svg [--collapse] [--batch 2]

Errors print one line, `tinygrad-mnist: error: ...`, on stderr and exit non-zero (2 for bad
arguments, 1 for everything else), with no traceback and no half-written files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import data, nn, optim, plots, train
from .files import write_atomically
from .kernels.allocator import tune_allocator
from .models import MODELS, build_model
from .tensor import Tensor

PROG = "tinygrad-mnist"

# The default recipe of each model: what `tinygrad-mnist train --model NAME` runs when no other
# option is given. lenet-cnn's reaches 99% test accuracy on full MNIST.
RECIPES: dict[str, dict] = {
    "lenet-cnn": dict(optimizer="adam", lr=1e-3, epochs=2, batch_size=64, schedule="cosine"),
    "seed-cnn": dict(optimizer="adam", lr=3e-3, epochs=2, batch_size=64, schedule="cosine"),
}
DEFAULT_MODEL = "lenet-cnn"
TEST_SUBSET = 1000  # test examples used at intermediate evaluation points (the last uses all)
NORMALIZE = True  # inputs are standardised by MNIST's mean and std


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


# ---------------------------------------------------------------- argument parsing


def _int_at_least(minimum: int):
    """An argparse type: a whole number >= minimum, else a one-line error saying so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected a whole number >= {minimum}, got {text!r}"
            )
        return value

    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line (no usage block) and exit with status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Train and evaluate small CNNs on MNIST with tinygrad_mnist.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    data_help = (
        "'sample' for the bundled 5,000-image sample, or a folder holding the four MNIST IDX "
        "files; default: full MNIST (from $TINYGRAD_MNIST_DATA or the cache, downloaded if "
        "needed), else the sample with a warning"
    )

    tr = commands.add_parser(
        "train",
        help="train a model and write weights, history and plots",
        description="Train a model on MNIST; write weights, history (CSV, JSON) and PNG plots "
        "to --out, then print the test accuracy.",
    )
    tr.add_argument("--model", choices=list(MODELS), default=DEFAULT_MODEL,
                    help=f"network to train (default {DEFAULT_MODEL})")
    length = tr.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=_positive_int,
                        help="passes over the training set (default: the model's recipe, "
                        + ", ".join(f"{m} {r['epochs']}" for m, r in RECIPES.items()) + ")")
    length.add_argument("--iterations", type=_positive_int,
                        help="number of optimizer steps instead of --epochs")
    tr.add_argument("--lr", type=_positive_float,
                    help="initial learning rate (default: the recipe's; "
                    "cosine-decayed to 0 over the run)")
    tr.add_argument("--batch-size", type=_positive_int, help="minibatch size (default 64)")
    tr.add_argument("--optimizer", choices=["sgd", "adam"],
                    help="adam (default) or sgd (with momentum 0.9)")
    tr.add_argument("--schedule", choices=list(train.SCHEDULES),
                    help="learning-rate schedule (default cosine)")
    tr.add_argument("--limit-per-digit", type=_positive_int, metavar="N",
                    help="train on at most N random examples of each digit")
    tr.add_argument("--data", metavar="DIR|sample", help=data_help)
    tr.add_argument("--seed", type=_nonnegative_int, default=0,
                    help="seeds the initialisation and the shuffling (default 0)")
    tr.add_argument("--out", type=Path, help="output folder (default runs/MODEL)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")

    ev = commands.add_parser(
        "evaluate",
        help="evaluate saved weights on the test set",
        description="Evaluate weights saved by `train` on the MNIST test set.",
    )
    ev.add_argument("weights", type=Path, metavar="WEIGHTS", help="a .npz written by train")
    ev.add_argument("--model", choices=list(MODELS),
                    help="network of the weights (default: read from WEIGHTS' .json sidecar, "
                    "else inferred from the weight shapes)")
    ev.add_argument("--data", metavar="DIR|sample", help=data_help)

    gr = commands.add_parser(
        "graph",
        help="draw a model's computation graph",
        description="Draw the computation graph of one forward pass and loss of a model.",
    )
    gr.add_argument("--model", choices=list(MODELS), default=DEFAULT_MODEL,
                    help=f"network to draw (default {DEFAULT_MODEL})")
    gr.add_argument("--out", type=Path, required=True, help="FILE.svg or FILE.png")
    gr.add_argument("--collapse", action="store_true", help="draw each layer as one box")
    gr.add_argument("--batch", type=_positive_int, default=2,
                    help="number of sample images in the batch (default 2)")
    return parser


# ---------------------------------------------------------------- data


@dataclass
class Dataset:
    """Preprocessed arrays plus the raw test images (for the misclassified-digits plot)."""

    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_images: np.ndarray


def _load_data(choice: str | None, normalize: bool = NORMALIZE) -> Dataset:
    """The MNIST splits named by --data (see the option's help), preprocessed."""
    if choice == "sample":
        mnist, source = data.load_sample(), "the bundled sample"
    elif choice is not None:
        folder = Path(choice).expanduser()
        if not folder.is_dir():
            raise CommandError(f"data folder {folder} does not exist (or is not a folder)")
        missing = [
            name for name in data.FILES
            if not (folder / name).is_file() and not (folder / (name + ".gz")).is_file()
        ]
        if missing:
            raise CommandError(
                f"data folder {folder} lacks {', '.join(missing)} (with or without .gz); "
                f"run without --data to download MNIST, or use --data sample"
            )
        mnist, source = _read_mnist(folder), f"MNIST in {folder}"
    else:
        try:
            mnist, source = data.load_mnist(download=True), "full MNIST"
        except (OSError, ValueError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            print(
                f"{PROG}: WARNING: full MNIST is not available ({reason}); using the bundled "
                "sample (5,000 train, 1,000 test images) instead. Get full MNIST with --data DIR "
                "or by setting $TINYGRAD_MNIST_DATA to a folder holding the four IDX files.",
                file=sys.stderr,
            )
            mnist, source = data.load_sample(), "the bundled sample"
    return Dataset(
        source=source,
        x_train=data.preprocess(mnist.train_images, normalize=normalize),
        y_train=mnist.train_labels,
        x_test=data.preprocess(mnist.test_images, normalize=normalize),
        y_test=mnist.test_labels,
        test_images=mnist.test_images,
    )


def _read_mnist(folder: Path) -> data.MNIST:
    try:
        return data.load_mnist(folder, download=False)
    except (OSError, ValueError) as err:
        raise CommandError(" ".join(str(err).split())) from None


# ---------------------------------------------------------------- output


def _prepare_out(out: Path) -> bool:
    """Create the output folder and check that files can be written in it.

    Returns whether the folder was created (so a failed run can remove it again).
    """
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or str(err)
        raise CommandError(f"cannot write to output folder {out}: {reason}") from None
    return created


def _write_json(path: Path, obj) -> None:
    write_atomically(path, lambda f: f.write(json.dumps(obj, indent=1) + "\n"))


def sidecar_path(weights: Path) -> Path:
    """The JSON file next to the weights that records the model name and recipe."""
    return weights.with_suffix(".json")


# ---------------------------------------------------------------- commands


def _make_optimizer(name: str, params, lr: float) -> optim.Optimizer:
    if name == "adam":
        return optim.Adam(params, lr=lr)
    return optim.SGD(params, lr=lr, momentum=0.9)


def cmd_train(args: argparse.Namespace) -> int:
    recipe = dict(RECIPES[args.model])
    for key in ("optimizer", "lr", "batch_size", "schedule"):
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)
    if args.optimizer == "sgd" and args.lr is None:
        recipe["lr"] = 0.05
    if args.iterations is not None:
        recipe["epochs"], recipe["iterations"] = None, args.iterations
    else:
        recipe["epochs"] = args.epochs or recipe["epochs"]
        recipe["iterations"] = None

    out = args.out or Path("runs") / args.model
    created = _prepare_out(out)
    try:
        return _train(args, recipe, out)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def _train(args: argparse.Namespace, recipe: dict, out: Path) -> int:
    dataset = _load_data(args.data)
    x, y = dataset.x_train, dataset.y_train
    if args.limit_per_digit:
        x, y = data.limit_per_digit(x, y, args.limit_per_digit, seed=args.seed)

    nn.init.manual_seed(args.seed)
    model = build_model(args.model)
    optimizer = _make_optimizer(recipe["optimizer"], model.parameters(), recipe["lr"])
    length = (
        f"{recipe['iterations']} iterations" if recipe["iterations"]
        else f"{recipe['epochs']} epoch{'s' if recipe['epochs'] != 1 else ''}"
    )
    print(
        f"training {args.model} on {dataset.source} ({len(y)} train, {len(dataset.y_test)} test "
        f"images): {length}, {recipe['optimizer']} lr {recipe['lr']:g} ({recipe['schedule']}), "
        f"batch {recipe['batch_size']}, seed {args.seed}",
        flush=True,
    )
    start = time.perf_counter()
    history = train.fit(
        model,
        optimizer,
        (x, y),
        (dataset.x_test, dataset.y_test),
        epochs=recipe["epochs"] or 1,
        iterations=recipe["iterations"],
        batch_size=recipe["batch_size"],
        seed=args.seed,
        progress=not args.quiet,
        lr_schedule=recipe["schedule"],
        test_subset=TEST_SUBSET,
    )
    seconds = time.perf_counter() - start
    evaluation = history.final  # on the whole test set, after the last step

    weights = out / "model.npz"
    model.save(weights)
    _write_json(sidecar_path(weights), {
        "model": args.model,
        "normalize": NORMALIZE,
        "seed": args.seed,
        "data": dataset.source,
        "train_examples": int(len(y)),
        "recipe": recipe,
        "seconds": round(seconds, 1),
        "test_accuracy": evaluation.accuracy,
    })
    history.to_csv(out / "history.csv")
    history.to_json(out / "history.json")
    title = f"{args.model} on {dataset.source}"
    plots.plot_curves(history, out / "curves.png", title=title)
    plots.plot_confusion(evaluation, out / "confusion.png")
    plots.plot_misclassified(
        dataset.test_images, dataset.y_test, evaluation.predictions, out / "misclassified.png"
    )
    plots.plot_filters(model, out / "filters.png")
    print(f"trained in {seconds:.1f} s; wrote model.npz, model.json, history.csv, history.json, "
          f"curves.png, confusion.png, misclassified.png, filters.png to {out}")
    print(evaluation)
    return 0


def _infer_model(state: dict[str, np.ndarray]) -> str:
    """The name of the reference model whose parameter names and shapes match `state`."""
    shapes = {k: v.shape for k, v in state.items()}
    for name in MODELS:
        candidate = {k: v.shape for k, v in build_model(name).state_dict().items()}
        if candidate == shapes:
            return name
    raise CommandError(
        f"the weights match none of the models ({', '.join(MODELS)}); pass --model"
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    weights: Path = args.weights
    if not weights.is_file():
        raise CommandError(f"no weights file at {weights}")
    info = {}
    sidecar = sidecar_path(weights)
    if sidecar.is_file():
        try:
            info = json.loads(sidecar.read_text())
        except (OSError, ValueError) as err:
            raise CommandError(f"{sidecar} is not valid JSON ({err})") from None
    try:
        with np.load(weights, allow_pickle=False) as archive:
            state = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise CommandError(f"{weights} is not a valid .npz weights file ({err})") from None
    name = args.model or info.get("model") or _infer_model(state)
    if name not in MODELS:
        raise CommandError(f"{sidecar} names an unknown model {name!r}; pass --model")
    model = build_model(name)
    try:
        model.load_state_dict(state)
    except (KeyError, ValueError) as err:
        message = err.args[0] if err.args else str(err)
        raise CommandError(f"{weights} does not fit {name}: {message}") from None

    dataset = _load_data(args.data, normalize=bool(info.get("normalize", NORMALIZE)))
    evaluation = train.evaluate(model, dataset.x_test, dataset.y_test)
    print(f"{name} from {weights} on {dataset.source} ({len(dataset.y_test)} test images)")
    per_digit = "  ".join(
        f"{d}: {100 * e:.2f}%" for d, e in enumerate(evaluation.per_digit_error)
    )
    print(f"error rate per digit: {per_digit}")
    print(evaluation)
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from . import viz  # only this command needs graphviz

    out: Path = args.out
    if out.suffix.lower() not in (".svg", ".png", ".pdf"):
        raise CommandError(f"--out must end in .svg or .png, got {out}")
    if not out.parent.is_dir():
        raise CommandError(f"output folder {out.parent} does not exist")
    sample = data.load_sample()
    x = data.preprocess(sample.test_images[:args.batch], normalize=NORMALIZE)
    y = sample.test_labels[:args.batch]
    nn.init.manual_seed(0)
    model = build_model(args.model)
    loss = nn.functional.nll_loss(model(Tensor(x)), y)
    loss.backward()
    try:
        graph = viz.draw_graph(loss, params=model, cluster_modules=True, collapse=args.collapse)
        path = viz.render(graph, out)
    except (OSError, RuntimeError, ValueError) as err:
        raise CommandError(str(err).splitlines()[0] if str(err) else type(err).__name__) from None
    print(f"wrote {path}")
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "graph": cmd_graph}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default sys.argv[1:]); returns the exit status."""
    args = make_parser().parse_args(argv)
    tune_allocator()  # a command runs the same steps many times: keep freed memory for them
    try:
        return COMMANDS[args.command](args)
    except CommandError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except (data.MNISTFormatError, data.DownloadError) as err:
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
