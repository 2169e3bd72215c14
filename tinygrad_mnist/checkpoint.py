"""Checkpoints of a training run, and stopping a run cleanly when a signal arrives.

A checkpoint is one `.npz` file, written atomically: the model's arrays under ``model:NAME``,
the optimizer's per-parameter arrays under ``optimizer:INDEX:KEY``, and everything else (the
optimizer's options and step counts, the run's position, history and random state) as JSON in
the entry ``meta``. `fit(checkpoint=..., resume=...)` in train.py writes and reads them.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import nn
from .files import NPZ_ERRORS, read_npz, write_npz
from .optim import Optimizer

FORMAT = "tinygrad_mnist checkpoint 1"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """`fit` stopped at a step boundary because of SIGINT (Ctrl-C) or SIGTERM.

    `signum` is the signal, `iteration` the steps done (of `total`), `checkpoint` the file that
    holds the run so far (pass it to `fit(resume=...)` to continue).
    """

    def __init__(self, signum: int, iteration: int, total: int, checkpoint: Path):
        self.signum, self.iteration, self.total, self.checkpoint = (
            signum,
            iteration,
            total,
            Path(checkpoint),
        )
        name = signal.Signals(signum).name
        super().__init__(
            f"{name} at iteration {iteration} of {total}; the run so far is saved in "
            f"{checkpoint}: fit(..., resume={str(checkpoint)!r}) continues it"
        )


@dataclass
class Checkpoint:
    """What a checkpoint file holds: model and optimizer state, and the run's `info` dict."""

    model: dict[str, np.ndarray]
    optimizer: dict
    optimizer_name: str
    init_rng: dict  # the state of the generator layers draw from (nn.init)
    info: dict


def save_checkpoint(
    path: str | os.PathLike, model: nn.Module, optimizer: Optimizer, info: dict
) -> Path:
    """Write model, optimizer and `info` (JSON-able) to `path` atomically; returns the path."""
    path = Path(path)
    arrays = {f"model:{name}": array for name, array in model.state_dict().items()}
    state = optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, np.ndarray):
                arrays[f"optimizer:{index}:{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    meta = {
        "format": FORMAT,
        "optimizer": type(optimizer).__name__,
        "param_groups": state["param_groups"],
        "optimizer_scalars": scalars,
        "init_rng": nn.init._rng.bit_generator.state,  # the generator layers draw from
        "info": info,
    }
    arrays["meta"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_npz(path, arrays)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a file written by `save_checkpoint`; ValueError naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        arrays = read_npz(path)
        meta = json.loads(str(arrays.pop("meta")))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"its meta entry is not a {FORMAT!r} record")
    except (*NPZ_ERRORS, KeyError) as err:
        raise ValueError(
            f"{path} is not a tinygrad_mnist checkpoint (written by fit(checkpoint=...)): {err}"
        ) from None
    model = {k.split(":", 1)[1]: v for k, v in arrays.items() if k.startswith("model:")}
    state: dict[int, dict] = {}
    for key, value in arrays.items():
        if key.startswith("optimizer:"):
            _, index, name = key.split(":", 2)
            state.setdefault(int(index), {})[name] = value
    for index, scalars in meta["optimizer_scalars"].items():
        state.setdefault(int(index), {}).update(scalars)
    return Checkpoint(
        model=model,
        optimizer={"state": state, "param_groups": meta["param_groups"]},
        optimizer_name=meta["optimizer"],
        init_rng=meta["init_rng"],
        info=meta["info"],
    )


def restore_init_rng(state: dict) -> None:
    """Put the generator that layers draw from (nn.init) back in a saved state."""
    nn.init._rng.bit_generator.state = state


class StopRequest:
    """The first SIGINT or SIGTERM received while `stop_requests()` is active (None: none yet)."""

    signum: int | None = None


@contextmanager
def stop_requests(active: bool = True) -> Iterator[StopRequest]:
    """Record SIGINT and SIGTERM instead of acting on them at once, so a loop can finish its
    step, save, and stop cleanly; a second signal interrupts at once (KeyboardInterrupt).

    Only in the main thread (signals are delivered there) and when `active`; the previous
    handlers are restored on exit.
    """
    request = StopRequest()
    if not active or threading.current_thread() is not threading.main_thread():
        yield request
        return

    def record(signum: int, frame) -> None:
        if request.signum is not None:
            raise KeyboardInterrupt
        request.signum = signum

    previous = {sig: signal.signal(sig, record) for sig in STOP_SIGNALS}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
