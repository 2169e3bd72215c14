"""How well a trained model reads MNIST test digits changed the ways photos and drawings differ.

Each test digit is transformed (bigger, dark on white, off-centre, RGBA, JPEG, grey paper: the
transforms of tests/test_prepare_image.py), prepared again with data.prepare_image, and read by
`predict`; the accuracy is printed next to the accuracy on the untransformed digits.

    python benchmarks/prepared_digits_accuracy.py runs/lenet-cnn/model.npz \
        --data ../shared/data/mnist

(WEIGHTS written by `tinygrad-mnist train`; --data DIR|sample, default sample; --limit N digits.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_prepare_image import TRANSFORMS  # noqa: E402

from tinygrad_mnist import data, train  # noqa: E402
from tinygrad_mnist.cli import load_trained_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, help="model.npz written by tinygrad-mnist train")
    parser.add_argument("--data", default="sample", help="a folder with MNIST, or 'sample'")
    parser.add_argument("--limit", type=int, default=None, help="read only the first N digits")
    args = parser.parse_args()
    loaded = load_trained_model(args.weights)
    mnist = (
        data.load_sample() if args.data == "sample" else data.load_mnist(args.data, download=False)
    )
    digits, labels = mnist.test_images[: args.limit], mnist.test_labels[: args.limit]
    x = data.preprocess(digits, normalize=loaded.normalize)
    base = train.accuracy(train.predict(loaded.model, x), labels)
    print(
        f"{loaded.name} from {args.weights}, {len(labels):,} test digits: untransformed {base:.2%}"
    )
    for name, transform in [("prepared unchanged", lambda digit: digit), *TRANSFORMS.items()]:
        start = time.perf_counter()
        x = np.concatenate(
            [data.prepare_image(transform(digit), normalize=loaded.normalize) for digit in digits]
        )
        accuracy = train.accuracy(train.predict(loaded.model, x), labels)
        print(
            f"  {name:<18} {accuracy:.2%} ({100 * (accuracy - base):+.2f} points, "
            f"{time.perf_counter() - start:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
