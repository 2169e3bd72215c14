"""The reference models against equivalent torch.nn.Sequential networks."""

from __future__ import annotations

import numpy as np
import pytest

from tinygrad_mnist import Tensor, models, nn
from tinygrad_mnist.nn import functional as F

TORCH_REPR = {
    "seed-cnn": """Sequential(
  (0): Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1))
  (1): ReLU()
  (2): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
  (3): Flatten(start_dim=1, end_dim=-1)
  (4): Linear(in_features=1352, out_features=10, bias=True)
  (5): LogSoftmax(dim=1)
)""",
    "lenet-cnn": """Sequential(
  (0): Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1))
  (1): ReLU()
  (2): Conv2d(32, 64, kernel_size=(3, 3), stride=(1, 1))
  (3): ReLU()
  (4): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
  (5): Flatten(start_dim=1, end_dim=-1)
  (6): Linear(in_features=9216, out_features=128, bias=True)
  (7): ReLU()
  (8): Linear(in_features=128, out_features=10, bias=True)
  (9): LogSoftmax(dim=1)
)""",
}

PARAMS = {"seed-cnn": 13_610, "lenet-cnn": 1_199_882}


def _torch_model(name: str):
    """The same architecture written directly in torch.nn (not derived from ours)."""
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    if name == "seed-cnn":
        return tnn.Sequential(
            tnn.Conv2d(1, 8, 3),
            tnn.ReLU(),
            tnn.MaxPool2d(2),
            tnn.Flatten(),
            tnn.Linear(8 * 13 * 13, 10),
            tnn.LogSoftmax(dim=1),
        )
    return tnn.Sequential(
        tnn.Conv2d(1, 32, 3),
        tnn.ReLU(),
        tnn.Conv2d(32, 64, 3),
        tnn.ReLU(),
        tnn.MaxPool2d(2),
        tnn.Flatten(),
        tnn.Linear(64 * 12 * 12, 128),
        tnn.ReLU(),
        tnn.Linear(128, 10),
        tnn.LogSoftmax(dim=1),
    )


def _batch(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n).astype(np.uint8)


@pytest.mark.parametrize("name", ["seed-cnn", "lenet-cnn"])
def test_parameter_count_and_names(name):
    model = models.build_model(name)
    assert sum(p.data.size for p in model.parameters()) == PARAMS[name]
    assert all(p.dtype == np.float32 for p in model.parameters())
    names = [n for n, _ in model.named_parameters()]
    torch_names = [n for n, _ in _torch_model(name).named_parameters()]
    assert names == torch_names
    assert sum(p.numel() for p in _torch_model(name).parameters()) == PARAMS[name]


@pytest.mark.parametrize("name", ["seed-cnn", "lenet-cnn"])
def test_repr_looks_like_pytorch(name):
    text = repr(models.build_model(name))
    assert text == TORCH_REPR[name]
    # character for character PyTorch's
    assert text == repr(_torch_model(name))


@pytest.mark.parametrize("name, batch", [("seed-cnn", 8), ("lenet-cnn", 3)])
def test_torch_state_dict_loads_and_matches(name, batch):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    twin = _torch_model(name)
    state = {k: v.detach().numpy().copy() for k, v in twin.state_dict().items()}
    model = models.build_model(name)
    assert model.load_state_dict(state) == ([], [])
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, state[k])

    x, y = _batch(batch)
    ours_in = Tensor(x, requires_grad=True)
    out = model(ours_in)
    loss = F.nll_loss(out, y)
    loss.backward()
    torch_in = torch.tensor(x, requires_grad=True)
    ref_out = twin(torch_in)
    ref_loss = torch.nn.functional.nll_loss(ref_out, torch.from_numpy(y.astype(np.int64)))
    ref_loss.backward()

    assert out.shape == (batch, 10) and out.dtype == np.float32
    np.testing.assert_allclose(out.data, ref_out.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.exp(out.data).sum(axis=1), 1.0, rtol=1e-5)
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)
    torch_params = dict(twin.named_parameters())
    for k, p in model.named_parameters():
        ref = torch_params[k].grad.numpy()
        assert p.grad.dtype == np.float32, k
        np.testing.assert_allclose(p.grad, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max(), err_msg=k)
    ref = torch_in.grad.numpy()
    np.testing.assert_allclose(ours_in.grad, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_our_weights_give_torchs_outputs_too():
    pytest.importorskip("torch")
    from torch_reference import compare_module

    nn.init.manual_seed(3)
    compare_module(models.build_model("seed-cnn"), _batch(4)[0], atol=1e-5)


def test_build_model_fresh_each_time_and_unknown_name():
    a, b = models.build_model("seed-cnn"), models.build_model("seed-cnn")
    assert a is not b and a[0].weight is not b[0].weight
    assert set(models.MODELS) == {"seed-cnn", "lenet-cnn", "bn-cnn"}
    with pytest.raises(ValueError, match=r"'resnet'.*seed-cnn.*lenet-cnn"):
        models.build_model("resnet")


def test_seed_cnn_save_load_round_trip(tmp_path):
    model = models.build_model("seed-cnn")
    model.save(tmp_path / "seed.npz")
    other = models.build_model("seed-cnn").load(tmp_path / "seed.npz")
    x = Tensor(_batch(2)[0])
    np.testing.assert_array_equal(model(x).data, other(x).data)
    with pytest.raises(KeyError, match="missing"):
        models.build_model("lenet-cnn").load(tmp_path / "seed.npz")
