"""Forward fusion (kernels/deferred.py): in a Sequential, a ReLU after a Conv2d and before a
MaxPool2d (pooled first) or a Winograd Conv2d (which applies it as it reads its input) leaves
its full-size output unmade until read, with exactly the outputs and gradients of the layers
run one by one."""

from __future__ import annotations

import numpy as np
import pytest

from tinygrad_mnist import Tensor, kernels, nn, no_grad
from tinygrad_mnist.kernels.elementwise import ThreadedReLU
from tinygrad_mnist.tensor import _Deferred


def conv_relu_pool(in_channels, kernel, pool, padding=0, seed=0):
    """Conv2d -> ReLU -> MaxPool2d with small-integer weights: exact sums, many ties, and a
    negative bias so that some windows are all <= 0."""
    model = nn.Sequential(
        nn.Conv2d(in_channels, 4, kernel, padding=padding), nn.ReLU(), nn.MaxPool2d(pool)
    )
    rng = np.random.default_rng(seed)
    conv = model[0]
    conv.weight.data = rng.integers(-2, 3, conv.weight.shape).astype(np.float32)
    conv.bias.data = np.array([-3, 0, 1, -1], dtype=np.float32)
    return model


def one_by_one(model, x):
    """The model's layers called in turn: the plain path, nothing deferred."""
    for layer in model:
        x = layer(x)
    return x


def run(forward, model, x, *, retain_relu=False):
    """Output, and the gradients of sum(output * w): input, parameters, and (when retained)
    the ReLU output's."""
    for p in model.parameters():
        p.grad = None
    t = Tensor(x, requires_grad=True)
    out = forward(model, t)
    relu_out = out._parents[0]
    if retain_relu:
        relu_out.retain_grad()
    w = np.linspace(-1, 2, out.data.size, dtype=x.dtype).reshape(out.shape)
    (out * Tensor(w)).sum().backward()
    grads = [t.grad] + [p.grad for p in model.parameters()]
    return out.data, grads, relu_out.grad


def inputs(shape, seed, dtype=np.float32, nan=False):
    x = np.random.default_rng(seed).integers(-2, 3, shape).astype(dtype)
    if nan:
        x[0, 0, 3, 4] = np.nan
    return x


# (in channels, kernel, pool, padding, image side): batch-last (one in-channel), Winograd,
# im2col (5x5), padding, 3x3 windows, and a pool that drops a row
CASES = {
    "batch-last": (1, 3, 2, 0, 14),
    "winograd": (3, 3, 2, 0, 10),
    "im2col": (2, 5, 2, 0, 12),
    "padded": (2, 3, 2, 1, 10),
    "3x3 windows": (2, 3, 3, 0, 11),
    "drops a row": (1, 3, 2, 0, 11),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("nan", [False, True])
@pytest.mark.parametrize("retain_relu", [False, True])
def test_deferred_relu_gives_the_layers_own_results(case, nan, retain_relu):
    in_channels, kernel, pool, padding, side = CASES[case]
    model = conv_relu_pool(in_channels, kernel, pool, padding)
    x = inputs((5, in_channels, side, side), seed=1, nan=nan)
    with kernels.use("fast"):
        got = run(Sequential_forward, model, x, retain_relu=retain_relu)
        plain = run(one_by_one, model, x, retain_relu=retain_relu)
    # bit for bit the fast layers' own results, the ReLU output's gradient too (ties and all)
    for g, e in zip([got[0], *got[1], got[2]], [plain[0], *plain[1], plain[2]], strict=True):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("case", list(CASES))
def test_deferred_relu_matches_the_textbook(case):
    in_channels, kernel, pool, padding, side = CASES[case]
    model = conv_relu_pool(in_channels, kernel, pool, padding)
    x = inputs((5, in_channels, side, side), seed=1)
    previous = kernels.get_float32_precision()
    kernels.set_float32_precision("highest")  # exact kernels only: no Winograd rounding
    try:
        with kernels.use("fast"):
            got = run(Sequential_forward, model, x, retain_relu=True)
    finally:
        kernels.set_float32_precision(previous)
    with kernels.use("reference"):
        textbook = run(one_by_one, model, x, retain_relu=True)
    np.testing.assert_array_equal(got[0], textbook[0])
    np.testing.assert_array_equal(got[2], textbook[2])  # nothing summed: no rounding
    for g, e in zip(got[1], textbook[1], strict=True):  # sums in another order
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


def Sequential_forward(model, x):
    return model(x)


def count_relu_forwards(monkeypatch) -> list:
    calls: list = []
    original = ThreadedReLU.forward

    def counted(self, x):
        calls.append(1)
        return original(self, x)

    monkeypatch.setattr(ThreadedReLU, "forward", counted)
    return calls


def test_a_training_step_never_makes_the_relu_output(monkeypatch):
    calls = count_relu_forwards(monkeypatch)
    model = conv_relu_pool(1, 3, 2)
    x = inputs((4, 1, 12, 12), seed=2)
    with kernels.use("fast"):
        out = model(Tensor(x))
        (out * 2.0).sum().backward()
    relu_out = out._parents[0]
    assert calls == [] and type(relu_out) is _Deferred
    # read, it is made once, from the conv's output, and is a plain tensor from then on
    conv_out = relu_out._parents[0]
    np.testing.assert_array_equal(relu_out.data, np.maximum(conv_out.data, 0))
    assert type(relu_out) is Tensor and relu_out.data is relu_out.data and calls == [1]


def test_the_relu_output_is_made_when_its_backward_needs_it(monkeypatch):
    calls = count_relu_forwards(monkeypatch)
    model = conv_relu_pool(3, 3, 2)
    with kernels.use("fast"):
        got = run(Sequential_forward, model, inputs((2, 3, 10, 10), seed=3), retain_relu=True)
    assert calls == [1]  # retained, so not fused: the ReLU's backward read its mask
    assert got[2] is not None


def test_inference_pools_before_the_relu():
    model = conv_relu_pool(3, 3, 2)
    x = inputs((3, 3, 10, 10), seed=4)
    with kernels.use("fast"), no_grad():
        np.testing.assert_array_equal(model(Tensor(x)).data, one_by_one(model, Tensor(x)).data)


@pytest.mark.parametrize("hooked", [0, 1, 2])
def test_no_deferring_where_a_hook_watches(hooked, monkeypatch):
    calls = count_relu_forwards(monkeypatch)
    model = conv_relu_pool(1, 3, 2)
    seen = []
    model[hooked].register_forward_hook(lambda module, args, out: seen.append(out))
    with kernels.use("fast"):
        model(Tensor(inputs((2, 1, 8, 8), seed=5)))
    assert calls == [1] and len(seen) == 1


def test_no_deferring_in_reference_mode_or_without_a_conv_before(monkeypatch):
    calls = count_relu_forwards(monkeypatch)
    x = Tensor(inputs((2, 1, 8, 8), seed=6))
    with kernels.use("reference"):
        conv_relu_pool(1, 3, 2)(x)
    with kernels.use("fast"):
        nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))(x)  # the caller's tensor could change
        nn.Sequential(nn.Identity(), nn.ReLU(), nn.MaxPool2d(2))(x)
    assert calls == [1, 1]  # the textbook ReLU is not counted


def test_the_graph_keeps_both_layers():
    model = conv_relu_pool(1, 3, 2)
    x = Tensor(inputs((2, 1, 8, 8), seed=7), requires_grad=True)
    with kernels.use("fast"):
        out = model(x)
    relu_out = out._parents[0]
    conv_out = relu_out._parents[0]
    assert (out._op.name, relu_out._op.name, conv_out._op.name) == ("MaxPool2d", "ReLU", "Conv2d")
    layers = [module for module, _ in out.module_calls]
    assert layers == [model[2], model]
    assert relu_out.module_calls == ((model[1], (conv_out,)),)
    assert relu_out.shape == conv_out.shape


def conv_relu_conv(padding=0, then_pool=False):
    """Conv2d -> ReLU -> Conv2d (a Winograd conv: 3x3, 4 input channels), as in lenet-cnn;
    with `then_pool`, the second conv's ReLU and max-pool too."""
    layers = [nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=padding)]
    if then_pool:
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
    model = nn.Sequential(*layers)
    rng = np.random.default_rng(8)
    for conv, bias in ((model[0], [-3, 0, 1, -1]), (model[2], [1, -2, 0])):
        conv.weight.data = rng.integers(-2, 3, conv.weight.shape).astype(np.float32)
        conv.bias.data = np.array(bias, dtype=np.float32)
    return model


@pytest.mark.parametrize("padding", [0, 1, "same"])
@pytest.mark.parametrize("then_pool", [False, True])
@pytest.mark.parametrize("nan", [False, True])
@pytest.mark.parametrize("retain_relu", [False, True])
def test_conv_after_a_deferred_relu_gives_the_layers_own_results(
    padding, then_pool, nan, retain_relu
):
    model = conv_relu_conv(padding, then_pool)
    x = inputs((3, 1, 14, 14), seed=9, nan=nan)
    with kernels.use("fast"):
        got = run(Sequential_forward, model, x, retain_relu=retain_relu)
        plain = run(one_by_one, model, x, retain_relu=retain_relu)
    for g, e in zip([got[0], *got[1], got[2]], [plain[0], *plain[1], plain[2]], strict=True):
        np.testing.assert_array_equal(g, e)


def test_a_winograd_conv_reads_the_relu_before_it_unmade(monkeypatch):
    calls = count_relu_forwards(monkeypatch)
    model = conv_relu_conv(then_pool=True)  # lenet-cnn's conv -> relu -> conv -> relu -> pool
    with kernels.use("fast"):
        out = model(Tensor(inputs((4, 1, 14, 14), seed=10)))
        (out * 2.0).sum().backward()
    first_relu = out._parents[0]._parents[0]._parents[0]
    assert first_relu._op.name == "ReLU" and type(first_relu) is _Deferred
    assert calls == [] and model[0].weight.grad is not None
    conv_out = first_relu._parents[0]
    np.testing.assert_array_equal(first_relu.data, np.maximum(conv_out.data, 0))


def test_a_conv_that_cannot_apply_the_relu_gets_it_made(monkeypatch):
    calls = count_relu_forwards(monkeypatch)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 5))  # 5x5: im2col
    with kernels.use("fast"):
        out = model(Tensor(inputs((2, 1, 12, 12), seed=11)))
    assert calls == [1] and type(out._parents[0]) is Tensor
