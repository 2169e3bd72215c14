"""data.prepare_image: one's own digit made MNIST-like, and train.predict_proba.

The accuracy tests take real MNIST test digits, change them the ways photos and drawings differ
from MNIST (bigger, dark ink on white paper, off-centre on a larger sheet, RGBA with a
transparent background, JPEG, grey paper with texture), prepare them again and check that a
model trained on MNIST reads them about as well as the originals. They use the bundled sample
(offline, seconds); a larger check on full MNIST runs when its files are next to the repository.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sample_model import seed_cnn_trained_on, trained_seed_cnn

from tinygrad_mnist import Tensor, data, nn, train

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
ALLOWED_DROP = 0.03  # accuracy on prepared transformed digits may be at most 3 points lower


# ---------------------------------------------------------------- transformed digits


def scaled_up(digit: np.ndarray, factor: int = 5) -> np.ndarray:
    """The digit `factor` times bigger (bicubic), still light ink on black."""
    size = (28 * factor, 28 * factor)
    return np.asarray(Image.fromarray(digit).resize(size, Image.Resampling.BICUBIC))


def dark_on_white(digit: np.ndarray) -> np.ndarray:
    """Scaled up and inverted: dark ink on white paper, as people write."""
    return 255 - scaled_up(digit)


def off_centre(digit: np.ndarray) -> np.ndarray:
    """Dark on white, in the top right corner of a wider white sheet."""
    sheet = np.full((300, 400), 255, dtype=np.uint8)
    sheet[30:170, 240:380] = dark_on_white(digit)
    return sheet


def rgba_transparent(digit: np.ndarray) -> np.ndarray:
    """Navy ink on a transparent layer: colour constant, the ink in the alpha channel."""
    ink = scaled_up(digit)
    rgba = np.zeros(ink.shape + (4,), dtype=np.uint8)
    rgba[..., :3] = (20, 30, 90)
    rgba[..., 3] = ink
    return rgba


def jpeg_file(digit: np.ndarray) -> io.BytesIO:
    """Dark on white, saved as an RGB JPEG of quality 75 (block artefacts around the ink)."""
    buffer = io.BytesIO()
    Image.fromarray(dark_on_white(digit)).convert("RGB").save(buffer, "JPEG", quality=75)
    buffer.seek(0)
    return buffer


def grey_paper(digit: np.ndarray) -> np.ndarray:
    """Dark grey ink on textured light-grey paper, as a float image in [0, 1]."""
    ink = scaled_up(digit) / 255.0
    rng = np.random.default_rng(int(digit.sum()))
    paper = 0.75 + rng.normal(0.0, 0.03, ink.shape)
    return np.clip(paper * (1 - ink) + 0.15 * ink, 0.0, 1.0)


TRANSFORMS = {
    "scaled up": scaled_up,
    "dark on white": dark_on_white,
    "off centre": off_centre,
    "RGBA transparent": rgba_transparent,
    "JPEG": jpeg_file,
    "grey paper": grey_paper,
}


def prepared(digits: np.ndarray, transform) -> np.ndarray:
    """Each digit transformed then prepared: float32 (N, 1, 28, 28), normalised."""
    return np.concatenate(
        [data.prepare_image(transform(digit), normalize=True) for digit in digits]
    )


# ---------------------------------------------------------------- a model trained on the sample


@pytest.fixture(scope="module")
def sample():
    return data.load_sample()


@pytest.fixture(scope="module")
def sample_model():
    """seed-cnn trained for two epochs on the bundled sample, inputs normalised (~1 s)."""
    return trained_seed_cnn()


@pytest.fixture(scope="module")
def sample_accuracy(sample, sample_model) -> float:
    x = data.preprocess(sample.test_images, normalize=True)
    accuracy = train.accuracy(train.predict(sample_model, x), sample.test_labels)
    assert accuracy > 0.88, "the briefly trained model should read most sample digits"
    return accuracy


@pytest.mark.parametrize("name", ["untransformed"] + list(TRANSFORMS))
def test_transformed_digits_are_read_about_as_well_as_the_originals(
    name, sample, sample_model, sample_accuracy
) -> None:
    transform = TRANSFORMS.get(name, lambda digit: digit)
    x = prepared(sample.test_images, transform)
    accuracy = train.accuracy(train.predict(sample_model, x), sample.test_labels)
    assert accuracy >= sample_accuracy - ALLOWED_DROP, (
        f"{name}: {accuracy:.1%} on prepared digits vs {sample_accuracy:.1%} on the originals"
    )


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"no MNIST files in {MNIST_DIR}")
def test_transformed_full_mnist_test_digits() -> None:
    """seed-cnn trained one epoch on full MNIST reads 1,500 transformed test digits as well."""
    mnist = data.load_mnist(MNIST_DIR, download=False)
    model = seed_cnn_trained_on(mnist.train_images, mnist.train_labels, epochs=1)
    digits, labels = mnist.test_images[-1500:], mnist.test_labels[-1500:]
    baseline = train.accuracy(train.predict(model, data.preprocess(digits, normalize=True)), labels)
    assert baseline > 0.95
    for name, transform in TRANSFORMS.items():
        accuracy = train.accuracy(train.predict(model, prepared(digits, transform)), labels)
        assert accuracy >= baseline - ALLOWED_DROP, f"{name}: {accuracy:.2%} vs {baseline:.2%}"


# ---------------------------------------------------------------- what comes out


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(image.shape)
    return float((rows * image).sum() / image.sum()), float((cols * image).sum() / image.sum())


def test_output_is_one_float32_mnist_image(sample) -> None:
    x = data.prepare_image(off_centre(sample.test_images[0]))
    assert x.shape == (1, 1, 28, 28) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_ink_fits_20x20_with_its_centre_of_mass_at_14_14(name, sample) -> None:
    for digit in sample.test_images[:20]:
        image = data.prepare_image(TRANSFORMS[name](digit))[0, 0]
        rows, cols = np.nonzero(image >= 0.3)
        assert 18 <= max(np.ptp(rows), np.ptp(cols)) + 1 <= 20
        centre = centre_of_mass(image)
        assert abs(centre[0] - 14) <= 0.75 and abs(centre[1] - 14) <= 0.75, centre


def test_an_mnist_digit_comes_back_almost_unchanged(sample) -> None:
    digits = sample.test_images[:50]
    originals = data.preprocess(digits)
    again = np.concatenate([data.prepare_image(digit) for digit in digits])
    assert np.mean(np.abs(again - originals)) < 0.05


def test_normalize_matches_preprocess(sample) -> None:
    digit = dark_on_white(sample.test_images[3])
    plain = data.prepare_image(digit)
    normalised = data.prepare_image(digit, normalize=True)
    expected = data.preprocess(np.rint(plain[0] * 255).astype(np.uint8), normalize=True)
    np.testing.assert_allclose(normalised, expected, atol=1e-6)


def test_a_small_dot_and_a_wide_stroke_are_fitted() -> None:
    dot = np.zeros((9, 9), dtype=np.uint8)
    dot[4, 4] = 255
    assert data.prepare_image(dot).shape == (1, 1, 28, 28)
    dash = np.zeros((50, 200), dtype=np.uint8)
    dash[20:30, 10:190] = 255  # a minus sign: 20 wide, a little over 1 tall
    image = data.prepare_image(dash)[0, 0]
    rows, cols = np.nonzero(image >= 0.3)
    assert np.ptp(cols) + 1 == 20 and np.ptp(rows) + 1 <= 3


# ---------------------------------------------------------------- colours and inputs


def test_invert_is_detected_from_the_paper(sample) -> None:
    light_on_dark = scaled_up(sample.test_images[0])
    dark_on_light = 255 - light_on_dark
    expected = data.prepare_image(light_on_dark)
    np.testing.assert_array_equal(data.prepare_image(dark_on_light), expected)
    np.testing.assert_array_equal(data.prepare_image(dark_on_light, invert=True), expected)
    np.testing.assert_array_equal(data.prepare_image(light_on_dark, invert=False), expected)


def test_the_wrong_invert_finds_no_ink_and_says_so(sample) -> None:
    dark_on_light = dark_on_white(sample.test_images[0])
    with pytest.raises(ValueError, match=r"no ink.*invert=False.*dark"):
        data.prepare_image(dark_on_light, invert=False)


@pytest.mark.parametrize("invert", ["yes", None, 1.5])
def test_invert_must_be_auto_true_or_false(invert) -> None:
    with pytest.raises(ValueError, match="invert must be"):
        data.prepare_image(np.eye(28), invert=invert)


def test_every_kind_of_input_gives_the_same_image(sample, tmp_path: Path) -> None:
    grey = dark_on_white(sample.test_images[5])
    expected = data.prepare_image(grey)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    path = tmp_path / "digit.png"
    Image.fromarray(grey).save(path)
    inputs = {
        "float [0, 1]": grey / 255.0,
        "(H, W, 1)": grey[:, :, None],
        "RGB": rgb,
        "opaque RGBA": np.dstack([rgb, np.full_like(grey, 255)]),
        "list": grey.tolist(),
        "PIL image": Image.fromarray(grey),
        "str path": str(path),
        "Path": path,
        "file object": path.open("rb"),
        "RGB PNG": _saved(Image.fromarray(rgb), tmp_path / "rgb.png"),
        "LA PNG": _saved(Image.fromarray(grey).convert("LA"), tmp_path / "la.png"),
    }
    for name, image in inputs.items():
        np.testing.assert_allclose(
            data.prepare_image(image), expected, atol=1.5 / 255, err_msg=name
        )
    inputs["file object"].close()


def _saved(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def test_coloured_ink_on_white_is_read(sample, sample_model) -> None:
    digits, labels = sample.test_images[:100], sample.test_labels[:100]
    reference = train.predict(sample_model, prepared(digits, dark_on_white))

    def blue_pen(digit):
        ink = scaled_up(digit)[:, :, None] / 255.0
        return np.rint(255 * (1 - ink) + np.array([30, 60, 200]) * ink).astype(np.uint8)

    assert np.mean(train.predict(sample_model, prepared(digits, blue_pen)) == reference) > 0.97
    assert train.accuracy(reference, labels) > 0.85


def test_white_ink_on_a_transparent_layer_is_read(sample) -> None:
    ink = scaled_up(sample.test_images[0])
    rgba = np.dstack([np.full((*ink.shape, 3), 255, dtype=np.uint8), ink])
    np.testing.assert_array_equal(data.prepare_image(rgba), data.prepare_image(ink))


# ---------------------------------------------------------------- errors


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no image file at .*nowhere\.png"):
        data.prepare_image(tmp_path / "nowhere.png")
    with pytest.raises(FileNotFoundError, match="it is a folder"):
        data.prepare_image(tmp_path)


def test_a_file_that_is_not_an_image_is_named(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not a picture")
    with pytest.raises(ValueError, match=r"notes\.png is not a readable image.*expected a PNG"):
        data.prepare_image(path)
    truncated = tmp_path / "truncated.png"
    Image.fromarray(np.eye(64, dtype=np.uint8) * 255).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(ValueError, match="not a readable image"):
        data.prepare_image(truncated)


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros((28, 28)), "no ink"),
        (np.full((40, 30, 3), 200, dtype=np.uint8), "no ink"),
        (np.full((28, 28), 0.5) + np.random.default_rng(0).normal(0, 0.01, (28, 28)), "no ink"),
        (np.zeros((28, 28, 4), dtype=np.uint8), "fully transparent"),
        (np.zeros((28, 28, 2)), r"expected an image array of shape .*got \(28, 28, 2\)"),
        (np.zeros((1, 1, 28, 28)), r"got \(1, 1, 28, 28\)"),
        (np.zeros((0, 28)), r"got \(0, 28\)"),
        (np.full((28, 28), np.nan), "NaN"),
        (np.full((28, 28), 300, dtype=np.int32), r"0-255, got values from 300"),
        (-np.eye(28), r"got values from -1"),
    ],
    ids=[
        "black",
        "grey",
        "noise",
        "transparent",
        "2 channels",
        "4-d",
        "empty",
        "nan",
        "over 255",
        "negative",
    ],
)
def test_bad_arrays_raise_value_error(image, match) -> None:
    with pytest.raises(ValueError, match=match):
        data.prepare_image(image)


@pytest.mark.parametrize("image", [42, None, {"a": 1}, np.array([["a", "b"]])])
def test_other_types_raise_type_error(image) -> None:
    with pytest.raises(TypeError, match="prepare_image: expected"):
        data.prepare_image(image)


# ---------------------------------------------------------------- predict_proba


def test_predict_proba_gives_probabilities_that_agree_with_predict(sample, sample_model) -> None:
    x = data.preprocess(sample.test_images[:300], normalize=True)
    proba = train.predict_proba(sample_model, x, batch_size=128)
    assert proba.shape == (300, 10) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert (proba >= 0).all()
    np.testing.assert_array_equal(proba.argmax(axis=1), train.predict(sample_model, x))
    log_probabilities = sample_model(Tensor(x)).data
    np.testing.assert_allclose(proba, np.exp(log_probabilities), rtol=1e-4, atol=1e-6)


def test_predict_proba_accepts_logits_and_restores_the_mode() -> None:
    logits = nn.Linear(3, 10)
    logits.train()
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    proba = train.predict_proba(logits, x)
    out = logits(Tensor(x)).data
    expected = np.exp(out) / np.exp(out).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(proba, expected, rtol=1e-5)
    assert logits.training
    assert train.predict_proba(logits, x[:0]).shape == (0, 10)
    with pytest.raises(ValueError, match="predict_proba: batch_size must be >= 1"):
        train.predict_proba(logits, x, batch_size=0)
