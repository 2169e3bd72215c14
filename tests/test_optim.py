"""optim: SGD and Adam against torch.optim, step by step on the same parameters and gradients."""

from __future__ import annotations

import numpy as np
import pytest

from tinygrad_mnist import Tensor, nn, optim
from tinygrad_mnist.nn import functional as F

STEPS = 10

SGD_CASES = {
    "plain": {"lr": 0.1},
    "momentum": {"lr": 0.1, "momentum": 0.9},
    "weight-decay": {"lr": 0.1, "weight_decay": 1e-2},
    "momentum-weight-decay": {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-2},
}
ADAM_CASES = {
    "default": {},
    "lr": {"lr": 0.05},
    "weight-decay": {"lr": 0.01, "weight_decay": 1e-2},
    "betas-eps": {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-3},
}
SGD_CASES.update(
    {
        "dampening": {"lr": 0.05, "momentum": 0.9, "dampening": 0.3},
        "nesterov": {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2},
        "maximize": {"lr": 0.05, "momentum": 0.5, "maximize": True},
    }
)
ADAM_CASES.update(
    {
        "amsgrad": {"lr": 0.02, "amsgrad": True, "weight_decay": 1e-2},
        "maximize": {"lr": 0.01, "maximize": True},
    }
)
ADAMW_CASES = {
    "default": {},
    "weight-decay": {"lr": 0.02, "weight_decay": 0.1, "betas": (0.85, 0.98)},
    "amsgrad": {"lr": 0.02, "amsgrad": True},
}
RMSPROP_CASES = {
    "default": {},
    "alpha-eps": {"lr": 0.005, "alpha": 0.9, "eps": 1e-4},
    "momentum": {"lr": 0.005, "momentum": 0.9},
    "centered": {"lr": 0.005, "centered": True, "weight_decay": 1e-2},
    "all": {"lr": 0.003, "centered": True, "momentum": 0.5, "weight_decay": 1e-2},
}
CASES = (
    [("SGD", name, kw) for name, kw in SGD_CASES.items()]
    + [("Adam", name, kw) for name, kw in ADAM_CASES.items()]
    + [("AdamW", name, kw) for name, kw in ADAMW_CASES.items()]
    + [("RMSprop", name, kw) for name, kw in RMSPROP_CASES.items()]
)


def _model(dtype) -> nn.Module:
    nn.init.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    return model.to(dtype)


def _data():
    rng = np.random.default_rng(1)
    return rng.standard_normal((8, 5)), rng.integers(0, 3, 8)


def _run_side_by_side(optimizer_name, kwargs, dtype, steps=STEPS, skip=None):
    """Train our model with our optimizer; at every step hand torch's copy of the parameters the
    very same gradients and step torch.optim. Yields (step, ours, theirs) after each step.

    skip(step, name) -> True leaves that parameter's grad None for the step (in both).
    """
    torch = pytest.importorskip("torch")
    model = _model(dtype)
    x, y = _data()
    x = Tensor(x.astype(dtype))
    params = dict(model.named_parameters())
    theirs = {k: torch.tensor(p.data.copy(), requires_grad=True) for k, p in params.items()}
    ours_opt = getattr(optim, optimizer_name)(model.parameters(), **kwargs)
    torch_kwargs = {"foreach": False, **kwargs}
    torch_opt = getattr(torch.optim, optimizer_name)(list(theirs.values()), **torch_kwargs)
    for step in range(steps):
        ours_opt.zero_grad()
        torch_opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for k, p in params.items():
            if skip is not None and skip(step, k):
                p.grad = None
            else:
                theirs[k].grad = torch.from_numpy(p.grad.copy())
        ours_opt.step()
        torch_opt.step()
        yield step, params, theirs


@pytest.mark.parametrize(
    "optimizer_name, case, kwargs", CASES, ids=[f"{o}-{c}" for o, c, _ in CASES]
)
def test_matches_torch_float64(optimizer_name, case, kwargs):
    for step, ours, theirs in _run_side_by_side(optimizer_name, kwargs, np.float64):
        for k, p in ours.items():
            assert p.dtype == np.float64
            np.testing.assert_allclose(
                p.data,
                theirs[k].detach().numpy(),
                rtol=1e-10,
                atol=1e-12,
                err_msg=f"{k} after step {step + 1}",
            )


@pytest.mark.parametrize(
    "optimizer_name, case, kwargs", CASES, ids=[f"{o}-{c}" for o, c, _ in CASES]
)
def test_float32_stays_float32_and_matches_torch(optimizer_name, case, kwargs):
    for step, ours, theirs in _run_side_by_side(optimizer_name, kwargs, np.float32):
        for k, p in ours.items():
            assert p.dtype == np.float32, f"{k} became {p.dtype} after step {step + 1}"
            np.testing.assert_allclose(
                p.data,
                theirs[k].detach().numpy(),
                rtol=1e-5,
                atol=1e-6,
                err_msg=f"{k} after step {step + 1}",
            )


def test_training_with_optimizer_lowers_the_loss():
    x, y = _data()
    for make in (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), lambda ps: optim.Adam(ps, 0.05)):
        model = _model(np.float32)
        opt = make(model.parameters())
        losses = []
        for _ in range(20):
            opt.zero_grad()
            loss = F.cross_entropy(model(Tensor(x.astype(np.float32))), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize(
    "optimizer_name, kwargs",
    [
        ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-2}),
        ("Adam", {"lr": 0.01, "weight_decay": 1e-2}),
    ],
)
def test_params_with_grad_none_are_skipped_as_torch_does(optimizer_name, kwargs):
    """A parameter without a gradient is left alone (no decay, no momentum, no Adam step count);
    PyTorch keeps one step count per parameter, so its later updates match torch's too."""

    def skip(step, name):
        return (name == "2.bias" and step < 3) or (name == "0.weight" and step % 3 == 1)

    frozen = None
    for step, ours, theirs in _run_side_by_side(optimizer_name, kwargs, np.float64, skip=skip):
        if step == 0:
            frozen = _model(np.float64).state_dict()["2.bias"]
        if step < 3:
            np.testing.assert_array_equal(ours["2.bias"].data, frozen)
        for k, p in ours.items():
            np.testing.assert_allclose(
                p.data,
                theirs[k].detach().numpy(),
                rtol=1e-10,
                atol=1e-12,
                err_msg=f"{k} after step {step + 1}",
            )


@pytest.mark.parametrize(
    "make", [lambda ps: optim.SGD(ps, lr=0.1), lambda ps: optim.Adam(ps)], ids=["SGD", "Adam"]
)
def test_zero_grad_sets_grads_to_none(make):
    model = _model(np.float32)
    opt = make(model.parameters())
    x, y = _data()
    F.cross_entropy(model(Tensor(x.astype(np.float32))), y).backward()
    assert all(p.grad is not None for p in model.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    before = model.state_dict()
    opt.step()  # nothing to do: every grad is None
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_optimizer_accepts_a_generator():
    model = _model(np.float32)
    opt = optim.SGD((p for p in model.parameters()), lr=0.1)
    assert len(opt.params) == 4


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam])
def test_bad_arguments_raise_clear_errors(cls):
    w = Tensor(np.zeros(3, dtype=np.float32), requires_grad=True)
    with pytest.raises(ValueError, match=r"learning rate.*-0\.1"):
        cls([w], lr=-0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        cls([], lr=0.1)
    with pytest.raises(TypeError, match=r"parameter 1 must be a floating-point Tensor"):
        cls([w, Tensor(np.zeros(3, dtype=np.int64))], lr=0.1)
    frozen = Tensor(np.zeros(3, dtype=np.float32))  # accepted, as in PyTorch: it gets no grad
    cls([w, frozen], lr=0.1).step()
    with pytest.raises(TypeError, match="parameter 0"):
        cls([np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match="iterable of Tensors"):
        cls(w, lr=0.1)  # a lone Tensor, not a list of them
    with pytest.raises(ValueError, match="weight_decay"):
        cls([w], lr=0.1, weight_decay=-1.0)


def test_non_leaf_tensor_is_rejected():
    w = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    with pytest.raises(ValueError, match="leaf"):
        optim.SGD([w * 2], lr=0.1)


def test_sgd_and_adam_specific_errors():
    w = Tensor(np.zeros(3, dtype=np.float32), requires_grad=True)
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD([w], lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match=r"betas.*1\.0"):
        optim.Adam([w], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="eps"):
        optim.Adam([w], eps=-1e-8)


def test_sgd_update_rule_by_hand():
    w = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    opt = optim.SGD([w], lr=0.5, momentum=0.9, weight_decay=0.1)
    w.grad = np.array([0.2, 0.4])
    opt.step()  # g = grad + 0.1 w = [0.3, 0.2]; buf = g
    np.testing.assert_allclose(w.data, [1.0 - 0.15, -2.0 - 0.1])
    w.grad = np.array([0.2, 0.4])
    opt.step()  # g = [0.285, 0.19]; buf = 0.9 [0.3, 0.2] + g
    np.testing.assert_allclose(w.data, [0.85 - 0.5 * 0.555, -2.1 - 0.5 * 0.37])


@pytest.mark.parametrize("optimizer_name", ["SGD", "Adam"])
def test_large_and_0d_parameters_match_torch(optimizer_name, monkeypatch):
    """A parameter large enough to be updated on several cores, and a 0-d one."""
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("TINYGRAD_MNIST_THREADS", "2")
    rng = np.random.default_rng(3)
    big, scalar = rng.standard_normal((700, 600)), np.array(1.5)
    ours = [Tensor(big.copy(), requires_grad=True), Tensor(scalar.copy(), requires_grad=True)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (big, scalar)]
    ours_opt = getattr(optim, optimizer_name)(ours, lr=0.1)
    torch_opt = getattr(torch.optim, optimizer_name)(theirs, lr=0.1)
    for _ in range(3):
        ours_opt.zero_grad()
        torch_opt.zero_grad()
        ((ours[0] * ours[0]).sum() + ours[1] * ours[1] * ours[1]).backward()
        ((theirs[0] * theirs[0]).sum() + theirs[1] ** 3).backward()
        ours_opt.step()
        torch_opt.step()
    for p, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- state_dict (checkpoints)


def _steps(model, opt, n):
    x, y = _data()
    for _ in range(n):
        opt.zero_grad()
        F.cross_entropy(model(Tensor(x.astype(np.float32))), y).backward()
        opt.step()


@pytest.mark.parametrize(
    "make",
    [
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
        lambda p: optim.Adam(p, lr=0.01, betas=(0.8, 0.99), weight_decay=1e-3),
    ],
    ids=["SGD", "Adam"],
)
def test_state_dict_resumes_bit_for_bit(make):
    model = _model(np.float32)
    opt = make(model.parameters())
    _steps(model, opt, 3)
    weights, state = model.state_dict(), opt.state_dict()
    _steps(model, opt, 4)
    expected = model.state_dict()

    resumed = _model(np.float32)
    resumed.load_state_dict(weights)
    fresh = make(resumed.parameters())
    fresh.lr = 123.0  # overwritten by the loaded group, as in PyTorch
    fresh.load_state_dict(state)
    assert fresh.lr == opt.lr
    _steps(resumed, fresh, 4)
    for name, array in resumed.state_dict().items():
        np.testing.assert_array_equal(array, expected[name], err_msg=name)


def test_state_dict_has_pytorchs_structure():
    torch = pytest.importorskip("torch")
    model = _model(np.float32)
    opt = optim.Adam(model.parameters(), lr=0.01)
    before = opt.state_dict()
    assert before["state"] == {} and before["param_groups"][0]["params"] == [0, 1, 2, 3]
    _steps(model, opt, 2)
    ours = opt.state_dict()
    theirs = torch.optim.Adam([torch.zeros(2, requires_grad=True)], lr=0.01)
    theirs_state = theirs.state_dict()
    assert set(ours) == set(theirs_state) == {"state", "param_groups"}
    assert set(ours["param_groups"][0]) <= set(theirs_state["param_groups"][0])
    assert (
        set(ours["state"][0]) == {"step", "exp_avg", "exp_avg_sq"} and ours["state"][0]["step"] == 2
    )
    sgd = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _steps(model, sgd, 1)
    assert set(sgd.state_dict()["state"][3]) == {"momentum_buffer"}
    # the arrays are copies: stepping on does not change a saved state
    saved = ours["state"][0]["exp_avg"].copy()
    _steps(model, opt, 1)
    np.testing.assert_array_equal(ours["state"][0]["exp_avg"], saved)


def test_load_state_dict_rejects_what_does_not_fit():
    model = _model(np.float32)
    opt = optim.Adam(model.parameters())
    _steps(model, opt, 1)
    state = opt.state_dict()
    other = optim.Adam(_model(np.float32).parameters()[:2])
    with pytest.raises(ValueError, match=r"1 parameter group\(s\) of \[2\] parameters"):
        other.load_state_dict(state)
    state["state"][1]["exp_avg"] = np.zeros(7)
    with pytest.raises(ValueError, match=r"exp_avg.*parameter 1.*\(7,\)"):
        optim.Adam(model.parameters()).load_state_dict(state)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"weights": 1})


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_and_inf_options_are_refused(value):
    w = Tensor(np.zeros(3, dtype=np.float32), requires_grad=True)
    for make in (
        lambda: optim.Adam([w], lr=value),
        lambda: optim.SGD([w], lr=value),
        lambda: optim.SGD([w], lr=0.1, momentum=value),
        lambda: optim.Adam([w], eps=value),
    ):
        with pytest.raises(ValueError, match=f"finite number >= 0, got {value}"):
            make()


# ---------------------------------------------------------------- parameter groups, state


def _group_setup(torch, dtype=np.float64):
    model = _model(dtype)
    params = dict(model.named_parameters())
    theirs = {k: torch.tensor(p.data.copy(), requires_grad=True) for k, p in params.items()}
    return model, params, theirs


@pytest.mark.parametrize(
    "optimizer_name, kwargs, group_options",
    [
        ("SGD", {"lr": 0.1, "momentum": 0.9}, {"lr": 0.01, "nesterov": True}),
        ("Adam", {"lr": 0.01}, {"lr": 0.05, "weight_decay": 0.1, "amsgrad": True}),
        ("AdamW", {"lr": 0.01}, {"weight_decay": 0.0, "betas": (0.8, 0.9)}),
        ("RMSprop", {"lr": 0.01}, {"centered": True, "momentum": 0.3}),
    ],
)
def test_parameter_groups_match_torch(optimizer_name, kwargs, group_options):
    torch = pytest.importorskip("torch")
    model, params, theirs = _group_setup(torch)
    names = list(params)
    ours_opt = getattr(optim, optimizer_name)(
        [
            {"params": [params[n] for n in names[:2]]},
            {"params": [params[n] for n in names[2:]], **group_options},
        ],
        **kwargs,
    )
    torch_opt = getattr(torch.optim, optimizer_name)(
        [
            {"params": [theirs[n] for n in names[:2]]},
            {"params": [theirs[n] for n in names[2:]], **group_options},
        ],
        foreach=False,
        **kwargs,
    )
    assert len(ours_opt.param_groups) == 2
    for ours_group, torch_group in zip(ours_opt.param_groups, torch_opt.param_groups, strict=True):
        for key, value in ours_group.items():
            if key != "params":
                assert value == torch_group[key], key
    x, y = _data()
    for step in range(10):
        if step == 5:  # lr is writable per group
            ours_opt.param_groups[1]["lr"] = torch_opt.param_groups[1]["lr"] = 0.002
        ours_opt.zero_grad()
        torch_opt.zero_grad()
        F.cross_entropy(model(Tensor(x)), y).backward()
        for k, p in params.items():
            theirs[k].grad = torch.from_numpy(p.grad.copy())
        ours_opt.step()
        torch_opt.step()
    for k, p in params.items():
        np.testing.assert_allclose(
            p.data, theirs[k].detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=k
        )
    ours_state, torch_state = ours_opt.state_dict(), torch_opt.state_dict()
    assert [g["params"] for g in ours_state["param_groups"]] == [
        g["params"] for g in torch_state["param_groups"]
    ]
    assert set(ours_state["state"]) == set(torch_state["state"])
    for index, entry in ours_state["state"].items():
        assert set(entry) == {k for k, v in torch_state["state"][index].items() if v is not None}, (
            index
        )
        for key, value in entry.items():
            np.testing.assert_allclose(
                value,
                np.asarray(torch_state["state"][index][key]),
                rtol=1e-10,
                atol=1e-14,
                err_msg=f"{index} {key}",
            )


def test_a_torch_optimizer_state_dict_loads_and_resumes_like_torch():
    torch = pytest.importorskip("torch")
    model, params, theirs = _group_setup(torch)
    torch_opt = torch.optim.AdamW(list(theirs.values()), lr=0.01, amsgrad=True, foreach=False)
    x, y = _data()

    def torch_steps(n):
        for _ in range(n):
            torch_opt.zero_grad()
            model.zero_grad()
            F.cross_entropy(model(Tensor(x)), y).backward()
            for k, p in params.items():
                theirs[k].grad = torch.from_numpy(p.grad.copy())
                p.grad = None
            torch_opt.step()
            for k, p in params.items():
                p.data = theirs[k].detach().numpy().copy()

    torch_steps(3)
    ours = optim.AdamW(model.parameters(), lr=0.5)
    ours.load_state_dict(torch_opt.state_dict())
    assert ours.lr == 0.01 and ours.state[model.parameters()[0]]["step"] == 3
    for _ in range(3):
        ours.zero_grad()
        F.cross_entropy(model(Tensor(x)), y).backward()
        ours.step()
    mine = {k: p.data.copy() for k, p in params.items()}
    for k, p in params.items():
        p.data = theirs[k].detach().numpy().copy()
    torch_steps(3)
    for k in params:
        np.testing.assert_allclose(mine[k], theirs[k].detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
        lambda p: optim.AdamW(p, lr=0.01, amsgrad=True),
        lambda p: optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True),
        lambda p: optim.Adam([{"params": p[:2]}, {"params": p[2:], "lr": 0.05}], lr=0.01),
    ],
    ids=["sgd-nesterov", "adamw-amsgrad", "rmsprop-centered", "adam-groups"],
)
def test_every_optimizer_resumes_bit_for_bit(make):
    model = _model(np.float32)
    opt = make(model.parameters())
    _steps(model, opt, 3)
    weights, state = model.state_dict(), opt.state_dict()
    _steps(model, opt, 4)
    expected = model.state_dict()
    resumed = _model(np.float32)
    resumed.load_state_dict(weights)
    fresh = make(resumed.parameters())
    fresh.load_state_dict(state)
    _steps(resumed, fresh, 4)
    for name, array in resumed.state_dict().items():
        np.testing.assert_array_equal(array, expected[name], err_msg=name)


def test_group_and_option_errors():
    w = Tensor(np.zeros(3, dtype=np.float32), requires_grad=True)
    with pytest.raises(ValueError, match="more than one group"):
        optim.SGD([{"params": [w]}, {"params": [w]}], lr=0.1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([w], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="momentum"):
        optim.RMSprop([w], momentum=-1.0)
    with pytest.raises(ValueError, match="learning rate"):
        optim.AdamW([{"params": [w], "lr": -1.0}])
    with pytest.raises(TypeError, match="wrap a parameter group in a list"):
        optim.SGD({"params": [w]}, lr=0.1)
    opt = optim.SGD([w], lr=0.1)
    opt.add_param_group({"params": Tensor(np.ones(2, np.float32), requires_grad=True), "lr": 1})
    assert [g["lr"] for g in opt.param_groups] == [0.1, 1]
    assert opt.param_groups[1]["momentum"] == 0.0  # the defaults fill the rest
    w.grad = np.ones(3, np.float32)
    opt.zero_grad(set_to_none=False)
    assert np.all(w.grad == 0)


def test_adam_with_zero_learning_rate_leaves_the_weights_alone():
    """lr = 0 (a warm-up's first step): the fast update's folded step size must not turn the
    zero into a NaN or a move."""
    w = Tensor(np.array([[1.5, -2.0], [0.0, 3.0]], dtype=np.float32), requires_grad=True)
    before = w.data.copy()
    opt = optim.Adam([w], lr=0.0)
    for _ in range(3):
        opt.zero_grad()
        (w * w).sum().backward()
        opt.step()
    np.testing.assert_array_equal(w.data, before)
