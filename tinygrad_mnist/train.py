"""Training and evaluation: `fit`, `evaluate`, the `History` of a run and its metrics.

>>> from tinygrad_mnist import data, models, optim, train
>>> mnist = data.load_sample()
>>> x, y = data.preprocess(mnist.train_images, normalize=True), mnist.train_labels
>>> xt, yt = data.preprocess(mnist.test_images, normalize=True), mnist.test_labels
>>> model = models.build_model("seed-cnn")
>>> history = train.fit(model, optim.Adam(model.parameters(), 3e-3), (x, y), (xt, yt))
>>> print(f"{train.evaluate(model, xt, yt).accuracy:.2%}")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import hashlib
import html
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm  # a widget in Jupyter (with ipywidgets), text in a terminal

from . import nn
from .checkpoint import (
    Checkpoint,
    TrainingInterrupted,
    load_checkpoint,
    restore_init_rng,
    save_checkpoint,
    stop_requests,
)
from .data import batches
from .files import write_atomically
from .kernels.allocator import tune_allocator
from .optim import Optimizer
from .optim.lr_scheduler import LRScheduler
from .tensor import Tensor, no_grad

__all__ = [
    "Evaluation",
    "History",
    "TrainingDiverged",
    "TrainingInterrupted",
    "accuracy",
    "confusion_matrix",
    "constant_schedule",
    "cosine_schedule",
    "epoch_seed",
    "evaluate",
    "fit",
    "predict",
    "predict_proba",
    "write_atomically",
]

NUM_CLASSES = 10
CHECKPOINT_SECONDS = 120.0  # fit(checkpoint=...) without checkpoint_every: at least this often

# A learning-rate schedule maps (iteration done so far, total iterations) to a factor of the
# optimizer's initial learning rate.
Schedule = Callable[[int, int], float]


# ---------------------------------------------------------------- metrics


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of `predictions` (N,) equal to `labels` (N,); nan when N = 0."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return float(np.mean(predictions == labels)) if len(labels) else math.nan


def confusion_matrix(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int = NUM_CLASSES
) -> np.ndarray:
    """Counts (num_classes, num_classes): row = true label, column = predicted label."""
    labels = np.asarray(labels, dtype=np.intp)
    predictions = np.asarray(predictions, dtype=np.intp)
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels, predictions), 1)
    return counts


@dataclass
class Evaluation:
    """A model's results on a labelled set.

    accuracy and error_rate are fractions in [0, 1]; per_digit_error (10,) is the error rate
    among the examples of each true digit (nan for a digit with no examples); confusion (10, 10)
    counts examples by true label (row) and prediction (column); predictions (N,) are the
    predicted digits, in the order of the inputs.
    """

    accuracy: float
    error_rate: float
    per_digit_error: np.ndarray
    confusion: np.ndarray
    predictions: np.ndarray

    def __str__(self) -> str:
        """The one-line summary the CLI prints: `test accuracy: 99.12% (error rate 0.88%)`."""
        return (
            f"test accuracy: {100 * self.accuracy:.2f}% (error rate {100 * self.error_rate:.2f}%)"
        )

    def __repr__(self) -> str:
        """The summary line and the number of examples; the arrays are attributes."""
        return f"<Evaluation: {self}, {len(self.predictions):,} examples>"

    def _repr_html_(self) -> str:
        """In Jupyter: the summary line over the confusion matrix and each digit's error rate."""
        return _evaluation_html(self)


def _evaluation_html(evaluation: Evaluation) -> str:
    """An HTML table of the confusion matrix, shaded as `plots.plot_confusion`: by the fraction
    of the true digit's examples on a log scale (1e-4 pale, all of them dark), mistakes in red."""
    counts = evaluation.confusion
    totals = counts.sum(axis=1)
    cell = "padding:1px 6px;text-align:right;border:1px solid #ddd"
    header = "".join(f'<th style="{cell}">{j}</th>' for j in range(counts.shape[1]))
    rows = []
    for i, row in enumerate(counts):
        cells = []
        for j, n in enumerate(row):
            share = n / totals[i] if n else 0.0
            shade = 0.0 if n == 0 else max(0.1, 1 + math.log10(max(share, 1e-4)) / 4)
            colour = "white" if shade > 0.6 else ("black" if i == j else "#c00")
            cells.append(
                f'<td style="{cell};background:rgba(31,119,180,{shade:.2f});color:{colour}">'
                f"{n if n else ''}</td>"
            )
        error = evaluation.per_digit_error[i]
        cells.append(f'<td style="{cell}">{"" if np.isnan(error) else f"{100 * error:.2f}%"}</td>')
        rows.append(f'<tr><th style="{cell}">{i}</th>{"".join(cells)}</tr>')
    return (
        f"<div><p><b>{html.escape(str(evaluation))}</b>, {len(evaluation.predictions):,} "
        "examples; confusion matrix (rows: true digit, columns: predicted digit):</p>"
        '<table style="border-collapse:collapse;font-size:12px">'
        f'<tr><th style="{cell}"></th>{header}<th style="{cell}">error</th></tr>'
        f"{''.join(rows)}</table></div>"
    )


def _outputs(model: nn.Module, x: np.ndarray, batch_size: int, caller: str) -> np.ndarray:
    """The model's outputs (N, C) for x (N, ...), in batches, in eval mode, without a graph.

    The model is put in eval mode for the call and returned to its previous mode afterwards.
    """
    x = np.asarray(x)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"{caller}: batch_size must be an integer, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"{caller}: batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            out = [
                model(Tensor(x[start : start + batch_size])).data
                for start in range(0, len(x), batch_size)
            ]
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, NUM_CLASSES), dtype=np.float32)


def predict(model: nn.Module, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """The predicted class (N,) of each input in x (N, ...), in batches, without a graph.

    The model is put in eval mode for the call and returned to its previous mode afterwards.
    """
    return np.argmax(_outputs(model, x, batch_size, "predict"), axis=1)


def predict_proba(model: nn.Module, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """The probability (N, C) of each class for each input in x (N, ...); rows sum to 1.

    The softmax of the model's outputs, which may be logits or log-probabilities (the softmax
    of log-probabilities is the probabilities themselves). Runs in batches, in eval mode (the
    model's mode is restored afterwards), without a graph.
    """
    out = _outputs(model, x, batch_size, "predict_proba")
    shifted = np.exp(out - out.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> Evaluation:
    """Accuracy, error rate, per-digit error and confusion matrix of `model` on (x, y).

    x (N, 1, 28, 28) float32 (preprocessed as for training), y (N,) integer labels 0-9.
    Runs under `no_grad()` with the model in eval mode (its mode is restored afterwards).
    """
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"evaluate: x has {len(x)} examples but y has {len(y)} labels")
    _check_labels(y, "evaluate")
    check_finite_parameters(model, "evaluate")
    predictions = predict(model, x, batch_size)
    confusion = confusion_matrix(y, predictions)
    per_digit = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_digit_error = 1.0 - np.diag(confusion) / per_digit
    acc = accuracy(predictions, y)
    return Evaluation(
        accuracy=acc,
        error_rate=1.0 - acc,
        per_digit_error=per_digit_error,
        confusion=confusion,
        predictions=predictions,
    )


def _check_labels(y: np.ndarray, caller: str) -> None:
    """Raise ValueError unless y holds integer class indices 0-9."""
    if len(y) and y.dtype.kind not in "iu":
        raise ValueError(f"{caller}: labels must be integers 0-9, got dtype {y.dtype}")
    if not len(y):
        return
    bad = np.flatnonzero((y < 0) | (y >= NUM_CLASSES))
    if len(bad):
        raise ValueError(
            f"{caller}: label {y[bad[0]]} at index {bad[0]} is out of range; expected class "
            f"indices 0-{NUM_CLASSES - 1}"
        )


def check_finite_parameters(model: nn.Module, caller: str) -> None:
    """Raise ValueError naming the first parameter of `model` that holds NaN or Inf."""
    for name, p in model.named_parameters():
        if not np.isfinite(p.data).all():
            bad = int(np.count_nonzero(~np.isfinite(p.data)))
            raise ValueError(
                f"{caller}: parameter {name} holds {bad} NaN or Inf value(s) of {p.data.size}; "
                "the weights are broken (a diverged training run?), expected finite numbers"
            )


# ---------------------------------------------------------------- history


@dataclass
class History:
    """What `fit` measured, one entry per evaluation point (all lists have the same length).

    iteration: optimizer steps done so far; epoch: epochs done so far (fractional);
    train_loss, train_error: mean loss and error rate on the training batches seen since the
    previous evaluation point (so no extra forward passes are spent on them);
    test_error, test_accuracy: on the test set (None when `fit` had no test set);
    lr: the learning rate of the last step; seconds: wall time since `fit` started.
    Rates are fractions in [0, 1]. `final` is the `Evaluation` of the last point that used the
    whole test set (at the end of a run with a test set, the trained model's), else None.
    """

    iteration: list[int] = field(default_factory=list)
    epoch: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_error: list[float] = field(default_factory=list)
    test_error: list[float | None] = field(default_factory=list)
    test_accuracy: list[float | None] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    # the full `Evaluation` behind the last test point (not a column, not saved to files)
    final: Evaluation | None = field(default=None, repr=False, compare=False)

    @classmethod
    def columns(cls) -> list[str]:
        """The names of the per-point lists, in file order."""
        return [f.name for f in fields(cls) if f.name != "final"]

    def __len__(self) -> int:
        return len(self.iteration)

    def __repr__(self) -> str:
        """One line: how many points, over which iterations, and the last test accuracy (the
        lists are attributes; `plots.plot_curves(history)` draws them)."""
        if not self.iteration:
            return "<History: no points yet>"
        points = f"{len(self)} point{'' if len(self) == 1 else 's'}"
        text = f"<History: {points}, iterations {self.iteration[0]} to {self.iteration[-1]}"
        if self.test_accuracy[-1] is not None:
            text += f", last test accuracy {100 * self.test_accuracy[-1]:.2f}%"
        return text + ">"

    def append(self, **values) -> None:
        """Add one evaluation point; every field must be given."""
        names = self.columns()
        if sorted(values) != sorted(names):
            raise ValueError(f"History.append: expected the fields {names}, got {list(values)}")
        for name in names:
            getattr(self, name).append(values[name])

    def to_dict(self) -> dict[str, list]:
        """The columns as a dict of lists (field name -> values)."""
        return {name: list(getattr(self, name)) for name in self.columns()}

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the columns as one JSON object of lists, atomically; returns the path."""
        return write_atomically(path, lambda f: json.dump(self.to_dict(), f, indent=1))

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write one row per evaluation point (header = field names), atomically.

        A missing test measurement is an empty cell.
        """
        columns = self.to_dict()

        def write(f):
            writer = csv.writer(f)
            writer.writerow(columns)
            for row in zip(*columns.values(), strict=True):
                writer.writerow(["" if v is None else repr(v) for v in row])

        return write_atomically(path, write)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> History:
        """Read a History written by `to_json`."""
        columns = json.loads(Path(path).read_text())
        lists: dict[str, Any] = {name: list(columns[name]) for name in cls.columns()}
        return cls(**lists)

    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> History:
        """Read a History written by `to_csv`."""
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        history = cls()
        for row in rows:
            history.append(
                **{
                    name: None
                    if row[name] == ""
                    else (int if name == "iteration" else float)(row[name])
                    for name in row
                }
            )
        return history


# ---------------------------------------------------------------- schedules


def constant_schedule(iteration: int, total: int) -> float:
    """Keep the initial learning rate: factor 1."""
    return 1.0


def cosine_schedule(iteration: int, total: int) -> float:
    """Cosine decay from the initial learning rate to 0 over `total` steps.

    factor = (1 + cos(pi * iteration / total)) / 2, so 1 at the first step, near 0 at the last.
    """
    return 0.5 * (1.0 + math.cos(math.pi * min(iteration, total) / max(total, 1)))


SCHEDULES: dict[str, Schedule] = {"constant": constant_schedule, "cosine": cosine_schedule}


# ---------------------------------------------------------------- fit


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or Inf: `fit` stopped instead of training on garbage.

    `iteration` is the step whose loss was not finite, `loss` that value, `last_finite_loss`
    the loss of the step before (None if it was the first step of the run).
    """

    def __init__(self, iteration: int, loss: float, last_finite_loss: float | None):
        self.iteration, self.loss, self.last_finite_loss = iteration, loss, last_finite_loss
        before = (
            f"the last finite loss was {last_finite_loss:.6g} (iteration {iteration - 1})"
            if last_finite_loss is not None
            else "it was the first step"
        )
        super().__init__(
            f"training diverged at iteration {iteration}: the loss is {loss}; {before}. "
            "Lower the learning rate, or check the inputs for NaN or Inf values"
        )


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffling seed of epoch `epoch` (0, 1, ...) in a run seeded with `seed`."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def _batch_stream(
    x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, start: int = 0
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(epoch, x_batch, y_batch) forever, reshuffling each epoch with `epoch_seed(seed, epoch)`,
    beginning after the first `start` batches (where a resumed run left off)."""
    epoch, skip = divmod(start, math.ceil(len(x) / batch_size))
    while True:
        epoch_batches = batches(x, y, batch_size, shuffle=True, seed=epoch_seed(seed, epoch))
        for xb, yb in itertools.islice(epoch_batches, skip, None):
            yield epoch, xb, yb
        skip = 0
        epoch += 1


def _check_pair(pair, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Unpack and check a (x, y) pair of arrays with matching first dimensions."""
    try:
        x, y = pair
    except (TypeError, ValueError):
        raise TypeError(f"fit: {name} must be an (x, y) pair of arrays") from None
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(
            f"fit: {name} must be x (N, ...) and labels y (N,), got shapes {x.shape} and {y.shape}"
        )
    if y.dtype.kind not in "iu":
        raise TypeError(f"fit: {name} labels must be integers, got dtype {y.dtype}")
    if len(x) == 0:
        raise ValueError(f"fit: {name} set is empty")
    if x.dtype.kind in "fc":
        finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise ValueError(
                f"fit: {name} x holds NaN or Inf values in {len(bad)} example(s), the first at "
                f"index {bad[0]}; expected finite numbers"
            )
    return x, y


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"fit: {name} must be an integer >= 1, got {value!r}")
    return int(value)


def _fingerprint(x: np.ndarray, y: np.ndarray) -> str:
    """A short description of a data set that changes when its contents do (for resuming)."""
    digest = hashlib.sha256(f"{x.shape} {x.dtype} {y.dtype}".encode())
    digest.update(np.ascontiguousarray(y).tobytes())
    digest.update(np.ascontiguousarray(x[:: max(1, len(x) // 256)]).tobytes())
    return f"{len(y)} examples, sha256 {digest.hexdigest()[:16]}"


@dataclass
class _Position:
    """Where a run is: what a checkpoint must hold besides the model and the optimizer."""

    iteration: int = 0
    base_lr: float = 0.0
    history: History = field(default_factory=History)
    # loss, errors and examples summed since the last History point, the last finite loss
    loss_sum: float = 0.0
    errors: float = 0.0
    seen: float = 0.0
    last_loss: float | None = None
    seconds: float = 0.0  # wall time spent before this call of fit (resumed runs)

    def to_info(self, run: dict, seconds: float) -> dict:
        return {
            "run": run,
            "iteration": self.iteration,
            "base_lr": self.base_lr,
            "history": self.history.to_dict(),
            "sums": [self.loss_sum, self.errors, self.seen],
            "last_loss": self.last_loss,
            "seconds": seconds,
        }

    @classmethod
    def from_info(cls, info: dict) -> _Position:
        loss_sum, errors, seen = info["sums"]
        return cls(
            iteration=info["iteration"],
            base_lr=info["base_lr"],
            history=History(**info["history"]),
            loss_sum=loss_sum,
            errors=errors,
            seen=seen,
            last_loss=info["last_loss"],
            seconds=info["seconds"],
        )


def _resume(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: Optimizer,
    run: dict,
    scheduler: LRScheduler | None = None,
) -> _Position:
    """Load the checkpoint at `path` into model and optimizer; its position in the run."""
    ckpt: Checkpoint = load_checkpoint(path)
    saved_run = ckpt.info.get("run", {})
    different = [
        f"{key}: checkpoint {saved_run.get(key)!r}, this call {value!r}"
        for key, value in run.items()
        if saved_run.get(key) != value
    ]
    if different:
        raise ValueError(
            f"fit: cannot resume from {path}: it was made by a different run ("
            + "; ".join(different)
            + "); resume with the same arguments and data"
        )
    try:
        model.load_state_dict(ckpt.model)
        optimizer.load_state_dict(ckpt.optimizer)
        if scheduler is not None:
            scheduler.load_state_dict(ckpt.info["scheduler"])
    except (KeyError, ValueError) as err:
        message = err.args[0] if err.args else str(err)
        raise ValueError(f"fit: cannot resume from {path}: {message}") from None
    restore_init_rng(ckpt.init_rng)
    return _Position.from_info(ckpt.info)


def _check_log_probabilities(out: np.ndarray) -> None:
    """fit's default loss, nll_loss, needs log-probabilities: refuse anything else (logits
    would train towards -inf with no warning)."""
    if out.ndim != 2 or not np.issubdtype(out.dtype, np.floating) or not np.isfinite(out).all():
        return  # nll_loss names a wrong shape or dtype; a NaN loss stops with TrainingDiverged
    row_sums = np.exp(out.astype(np.float64)).sum(axis=1)
    if np.all(out <= 1e-4) and np.allclose(row_sums, 1.0, atol=1e-3):
        return
    raise ValueError(
        "fit: the default loss_fn, nn.functional.nll_loss, needs log-probabilities, but the "
        f"model's outputs on the first batch are not (largest value {out.max():.3g}, rows' "
        f"exp sums {row_sums.min():.3g} to {row_sums.max():.3g}, expected <= 0 and 1). If the "
        "model outputs logits, pass loss_fn=nn.functional.cross_entropy, or end the model with "
        "a LogSoftmax layer"
    )


def fit(
    model: nn.Module,
    optimizer: Optimizer,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray] | None = None,
    epochs: int = 1,
    iterations: int | None = None,
    batch_size: int = 64,
    eval_every: int | None = None,
    loss_fn: Callable = nn.functional.nll_loss,
    seed: int = 0,
    progress: bool = True,
    lr_schedule: str | Schedule | None = None,
    test_subset: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: str | os.PathLike | None = None,
    scheduler: LRScheduler | None = None,
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
) -> History:
    """Train `model` with `optimizer` on `train` = (x, y) and return the History of the run.

    x (N, 1, 28, 28) float32 preprocessed images, y (N,) integer labels. Runs `epochs` passes
    over the data in shuffled minibatches of `batch_size` (the last one of an epoch may be
    smaller), or exactly `iterations` steps when given (then `epochs` is ignored). Each epoch's
    order comes from `epoch_seed(seed, epoch)`, so the same seed and the same initial model give
    the same History (model initialisation is seeded separately: `nn.init.manual_seed`).

    Every `eval_every` steps (default: about 20 points per run) and always after the last step,
    one History point is recorded: the mean loss and error rate of the training batches since
    the previous point (no extra passes), and the error on `test` (x, y) when given, computed by
    `evaluate`. With `test_subset` = k, intermediate points use a fixed random k examples of the
    test set (cheaper); the last point always uses the whole test set.

    `loss_fn(output, labels)` must return a one-element Tensor; the default, `nll_loss`,
    expects the model to output log-probabilities, and fit checks that on the first batch
    (a ValueError suggests `loss_fn=nn.functional.cross_entropy` for a model that outputs
    logits). `lr_schedule` ("constant", "cosine" or a function of
    (iteration, total iterations) returning a factor) scales the optimizer's initial learning
    rate before every step; None keeps it constant. `progress` shows a tqdm bar with the loss
    and the running training accuracy. A loss that is NaN or Inf stops the run with
    `TrainingDiverged` (naming the step and the last finite loss), before that step's update.
    `scheduler` (an `optim.lr_scheduler` scheduler, e.g. OneCycleLR; then lr_schedule must be
    None) is stepped after every optimizer step and saved in checkpoints. `augment(x, rng)`
    returns a changed copy of each training batch (e.g. `augment.random_shifts`); its rng is
    seeded by (seed, iteration), so runs stay reproducible and resumable.

    Checkpoints: with `checkpoint` (a file path), the whole run (model, optimizer state, the
    schedule's base learning rate, the nn.init random state, history and position) is saved
    there atomically every `checkpoint_every` steps (default: every epoch and at least every
    CHECKPOINT_SECONDS), after the last step, and when SIGINT (Ctrl-C) or SIGTERM arrives: the
    step under way is finished, the checkpoint saved, and `TrainingInterrupted` (a
    KeyboardInterrupt) raised; a second signal interrupts at once. `resume` (a checkpoint file)
    continues a run: called with the same arguments, data and a model and optimizer built the
    same way, the result is bit for bit that of a run that never stopped (a checkpoint made by
    a different run is refused, naming what differs).

    Starting a run also turns on the allocator tuning of `kernels.allocator.tune_allocator`
    (freed memory is kept for the next step; `TINYGRAD_MNIST_MALLOC_TUNING=0` leaves it off).
    """
    tune_allocator()
    x, y = _check_pair(train, "train")
    test_pair = _check_pair(test, "test") if test is not None else None
    batch_size = _positive_int(batch_size, "batch_size")
    steps_per_epoch = math.ceil(len(x) / batch_size)
    if iterations is not None:
        total = _positive_int(iterations, "iterations")
    else:
        total = _positive_int(epochs, "epochs") * steps_per_epoch
    if eval_every is None:
        eval_every = max(1, round(total / 20))
    eval_every = _positive_int(eval_every, "eval_every")
    if checkpoint_every is not None:
        checkpoint_every = _positive_int(checkpoint_every, "checkpoint_every")
    if scheduler is not None and lr_schedule is not None:
        raise ValueError("fit: give lr_schedule or scheduler, not both")
    schedule = _schedule(lr_schedule)
    subset = None
    if test_pair is not None and test_subset is not None:
        k = _positive_int(test_subset, "test_subset")
        if k < len(test_pair[1]):
            rng = np.random.default_rng(seed)
            idx = np.sort(rng.choice(len(test_pair[1]), size=k, replace=False))
            subset = (test_pair[0][idx], test_pair[1][idx])
    run = {
        "total": total,
        "batch_size": batch_size,
        "seed": seed,
        "eval_every": eval_every,
        "test_subset": test_subset,
        "schedule": getattr(schedule, "__qualname__", repr(schedule)),
        "scheduler": None if scheduler is None else type(scheduler).__name__,
        "augment": None if augment is None else getattr(augment, "__qualname__", repr(augment)),
        "optimizer": type(optimizer).__name__,
        "train": _fingerprint(x, y),
        "test": None if test_pair is None else _fingerprint(*test_pair),
    }
    if resume is not None:
        pos = _resume(resume, model, optimizer, run, scheduler)
    else:
        pos = _Position(base_lr=optimizer.lr)
    history = pos.history

    model.train()
    start = last_save = time.perf_counter()
    postfix: dict[str, str] = {}
    bar = tqdm(
        total=total,
        initial=pos.iteration,
        disable=not progress,
        unit="step",
        dynamic_ncols=True,
        leave=True,
    )
    stream = _batch_stream(x, y, batch_size, seed, start=pos.iteration)
    with stop_requests(active=checkpoint is not None) as stop:
        try:
            first_step = pos.iteration + 1
            for step in range(first_step, total + 1):
                _, xb, yb = next(stream)
                if augment is not None:
                    xb = augment(xb, np.random.default_rng([seed, step]))
                if scheduler is None:
                    optimizer.lr = pos.base_lr * schedule(step - 1, total)
                lr = optimizer.lr  # this step's (a scheduler sets the next one after it)
                optimizer.zero_grad()
                out = model(Tensor(xb))
                if step == first_step and loss_fn is nn.functional.nll_loss:
                    _check_log_probabilities(out.data)
                loss = loss_fn(out, yb)
                value = float(loss.item())
                if not math.isfinite(value):
                    raise TrainingDiverged(step, value, pos.last_loss)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()

                n = len(yb)
                pos.last_loss = value
                pos.loss_sum += value * n
                pos.errors += float(np.sum(np.argmax(out.data, axis=1) != yb))
                pos.seen += n
                pos.iteration = step
                bar.update(1)
                if progress and (step % 10 == 0 or step == total):
                    postfix.update(
                        loss=f"{pos.loss_sum / pos.seen:.3f}",
                        acc=f"{1 - pos.errors / pos.seen:.2%}",
                    )
                    bar.set_postfix(postfix, refresh=False)

                if step % eval_every == 0 or step == total:
                    point = test_pair if (step == total or subset is None) else subset
                    test_error = None
                    if point is not None:
                        result = evaluate(model, *point)
                        test_error = result.error_rate
                        if point is test_pair:
                            history.final = result
                    history.append(
                        iteration=step,
                        epoch=step / steps_per_epoch,
                        train_loss=pos.loss_sum / pos.seen,
                        train_error=pos.errors / pos.seen,
                        test_error=test_error,
                        test_accuracy=None if test_error is None else 1.0 - test_error,
                        lr=lr,
                        seconds=pos.seconds + time.perf_counter() - start,
                    )
                    if test_error is not None and progress:
                        postfix["test_acc"] = f"{1 - test_error:.2%}"
                        bar.set_postfix(postfix)  # refresh, so the last bar shows the final test
                    pos.loss_sum = pos.errors = pos.seen = 0.0

                if checkpoint is None:
                    continue
                now = time.perf_counter()
                due = (
                    step % checkpoint_every == 0
                    if checkpoint_every is not None
                    else step % steps_per_epoch == 0 or now - last_save >= CHECKPOINT_SECONDS
                )
                if due or step == total or stop.signum is not None:
                    info = pos.to_info(run, pos.seconds + now - start)
                    if scheduler is not None:
                        info["scheduler"] = scheduler.state_dict()
                    save_checkpoint(checkpoint, model, optimizer, info)
                    last_save = time.perf_counter()
                if stop.signum is not None:
                    raise TrainingInterrupted(stop.signum, step, total, Path(checkpoint))
        finally:
            bar.close()
    if history.final is None and test_pair is not None and pos.iteration == total:
        history.final = evaluate(model, *test_pair)  # resumed from the end of a finished run
    return history


def _schedule(lr_schedule: str | Schedule | None) -> Schedule:
    """The schedule function named or given by `lr_schedule` (None: constant)."""
    if lr_schedule is None:
        return constant_schedule
    if isinstance(lr_schedule, str):
        if lr_schedule not in SCHEDULES:
            raise ValueError(
                f"fit: unknown lr_schedule {lr_schedule!r}; expected one of {', '.join(SCHEDULES)} "
                "or a function (iteration, total) -> factor"
            )
        return SCHEDULES[lr_schedule]
    if not callable(lr_schedule):
        raise TypeError(f"fit: lr_schedule must be a name or a function, got {lr_schedule!r}")
    return lr_schedule
