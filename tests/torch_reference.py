"""Run a tinygrad_mnist Module and its PyTorch twin side by side and compare them.

`to_torch(module)` builds the equivalent `torch.nn` module with our weights copied in;
`compare_module(module, x)` runs forward and backward (with the same random upstream gradient)
in both and checks the output, the input gradient and every parameter gradient by name.
Callers skip with `pytest.importorskip("torch")` before using anything here.
"""

from __future__ import annotations

import numpy as np

from tinygrad_mnist import Tensor, nn


def _torch():
    import torch

    return torch


def to_torch(module: nn.Module):
    """The torch.nn equivalent of `module` (layers and Sequential), with our weights copied."""
    torch = _torch()
    twin = _build(module)
    first = next(iter(module.state_dict().values()), None)
    if first is not None and first.dtype == np.float64:
        twin = twin.double()  # before loading, so float64 values are not rounded to float32
    state = {k: torch.from_numpy(np.array(v)) for k, v in module.state_dict().items()}
    twin.load_state_dict(state, strict=True)
    return twin.train(module.training)


def _build(module: nn.Module):
    torch = _torch()
    tnn = torch.nn
    if isinstance(module, nn.Sequential):
        return tnn.Sequential(*(_build(layer) for layer in module))
    if isinstance(module, nn.Conv2d):
        return tnn.Conv2d(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=module.groups,
            bias=module.bias is not None,
        )
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        cls = tnn.BatchNorm1d if isinstance(module, nn.BatchNorm1d) else tnn.BatchNorm2d
        return cls(
            module.num_features,
            eps=module.eps,
            momentum=module.momentum,
            affine=module.affine,
            track_running_stats=module.track_running_stats,
        )
    if isinstance(module, nn.ModuleList):
        return tnn.ModuleList([_build(m) for m in module])
    simple = {nn.Identity: tnn.Identity, nn.Sigmoid: tnn.Sigmoid, nn.Tanh: tnn.Tanh}
    if type(module) in simple:
        return simple[type(module)]()
    if isinstance(module, nn.LeakyReLU):
        return tnn.LeakyReLU(module.negative_slope)
    if isinstance(module, nn.Dropout):
        return tnn.Dropout(module.p)
    if isinstance(module, nn.AvgPool2d):
        return tnn.AvgPool2d(
            module.kernel_size,
            module.stride,
            module.padding,
            count_include_pad=module.count_include_pad,
        )
    if isinstance(module, nn.Embedding):
        return tnn.Embedding(
            module.num_embeddings, module.embedding_dim, padding_idx=module.padding_idx
        )
    if isinstance(module, nn.Linear):
        return tnn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    if isinstance(module, nn.ReLU):
        return tnn.ReLU()
    if isinstance(module, nn.MaxPool2d):
        return tnn.MaxPool2d(module.kernel_size, stride=module.stride, padding=module.padding)
    if isinstance(module, nn.Flatten):
        return tnn.Flatten(module.start_dim, module.end_dim)
    if isinstance(module, nn.Reshape):
        return _TorchReshape(module.shape)
    if isinstance(module, nn.Softmax):
        return tnn.Softmax(dim=module.dim)
    if isinstance(module, nn.LogSoftmax):
        return tnn.LogSoftmax(dim=module.dim)
    raise TypeError(f"to_torch: no PyTorch equivalent known for {type(module).__name__}")


def _TorchReshape(shape):  # noqa: N802 - builds a torch.nn.Module instance
    torch = _torch()

    class Reshape(torch.nn.Module):
        def forward(self, x):
            return x.reshape(x.shape[0], *shape)

    return Reshape()


def seeded_models(name: str, seed: int = 0):
    """Our model `name` (seeded init) and its torch twin with the same weights."""
    from tinygrad_mnist import models

    nn.init.manual_seed(seed)
    ours = models.build_model(name)
    return ours, to_torch(ours)


def compare_module(
    module: nn.Module,
    x: np.ndarray,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    seed: int = 0,
) -> None:
    """Forward and backward of `module` and its torch twin agree: output, dx, and each dW by name.

    The upstream gradient is a fixed random array, so every output element matters. `atol` is
    relative to the largest reference value (float32 sums of many terms cancel).
    """
    torch = _torch()
    twin = to_torch(module)
    module.zero_grad()

    ours_x = Tensor(x.copy(), requires_grad=True)
    ours_out = module(ours_x)
    torch_x = torch.tensor(x, requires_grad=True)
    torch_out = twin(torch_x)

    assert ours_out.shape == tuple(torch_out.shape), (
        f"output shape {ours_out.shape}, torch gives {tuple(torch_out.shape)}"
    )
    assert ours_out.dtype == x.dtype, f"output dtype {ours_out.dtype}, input was {x.dtype}"
    _close(ours_out.data, torch_out.detach().numpy(), rtol, atol, "forward")

    upstream = np.random.default_rng(seed).standard_normal(ours_out.shape).astype(x.dtype)
    ours_out.backward(upstream)
    torch_out.backward(torch.from_numpy(upstream))

    _close(ours_x.grad, torch_x.grad.numpy(), rtol, atol, "input gradient")
    ours_params = dict(module.named_parameters())
    torch_params = dict(twin.named_parameters())
    assert list(ours_params) == list(torch_params), "parameter names differ from PyTorch's"
    for name, p in ours_params.items():
        assert p.grad is not None, f"{name}: no gradient after backward"
        assert p.grad.dtype == p.dtype, f"{name}: grad dtype {p.grad.dtype}, param {p.dtype}"
        _close(p.grad, torch_params[name].grad.numpy(), rtol, atol, f"gradient of {name}")


def _close(ours: np.ndarray, ref: np.ndarray, rtol: float, atol: float, what: str) -> None:
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape}, torch gives {ref.shape}"
    scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=atol * scale, err_msg=what)
