"""The `best` recipe's parts: random shifts, fit with an lr_scheduler and augmentation (resuming
bit for bit), the bn-cnn model against its PyTorch twin, and `train --recipe best`."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from tinygrad_mnist import Tensor, augment, data, nn, optim, train
from tinygrad_mnist.models import build_model
from tinygrad_mnist.train import TrainingInterrupted

TOTAL = 24


@pytest.fixture(scope="module")
def small():
    sample = data.load_sample()
    xi, yi = data.limit_per_digit(sample.train_images, sample.train_labels, 12)
    xt, yt = data.limit_per_digit(sample.test_images, sample.test_labels, 4)
    return (data.preprocess(xi, normalize=True), yi), (data.preprocess(xt, normalize=True), yt)


def test_random_shifts_move_each_image_and_fill_with_background():
    rng = np.random.default_rng(0)
    x = np.full((50, 1, 28, 28), -0.5, np.float32)
    x[:, 0, 10:18, 12:16] = 2.0  # a block of ink, away from the border
    shifted = augment.random_shifts(x, np.random.default_rng(1), max_shift=2)
    assert shifted.shape == x.shape and shifted.dtype == x.dtype
    assert set(np.unique(shifted)) == {-0.5, 2.0}  # background stays background
    offsets = set()
    for a, b in zip(x, shifted, strict=True):
        (r0, c0), (r1, c1) = np.argwhere(a[0] == 2)[0], np.argwhere(b[0] == 2)[0]
        assert abs(r1 - r0) <= 2 and abs(c1 - c0) <= 2
        assert (b[0] == 2).sum() == 32  # the whole block, moved
        offsets.add((r1 - r0, c1 - c0))
    assert len(offsets) > 10  # each image its own offset
    again = augment.random_shifts(x, np.random.default_rng(1), max_shift=2)
    np.testing.assert_array_equal(again, shifted)
    assert not np.shares_memory(augment.random_shifts(x, rng, 0), x)
    with pytest.raises(ValueError, match="random_shifts"):
        augment.random_shifts(x[0], rng)


def _setup():
    nn.init.manual_seed(0)
    model = build_model("bn-cnn")
    opt = optim.Adam(model.parameters(), lr=1e-3)
    return model, opt, optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-3, total_steps=TOTAL)


def _fit(small, model, opt, scheduler, **kwargs):
    return train.fit(
        model,
        opt,
        small[0],
        small[1],
        iterations=TOTAL,
        batch_size=16,
        eval_every=8,
        progress=False,
        scheduler=scheduler,
        augment=augment.random_shifts,
        **kwargs,
    )


class InterruptAt:
    def __init__(self, step: int):
        self.step, self.calls = step, 0

    def __call__(self, out, labels):
        self.calls += 1
        if self.calls == self.step:
            signal.raise_signal(signal.SIGINT)
        return nn.functional.nll_loss(out, labels)


def test_fit_with_onecycle_and_shifts_resumes_bit_for_bit(small, tmp_path):
    model, opt, sched = _setup()
    expected = _fit(small, model, opt, sched)
    assert sched.last_epoch == TOTAL
    assert expected.lr[-1] == pytest.approx(5e-3 / 25 / 1e4)  # one cycle, down to min_lr
    path = tmp_path / "run.ckpt"
    interrupted, opt2, sched2 = _setup()
    with pytest.raises(TrainingInterrupted):
        _fit(small, interrupted, opt2, sched2, checkpoint=path, loss_fn=InterruptAt(10))
    resumed, opt3, sched3 = _setup()
    history = _fit(small, resumed, opt3, sched3, resume=path)
    assert history.train_loss == expected.train_loss
    for name, array in resumed.state_dict().items():
        np.testing.assert_array_equal(array, model.state_dict()[name], err_msg=name)
    assert opt3.param_groups[0]["betas"] == opt.param_groups[0]["betas"]
    with pytest.raises(ValueError, match="lr_schedule or scheduler"):
        train.fit(model, opt, small[0], scheduler=sched, lr_schedule="cosine", progress=False)


def test_bn_cnn_matches_its_torch_twin():
    pytest.importorskip("torch")
    from torch_reference import compare_module

    nn.init.manual_seed(0)
    model = build_model("bn-cnn")
    model[15].p = 0.0  # dropout off, so PyTorch draws nothing either
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    compare_module(model, x, rtol=1e-4, atol=1e-5)
    model.eval()
    out = model(Tensor(x))
    assert out.shape == (4, 10)
    assert [n for n, _ in model.named_buffers()][:3] == [
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    ]


def test_cli_train_recipe_best_and_augment(tmp_path, capsys):
    from tinygrad_mnist import cli

    out = tmp_path / "best"
    status = cli.main(
        [
            "train",
            "--recipe",
            "best",
            "--data",
            "sample",
            "--iterations",
            "6",
            "--limit-per-digit",
            "10",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    text = capsys.readouterr().out
    assert status == 0, text
    assert "training bn-cnn" in text and "(onecycle)" in text and "random shifts" in text
    assert "test accuracy:" in text and (out / "model.npz").is_file()
    status = cli.main(
        [
            "train",
            "--model",
            "seed-cnn",
            "--augment",
            "--data",
            "sample",
            "--iterations",
            "4",
            "--limit-per-digit",
            "10",
            "--out",
            str(tmp_path / "aug"),
            "--quiet",
        ]
    )
    assert status == 0 and "random shifts" in capsys.readouterr().out
    status = cli.main(
        [
            "train",
            "--recipe",
            "best",
            "--model",
            "seed-cnn",
            "--data",
            "sample",
            "--out",
            str(tmp_path / "never"),
        ]
    )
    assert status == 2 and "drop --model seed-cnn" in capsys.readouterr().err
