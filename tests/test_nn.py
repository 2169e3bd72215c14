"""nn: every layer against torch.nn (outputs, input gradients, parameter gradients by name),
default init, the losses, and the Module API (names, modes, state_dict, save/load)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

import tinygrad_mnist
from tinygrad_mnist import Tensor, gradcheck, models, nn
from tinygrad_mnist.nn import functional as F


def _x(shape, seed=0, dtype=np.float32, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


@pytest.fixture
def compare():
    pytest.importorskip("torch")
    from torch_reference import compare_module

    return compare_module


# ---------------------------------------------------------------- layers vs torch.nn


@pytest.mark.parametrize(
    "args, kwargs, in_shape",
    [
        ((3, 4, 3), {}, (2, 3, 9, 8)),
        ((3, 4, 3), {"stride": 2}, (2, 3, 9, 8)),
        ((2, 5, 3), {"padding": 1}, (2, 2, 7, 7)),
        ((2, 5, (3, 2)), {"stride": (2, 1), "padding": (1, 2)}, (2, 2, 8, 7)),
        ((3, 4, 3), {"bias": False}, (2, 3, 6, 6)),
        ((1, 8, 3), {}, (2, 1, 28, 28)),
    ],
    ids=["plain", "stride2", "pad1", "rect-stride-pad", "no-bias", "seed-conv"],
)
def test_conv2d_matches_torch(compare, args, kwargs, in_shape):
    nn.init.manual_seed(1)
    layer = nn.Conv2d(*args, **kwargs)
    names = [n for n, _ in layer.named_parameters()]
    assert names == (["weight"] if kwargs.get("bias") is False else ["weight", "bias"])
    compare(layer, _x(in_shape), atol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(compare, bias):
    nn.init.manual_seed(2)
    layer = nn.Linear(7, 5, bias=bias)
    assert layer.weight.shape == (5, 7)
    assert (layer.bias is not None) == bias
    compare(layer, _x((4, 7)))


def test_relu_matches_torch(compare):
    x = _x((3, 4, 5))
    x[0, 0, :2] = 0.0  # torch's relu gradient at exactly 0 is 0
    compare(nn.ReLU(), x)


@pytest.mark.parametrize(
    "kernel, stride, in_shape",
    [
        (2, None, (2, 3, 8, 8)),
        (2, None, (2, 3, 7, 9)),
        (3, 2, (2, 2, 9, 9)),
        ((2, 3), (1, 2), (1, 2, 6, 7)),
    ],
    ids=["k2", "k2-odd-size", "overlap-k3-s2", "rect"],
)
def test_maxpool2d_matches_torch(compare, kernel, stride, in_shape):
    # distinct values (a permutation), so the argmax of every window is unique
    x = np.random.default_rng(3).permutation(np.prod(in_shape)).reshape(in_shape)
    compare(nn.MaxPool2d(kernel, stride), (x / 10).astype(np.float32))


def test_flatten_matches_torch(compare):
    compare(nn.Flatten(), _x((2, 3, 4, 5)))
    compare(nn.Flatten(2), _x((2, 3, 4, 5)))


def test_reshape_matches_torch(compare):
    compare(nn.Reshape(1, 28, 28), _x((3, 784)))
    compare(nn.Reshape(4, -1), _x((2, 3, 8)))
    assert nn.Reshape((1, 28, 28))(Tensor(_x((2, 784)))).shape == (2, 1, 28, 28)


def test_reshape_error_names_shapes():
    with pytest.raises(ValueError, match=r"\(2, 10\).*\(3, 3\)"):
        nn.Reshape(3, 3)(Tensor(_x((2, 10))))


@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_softmax_and_log_softmax_match_torch(compare, axis):
    compare(nn.Softmax(axis), _x((4, 6), scale=3))
    compare(nn.LogSoftmax(axis), _x((4, 6), scale=3))


def test_sequential_matches_torch_names_and_grads(compare):
    nn.init.manual_seed(4)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(3, 4, 2, stride=2, bias=False),
        nn.Flatten(),
        nn.Linear(16, 6),
        nn.ReLU(),
        nn.Linear(6, 3, bias=False),
        nn.LogSoftmax(axis=1),
    )
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "3.weight", "5.weight", "5.bias", "7.weight"]
    compare(model, _x((2, 1, 9, 9)), atol=1e-5)


def test_sequential_float64_matches_torch_tightly(compare):
    nn.init.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4))
    model.double()
    compare(model, _x((2, 2, 6, 6), dtype=np.float64), rtol=1e-10, atol=1e-12)


def test_sequential_indexing_and_type_error():
    layers = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)]
    model = nn.Sequential(*layers)
    assert len(model) == 3
    assert model[0] is layers[0] and model[-1] is layers[2]
    assert list(model) == layers
    assert [type(m) for m in model[1:]] == [nn.ReLU, nn.Linear]
    with pytest.raises(TypeError, match="layer 1 .*Module"):
        nn.Sequential(nn.ReLU(), lambda x: x)


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="Linear"):
        nn.Linear(0, 3)
    with pytest.raises(ValueError, match="Conv2d"):
        nn.Conv2d(1, 0, 3)
    with pytest.raises(ValueError, match=r"4 features.*expects 3"):
        nn.Linear(3, 2)(Tensor(_x((2, 4))))
    with pytest.raises(ValueError, match="channels"):
        nn.Conv2d(1, 2, 3)(Tensor(_x((1, 3, 5, 5))))


def test_layer_reprs_look_like_pytorch():
    assert repr(nn.Conv2d(1, 8, 3)) == "Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1))"
    assert repr(nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False)) == (
        "Conv2d(2, 4, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=False)"
    )
    assert repr(nn.Linear(1352, 10)) == "Linear(in_features=1352, out_features=10, bias=True)"
    assert repr(nn.ReLU()) == "ReLU()"
    assert repr(nn.Flatten()) == "Flatten(start_dim=1, end_dim=-1)"


def test_layer_reprs_equal_torch_reprs():
    torch = pytest.importorskip("torch")
    pairs = [
        (nn.Conv2d(1, 8, 3), torch.nn.Conv2d(1, 8, 3)),
        (
            nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False),
            torch.nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False),
        ),
        (nn.Linear(5, 2, bias=False), torch.nn.Linear(5, 2, bias=False)),
        (nn.ReLU(), torch.nn.ReLU()),
        (nn.Flatten(), torch.nn.Flatten()),
    ]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)


# ---------------------------------------------------------------- default init


@pytest.mark.parametrize(
    "make, fan_in",
    [(lambda: nn.Linear(400, 300), 400), (lambda: nn.Conv2d(8, 64, 5), 8 * 25)],
    ids=["linear", "conv"],
)
def test_default_init_is_pytorchs_uniform(make, fan_in):
    nn.init.manual_seed(0)
    layer = make()
    bound = 1 / math.sqrt(fan_in)
    for name, p in layer.named_parameters():
        assert p.dtype == np.float32, name
        assert p.requires_grad and p.grad is None, name
        assert np.abs(p.data).max() <= bound, name
        if p.data.size >= 1000:
            assert np.abs(p.data).max() > 0.95 * bound, f"{name} does not fill its range"
            assert abs(p.data.mean()) < 0.05 * bound, name
            assert p.data.std() == pytest.approx(bound / math.sqrt(3), rel=0.03), name
    assert layer.bias.data.std() > 0.3 * bound  # the biases are random too, not zeros


def test_manual_seed_makes_models_reproducible():
    nn.init.manual_seed(123)
    a = models.build_model("seed-cnn").state_dict()
    nn.init.manual_seed(123)
    b = models.build_model("seed-cnn").state_dict()
    c = models.build_model("seed-cnn").state_dict()
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["0.weight"], c["0.weight"])


# ---------------------------------------------------------------- losses


def _targets(kind, labels):
    if kind == "uint8":
        return labels.astype(np.uint8)
    if kind == "int64":
        return labels.astype(np.int64)
    return Tensor(labels.astype(np.int64))


@pytest.mark.parametrize("kind", ["uint8", "int64", "tensor"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_match_torch(kind, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    logits = (rng.standard_normal((5, 10)) * 3).astype(dtype)
    labels = rng.integers(0, 10, 5)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 0}
    torch_targets = torch.from_numpy(labels.astype(np.int64))

    ours = Tensor(logits, requires_grad=True)
    loss = F.cross_entropy(ours, _targets(kind, labels))
    loss.backward()
    theirs = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(theirs, torch_targets)
    ref.backward()
    assert loss.shape == () and loss.dtype == dtype
    np.testing.assert_allclose(loss.data, ref.item(), **tol)
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), **tol)

    log_probs = np.log(np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(dtype)
    ours = Tensor(log_probs, requires_grad=True)
    loss = F.nll_loss(ours, _targets(kind, labels))
    loss.backward()
    theirs = torch.tensor(log_probs, requires_grad=True)
    ref = torch.nn.functional.nll_loss(theirs, torch_targets)
    ref.backward()
    np.testing.assert_allclose(loss.data, ref.item(), **tol)
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), **tol)


def test_cross_entropy_equals_log_softmax_then_nll():
    logits = _x((6, 4), dtype=np.float64, scale=5)
    labels = np.array([0, 3, 1, 1, 2, 3], dtype=np.uint8)
    a = Tensor(logits, requires_grad=True)
    F.cross_entropy(a, labels).backward()
    b = Tensor(logits, requires_grad=True)
    composed = F.nll_loss(F.log_softmax(b, axis=1), labels)
    composed.backward()
    np.testing.assert_allclose(
        F.cross_entropy(Tensor(logits), labels).data, composed.data, rtol=1e-12
    )
    np.testing.assert_allclose(a.grad, b.grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_are_stable_at_huge_logits(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4]], dtype=dtype)
    labels = np.array([0, 1, 2])
    x = Tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, labels)
    loss.backward()
    expected = (0.0 + 2e4 + (2e4 + math.log(2))) / 3
    assert np.isfinite(loss.data) and np.all(np.isfinite(x.grad))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    y = Tensor(logits, requires_grad=True)
    composed = F.nll_loss(F.log_softmax(y), labels)
    composed.backward()
    assert composed.item() == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(x.grad, y.grad, atol=1e-6)
    probs = F.softmax(Tensor(logits)).data
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_loss_target_errors_are_clear():
    logits = Tensor(_x((3, 4)), requires_grad=True)
    with pytest.raises(ValueError, match=r"target.*\(2,\).*\(3, 4\)"):
        F.cross_entropy(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        F.nll_loss(logits, np.array([0, 1, 4]))
    with pytest.raises(TypeError, match="integer"):
        F.cross_entropy(logits, np.array([0.0, 1.0, 2.0]))


def test_functional_relu_softmax():
    x = _x((3, 5))
    np.testing.assert_array_equal(F.relu(Tensor(x)).data, np.maximum(x, 0))
    e = np.exp(x - x.max(axis=0))
    np.testing.assert_allclose(F.softmax(Tensor(x), axis=0).data, e / e.sum(0), rtol=1e-6)


# ---------------------------------------------------------------- Module API


class Net(nn.Module):
    """A custom module with its own parameter and a Sequential inside."""

    def __init__(self):
        super().__init__()
        self.scale = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
        self.body = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
        self.head = nn.Linear(3, 2, bias=False)
        self.constant = Tensor(np.zeros(2, dtype=np.float32))  # no grad: not a parameter

    def forward(self, x):
        return self.head(self.body(x) * self.scale)


def test_named_parameters_of_nested_modules():
    torch = pytest.importorskip("torch")
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == [
        "scale",
        "body.0.weight",
        "body.0.bias",
        "body.2.weight",
        "body.2.bias",
        "head.weight",
    ]
    assert [p for _, p in net.named_parameters()] == net.parameters()
    assert list(net.children()) == [net.body, net.head]
    assert [n for n, _ in net.named_modules()] == ["", "body", "body.0", "body.1", "body.2", "head"]

    class TorchNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(3))
            self.body = torch.nn.Sequential(
                torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)
            )
            self.head = torch.nn.Linear(3, 2, bias=False)

    assert names == [n for n, _ in TorchNet().named_parameters()]


def test_nested_module_repr():
    text = repr(Net())
    assert text.splitlines()[:3] == [
        "Net(",
        "  (body): Sequential(",
        "    (0): Linear(in_features=4, out_features=5, bias=True)",
    ]
    assert text.endswith("  (head): Linear(in_features=3, out_features=2, bias=False)\n)")


def test_reassigning_an_attribute_unregisters_it():
    layer = nn.Linear(3, 2)
    layer.bias = None
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    net = Net()
    net.head = nn.ReLU()
    assert "head.weight" not in dict(net.named_parameters())


def test_subclass_must_call_super_init():
    class Broken(nn.Module):
        def __init__(self):
            self.layer = nn.Linear(2, 2)

        def forward(self, x):
            return self.layer(x)

    with pytest.raises(RuntimeError, match=r"super\(\).__init__\(\)"):
        Broken()


def test_shared_module_parameters_are_listed_once():
    """As PyTorch: a layer used twice has its parameters counted (and optimised) once."""
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias"]
    assert len(model.parameters()) == 2


def test_train_eval_propagate():
    net = Net()
    assert all(m.training for _, m in net.named_modules())
    assert net.eval() is net
    assert not any(m.training for _, m in net.named_modules())
    net.body.train()
    assert net.body[1].training and not net.training and not net.head.training
    net.train()
    assert all(m.training for _, m in net.named_modules())


def test_zero_grad_sets_grads_to_none():
    net = Net()
    F.cross_entropy(net(Tensor(_x((3, 4)))), np.array([0, 1, 1])).backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_state_dict_returns_copies():
    net = Net()
    state = net.state_dict()
    assert list(state) == [n for n, _ in net.named_parameters()]
    assert all(isinstance(v, np.ndarray) for v in state.values())
    state["head.weight"][...] = 42.0
    assert not np.any(net.head.weight.data == 42.0)
    before = net.state_dict()["body.0.bias"].copy()
    net.body[0].bias.data += 1.0
    np.testing.assert_array_equal(state["body.0.bias"], before)


def test_load_state_dict_copies_and_casts():
    net = Net()
    state = {
        k: np.random.default_rng(0).standard_normal(v.shape) for k, v in net.state_dict().items()
    }  # float64
    assert net.load_state_dict(state) == ([], [])
    for name, p in net.named_parameters():
        assert p.dtype == np.float32, name
        np.testing.assert_allclose(p.data, state[name].astype(np.float32))
    state["head.weight"][...] = 7.0  # later changes to the source do not leak in
    assert not np.any(net.head.weight.data == 7.0)
    # Tensors and non-contiguous arrays are accepted as values too
    state = net.state_dict()
    state["head.weight"] = np.asfortranarray(state["head.weight"]) * 2
    state["scale"] = Tensor(np.full(3, 0.5, dtype=np.float32))
    net.load_state_dict(state)
    np.testing.assert_array_equal(net.scale.data, 0.5)
    np.testing.assert_array_equal(net.head.weight.data, state["head.weight"])


def _snapshot(module):
    return {k: v.copy() for k, v in module.state_dict().items()}


def _assert_unchanged(module, snapshot):
    for k, v in module.state_dict().items():
        np.testing.assert_array_equal(v, snapshot[k], err_msg=f"{k} changed after a failed load")


def test_load_state_dict_missing_and_unexpected_keys():
    net = Net()
    before = _snapshot(net)
    state = net.state_dict()
    state = {k: v + 1 for k, v in state.items()}
    del state["body.2.bias"]
    with pytest.raises(KeyError, match=r"missing.*body\.2\.bias"):
        net.load_state_dict(state)
    _assert_unchanged(net, before)
    state["body.2.bias"] = np.zeros(3)
    state["body.9.weight"] = np.zeros(3)
    with pytest.raises(KeyError, match=r"unexpected.*body\.9\.weight"):
        net.load_state_dict(state)
    _assert_unchanged(net, before)


def test_load_state_dict_shape_mismatch_names_key_and_shapes():
    net = Net()
    before = _snapshot(net)
    state = {k: v + 1 for k, v in net.state_dict().items()}
    state["body.0.weight"] = np.zeros((4, 5), dtype=np.float32)
    with pytest.raises(ValueError, match=r"body\.0\.weight.*\(4, 5\).*\(5, 4\)"):
        net.load_state_dict(state)
    _assert_unchanged(net, before)


def test_load_state_dict_bad_values_change_nothing():
    net = Net()
    before = _snapshot(net)
    state = {k: v + 1 for k, v in net.state_dict().items()}
    state["head.weight"] = np.full((2, 3), "x")  # last key: cannot become float32
    with pytest.raises((TypeError, ValueError), match="head.weight"):
        net.load_state_dict(state)
    _assert_unchanged(net, before)


def test_save_load_round_trip(tmp_path):
    nn.init.manual_seed(7)
    net = Net()
    path = tmp_path / "sub" / "weights.npz"
    net.save(path)
    assert path.is_file()
    assert sorted(os.listdir(path.parent)) == ["weights.npz"]
    with np.load(path) as archive:
        assert sorted(archive.files) == sorted(net.state_dict())
    other = Net()
    assert other.load(str(path)) is other
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v)
    x = Tensor(_x((2, 4)))
    np.testing.assert_array_equal(other(x).data, net(x).data)
    net.save(path)  # overwriting works and still leaves one file
    assert sorted(os.listdir(path.parent)) == ["weights.npz"]


def test_load_checks_keys_and_shapes(tmp_path):
    path = tmp_path / "w.npz"
    nn.Linear(4, 3).save(path)
    with pytest.raises(ValueError, match=r"weight.*\(3, 4\).*\(2, 4\)"):
        nn.Linear(4, 2).load(path)
    with pytest.raises(KeyError, match="bias"):
        nn.Linear(4, 3, bias=False).load(path)


def test_load_missing_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        Net().load(tmp_path / "nope.npz")


@pytest.mark.parametrize(
    "content",
    [b"not a zip file at all", b"PK\x03\x04 truncated", b""],
    ids=["garbage", "truncated-zip", "empty"],
)
def test_load_corrupt_file_is_clear(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    net = Net()
    before = _snapshot(net)
    with pytest.raises(ValueError, match=r"bad\.npz.*not a valid \.npz"):
        net.load(path)
    _assert_unchanged(net, before)


def test_load_npy_instead_of_npz_is_clear(tmp_path):
    path = tmp_path / "weights.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ValueError, match=r"weights\.npy.*npz"):
        Net().load(path)


def test_save_failure_leaves_no_files(tmp_path, monkeypatch):
    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    path = tmp_path / "w.npz"
    with pytest.raises(OSError, match="disk full"):
        Net().save(path)
    assert os.listdir(tmp_path) == []


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "w.npz"
    net = Net()
    net.save(path)
    old = path.read_bytes()

    def broken_savez(file, **kwargs):
        file.write(b"half written")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(KeyboardInterrupt):
        net.save(path)
    assert os.listdir(tmp_path) == ["w.npz"]
    assert path.read_bytes() == old


def test_double_then_gradcheck_on_seed_cnn():
    nn.init.manual_seed(8)
    model = models.build_model("seed-cnn").double()
    assert all(p.dtype == np.float64 for p in model.parameters())
    x = Tensor(np.random.default_rng(0).random((2, 1, 28, 28)))
    labels = np.array([3, 7], dtype=np.uint8)
    assert tinygrad_mnist.gradcheck is gradcheck
    assert gradcheck(lambda *params: F.nll_loss(model(x), labels), model.parameters(), samples=20)
    model.float()
    assert all(p.dtype == np.float32 for p in model.parameters())
    assert model(Tensor(x.data.astype(np.float32))).dtype == np.float32


def test_saved_weights_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = tmp_path / "w.npz"
        nn.Linear(2, 3).save(path)
        assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(umask)


def test_a_module_without_forward_cannot_be_created():
    """Module is abstract, as Op is: a subclass that forgets forward() fails when created."""

    class Forgetful(nn.Module):
        def __init__(self):
            super().__init__()

    with pytest.raises(TypeError, match="forward"):
        Forgetful()
