"""Regenerate tinygrad_mnist/sample/mnist_sample.npz from the real MNIST files.

Usage: python tools/make_sample.py [MNIST_FOLDER]   (default: ../shared/data/mnist, else the
usual load_mnist search, which may download). The sample is 500 images per digit from the
training set and 100 per digit from the test set, chosen with limit_per_digit(..., seed=0), so
the arrays are identical on every run (the zip container's timestamps are not).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from tinygrad_mnist.data import MNIST, SAMPLE_PATH, limit_per_digit, load_mnist  # noqa: E402

TRAIN_PER_DIGIT = 500
TEST_PER_DIGIT = 100
SEED = 0


def make_sample(full: MNIST) -> MNIST:
    """Pick the sample out of full MNIST: 500 train and 100 test images per digit, seed 0."""
    train_images, train_labels = limit_per_digit(
        full.train_images, full.train_labels, TRAIN_PER_DIGIT, seed=SEED
    )
    test_images, test_labels = limit_per_digit(
        full.test_images, full.test_labels, TEST_PER_DIGIT, seed=SEED
    )
    return MNIST(train_images, train_labels, test_images, test_labels)


def main(argv: list[str]) -> None:
    default = PROJECT.parent / "shared" / "data" / "mnist"
    root = Path(argv[0]) if argv else (default if default.is_dir() else None)
    sample = make_sample(load_mnist(root=root))
    # Write next to the target and rename, so a crash never leaves half a file.
    fd, tmp = tempfile.mkstemp(dir=SAMPLE_PATH.parent, suffix=".npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, **sample._asdict())
        os.replace(tmp, SAMPLE_PATH)
    finally:
        Path(tmp).unlink(missing_ok=True)
    print(f"wrote {SAMPLE_PATH} ({SAMPLE_PATH.stat().st_size} bytes)")
    for field, array in sample._asdict().items():
        digest = hashlib.sha256(array.tobytes()).hexdigest()
        print(f"  {field:13s} {str(array.shape):15s} sha256 {digest}")


if __name__ == "__main__":
    main(sys.argv[1:])
