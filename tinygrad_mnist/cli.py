"""The `tinygrad-mnist` command: train, evaluate and graph the reference models.

    tinygrad-mnist train [--model lenet-cnn] [--epochs N | --iterations N] [--lr X] ...
    tinygrad-mnist evaluate WEIGHTS.npz [--model NAME] [--data DIR|sample]
    tinygrad-mnist graph --model NAME --out FILE.svg [--collapse] [--batch 2]
    tinygrad-mnist predict WEIGHTS.npz IMAGE... [--json] [--invert auto|yes|no]
    tinygrad-mnist serve WEIGHTS.npz [--port 8000] [--host 127.0.0.1]

Errors print one line, `tinygrad-mnist: error: ...`, on stderr and exit non-zero (2 for bad
arguments, 1 for everything else), with no traceback and no half-written files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import augment, data, nn, optim, plots, train
from .files import NPZ_ERRORS, read_npz, remove_stale_temp_files, write_atomically
from .kernels.allocator import tune_allocator
from .models import MODELS, build_model
from .tensor import Tensor

PROG = "tinygrad-mnist"

# The default recipe of each model: what `tinygrad-mnist train --model NAME` runs when no other
# option is given. lenet-cnn's reaches 99% test accuracy on full MNIST.
RECIPES: dict[str, dict] = {
    "lenet-cnn": dict(optimizer="adam", lr=1e-3, epochs=2, batch_size=64, schedule="cosine"),
    "seed-cnn": dict(optimizer="adam", lr=3e-3, epochs=2, batch_size=64, schedule="cosine"),
    # the `best` recipe: BatchNorm CNN, one-cycle Adam, random shifts; 99.5% on full MNIST
    "bn-cnn": dict(
        optimizer="adam", lr=5e-3, epochs=4, batch_size=128, schedule="onecycle", augment=True
    ),
}
NAMED_RECIPES = {"best": "bn-cnn"}  # `train --recipe NAME`: a model with its default recipe
SCHEDULE_CHOICES = [*train.SCHEDULES, "onecycle"]
DEFAULT_MODEL = "lenet-cnn"
TEST_SUBSET = 1000  # test examples used at intermediate evaluation points (the last uses all)
NORMALIZE = True  # inputs are standardised by MNIST's mean and std


CHECKPOINT = "checkpoint.npz"  # in --out while a run is under way or interrupted
RUN_SETTINGS = "run.json"  # in --out beside it: what `train --resume` needs to rebuild the run
# A run whose model ends no better than chance has failed, whatever its loss did: test accuracy
# under this, with a final training loss near or above that of a uniform guess (ln 10).
CHANCE_ACCURACY = 0.2
CHANCE_LOSS = 0.95 * math.log(10)


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1 (`status` to change it)."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds like Ctrl-C, so nothing half-written is left behind."""


# ---------------------------------------------------------------- argument parsing


def _int_at_least(minimum: int):
    """An argparse type: a whole number >= minimum, else a one-line error saying so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
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
    tr.add_argument(
        "--model", choices=list(MODELS), help=f"network to train (default {DEFAULT_MODEL})"
    )
    tr.add_argument(
        "--recipe",
        choices=list(NAMED_RECIPES),
        help="a tuned recipe: best = bn-cnn (BatchNorm CNN), one-cycle Adam, random "
        "shifts; 99.5%% on full MNIST",
    )
    length = tr.add_mutually_exclusive_group()
    length.add_argument(
        "--epochs",
        type=_positive_int,
        help="passes over the training set (default: the model's recipe, "
        + ", ".join(f"{m} {r['epochs']}" for m, r in RECIPES.items())
        + ")",
    )
    length.add_argument(
        "--iterations", type=_positive_int, help="number of optimizer steps instead of --epochs"
    )
    tr.add_argument(
        "--lr",
        type=_positive_float,
        help="initial learning rate (default: the recipe's; cosine-decayed to 0 over the run)",
    )
    tr.add_argument("--batch-size", type=_positive_int, help="minibatch size (default 64)")
    tr.add_argument(
        "--optimizer", choices=["sgd", "adam"], help="adam (default) or sgd (with momentum 0.9)"
    )
    tr.add_argument(
        "--schedule",
        choices=SCHEDULE_CHOICES,
        help="learning-rate schedule (default cosine; onecycle: OneCycleLR with "
        "--lr as its max_lr)",
    )
    tr.add_argument(
        "--augment",
        action="store_true",
        default=None,
        help="shift each training image by up to 2 pixels at random",
    )
    tr.add_argument(
        "--limit-per-digit",
        type=_positive_int,
        metavar="N",
        help="train on at most N random examples of each digit",
    )
    tr.add_argument("--data", metavar="DIR|sample", help=data_help)
    tr.add_argument(
        "--seed",
        type=_nonnegative_int,
        help="seeds the initialisation and the shuffling (default 0)",
    )
    tr.add_argument("--out", type=Path, help="output folder (default runs/MODEL)")
    tr.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help="continue the interrupted run in DIR (its --out) with its settings; the "
        "result is the same as if it had never stopped",
    )
    tr.add_argument("--quiet", action="store_true", help="no progress bar")

    ev = commands.add_parser(
        "evaluate",
        help="evaluate saved weights on the test set",
        description="Evaluate weights saved by `train` on the MNIST test set.",
    )
    ev.add_argument("weights", type=Path, metavar="WEIGHTS", help="a .npz written by train")
    ev.add_argument(
        "--model",
        choices=list(MODELS),
        help="network of the weights (default: read from WEIGHTS' .json sidecar, "
        "else inferred from the weight shapes)",
    )
    ev.add_argument("--data", metavar="DIR|sample", help=data_help)

    gr = commands.add_parser(
        "graph",
        help="draw a model's computation graph",
        description="Draw the computation graph of one forward pass and loss of a model.",
    )
    gr.add_argument(
        "--model",
        choices=list(MODELS),
        default=DEFAULT_MODEL,
        help=f"network to draw (default {DEFAULT_MODEL})",
    )
    gr.add_argument("--out", type=Path, required=True, help="FILE.svg or FILE.png")
    gr.add_argument("--collapse", action="store_true", help="draw each layer as one box")
    gr.add_argument(
        "--batch",
        type=_positive_int,
        default=2,
        help="number of sample images in the batch (default 2)",
    )

    model_help = (
        "network of the weights (default: read from WEIGHTS' .json sidecar, else "
        "inferred from the weight shapes)"
    )
    pr = commands.add_parser(
        "predict",
        help="read the digit in each of one's own images",
        description="Read the handwritten digit in each image (PNG or JPEG, any size, dark ink "
        "on light paper or the reverse) with weights saved by `train`: one line per image with "
        "the digit and the most likely classes.",
    )
    pr.add_argument("weights", type=Path, metavar="WEIGHTS", help="a .npz written by train")
    pr.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    pr.add_argument("--model", choices=list(MODELS), help=model_help)
    pr.add_argument(
        "--invert",
        choices=list(INVERT_CHOICES),
        default="auto",
        help="yes: dark ink on light paper; no: light ink on dark (as MNIST); auto "
        "(default): decided from the paper of each image",
    )
    pr.add_argument(
        "--top",
        type=_positive_int,
        default=3,
        help="how many of the most likely digits to list (default 3)",
    )
    pr.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document with every image's ten probabilities",
    )

    sv = commands.add_parser(
        "serve",
        help="a local page to draw a digit and watch the network read it",
        description="Serve a page where one draws a digit and sees what the network reads: "
        "the 28x28 input, the ten probabilities and the saliency map. Ctrl-C stops it.",
    )
    sv.add_argument("weights", type=Path, metavar="WEIGHTS", help="a .npz written by train")
    sv.add_argument("--model", choices=list(MODELS), help=model_help)
    sv.add_argument(
        "--port",
        type=_int_at_least(0),
        default=8000,
        help="TCP port (default 8000; 0 picks a free one)",
    )
    sv.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this computer only)",
    )
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
            name
            for name in data.FILES
            if not (folder / name).is_file() and not (folder / (name + ".gz")).is_file()
        ]
        if missing:
            raise CommandError(
                f"data folder {folder} lacks {', '.join(missing)} (with or without .gz); "
                f"run without --data to download MNIST, or use --data sample"
            )
        mnist, source = _read_mnist(folder), f"MNIST in {folder}"
    else:
        mnist, source = _full_mnist_or_sample()
    return Dataset(
        source=source,
        x_train=data.preprocess(mnist.train_images, normalize=normalize),
        y_train=mnist.train_labels,
        x_test=data.preprocess(mnist.test_images, normalize=normalize),
        y_test=mnist.test_labels,
        test_images=mnist.test_images,
    )


def _full_mnist_or_sample() -> tuple[data.MNIST, str]:
    """Full MNIST (found or downloaded) and its source, else the bundled sample with one warning
    line saying why. load_mnist's own warnings (a damaged cached file moved aside to be
    downloaded again) come first, one line each."""
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        try:
            return data.load_mnist(download=True), "full MNIST"
        except data.MNISTFormatError as err:  # a file the user put in $TINYGRAD_MNIST_DATA
            raise CommandError(" ".join(str(err).split())) from None
        except (OSError, ValueError) as err:
            reason = _one_line_reason(err)
        finally:
            for note in notes:
                print(f"{PROG}: WARNING: {' '.join(str(note.message).split())}", file=sys.stderr)
    print(
        f"{PROG}: WARNING: full MNIST is not available ({reason}); using the bundled "
        "sample (5,000 train, 1,000 test images) instead. Get full MNIST with --data DIR "
        "or by setting $TINYGRAD_MNIST_DATA to a folder holding the four IDX files.",
        file=sys.stderr,
    )
    return data.load_sample(), "the bundled sample"


def _one_line_reason(err: BaseException) -> str:
    """Why full MNIST is unavailable, on one line (every mirror's failure for a download)."""
    if isinstance(err, data.DownloadError) and err.failures:
        return f"could not download {err.name}: " + "; ".join(err.failures)
    return " ".join(str(err).split()) or type(err).__name__


def _read_mnist(folder: Path) -> data.MNIST:
    try:
        return data.load_mnist(folder, download=False)
    except (OSError, ValueError) as err:
        raise CommandError(" ".join(str(err).split())) from None


# ---------------------------------------------------------------- output


def _prepare_out(out: Path) -> list[Path]:
    """Create the output folder and check that files can be written in it.

    Returns the folders created, deepest first (so a failed start can remove them again).
    """
    created = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=f".write-test.{os.getpid()}.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        _remove_empty(created)
        reason = err.strerror or str(err)
        raise CommandError(f"cannot write to output folder {out}: {reason}") from None
    return created


def _remove_empty(folders: list[Path]) -> None:
    """Remove those of `folders` (deepest first) that are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (or gone): its parents are not empty either


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


# the options that define a run: `train --resume DIR` takes them from DIR, not the command line
RUN_OPTIONS = (
    "model",
    "epochs",
    "iterations",
    "lr",
    "batch_size",
    "optimizer",
    "schedule",
    "limit_per_digit",
    "seed",
    "out",
    "recipe",
    "augment",
)


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume is not None:
        return _resume(args)
    if args.recipe is not None:
        if args.model is not None and args.model != NAMED_RECIPES[args.recipe]:
            raise CommandError(
                f"--recipe {args.recipe} trains {NAMED_RECIPES[args.recipe]}; drop --model "
                f"{args.model}",
                status=2,
            )
        args.model = NAMED_RECIPES[args.recipe]
    if args.model is None:
        args.model = DEFAULT_MODEL
    recipe = dict(RECIPES[args.model])
    if args.augment:
        recipe["augment"] = True
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
    settings = {
        "model": args.model,
        "recipe": recipe,
        "data": args.data,
        "limit_per_digit": args.limit_per_digit,
        "seed": 0 if args.seed is None else args.seed,
    }

    out = args.out or Path("runs") / args.model
    if (out / CHECKPOINT).is_file():
        raise CommandError(
            f"{out} holds an interrupted run ({CHECKPOINT}): continue it with "
            f"`{PROG} train --resume {out}`, or delete it or choose another --out"
        )
    created = _prepare_out(out)
    remove_stale_temp_files(out)
    try:
        return _train(settings, out, quiet=args.quiet, resuming=False)
    except BaseException:
        _remove_empty(created)
        raise


def _resume(args: argparse.Namespace) -> int:
    """`train --resume DIR`: rebuild the run from DIR's settings and continue its checkpoint."""
    given = [
        "--" + name.replace("_", "-") for name in RUN_OPTIONS if getattr(args, name) is not None
    ]
    if given:
        raise CommandError(
            f"--resume continues a run with the settings it was started with; drop "
            f"{', '.join(given)} (only --data and --quiet may be given)",
            status=2,
        )
    out: Path = args.resume
    settings_path = out / RUN_SETTINGS
    if not (out / CHECKPOINT).is_file() or not settings_path.is_file():
        finished = (
            " (the run there has finished: it has model.npz)"
            if (out / "model.npz").is_file()
            else ""
        )
        raise CommandError(
            f"nothing to resume in {out}: expected {CHECKPOINT} and {RUN_SETTINGS} there, as an "
            f"interrupted `{PROG} train --out {out}` leaves them{finished}"
        )
    try:
        settings = json.loads(settings_path.read_text())
        if not isinstance(settings, dict) or settings.get("model") not in MODELS:
            raise ValueError("expected the JSON object that `train` writes")
        for key in ("recipe", "data", "limit_per_digit", "seed"):
            settings[key]  # noqa: B018 (present?)
    except (OSError, ValueError, KeyError) as err:
        raise CommandError(f"{settings_path} is not a run's settings file ({err})") from None
    if args.data is not None:
        settings["data"] = args.data  # the same data, found somewhere else
    remove_stale_temp_files(out)
    return _train(settings, out, quiet=args.quiet, resuming=True)


def _train(settings: dict, out: Path, quiet: bool, resuming: bool) -> int:
    name, recipe, seed = settings["model"], settings["recipe"], settings["seed"]
    dataset = _load_data(settings["data"])
    x, y = dataset.x_train, dataset.y_train
    if settings["limit_per_digit"]:
        x, y = data.limit_per_digit(x, y, settings["limit_per_digit"], seed=seed)
    if not resuming:  # the data is there: the run can start, and be resumed
        if settings["data"] is None and dataset.source == "the bundled sample":
            settings = {**settings, "data": "sample"}  # resume on what it fell back to
        elif settings["data"] not in (None, "sample"):
            settings = {**settings, "data": str(Path(settings["data"]).expanduser().resolve())}
        _write_json(out / RUN_SETTINGS, settings)

    nn.init.manual_seed(seed)
    model = build_model(name)
    optimizer = _make_optimizer(recipe["optimizer"], model.parameters(), recipe["lr"])
    scheduler = None
    if recipe["schedule"] == "onecycle":
        steps = recipe["iterations"] or recipe["epochs"] * math.ceil(len(y) / recipe["batch_size"])
        scheduler = optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe["lr"], total_steps=steps)
    length = (
        f"{recipe['iterations']} iterations"
        if recipe["iterations"]
        else f"{recipe['epochs']} epoch{'s' if recipe['epochs'] != 1 else ''}"
    )
    print(
        f"{'resuming' if resuming else 'training'} {name} on {dataset.source} ({len(y)} train, "
        f"{len(dataset.y_test)} test images): {length}, {recipe['optimizer']} lr "
        f"{recipe['lr']:g} ({recipe['schedule']}), batch {recipe['batch_size']}, seed {seed}"
        + (", random shifts" if recipe.get("augment") else ""),
        flush=True,
    )
    checkpoint = out / CHECKPOINT
    start = time.perf_counter()
    try:
        history = train.fit(
            model,
            optimizer,
            (x, y),
            (dataset.x_test, dataset.y_test),
            epochs=recipe["epochs"] or 1,
            iterations=recipe["iterations"],
            batch_size=recipe["batch_size"],
            seed=seed,
            progress=not quiet,
            lr_schedule=None if scheduler is not None else recipe["schedule"],
            scheduler=scheduler,
            augment=augment.random_shifts if recipe.get("augment") else None,
            test_subset=TEST_SUBSET,
            checkpoint=checkpoint,
            resume=checkpoint if resuming else None,
        )
    except train.TrainingDiverged as err:
        _forget_run(out)  # resuming would diverge again, step for step
        before = (
            f"the last finite loss was {err.last_finite_loss:.4g}"
            if err.last_finite_loss is not None
            else "on the first step"
        )
        raise CommandError(
            f"training diverged at iteration {err.iteration}: the loss became {err.loss} "
            f"({before}); try a lower --lr than {recipe['lr']:g}"
        ) from None
    except ValueError as err:  # a checkpoint that does not fit this run
        if not resuming:
            raise
        raise CommandError(" ".join(str(err).split())) from None
    seconds = time.perf_counter() - start
    if resuming:
        seconds = history.seconds[-1] if history.seconds else seconds
    # on the whole test set, after the last step (fit always leaves it when given a test set)
    evaluation = history.final or train.evaluate(model, dataset.x_test, dataset.y_test)

    weights = out / "model.npz"
    model.save(weights)
    _write_json(
        sidecar_path(weights),
        {
            "model": name,
            "normalize": NORMALIZE,
            "seed": seed,
            "data": dataset.source,
            "train_examples": int(len(y)),
            "recipe": recipe,
            "seconds": round(seconds, 1),
            "test_accuracy": evaluation.accuracy,
        },
    )
    history.to_csv(out / "history.csv")
    history.to_json(out / "history.json")
    title = f"{name} on {dataset.source}"
    plots.plot_curves(history, out / "curves.png", title=title)
    plots.plot_confusion(evaluation, out / "confusion.png")
    plots.plot_misclassified(
        dataset.test_images, dataset.y_test, evaluation.predictions, out / "misclassified.png"
    )
    plots.plot_filters(model, out / "filters.png")
    _forget_run(out)  # finished: model.json now records the run
    print(
        f"trained in {seconds:.1f} s; wrote model.npz, model.json, history.csv, history.json, "
        f"curves.png, confusion.png, misclassified.png, filters.png to {out}"
    )
    print(evaluation)
    if evaluation.accuracy < CHANCE_ACCURACY and history.train_loss[-1] >= CHANCE_LOSS:
        raise CommandError(
            f"training failed: the model ended no better than chance (test accuracy "
            f"{100 * evaluation.accuracy:.2f}%, training loss {history.train_loss[-1]:.3g}; a "
            f"uniform guess scores {math.log(10):.3g}); the learning rate "
            f"{recipe['lr']:g} is probably too high: try a lower --lr (files in {out})"
        )
    return 0


def _forget_run(out: Path) -> None:
    """Delete the checkpoint and settings of the run in `out` (finished, or not resumable)."""
    for name in (CHECKPOINT, RUN_SETTINGS):
        (out / name).unlink(missing_ok=True)


def _infer_model(state: dict[str, np.ndarray]) -> str:
    """The name of the reference model whose parameter names and shapes match `state`."""
    shapes = {k: v.shape for k, v in state.items()}
    for name in MODELS:
        candidate = {k: v.shape for k, v in build_model(name).state_dict().items()}
        if candidate == shapes:
            return name
    raise CommandError(f"the weights match none of the models ({', '.join(MODELS)}); pass --model")


@dataclass
class TrainedModel:
    """A model loaded from weights written by `train`, with what its sidecar says about it."""

    model: nn.Module
    name: str
    normalize: bool  # how its inputs were preprocessed (data.preprocess's normalize)
    info: dict  # the sidecar model.json ({} when absent)


def load_trained_model(weights: Path, model_name: str | None = None) -> TrainedModel:
    """The network saved at `weights` by `train`; CommandError saying what is wrong otherwise.

    The architecture is `model_name`, else the one named in the .json sidecar, else the one
    whose parameter shapes match the weights.
    """
    if not weights.is_file():
        raise CommandError(f"no weights file at {weights}")
    info = {}
    sidecar = sidecar_path(weights)
    if sidecar.is_file():
        try:
            info = json.loads(sidecar.read_text())
        except (OSError, ValueError) as err:
            raise CommandError(f"{sidecar} is not valid JSON ({err})") from None
        if not isinstance(info, dict):
            raise CommandError(f"{sidecar} should hold a JSON object, not {type(info).__name__}")
    try:
        state = read_npz(weights)
    except NPZ_ERRORS as err:
        raise CommandError(f"{weights} is not a valid .npz weights file ({err})") from None
    name = model_name or info.get("model") or _infer_model(state)
    if name not in MODELS:
        raise CommandError(f"{sidecar} names an unknown model {name!r}; pass --model")
    model = build_model(name)
    try:
        model.load_state_dict(state)
    except (KeyError, ValueError) as err:
        message = err.args[0] if err.args else str(err)
        raise CommandError(f"{weights} does not fit {name}: {message}") from None
    try:
        train.check_finite_parameters(model, "load")
    except ValueError as err:
        raise CommandError(f"{weights}: {str(err).removeprefix('load: ')}") from None
    return TrainedModel(model, name, bool(info.get("normalize", NORMALIZE)), info)


def cmd_evaluate(args: argparse.Namespace) -> int:
    weights: Path = args.weights
    loaded = load_trained_model(weights, args.model)
    model, name = loaded.model, loaded.name
    dataset = _load_data(args.data, normalize=loaded.normalize)
    evaluation = train.evaluate(model, dataset.x_test, dataset.y_test)
    print(f"{name} from {weights} on {dataset.source} ({len(dataset.y_test)} test images)")
    per_digit = "  ".join(f"{d}: {100 * e:.2f}%" for d, e in enumerate(evaluation.per_digit_error))
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
    x = data.preprocess(sample.test_images[: args.batch], normalize=NORMALIZE)
    y = sample.test_labels[: args.batch]
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


INVERT_CHOICES = {"auto": "auto", "yes": True, "no": False}  # --invert -> prepare_image's invert


def cmd_predict(args: argparse.Namespace) -> int:
    loaded = load_trained_model(args.weights, args.model)
    inputs = []
    for path in args.images:
        try:
            inputs.append(
                data.prepare_image(
                    path, invert=INVERT_CHOICES[args.invert], normalize=loaded.normalize
                )
            )
        except (OSError, ValueError) as err:
            raise CommandError(str(err).removeprefix("prepare_image: ")) from None
    probabilities = train.predict_proba(loaded.model, np.concatenate(inputs))
    digits = probabilities.argmax(axis=1)
    if args.json:
        print(
            json.dumps(
                {
                    "model": loaded.name,
                    "weights": str(args.weights),
                    "predictions": [
                        {
                            "image": str(path),
                            "digit": int(digit),
                            "probabilities": [round(float(p), 6) for p in row],
                        }
                        for path, digit, row in zip(args.images, digits, probabilities, strict=True)
                    ],
                }
            )
        )
        return 0
    for path, digit, row in zip(args.images, digits, probabilities, strict=True):
        likely = np.argsort(-row, kind="stable")[: args.top]
        listing = ", ".join(f"{d} {_percent(row[d])}" for d in likely)
        print(f"{path}: {digit}  ({listing})")
    return 0


def _percent(p: float) -> str:
    """A probability as a percentage with two decimals, never rounded up to 100.00%."""
    return ">99.99%" if p >= 0.99995 else f"{100 * p:.2f}%"


def cmd_serve(args: argparse.Namespace) -> int:
    from . import serve  # only this command needs the web server

    loaded = load_trained_model(args.weights, args.model)
    info = {key: loaded.info[key] for key in ("test_accuracy", "data") if key in loaded.info}
    info.update(model=loaded.name, weights=str(args.weights))
    try:
        serve.serve(
            loaded.model,
            args.host,
            args.port,
            normalize=loaded.normalize,
            info=info,
            weights=args.weights,
        )
    except OSError as err:
        reason = err.strerror or str(err)
        raise CommandError(f"cannot serve on {args.host}:{args.port}: {reason}") from None
    return 0


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "graph": cmd_graph,
    "predict": cmd_predict,
    "serve": cmd_serve,
}


def _raise_terminated(signum: int, frame) -> None:
    raise Terminated


def _stopped(err: KeyboardInterrupt, args: argparse.Namespace) -> int:
    """Report Ctrl-C or SIGTERM in one line (how to resume, when there is a checkpoint)."""
    terminated = isinstance(err, Terminated) or (
        isinstance(err, train.TrainingInterrupted) and err.signum == signal.SIGTERM
    )
    what = "terminated (SIGTERM)" if terminated else "interrupted (Ctrl-C)"
    out = None
    if args.command == "train":
        out = args.resume or args.out or Path("runs") / (args.model or DEFAULT_MODEL)
    where = ""
    if isinstance(err, train.TrainingInterrupted):
        where = f" at iteration {err.iteration} of {err.total}"
    if out is not None and (out / CHECKPOINT).is_file() and (out / RUN_SETTINGS).is_file():
        print(
            f"{PROG}: {what}{where}; the run is saved in {out}: continue it with "
            f"`{PROG} train --resume {out}`",
            file=sys.stderr,
        )
    else:
        print(f"{PROG}: {what}{where}", file=sys.stderr)
    return 143 if terminated else 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default sys.argv[1:]); returns the exit status.

    SIGTERM is turned into an exception (like Ctrl-C) while the command runs, so both stop it
    cleanly: no half-written files, and `train` saves its checkpoint (exit status 130 / 143).
    """
    args = make_parser().parse_args(argv)
    tune_allocator()  # a command runs the same steps many times: keep freed memory for them
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return COMMANDS[args.command](args)
    except CommandError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return err.status
    except (data.MNISTFormatError, data.DownloadError) as err:
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        print(f"{PROG}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        return _stopped(err, args)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
