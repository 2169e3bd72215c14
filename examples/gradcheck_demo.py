"""Prove that backprop is right: a whole CNN's gradients against finite differences.

    python examples/gradcheck_demo.py [--model seed-cnn|lenet-cnn] [--images 3] [--samples 30]

Casts the network to float64, takes a few sample digits and compares, for randomly chosen
elements of the input and of every parameter, the gradient from `backward()` with the central
difference (f(w + eps) - f(w - eps)) / 2 eps. Then shows that the same check catches a bug: a
log-softmax whose normaliser was (wrongly) detached from the graph. Exits 1 if either part fails.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from tinygrad_mnist import GradcheckError, Tensor, data, gradcheck, nn, no_grad
from tinygrad_mnist.models import MODELS, build_model


def compare(fn, named: dict[str, Tensor], samples: int, eps: float = 1e-6, seed: int = 0):
    """Per tensor: (elements checked, largest |gradient|, largest |analytic - numeric|)."""
    for tensor in named.values():
        tensor.grad = None
    fn().backward()
    rng = np.random.default_rng(seed)
    report = {}
    for name, tensor in named.items():
        flat = tensor.data.reshape(-1)  # a view: nudging it nudges the tensor
        picked = rng.choice(flat.size, size=min(samples, flat.size), replace=False)
        analytic = tensor.grad.reshape(-1)[picked]
        numeric = np.empty(len(picked))
        for k, i in enumerate(picked):
            original = flat[i]
            with no_grad():
                flat[i] = original + eps
                plus = fn().item()
                flat[i] = original - eps
                minus = fn().item()
            flat[i] = original
            numeric[k] = (plus - minus) / (2 * eps)
        diff = np.abs(analytic - numeric)
        report[name] = (len(picked), float(np.abs(numeric).max()), float(diff.max()))
    return report


def broken_log_softmax(z: Tensor) -> Tensor:
    """log softmax with a bug: the normaliser log(sum(exp z)) is cut out of the graph."""
    return z - z.exp().sum(dim=1, keepdim=True).detach().log()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(MODELS), default="seed-cnn")
    parser.add_argument("--images", type=int, default=3, help="digits in the batch")
    parser.add_argument("--samples", type=int, default=30, help="elements checked per tensor")
    args = parser.parse_args()

    sample = data.load_sample()
    images = data.preprocess(sample.test_images[: args.images], normalize=True).astype(np.float64)
    # a pinch of noise, so that no two values in a max-pool window tie (a tie has no derivative)
    images += 1e-3 * np.random.default_rng(0).standard_normal(images.shape)
    x = Tensor(images, requires_grad=True)
    y = sample.test_labels[: args.images]
    nn.init.manual_seed(0)
    model = build_model(args.model).double()

    named = {"input": x, **dict(model.named_parameters())}
    report = compare(lambda: model(x).nll_loss(y), named, args.samples)
    print(f"{args.model} in float64 on {args.images} digits: backward() vs finite differences")
    print(
        f"{'tensor':<10} {'shape':<16} {'checked':>7} {'max |grad|':>11} {'max |diff|':>11} "
        f"{'relative':>9}"
    )
    relative = {}
    for name, (count, scale, diff) in report.items():
        relative[name] = diff / scale if scale > 0 else 0.0
        shape = str(named[name].shape)
        print(
            f"{name:<10} {shape:<16} {count:>7} {scale:>11.2e} {diff:>11.2e} {relative[name]:>9.1e}"
        )
    worst = max(relative, key=relative.get)
    print(
        f"worst mismatch: {report[worst][2]:.1e} in {worst}, {relative[worst]:.1e} of its "
        "largest gradient"
    )

    ok = gradcheck(
        lambda x, *params: model(x).nll_loss(y), [x, *model.parameters()], samples=args.samples
    )
    print(f"gradcheck of the whole network: {'passed' if ok else 'FAILED'}")

    logits = model[:-1]  # the same layers without the final LogSoftmax
    try:
        gradcheck(lambda x: broken_log_softmax(logits(x)).nll_loss(y), [x], samples=args.samples)
        print("the broken log-softmax was NOT caught")
        return 1
    except GradcheckError as err:
        print(f"the broken log-softmax is caught:\n  {err}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
