"""optim.lr_scheduler against torch.optim.lr_scheduler: the same learning-rate sequences (and
OneCycleLR's momentum), get_last_lr, state_dict round trips, parameter groups."""

from __future__ import annotations

import numpy as np
import pytest

from tinygrad_mnist import Tensor, optim
from tinygrad_mnist.optim import lr_scheduler

torch = pytest.importorskip("torch")

STEPS = 40

SCHEDULES = [
    ("StepLR", {"step_size": 7}),
    ("StepLR", {"step_size": 3, "gamma": 0.5}),
    ("MultiStepLR", {"milestones": [5, 12, 12, 30], "gamma": 0.3}),
    ("ExponentialLR", {"gamma": 0.9}),
    ("CosineAnnealingLR", {"T_max": 10}),  # stepped past T_max: back up, as PyTorch
    ("CosineAnnealingLR", {"T_max": STEPS, "eta_min": 1e-4}),
    ("OneCycleLR", {"max_lr": 0.5, "total_steps": STEPS}),
    (
        "OneCycleLR",
        {
            "max_lr": [0.5, 0.1],
            "epochs": 4,
            "steps_per_epoch": 10,
            "pct_start": 0.25,
            "anneal_strategy": "linear",
            "div_factor": 10.0,
        },
    ),
    (
        "OneCycleLR",
        {"max_lr": 0.2, "total_steps": STEPS, "three_phase": True, "final_div_factor": 100.0},
    ),
    ("LambdaLR", {"lr_lambda": lambda epoch: 0.95**epoch / (1 + epoch % 3)}),
]


def _pair(optimizer_name, groups=2, **kwargs):
    ours_params = [Tensor(np.zeros(3), requires_grad=True) for _ in range(groups)]
    theirs_params = [torch.zeros(3, dtype=torch.float64, requires_grad=True) for _ in range(groups)]
    lrs = [0.1, 0.02][:groups]
    ours = getattr(optim, optimizer_name)(
        [{"params": [p], "lr": lr} for p, lr in zip(ours_params, lrs, strict=True)], **kwargs
    )
    theirs = getattr(torch.optim, optimizer_name)(
        [{"params": [p], "lr": lr} for p, lr in zip(theirs_params, lrs, strict=True)], **kwargs
    )
    return ours, theirs, ours_params, theirs_params


@pytest.mark.parametrize("optimizer_name", ["SGD", "Adam"])
@pytest.mark.parametrize(
    "name, kwargs", SCHEDULES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SCHEDULES)]
)
def test_learning_rate_sequences_match_torch(name, kwargs, optimizer_name):
    extra = {"momentum": 0.9} if optimizer_name == "SGD" else {}
    ours_opt, torch_opt, ours_params, theirs_params = _pair(optimizer_name, **extra)
    ours = getattr(lr_scheduler, name)(ours_opt, **kwargs)
    theirs = getattr(torch.optim.lr_scheduler, name)(torch_opt, **kwargs)
    assert ours.get_last_lr() == theirs.get_last_lr()
    for step in range(STEPS - 1 if name == "OneCycleLR" else STEPS):
        for p, q in zip(ours_params, theirs_params, strict=True):
            p.grad = np.ones(3)
            q.grad = torch.ones(3, dtype=torch.float64)
        ours_opt.step()
        torch_opt.step()
        ours.step()
        theirs.step()
        np.testing.assert_allclose(
            ours.get_last_lr(),
            theirs.get_last_lr(),
            rtol=1e-13,
            atol=1e-16,
            err_msg=f"step {step + 1}",
        )
        for ours_group, torch_group in zip(
            ours_opt.param_groups, torch_opt.param_groups, strict=True
        ):
            assert ours_group["lr"] == pytest.approx(torch_group["lr"], rel=1e-13)
            key = "momentum" if optimizer_name == "SGD" else "betas"
            np.testing.assert_allclose(ours_group[key], torch_group[key], rtol=1e-13)
    for p, q in zip(ours_params, theirs_params, strict=True):  # the updates used those lrs
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert ours.last_epoch == theirs.last_epoch


def test_one_cycle_refuses_to_step_past_the_end():
    opt = optim.SGD([Tensor(np.zeros(2), requires_grad=True)], lr=0.1, momentum=0.9)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=3)
    for _ in range(3):
        sched.step()
    with pytest.raises(ValueError, match="total_steps 3"):
        sched.step()
    with pytest.raises(ValueError, match="total_steps, or epochs and steps_per_epoch"):
        lr_scheduler.OneCycleLR(opt, max_lr=1.0)
    with pytest.raises(TypeError, match="Optimizer"):
        lr_scheduler.StepLR(object(), 3)


@pytest.mark.parametrize(
    "name, kwargs", SCHEDULES[:-1], ids=[f"{n}-{i}" for i, (n, _) in enumerate(SCHEDULES[:-1])]
)
def test_state_dict_resumes_the_sequence(name, kwargs):
    def make():
        opt, _, params, _ = _pair("SGD", momentum=0.9)
        return opt, getattr(lr_scheduler, name)(opt, **kwargs), params

    opt, sched, params = make()
    for _ in range(9):
        sched.step()
    saved_opt, saved = opt.state_dict(), sched.state_dict()
    assert "optimizer" not in saved
    expected = []
    for _ in range(10):
        sched.step()
        expected.append(sched.get_last_lr())
    opt2, sched2, _ = make()
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved)
    got = []
    for _ in range(10):
        sched2.step()
        got.append(sched2.get_last_lr())
    assert got == expected


def test_lambda_lr_state_dict_leaves_the_functions_out():
    opt = optim.SGD([Tensor(np.zeros(2), requires_grad=True)], lr=0.1)
    sched = lr_scheduler.LambdaLR(opt, lambda e: 1 / (e + 1))
    sched.step()
    state = sched.state_dict()
    assert "lr_lambdas" not in state and state["last_epoch"] == 1
    assert sched.get_last_lr() == [0.05]
    assert opt.param_groups[0]["initial_lr"] == 0.1
