"""fit, evaluate and History: behaviour, reproducibility, metrics and file round trips."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from tinygrad_mnist import Tensor, data, nn, optim, train
from tinygrad_mnist.models import build_model


@pytest.fixture(scope="module")
def small():
    """200 train (20 per digit) and 100 test images of the bundled sample, normalised."""
    sample = data.load_sample()
    xi, yi = data.limit_per_digit(sample.train_images, sample.train_labels, 20)
    xt, yt = data.limit_per_digit(sample.test_images, sample.test_labels, 10)
    return (
        (data.preprocess(xi, normalize=True), yi),
        (data.preprocess(xt, normalize=True), yt),
    )


def _seed_cnn(seed: int = 0) -> nn.Module:
    nn.init.manual_seed(seed)
    return build_model("seed-cnn")


def _fit(small, seed=0, **kwargs):
    model = _seed_cnn()
    kwargs.setdefault("progress", False)
    history = train.fit(
        model, optim.Adam(model.parameters(), 3e-3), small[0], small[1], seed=seed, **kwargs
    )
    return model, history


class FixedModel(nn.Module):
    """Outputs log-probabilities that pick a prescribed class for each input (x[:, 0])."""

    def forward(self, x: Tensor) -> Tensor:
        classes = x.data[:, 0].astype(int)
        logits = np.full((len(classes), 10), -10.0, dtype=np.float32)
        logits[np.arange(len(classes)), classes] = 10.0
        return Tensor(logits).log_softmax(axis=1)


# ---------------------------------------------------------------- evaluate


def test_evaluate_hand_made_confusion():
    predicted = np.array([0, 1, 1, 2, 2, 2, 9, 3])
    labels = np.array([0, 1, 2, 2, 2, 3, 9, 3])
    ev = train.evaluate(FixedModel(), predicted[:, None].astype(np.float32), labels, batch_size=3)
    expected = np.zeros((10, 10), dtype=np.int64)
    for t, p in zip(labels, predicted, strict=True):
        expected[t, p] += 1
    np.testing.assert_array_equal(ev.confusion, expected)
    assert ev.confusion[2, 1] == 1 and ev.confusion[3, 2] == 1 and ev.confusion[2, 2] == 2
    assert ev.accuracy == pytest.approx(6 / 8)
    assert ev.error_rate == pytest.approx(2 / 8)
    assert ev.per_digit_error.shape == (10,)
    assert ev.per_digit_error[0] == 0 and ev.per_digit_error[9] == 0
    assert ev.per_digit_error[2] == pytest.approx(1 / 3)
    assert ev.per_digit_error[3] == pytest.approx(1 / 2)
    assert math.isnan(ev.per_digit_error[5])  # no examples of 5
    np.testing.assert_array_equal(ev.predictions, predicted)
    assert str(ev) == "test accuracy: 75.00% (error rate 25.00%)"


def test_evaluation_reprs_are_short_and_jupyter_shows_the_confusion_matrix():
    predicted = np.array([0, 1, 1, 2, 2, 2, 9, 3])
    labels = np.array([0, 1, 2, 2, 2, 3, 9, 3])
    ev = train.evaluate(FixedModel(), predicted[:, None].astype(np.float32), labels)
    # a cell ending in `result` shows one line, not the arrays
    assert repr(ev) == "<Evaluation: test accuracy: 75.00% (error rate 25.00%), 8 examples>"
    page = ev._repr_html_()
    assert "<b>test accuracy: 75.00% (error rate 25.00%)</b>, 8 examples" in page
    assert page.count("<tr>") == 11  # the header and one row per true digit
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", page)
    assert len(cells) == 10 * 11  # 10 counts and the error rate per row
    rows = [cells[i * 11 : (i + 1) * 11] for i in range(10)]
    assert rows[2][:3] == ["", "1", "2"] and rows[2][10] == "33.33%"  # 2 read as 1 once
    assert rows[5] == [""] * 11  # no 5s: no counts, no error rate


def test_evaluate_restores_mode_and_records_no_graph(small):
    model = _seed_cnn()
    model.train()
    ev = train.evaluate(model, *small[1], batch_size=7)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert ev.confusion.sum() == len(small[1][1])
    assert 0.0 <= ev.accuracy <= 1.0 and ev.error_rate == pytest.approx(1 - ev.accuracy)
    model.eval()
    train.evaluate(model, *small[1])
    assert not model.training


def test_evaluate_rejects_mismatched_lengths(small):
    with pytest.raises(ValueError, match="evaluate"):
        train.evaluate(_seed_cnn(), small[1][0], small[1][1][:-1])


# ---------------------------------------------------------------- fit


def test_fit_records_points_and_learns(small):
    model, history = _fit(small, epochs=3, eval_every=4)
    steps_per_epoch = math.ceil(200 / 64)
    total = 3 * steps_per_epoch
    assert history.iteration == [4, 8, total]
    assert history.epoch[-1] == pytest.approx(3.0)
    for name, column in history.to_dict().items():
        assert len(column) == len(history) == 3, name
    assert all(
        a == pytest.approx(1 - e)
        for a, e in zip(history.test_accuracy, history.test_error, strict=True)
    )
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.test_error[-1] < 0.8  # better than chance after 12 steps
    assert history.test_error[-1] == pytest.approx(train.evaluate(model, *small[1]).error_rate)
    assert history.seconds == sorted(history.seconds)


def test_fit_iterations_override_epochs_and_default_eval_points(small):
    _, history = _fit(small, epochs=5, iterations=40)
    assert history.iteration[-1] == 40
    assert history.iteration == list(range(2, 41, 2))  # about 20 points by default
    assert history.epoch[-1] == pytest.approx(40 / 4)


def test_fit_is_reproducible_from_seed(small):
    _, first = _fit(small, iterations=6, eval_every=2)
    model, second = _fit(small, iterations=6, eval_every=2)
    first.seconds = second.seconds = []
    assert first == second
    _, other = _fit(small, seed=1, iterations=6, eval_every=2)
    assert other.train_loss != second.train_loss


def test_fit_without_test_set(small):
    model = _seed_cnn()
    history = train.fit(
        model, optim.SGD(model.parameters(), 0.05), small[0], iterations=3, progress=False
    )
    assert history.test_error == [None, None, None]
    assert history.final is None
    assert history.test_accuracy == [None, None, None]


def test_fit_cosine_schedule_and_custom_loss(small):
    model = _seed_cnn()
    opt = optim.Adam(model.parameters(), 1e-2)
    seen = []

    def loss_fn(out, labels):
        seen.append(len(labels))
        return nn.functional.nll_loss(out, labels)

    history = train.fit(
        model,
        opt,
        small[0],
        iterations=4,
        eval_every=1,
        progress=False,
        lr_schedule="cosine",
        loss_fn=loss_fn,
        batch_size=50,
    )
    assert seen == [50, 50, 50, 50]
    factors = [train.cosine_schedule(i, 4) for i in range(4)]
    assert history.lr == pytest.approx([1e-2 * f for f in factors])
    assert factors[0] == 1.0 and factors[-1] < 0.2


def test_fit_test_subset_uses_full_test_set_at_the_end(small):
    model, history = _fit(small, iterations=4, eval_every=2, test_subset=30)
    assert history.test_error[0] * 30 == pytest.approx(round(history.test_error[0] * 30))
    full = train.evaluate(model, *small[1])
    assert history.test_error[-1] == pytest.approx(full.error_rate)
    np.testing.assert_array_equal(history.final.confusion, full.confusion)


def test_fit_shows_a_progress_bar(small, capsys):
    _fit(small, iterations=10, eval_every=5, progress=True)
    err = capsys.readouterr().err
    assert "10/10" in err and "loss=" in err and "acc=" in err


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(epochs=0), ValueError),
        (dict(iterations=0), ValueError),
        (dict(batch_size=0), ValueError),
        (dict(eval_every=-1), ValueError),
        (dict(lr_schedule="warp"), ValueError),
        (dict(lr_schedule=3), TypeError),
    ],
)
def test_fit_rejects_bad_arguments(small, kwargs, error):
    model = _seed_cnn()
    with pytest.raises(error, match="fit"):
        train.fit(model, optim.SGD(model.parameters(), 0.1), small[0], progress=False, **kwargs)


def test_fit_rejects_bad_data(small):
    model = _seed_cnn()
    opt = optim.SGD(model.parameters(), 0.1)
    x, y = small[0]
    with pytest.raises(ValueError, match="train"):
        train.fit(model, opt, (x, y[:-1]), progress=False)
    with pytest.raises(TypeError, match="integers"):
        train.fit(model, opt, (x, y.astype(np.float32)), progress=False)
    with pytest.raises(TypeError, match="pair"):
        train.fit(model, opt, x, progress=False)


def test_epoch_seed_gives_the_batch_order(small):
    x, y = small[0]
    order = [yb for _, yb in data.batches(x, y, 64, seed=train.epoch_seed(0, 0))]
    stream = train._batch_stream(x, y, 64, 0)
    for expected in order:
        _, _, yb = next(stream)
        np.testing.assert_array_equal(yb, expected)
    assert next(stream)[0] == 1  # the next epoch has begun
    assert train.epoch_seed(0, 0) != train.epoch_seed(0, 1) != train.epoch_seed(1, 0)


# ---------------------------------------------------------------- History files


def _example_history() -> train.History:
    history = train.History()
    history.append(
        iteration=5,
        epoch=0.5,
        train_loss=1.25,
        train_error=0.4,
        test_error=None,
        test_accuracy=None,
        lr=0.001,
        seconds=0.5,
    )
    history.append(
        iteration=10,
        epoch=1.0,
        train_loss=0.1 + 0.2,
        train_error=1 / 3,
        test_error=0.0123,
        test_accuracy=1 - 0.0123,
        lr=0.0005,
        seconds=1.25,
    )
    return history


def test_history_json_round_trip(tmp_path):
    history = _example_history()
    path = history.to_json(tmp_path / "h.json")
    assert path == tmp_path / "h.json"
    assert train.History.from_json(path) == history
    assert json.loads(path.read_text())["test_error"] == [None, 0.0123]
    assert [p.name for p in tmp_path.iterdir()] == ["h.json"]  # no temp files left


def test_history_csv_round_trip(tmp_path):
    history = _example_history()
    path = history.to_csv(tmp_path / "h.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == (
        "iteration,epoch,train_loss,train_error,test_error,test_accuracy,lr,seconds"
    )
    assert lines[1].startswith("5,0.5,1.25,0.4,,,")
    loaded = train.History.from_csv(path)
    assert loaded == history  # floats survive exactly (repr)
    assert isinstance(loaded.iteration[0], int)


def test_history_repr_is_one_line():
    history = train.History()
    assert repr(history) == "<History: no points yet>"
    point = dict(epoch=0.1, train_loss=1.0, train_error=0.5, lr=1e-3, seconds=1.0)
    history.append(iteration=10, test_error=None, test_accuracy=None, **point)
    assert repr(history) == "<History: 1 point, iterations 10 to 10>"
    history.append(iteration=20, test_error=0.0091, test_accuracy=0.9909, **point)
    assert repr(history) == "<History: 2 points, iterations 10 to 20, last test accuracy 99.09%>"


def test_history_append_needs_every_field():
    with pytest.raises(ValueError, match="fields"):
        train.History().append(iteration=1)


def test_history_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "h.json"
    path.write_text("old")

    def broken_dump(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(RuntimeError):
        _example_history().to_json(path)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["h.json"]


def test_metrics():
    assert train.accuracy([1, 2, 3], [1, 2, 0]) == pytest.approx(2 / 3)
    assert math.isnan(train.accuracy([], []))
    m = train.confusion_matrix([0, 0, 1], [0, 1, 1], num_classes=3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [0, 0, 0]])
