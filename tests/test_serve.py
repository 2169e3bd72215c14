"""The drawing page's server (tinygrad_mnist.serve): answers, saliency and refusals.

The server runs in this process on a free port of 127.0.0.1 and is talked to with the standard
library's HTTP client; the page itself is driven in a real browser by test_browser.py.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import threading

import numpy as np
import pytest
from PIL import Image
from sample_model import drawn_digit_png, trained_seed_cnn, well_read_test_digits

from tinygrad_mnist import Tensor, data, serve


@pytest.fixture(scope="module")
def server():
    digit_server = serve.make_server(
        trained_seed_cnn(),
        "127.0.0.1",
        0,
        normalize=True,
        info={"model": "seed-cnn", "test_accuracy": 0.93},
    )
    thread = threading.Thread(target=digit_server.serve_forever, daemon=True)
    thread.start()
    yield digit_server
    digit_server.shutdown()
    digit_server.server_close()
    thread.join(timeout=5)


def request(
    server, method: str, path: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request to the test server."""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def post_json(server, obj) -> tuple[int, dict]:
    status, content_type, body = request(
        server,
        "POST",
        "/api/predict",
        json.dumps(obj).encode(),
        {"Content-Type": "application/json"},
    )
    assert content_type == "application/json"
    return status, json.loads(body)


def data_url(png: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(png).decode()


# ---------------------------------------------------------------- the page


def test_the_page_is_self_contained_html(server) -> None:
    status, content_type, body = request(server, "GET", "/")
    assert status == 200 and content_type.startswith("text/html")
    page = body.decode()
    for element in ('id="pad"', 'id="seen"', 'id="saliency"', 'id="bars"', 'id="clear"'):
        assert element in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "no external assets"
    assert "https://" not in page and "http://" not in page


def test_model_info(server) -> None:
    status, _, body = request(server, "GET", "/api/model")
    assert status == 200
    assert json.loads(body) == {"model": "seed-cnn", "test_accuracy": 0.93, "normalize": True}


# ---------------------------------------------------------------- answers


def test_a_drawn_digit_is_read(server) -> None:
    for image, label in well_read_test_digits(3):
        png = drawn_digit_png(image)
        status, answer = post_json(server, {"image": data_url(png)})
        assert status == 200, answer
        assert answer["digit"] == label
        probabilities = np.array(answer["probabilities"])
        assert probabilities.shape == (10,) and abs(probabilities.sum() - 1) < 1e-3
        assert probabilities.argmax() == label
        seen = np.array(answer["input"])
        expected = data.prepare_image(io.BytesIO(png))[0, 0]
        np.testing.assert_allclose(seen, expected, atol=1e-3)
        saliency = np.array(answer["saliency"])
        assert saliency.shape == (28, 28) and np.abs(saliency).max() == pytest.approx(1.0)
        assert answer["saliency_scale"] > 0


def test_jpeg_is_accepted(server) -> None:
    image, label = well_read_test_digits(1)[0]
    buffer = io.BytesIO()
    Image.open(io.BytesIO(drawn_digit_png(image))).convert("RGB").save(buffer, "JPEG")
    status, answer = post_json(server, {"image": data_url(buffer.getvalue(), "jpeg")})
    assert status == 200 and answer["digit"] == label


def test_saliency_is_the_input_gradient_of_the_log_probability() -> None:
    """read_digit's saliency equals PyTorch's gradient for the same network and input."""
    torch = pytest.importorskip("torch")
    from torch_reference import to_torch

    model = trained_seed_cnn()
    image, label = well_read_test_digits(1)[0]
    x = data.prepare_image(image, normalize=True)
    reading = serve.read_digit(model, x)
    assert reading.digit == label
    assert reading.probabilities.sum() == pytest.approx(1.0)

    twin = to_torch(model)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    twin(tx).log_softmax(1)[0, label].backward()
    np.testing.assert_allclose(reading.saliency, tx.grad.numpy()[0, 0], rtol=1e-4, atol=1e-6)


def test_read_digit_leaves_the_model_as_it_was() -> None:
    model = trained_seed_cnn()
    model.train()
    try:
        before = [(p.requires_grad, p.grad) for p in model.parameters()]
        serve.read_digit(model, np.zeros((1, 1, 28, 28), dtype=np.float32))
        assert model.training
        assert [(p.requires_grad, p.grad) for p in model.parameters()] == before
        out = model(Tensor(np.zeros((1, 1, 28, 28), dtype=np.float32)))
        assert out.requires_grad  # parameters still require grad
    finally:
        model.eval()
    with pytest.raises(ValueError, match=r"expected one input of shape \(1, 1, 28, 28\)"):
        serve.read_digit(model, np.zeros((2, 1, 28, 28), dtype=np.float32))


# ---------------------------------------------------------------- refusals


def blank_png(size: tuple[int, int] = (50, 50)) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size, 255).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"{not json", 400, "not valid JSON"),
        (b"\xff\xfe", 400, "not valid JSON"),
        (b"[1, 2]", 400, "expected a JSON object"),
        (b'{"image": 5}', 400, "expected a JSON object"),
        (b'{"image": "hello"}', 400, "data URL"),
        (b'{"image": "data:image/png;base64,@@@"}', 400, "not valid base64"),
        (json.dumps({"image": data_url(b"not a png")}).encode(), 400, "not a readable PNG"),
        (json.dumps({"image": data_url(blank_png())}).encode(), 422, "no ink"),
        (json.dumps({"image": data_url(blank_png((3000, 8)))}).encode(), 413, "at most 2048"),
    ],
    ids=[
        "bad json",
        "bad utf-8",
        "list",
        "number",
        "not a data url",
        "bad base64",
        "not an image",
        "blank",
        "too wide",
    ],
)
def test_bad_requests_get_a_json_error(server, body, status, message) -> None:
    got, content_type, answer = request(server, "POST", "/api/predict", body)
    assert got == status
    assert content_type == "application/json"
    assert message in json.loads(answer)["error"]


def test_oversized_and_unsized_bodies_are_refused_unread(server) -> None:
    host, port = server.server_address[:2]
    for headers, status in (({"Content-Length": str(10**9)}, 413), ({}, 411)):
        connection = http.client.HTTPConnection(host, port, timeout=30)
        connection.putrequest("POST", "/api/predict")
        for key, value in headers.items():
            connection.putheader(key, value)
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == status
        assert "error" in json.loads(response.read())
        connection.close()


def test_unknown_paths_are_404(server) -> None:
    assert request(server, "GET", "/etc/passwd")[0] == 404
    assert request(server, "POST", "/api/other", b"{}")[0] == 404


def test_the_server_still_answers_after_errors(server) -> None:
    request(server, "POST", "/api/predict", b"{broken")
    image, label = well_read_test_digits(1)[0]
    status, answer = post_json(server, {"image": data_url(drawn_digit_png(image))})
    assert status == 200 and answer["digit"] == label
