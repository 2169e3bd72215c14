"""fit's checkpoints, resuming bit for bit, stopping on a signal, and divergence."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from tinygrad_mnist import TrainingDiverged, data, nn, optim, train
from tinygrad_mnist.checkpoint import load_checkpoint
from tinygrad_mnist.models import build_model
from tinygrad_mnist.train import TrainingInterrupted

TOTAL = 30  # steps: a bit under 2 epochs of 160 images in batches of 10


@pytest.fixture(scope="module")
def small():
    """160 train (16 per digit) and 50 test images of the bundled sample, normalised."""
    sample = data.load_sample()
    xi, yi = data.limit_per_digit(sample.train_images, sample.train_labels, 16)
    xt, yt = data.limit_per_digit(sample.test_images, sample.test_labels, 5)
    return (data.preprocess(xi, normalize=True), yi), (data.preprocess(xt, normalize=True), yt)


def _setup(optimizer: str = "adam"):
    nn.init.manual_seed(0)
    model = build_model("seed-cnn")
    if optimizer == "adam":
        return model, optim.Adam(model.parameters(), lr=3e-3)
    return model, optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def _fit(small, model, opt, **kwargs):
    """train.fit on small = (train, test) with this file's settings, any of them overridden."""
    settings = dict(
        iterations=TOTAL,
        batch_size=10,
        eval_every=7,
        lr_schedule="cosine",
        test_subset=20,
        progress=False,
    )
    return train.fit(model, opt, small[0], small[1], **{**settings, **kwargs})


def _columns(history: train.History) -> dict:
    columns = history.to_dict()
    del columns["seconds"]
    return columns


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    for name in sa:
        np.testing.assert_array_equal(sa[name], sb[name], err_msg=name)


class InterruptAt:
    """A loss function that sends this process `signum` during step `step` (1-based)."""

    def __init__(self, step: int, signum: int = signal.SIGINT):
        self.step, self.signum, self.calls = step, signum, 0

    def __call__(self, out, labels):
        self.calls += 1
        if self.calls == self.step:
            os.kill(os.getpid(), self.signum)
        return nn.functional.nll_loss(out, labels)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_then_resume_equals_an_uninterrupted_run(small, tmp_path, optimizer, signum):
    model, opt = _setup(optimizer)
    expected = _fit(small, model, opt)

    path = tmp_path / "run.ckpt"
    interrupted, opt2 = _setup(optimizer)
    with pytest.raises(TrainingInterrupted) as info:
        _fit(small, interrupted, opt2, checkpoint=path, loss_fn=InterruptAt(12, signum))
    assert info.value.iteration == 12 and info.value.total == TOTAL
    assert info.value.signum == signum and info.value.checkpoint == path
    assert isinstance(info.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored

    resumed, opt3 = _setup(optimizer)
    nn.init.manual_seed(99)  # the checkpoint restores the init generator too
    history = _fit(small, resumed, opt3, checkpoint=path, resume=path)
    _assert_same_weights(resumed, model)
    assert _columns(history) == _columns(expected)
    assert history.final.accuracy == expected.final.accuracy
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]  # no temp files left


def test_resume_from_every_checkpoint_and_across_epochs(small, tmp_path):
    model, opt = _setup()
    path = tmp_path / "ckpt.npz"
    expected = _fit(small, model, opt, checkpoint=path, checkpoint_every=16)  # 16: epoch 2
    assert load_checkpoint(path).info["iteration"] == TOTAL  # saved after the last step too

    class Stop(Exception):
        pass

    def crash_at_step_20(out, labels):  # a crash mid-step: the checkpoint of step 16 survives
        crash_at_step_20.calls += 1
        if crash_at_step_20.calls == 20:
            raise Stop
        return nn.functional.nll_loss(out, labels)

    crash_at_step_20.calls = 0
    crashed, opt2 = _setup()
    with pytest.raises(Stop):
        _fit(small, crashed, opt2, checkpoint=path, checkpoint_every=16, loss_fn=crash_at_step_20)
    assert load_checkpoint(path).info["iteration"] == 16
    resumed, opt3 = _setup()
    history = _fit(small, resumed, opt3, resume=path)
    _assert_same_weights(resumed, model)
    assert _columns(history) == _columns(expected)

    finished, opt4 = _setup()  # resuming a finished run: nothing left to do, same result
    _fit(small, finished, opt4, checkpoint=path)
    again, opt5 = _setup()
    history = _fit(small, again, opt5, resume=path)
    _assert_same_weights(again, model)
    assert history.final.accuracy == expected.final.accuracy


def test_checkpoint_every_epoch_by_default(small, tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(
        train, "save_checkpoint", lambda path, m, o, info: saved.append(info["iteration"])
    )
    model, opt = _setup()
    _fit(small, model, opt, checkpoint=tmp_path / "c.npz")
    assert saved == [16, TOTAL]  # 160 images in batches of 10: 16 steps per epoch
    monkeypatch.setattr(train, "CHECKPOINT_SECONDS", 0.0)
    saved.clear()
    model, opt = _setup()
    _fit(small, model, opt, checkpoint=tmp_path / "c.npz")
    assert saved == list(range(1, TOTAL + 1))


def test_resume_refuses_a_different_run(small, tmp_path):
    path = tmp_path / "c.npz"
    model, opt = _setup()
    _fit(small, model, opt, checkpoint=path)
    model, opt = _setup()
    with pytest.raises(ValueError, match=r"run \(batch_size: checkpoint 10, this call 20"):
        _fit(small, model, opt, batch_size=20, resume=path)
    x, y = small[0]
    with pytest.raises(ValueError, match="train: checkpoint '160 examples, sha256"):
        _fit(((x[::-1], y[::-1]), small[1]), model, opt, resume=path)
    model, sgd = _setup("sgd")
    with pytest.raises(ValueError, match="optimizer: checkpoint 'Adam', this call 'SGD'"):
        _fit(small, model, sgd, resume=path)


def test_resume_from_something_else_names_the_file(small, tmp_path):
    model, opt = _setup()
    with pytest.raises(FileNotFoundError, match="no checkpoint file at"):
        _fit(small, model, opt, resume=tmp_path / "missing.npz")
    weights = tmp_path / "model.npz"
    model.save(weights)
    with pytest.raises(ValueError, match=f"{weights} is not a tinygrad_mnist checkpoint"):
        _fit(small, model, opt, resume=weights)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz is not a tinygrad_mnist checkpoint"):
        _fit(small, model, opt, resume=junk)


# ---------------------------------------------------------------- divergence and bad values


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow on the way to NaN
def test_nan_loss_stops_with_training_diverged(small):
    model, _ = _setup()
    opt = optim.SGD(model.parameters(), lr=1e6, momentum=0.9)
    with pytest.raises(TrainingDiverged) as info:
        train.fit(model, opt, small[0], iterations=50, progress=False)
    err = info.value
    assert isinstance(err, RuntimeError) and 1 < err.iteration < 50
    assert not np.isfinite(err.loss) and np.isfinite(err.last_finite_loss)
    assert f"iteration {err.iteration}" in str(err) and "last finite loss" in str(err)
    assert train.TrainingDiverged is TrainingDiverged


def test_inf_loss_on_the_first_step_is_named(small):
    model, opt = _setup()
    with pytest.raises(TrainingDiverged, match="iteration 1: the loss is inf; it was the first"):
        train.fit(
            model,
            opt,
            small[0],
            iterations=3,
            progress=False,
            loss_fn=lambda out, y: nn.functional.nll_loss(out, y) * float("inf"),
        )


def test_fit_refuses_nan_inputs(small):
    x, y = small[0]
    x = x.copy()
    x[7, 0, 3, 4] = np.nan
    model, opt = _setup()
    with pytest.raises(ValueError, match="train x holds NaN or Inf values in 1 example.*index 7"):
        train.fit(model, opt, (x, y), progress=False)
    with pytest.raises(ValueError, match="test x holds NaN"):
        train.fit(model, opt, small[0], (x, y), progress=False)


def test_evaluate_refuses_nan_weights_and_bad_labels(small):
    model, _ = _setup()
    x, y = small[1]
    name, weight = list(model.named_parameters())[-2]
    weight.data[0, 0] = np.nan
    with pytest.raises(ValueError, match=f"parameter {name} holds 1 NaN or Inf"):
        train.evaluate(model, x, y)
    model, _ = _setup()
    bad = y.copy()
    bad[3] = 10
    with pytest.raises(ValueError, match="label 10 at index 3 is out of range.*0-9"):
        train.evaluate(model, x, bad)
    with pytest.raises(ValueError, match="label -1 at index 0"):
        train.evaluate(model, x, np.full(len(y), -1))
