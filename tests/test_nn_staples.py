"""The training staples of issue 13 against PyTorch: layers (forward and every gradient),
BatchNorm's running statistics, dropout, losses with `reduction=`, padding, init, gradient
clipping, and the Module API (buffers, ModuleList, hooks, strict loading)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinygrad_mnist import Tensor, nn
from tinygrad_mnist.nn import functional as F

torch = pytest.importorskip("torch")
from torch_reference import compare_module, to_torch  # noqa: E402


def _x(shape, seed=0, dtype=np.float64, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def _t(array, grad=True):
    return torch.tensor(array, requires_grad=grad)


# ---------------------------------------------------------------- layers against PyTorch


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: nn.LeakyReLU(), (4, 7)),
        (lambda: nn.LeakyReLU(0.2), (3, 2, 5, 5)),
        (lambda: nn.Sigmoid(), (4, 7)),
        (lambda: nn.Tanh(), (4, 7)),
        (lambda: nn.Identity(), (4, 7)),
        (lambda: nn.AvgPool2d(2), (2, 3, 8, 8)),
        (lambda: nn.AvgPool2d(2), (2, 3, 9, 7)),
        (lambda: nn.AvgPool2d(3, stride=2, padding=1), (2, 3, 9, 8)),
        (lambda: nn.AvgPool2d((3, 2), stride=(1, 2), padding=(1, 0)), (1, 2, 6, 7)),
        (lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 2, 7, 7)),
        (lambda: nn.MaxPool2d(3, stride=2, padding=1), (2, 3, 9, 8)),
        (lambda: nn.MaxPool2d(2, padding=1), (1, 2, 5, 5)),
        (lambda: nn.Softmax(dim=1), (3, 5)),
        (lambda: nn.LogSoftmax(dim=0), (3, 5)),
        (lambda: nn.BatchNorm1d(5), (8, 5)),
        (lambda: nn.BatchNorm1d(3), (4, 3, 6)),
        (lambda: nn.BatchNorm2d(3), (4, 3, 5, 5)),
        (lambda: nn.BatchNorm2d(3, affine=False), (4, 3, 5, 5)),
        (lambda: nn.BatchNorm2d(3, momentum=None, eps=1e-3), (4, 3, 2, 2)),
        (lambda: nn.BatchNorm2d(3, track_running_stats=False), (4, 3, 2, 2)),
    ],
    ids=lambda v: None if callable(v) else "x".join(map(str, v)) if isinstance(v, tuple) else None,
)
def test_layer_forward_and_gradients_match_torch(make, shape, dtype, tol):
    nn.init.manual_seed(0)
    layer = make().to(dtype)
    if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)) and layer.affine:
        # not the default ones/zeros, so the affine gradients are exercised
        layer.weight.data = _x(layer.weight.shape, 5, dtype) + 1
        layer.bias.data = _x(layer.bias.shape, 6, dtype)
    compare_module(layer, _x(shape, 1, dtype), rtol=tol, atol=tol)


def test_conv2d_same_valid_dilation_groups_match_torch():
    if "dilation" not in Tensor.conv2d.__code__.co_varnames:
        pytest.skip("Tensor.conv2d has no dilation/groups yet (issue 12)")
    for kwargs in [
        dict(padding="same"),
        dict(padding="valid"),
        dict(dilation=2, padding=2),
        dict(groups=2),
        dict(groups=4, padding="same", dilation=(2, 1)),
    ]:
        nn.init.manual_seed(0)
        layer = nn.Conv2d(4, 8, 3, **kwargs).double()
        compare_module(layer, _x((2, 4, 9, 9)), rtol=1e-10, atol=1e-10)
        assert repr(layer) == repr(torch.nn.Conv2d(4, 8, 3, **kwargs))


def test_bn_cnn_matches_torch_in_train_and_eval_mode():
    nn.init.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 6),
        nn.BatchNorm1d(6),
        nn.LeakyReLU(),
        nn.Dropout(0.3),
        nn.Linear(6, 3),
    ).double()
    twin = to_torch(model)
    for step in range(4):  # several batches: the running statistics move
        x = _x((5, 1, 8, 8), step)
        # everything before the dropout: outputs and every gradient (a fresh twin each time)
        compare_module(model[:8], x, rtol=1e-10, atol=1e-10)
        twin[:8](torch.tensor(x))  # the lasting twin sees the same batches
    assert int(model[1].num_batches_tracked.data) == 4
    ours = model.state_dict()
    for name, value in twin.state_dict().items():
        np.testing.assert_allclose(ours[name], value.numpy(), rtol=1e-12, err_msg=name)
    model.eval()
    twin.eval()
    x = _x((3, 1, 8, 8), 9)
    np.testing.assert_allclose(
        model(Tensor(x)).data, twin(torch.tensor(x)).detach().numpy(), rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
@pytest.mark.parametrize(
    "cls, shape",
    [(nn.BatchNorm1d, (6, 3)), (nn.BatchNorm1d, (4, 3, 5)), (nn.BatchNorm2d, (4, 3, 3, 2))],
)
def test_batchnorm_running_statistics_and_eval_match_torch(cls, shape, momentum):
    ours = cls(3, momentum=momentum).double()
    theirs = getattr(torch.nn, cls.__name__)(3, momentum=momentum).double()
    for step in range(5):
        x = _x(shape, step, scale=2.0) + step
        out = ours(Tensor(x, requires_grad=True))
        ref = theirs(torch.tensor(x))
        np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-10, atol=1e-10)
    state = ours.state_dict()
    assert list(state) == list(theirs.state_dict())
    assert list(state) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    for name, value in theirs.state_dict().items():
        np.testing.assert_allclose(state[name], value.numpy(), rtol=1e-12, err_msg=name)
        assert state[name].dtype == value.numpy().dtype, name
    ours.eval()
    theirs.eval()
    x = _x(shape, 11)
    compare = ours(Tensor(x, requires_grad=True))
    np.testing.assert_allclose(
        compare.data, theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10, atol=1e-10
    )


def test_batchnorm_buffers_are_buffers_not_parameters():
    bn = nn.BatchNorm2d(4)
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in bn.named_buffers()] == [
        "running_mean",
        "running_var",
        "num_batches_tracked",
    ]
    assert bn.num_batches_tracked.dtype == np.int64 and bn.num_batches_tracked.shape == ()
    assert not any(b.requires_grad for b in bn.buffers())
    bn.double()
    assert bn.running_mean.dtype == np.float64 and bn.num_batches_tracked.dtype == np.int64


def test_batchnorm_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"BatchNorm2d: input has 2 channels.*expects 3"):
        nn.BatchNorm2d(3)(Tensor(np.zeros((2, 2, 3, 3), np.float32)))
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected input of shape \(N, C\)"):
        nn.BatchNorm1d(3)(Tensor(np.zeros((2, 3, 3, 3), np.float32)))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(Tensor(np.zeros((1, 3), np.float32)))
    nn.BatchNorm1d(3).eval()(Tensor(np.zeros((1, 3), np.float32)))  # fine in eval mode


def test_layer_reprs_equal_torch():
    tnn = torch.nn
    pairs = [
        (nn.MaxPool2d(2), tnn.MaxPool2d(2)),
        (nn.MaxPool2d((2, 3), 1, 1), tnn.MaxPool2d((2, 3), 1, 1)),
        (nn.AvgPool2d(2), tnn.AvgPool2d(2)),
        (nn.AvgPool2d(3, 2, 1), tnn.AvgPool2d(3, 2, 1)),
        (nn.Softmax(dim=1), tnn.Softmax(dim=1)),
        (nn.LogSoftmax(1), tnn.LogSoftmax(1)),
        (nn.Dropout(), tnn.Dropout()),
        (nn.Dropout(0.25), tnn.Dropout(0.25)),
        (nn.LeakyReLU(), tnn.LeakyReLU()),
        (nn.LeakyReLU(0.2), tnn.LeakyReLU(0.2)),
        (nn.Sigmoid(), tnn.Sigmoid()),
        (nn.Tanh(), tnn.Tanh()),
        (nn.Identity(), tnn.Identity()),
        (nn.BatchNorm2d(16), tnn.BatchNorm2d(16)),
        (
            nn.BatchNorm1d(4, eps=1e-3, momentum=None, affine=False),
            tnn.BatchNorm1d(4, eps=1e-3, momentum=None, affine=False),
        ),
        (nn.Embedding(10, 3), tnn.Embedding(10, 3)),
        (nn.Embedding(10, 3, padding_idx=0), tnn.Embedding(10, 3, padding_idx=0)),
        (nn.CrossEntropyLoss(reduction="sum"), tnn.CrossEntropyLoss(reduction="sum")),
        (nn.MSELoss(), tnn.MSELoss()),
        (nn.BCEWithLogitsLoss(), tnn.BCEWithLogitsLoss()),
        (nn.ModuleList(), tnn.ModuleList()),
        (
            nn.ModuleList([nn.ReLU(), nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)]),
            tnn.ModuleList([tnn.ReLU(), tnn.Linear(2, 2), tnn.Linear(2, 2), tnn.Linear(2, 2)]),
        ),
        (
            nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout(0.1)),
            tnn.Sequential(tnn.Conv2d(1, 2, 3), tnn.BatchNorm2d(2), tnn.Dropout(0.1)),
        ),
    ]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)


# ---------------------------------------------------------------- dropout


def test_dropout_scales_kept_elements_and_is_identity_in_eval():
    nn.init.manual_seed(0)
    layer = nn.Dropout(0.25)
    x = Tensor(np.ones((200, 500), np.float32), requires_grad=True)
    y = layer(x)
    kept = y.data != 0
    assert kept.mean() == pytest.approx(0.75, abs=0.01)
    np.testing.assert_allclose(y.data[kept], 1 / 0.75, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, y.data)  # d/dx = mask / (1 - p)
    layer.eval()
    assert layer(x) is x
    assert F.dropout(x, 0.5, training=False) is x
    assert np.all(F.dropout(x, 1.0).data == 0)
    assert F.dropout(x, 0.0) is x
    with pytest.raises(ValueError, match=r"Dropout: probability p must be in \[0, 1\]"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="dropout"):
        F.dropout(x, -0.1)


def test_dropout_is_reproducible_under_manual_seed():
    x = Tensor(np.ones((10, 10), np.float32))
    nn.init.manual_seed(7)
    a = F.dropout(x).data
    b = F.dropout(x).data
    nn.init.manual_seed(7)
    np.testing.assert_array_equal(F.dropout(x).data, a)
    assert not np.array_equal(a, b)


# ---------------------------------------------------------------- embedding


@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding_matches_torch(padding_idx):
    layer = nn.Embedding(6, 4, padding_idx=padding_idx).double()
    if padding_idx is not None:
        assert np.all(layer.weight.data[padding_idx] == 0)
        layer.weight.data[padding_idx] = 3.0  # PyTorch outputs it, but gives it no gradient
    twin = to_torch(layer)
    idx = np.array([[0, 2, 5], [2, 2, 1]])
    out = layer(Tensor(idx))
    ref = twin(torch.tensor(idx))
    np.testing.assert_array_equal(out.data, ref.detach().numpy())
    up = _x(out.shape, 3)
    out.backward(up)
    ref.backward(torch.tensor(up))
    np.testing.assert_allclose(layer.weight.grad, twin.weight.grad.numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match=r"embedding: indices must be in \[0, 5\]"):
        layer(Tensor(np.array([6])))
    with pytest.raises(TypeError, match="integers"):
        layer(Tensor(np.array([1.0])))


def test_embedding_init_is_standard_normal():
    nn.init.manual_seed(0)
    w = nn.Embedding(1000, 100).weight.data
    assert w.dtype == np.float32
    assert abs(w.mean()) < 0.01 and w.std() == pytest.approx(1.0, rel=0.01)


# ---------------------------------------------------------------- functional


@pytest.mark.parametrize(
    "pad, value",
    [((1, 2), 0.0), ((1, 0, 2, 1), 1.5), ((0, 1, 1, 1, 1, 0), 0.0), ((-1, 2, 1, -2), -3.0)],
)
def test_pad_matches_torch(pad, value):
    x = _x((2, 3, 4, 5))
    ours = Tensor(x, requires_grad=True)
    theirs = _t(x)
    out = F.pad(ours, pad, value=value)
    ref = torch.nn.functional.pad(theirs, pad, value=value)
    np.testing.assert_array_equal(out.data, ref.detach().numpy())
    up = _x(out.shape, 1)
    out.backward(up)
    ref.backward(torch.tensor(up))
    np.testing.assert_array_equal(ours.grad, theirs.grad.numpy())


def test_functional_activations_match_torch():
    x = _x((4, 6))
    tf = torch.nn.functional
    for ours, theirs in [
        (lambda t: F.leaky_relu(t, 0.1), lambda t: tf.leaky_relu(t, 0.1)),
        (F.sigmoid, torch.sigmoid),
        (F.tanh, torch.tanh),
        (F.relu, tf.relu),
        (lambda t: F.softmax(t, dim=0), lambda t: tf.softmax(t, dim=0)),
        (lambda t: F.log_softmax(t, 1), lambda t: tf.log_softmax(t, 1)),
        (lambda t: F.flatten(t), torch.flatten),
    ]:
        a, b = Tensor(x, requires_grad=True), _t(x)
        out, ref = ours(a), theirs(b)
        np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-12)
        up = _x(out.shape, 1)
        out.backward(up)
        ref.backward(torch.tensor(up))
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-12)
    # leaky_relu's gradient at exactly 0 is the slope, as PyTorch's
    a, b = Tensor(np.zeros(3), requires_grad=True), _t(np.zeros(3))
    F.leaky_relu(a, 0.1).sum().backward()
    tf.leaky_relu(b, 0.1).sum().backward()
    np.testing.assert_array_equal(a.grad, b.grad.numpy())


def test_linear_and_one_hot():
    x, w, b = _x((3, 4)), _x((5, 4), 1), _x((5,), 2)
    np.testing.assert_allclose(
        F.linear(Tensor(x), Tensor(w), Tensor(b)).data,
        torch.nn.functional.linear(*map(torch.tensor, (x, w, b))).numpy(),
        rtol=1e-12,
    )
    labels = np.array([[1, 0], [3, 2]], np.uint8)
    hot = F.one_hot(Tensor(labels), 5)
    assert hot.dtype == np.int64
    np.testing.assert_array_equal(
        hot.data, torch.nn.functional.one_hot(torch.tensor(labels.astype(np.int64)), 5).numpy()
    )
    assert F.one_hot(np.array([0, 2])).shape == (2, 3)
    with pytest.raises(ValueError, match=r"one_hot.*\[0, 2\]"):
        F.one_hot(np.array([0, 3]), 3)


# ---------------------------------------------------------------- losses


def _loss_case(name, seed=0):
    rng = np.random.default_rng(seed)
    if name in ("cross_entropy", "nll_loss"):
        x = rng.standard_normal((6, 4))
        if name == "nll_loss":
            x = x - np.log(np.exp(x).sum(1, keepdims=True))
        return x, rng.integers(0, 4, 6)
    if name == "binary_cross_entropy":
        return rng.uniform(0.02, 0.98, (5, 3)), rng.uniform(0, 1, (5, 3))
    return rng.standard_normal((5, 3)) * 3, rng.uniform(0, 1, (5, 3))


LOSS_CASES = [
    ("cross_entropy", {}),
    ("cross_entropy", {"label_smoothing": 0.1}),
    ("cross_entropy", {"weight": [1.0, 2.0, 0.5, 3.0]}),
    ("cross_entropy", {"weight": [1.0, 2.0, 0.5, 3.0], "label_smoothing": 0.2}),
    ("cross_entropy", {"ignore_index": 1}),
    ("cross_entropy", {"probabilities": True}),
    ("cross_entropy", {"probabilities": True, "label_smoothing": 0.3}),
    ("nll_loss", {}),
    ("nll_loss", {"weight": [1.0, 2.0, 0.5, 3.0]}),
    ("nll_loss", {"ignore_index": 2}),
    ("mse_loss", {}),
    ("l1_loss", {}),
    ("binary_cross_entropy", {}),
    ("binary_cross_entropy", {"weight": "random"}),
    ("binary_cross_entropy_with_logits", {}),
    ("binary_cross_entropy_with_logits", {"pos_weight": [0.5, 2.0, 3.0]}),
    ("binary_cross_entropy_with_logits", {"weight": "random", "pos_weight": [1.0, 2.0, 0.2]}),
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "name, options", LOSS_CASES, ids=[f"{n}-{sorted(o)}" for n, o in LOSS_CASES]
)
def test_losses_match_torch_with_every_reduction(name, options, reduction):
    x, target = _loss_case(name)
    options = dict(options)
    if options.pop("probabilities", False):
        target = np.random.default_rng(3).dirichlet(np.ones(x.shape[1]), x.shape[0])
    ours_kw, torch_kw = {}, {}
    for key, value in options.items():
        if value == "random":
            value = np.random.default_rng(4).uniform(0.5, 2, x.shape)
        array = np.asarray(value)
        ours_kw[key] = Tensor(array) if array.dtype.kind == "f" else value
        torch_kw[key] = torch.tensor(array) if array.dtype.kind == "f" else value
    a, b = Tensor(x, requires_grad=True), _t(x)
    out = getattr(F, name)(a, Tensor(target), reduction=reduction, **ours_kw)
    ref = getattr(torch.nn.functional, name)(
        b, torch.tensor(target), reduction=reduction, **torch_kw
    )
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    up = _x(out.shape, 1)
    out.backward(up)
    ref.backward(torch.tensor(up))
    np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "cls, name",
    [
        (nn.CrossEntropyLoss, "cross_entropy"),
        (nn.NLLLoss, "nll_loss"),
        (nn.MSELoss, "mse_loss"),
        (nn.L1Loss, "l1_loss"),
        (nn.BCELoss, "binary_cross_entropy"),
        (nn.BCEWithLogitsLoss, "binary_cross_entropy_with_logits"),
    ],
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_modules_match_torch(cls, name, reduction):
    x, target = _loss_case(name, 1)
    out = cls(reduction=reduction)(Tensor(x.astype(np.float32)), target)
    ref = getattr(torch.nn, cls.__name__)(reduction=reduction)(
        torch.tensor(x.astype(np.float32)),
        torch.tensor(target if target.dtype.kind != "f" else target.astype(np.float32)),
    )
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.data, ref.numpy(), rtol=1e-5, atol=1e-6)


def test_losses_are_stable_and_clamped():
    big = np.array([[1e4, -1e4], [-50.0, 80.0]])
    t = np.array([[0.0, 1.0], [1.0, 0.0]])
    out = F.binary_cross_entropy_with_logits(Tensor(big), Tensor(t), reduction="none")
    ref = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor(big), torch.tensor(t), reduction="none"
    )
    np.testing.assert_allclose(out.data, ref.numpy(), rtol=1e-12)
    p = np.array([0.0, 1.0, 0.5])
    y = np.array([1.0, 0.0, 1.0])
    out = F.binary_cross_entropy(Tensor(p), Tensor(y), reduction="none")
    np.testing.assert_allclose(out.data, [100.0, 100.0, math.log(2)], rtol=1e-12)


def test_loss_errors_are_clear():
    x = Tensor(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none'"):
        F.mse_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match=r"mse_loss: target has shape \(3,\).*\(3, 4\)"):
        F.mse_loss(x, np.zeros(3))
    with pytest.raises(ValueError, match=r"binary_cross_entropy: input must hold probabilities"):
        F.binary_cross_entropy(x + 2, x)
    with pytest.raises(ValueError, match=r"cross_entropy: target must hold class indices in"):
        nn.CrossEntropyLoss()(x, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="bad")


# ---------------------------------------------------------------- init and utils


@pytest.mark.parametrize("shape", [(64, 32), (32, 16, 3, 3)])
@pytest.mark.parametrize(
    "fn, kwargs, std_of",
    [
        ("kaiming_uniform_", {}, lambda i, o: math.sqrt(2 / 1.0001) / math.sqrt(i)),
        ("kaiming_uniform_", {"a": math.sqrt(5)}, lambda i, o: 1 / math.sqrt(3 * i)),
        (
            "kaiming_normal_",
            {"mode": "fan_out", "nonlinearity": "relu"},
            lambda i, o: math.sqrt(2 / o),
        ),
        ("xavier_uniform_", {}, lambda i, o: math.sqrt(2 / (i + o))),
        ("xavier_normal_", {"gain": 5 / 3}, lambda i, o: 5 / 3 * math.sqrt(2 / (i + o))),
    ],
)
def test_init_follows_pytorchs_formulas(shape, fn, kwargs, std_of):
    nn.init.manual_seed(0)
    t = Tensor(np.zeros(shape, np.float32), requires_grad=True)
    assert getattr(nn.init, fn)(t, **kwargs) is t
    fan_in, fan_out = nn.init.calculate_fan_in_and_fan_out(t)
    ref = torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(shape))
    assert (fan_in, fan_out) == ref
    assert t.dtype == np.float32 and t.requires_grad
    std = std_of(fan_in, fan_out)
    assert t.data.std() == pytest.approx(std, rel=0.05)
    if "uniform" in fn:
        assert np.abs(t.data).max() <= math.sqrt(3) * std * (1 + 1e-6)


def test_calculate_gain_and_simple_fills():
    for args in [
        ("linear",),
        ("conv2d",),
        ("sigmoid",),
        ("tanh",),
        ("relu",),
        ("leaky_relu",),
        ("leaky_relu", 0.2),
        ("selu",),
    ]:
        assert nn.init.calculate_gain(*args) == pytest.approx(torch.nn.init.calculate_gain(*args))
    t = Tensor(np.zeros((3, 4), np.float32))
    assert np.all(nn.init.ones_(t).data == 1) and np.all(nn.init.zeros_(t).data == 0)
    assert np.all(nn.init.constant_(t, 2.5).data == 2.5)
    nn.init.uniform_(t, -1, 3)
    assert t.data.min() >= -1 and t.data.max() < 3
    nn.init.manual_seed(0)
    big = nn.init.normal_(Tensor(np.zeros(100_000)), 2.0, 0.5).data
    assert big.mean() == pytest.approx(2.0, abs=0.01) and big.std() == pytest.approx(0.5, rel=0.01)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        nn.init.xavier_uniform_(Tensor(np.zeros(3)))


@pytest.mark.parametrize(
    "max_norm, norm_type", [(1.0, 2.0), (100.0, 2.0), (0.5, 1.0), (0.3, math.inf)]
)
def test_clip_grad_norm_matches_torch(max_norm, norm_type):
    grads = [_x((3, 4), 0), _x((5,), 1), _x((2, 2, 2), 2)]
    ours = [Tensor(np.zeros_like(g), requires_grad=True) for g in grads]
    theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for o, t, g in zip(ours, theirs, grads, strict=True):
        o.grad = g.copy()
        t.grad = torch.tensor(g)
    total = nn.utils.clip_grad_norm_(ours, max_norm, norm_type)
    ref = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert total.item() == pytest.approx(ref.item(), rel=1e-12)
    for o, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(o.grad, t.grad.numpy(), rtol=1e-12)
    nn.utils.clip_grad_value_(ours, 0.01)
    assert max(np.abs(o.grad).max() for o in ours) <= 0.01


# ---------------------------------------------------------------- Module API


class Tower(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
        self.norm = nn.BatchNorm1d(4)
        self.head = nn.Linear(4, 2)
        self.register_buffer("scale", np.array([2.0], np.float32))
        self.register_buffer("cache", np.zeros(2, np.float32), persistent=False)

    def forward(self, x):
        for block in self.blocks:
            x = block(x).relu()
        return self.head(self.norm(x)) * self.scale


def test_module_list_registers_its_modules_and_round_trips(tmp_path):
    nn.init.manual_seed(0)
    model = Tower()
    x = Tensor(_x((5, 4), dtype=np.float32))
    model(x)  # a training step moves the running statistics
    model.eval()
    expected = model(x).data
    keys = list(model.state_dict())
    # PyTorch's order: the module's own parameters and buffers, then each child's
    assert keys[:7] == [
        "scale",
        "blocks.0.weight",
        "blocks.0.bias",
        "blocks.1.weight",
        "blocks.1.bias",
        "blocks.2.weight",
        "blocks.2.bias",
    ]
    assert "scale" in keys and "cache" not in keys and "norm.running_var" in keys
    assert [n for n, _ in model.named_buffers()] == [
        "scale",
        "cache",
        "norm.running_mean",
        "norm.running_var",
        "norm.num_batches_tracked",
    ]
    model.save(tmp_path / "tower.npz")
    nn.init.manual_seed(1)
    other = Tower().load(tmp_path / "tower.npz").eval()
    np.testing.assert_array_equal(other(x).data, expected)
    assert len(model.blocks) == 3 and isinstance(model.blocks[-1], nn.Linear)
    assert isinstance(model.blocks[1:], nn.ModuleList) and len(model.blocks[1:]) == 2


def test_module_list_operations():
    layers = nn.ModuleList()
    layers.append(nn.ReLU()).extend([nn.Tanh(), nn.Sigmoid()])
    layers.insert(1, nn.Identity())
    assert [type(m).__name__ for m in layers] == ["ReLU", "Identity", "Tanh", "Sigmoid"]
    layers[0] = nn.LeakyReLU()
    del layers[1]
    assert [n for n, _ in layers.named_children()] == ["0", "1", "2"]
    assert [type(m).__name__ for m in layers] == ["LeakyReLU", "Tanh", "Sigmoid"]
    with pytest.raises(TypeError, match="ModuleList"):
        layers.append(3)
    with pytest.raises(IndexError):
        layers[3]


def test_torch_state_dict_with_buffers_loads_and_gives_torch_outputs():
    torch.manual_seed(0)
    tnn = torch.nn
    twin = tnn.Sequential(
        tnn.Conv2d(1, 4, 3),
        tnn.BatchNorm2d(4),
        tnn.ReLU(),
        tnn.Flatten(),
        tnn.Linear(4 * 6 * 6, 5),
        tnn.BatchNorm1d(5),
        tnn.LogSoftmax(dim=1),
    )
    for _ in range(3):
        twin(torch.randn(6, 1, 8, 8))
    twin.eval()
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5),
        nn.BatchNorm1d(5),
        nn.LogSoftmax(dim=1),
    )
    assert list(model.state_dict()) == list(twin.state_dict())
    assert model.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()}) == ([], [])
    assert int(model[1].num_batches_tracked.data) == 3
    model.eval()
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(
        model(Tensor(x)).data, twin(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-5
    )


def test_load_state_dict_strict_false_returns_the_keys():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    state = model.state_dict()
    del state["1.running_var"]
    state["extra"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"missing keys \['1.running_var'\].*unexpected.*extra"):
        model.load_state_dict(state)
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["1.running_var"] and result.unexpected_keys == ["extra"]
    state["1.running_mean"] = np.zeros(4)
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"1.running_mean: got \(4,\), expected \(3,\)"):
        model.load_state_dict(state, strict=False)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_forward_hooks_see_inputs_and_outputs_and_can_be_removed():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    seen = []
    handle = model[1].register_forward_hook(lambda m, i, o: seen.append((m, i[0].shape, o.shape)))
    replace = model[2].register_forward_hook(lambda m, i, o: o * 0)
    out = model(Tensor(np.ones((5, 3), np.float32)))
    assert seen == [(model[1], (5, 4), (5, 4))] and np.all(out.data == 0)
    handle.remove()
    replace.remove()
    out = model(Tensor(np.ones((5, 3), np.float32)))
    assert len(seen) == 1 and np.any(out.data != 0)


def test_modules_apply_requires_grad_and_parameter():
    model = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.ReLU(), nn.Linear(4, 2)))
    assert [type(m).__name__ for m in model.modules()] == [
        "Sequential",
        "Linear",
        "Sequential",
        "ReLU",
        "Linear",
    ]
    visited = []
    assert model.apply(lambda m: visited.append(type(m).__name__)) is model
    assert visited == ["Linear", "ReLU", "Linear", "Sequential", "Sequential"]
    model.apply(lambda m: nn.init.zeros_(m.bias) if isinstance(m, nn.Linear) else None)
    assert np.all(model[0].bias.data == 0)
    assert model.requires_grad_(False) is model
    assert not any(p.requires_grad for p in model.parameters())
    assert len(model.parameters()) == 4  # frozen parameters are still parameters
    model.requires_grad_()
    assert all(p.requires_grad for p in model.parameters())

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.alpha = nn.Parameter(np.ones(1, np.float32))

        def forward(self, x):
            return x * self.alpha

    scaled = Scaled()
    assert [n for n, _ in scaled.named_parameters()] == ["alpha"]
    assert isinstance(scaled.alpha, Tensor) and scaled.alpha.requires_grad
    assert repr(scaled.alpha).startswith("Parameter containing:")


def test_buffer_assignment_keeps_it_a_buffer():
    bn = nn.BatchNorm1d(2)
    bn.running_mean = np.array([1.0, 2.0], np.float32)
    assert isinstance(bn.running_mean, Tensor)
    assert "running_mean" in dict(bn.named_buffers())
    np.testing.assert_array_equal(bn.state_dict()["running_mean"], [1.0, 2.0])
    with pytest.raises(TypeError, match="register_buffer"):
        bn.register_buffer("other", [1, 2])


def test_graph_drawer_shows_batchnorm_buffers_as_buffers():
    from tinygrad_mnist import viz
    from tinygrad_mnist.viz.draw import BUFFER_FILL

    nn.init.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU()).eval()
    out = model(Tensor(np.ones((1, 1, 5, 5), np.float32)))
    source = viz.draw_graph(out.sum(), params=model).source
    for name in ("running_mean", "1/sqrt(running_var + eps)"):
        assert name in source
        line = next(line for line in source.splitlines() if name in line)
        assert "(buffer)" in line and BUFFER_FILL in line and "dashed" in line
    weight_line = next(line for line in source.splitlines() if "1.weight" in line)
    assert "(buffer)" not in weight_line


def test_graph_drawer_labels_the_new_layers_briefly():
    from tinygrad_mnist.viz.draw import short_repr

    assert short_repr(nn.BatchNorm2d(8)) == "BatchNorm2d(8)"
    assert short_repr(nn.BatchNorm1d(4, momentum=None)) == (
        "BatchNorm1d(4, eps=1e-05, momentum=None, affine=True, track_running_stats=True)"
    )
    assert short_repr(nn.MaxPool2d(2)) == "MaxPool2d(kernel_size=2, stride=2)"
    assert short_repr(nn.AvgPool2d(3, 2, 1)) == "AvgPool2d(kernel_size=3, stride=2, padding=1)"
    assert short_repr(nn.Dropout(0.25)) == "Dropout(p=0.25)"
