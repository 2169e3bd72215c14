"""A local web page to draw a digit on and watch the network read it (`tinygrad-mnist serve`).

The server is the standard library's `http.server`; the page is one file of HTML, CSS and
JavaScript shipped inside the package (`web/draw.html`), with no external assets. Routes:

    GET  /              the page
    GET  /api/model     {"model", "weights", "normalize", "test_accuracy"}
    POST /api/predict   {"image": "data:image/png;base64,..."} (the drawing, any size up to
                        MAX_SIDE pixels a side) -> {"digit", "probabilities" (10), "input" (28x28,
                        what the network sees, 0-1), "saliency" (28x28, -1..1), "saliency_scale"}

Bad requests get a JSON error ({"error": "..."}) with status 400 (bad JSON or image), 404,
411 (no length), 413 (too large) or 422 (an image with no ink), never a traceback.

The saliency map is the gradient of the predicted digit's log-probability with respect to each
input pixel, computed by the package's own autograd: where it is positive, more ink would make
the network surer of its answer; where negative, less sure.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import signal
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import numpy as np

from . import data, nn
from .tensor import Tensor

__all__ = ["DigitServer", "Reading", "read_digit", "make_server", "serve"]

MAX_BODY = 4 * 1024 * 1024  # bytes of JSON accepted in one request
MAX_SIDE = 2048  # pixels: larger drawings are refused before they are decoded
DATA_URL_PREFIXES = ("data:image/png;base64,", "data:image/jpeg;base64,")


@dataclass
class Reading:
    """What the network makes of one prepared image.

    digit: the predicted class; probabilities (10,) sum to 1; saliency (28, 28) is the gradient
    of log p(digit) with respect to the network's input pixels.
    """

    digit: int
    probabilities: np.ndarray
    saliency: np.ndarray


def read_digit(model: nn.Module, x: np.ndarray) -> Reading:
    """Classify one input x (1, 1, 28, 28) and take the gradient of the winner's log-probability.

    The model's outputs may be logits or log-probabilities: log_softmax turns either into
    log-probabilities. Runs in eval mode (the model's mode is restored afterwards); the
    gradient flows to the input only, so parameters' .grad are left as they were.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.shape != (1, 1, 28, 28):
        raise ValueError(f"read_digit: expected one input of shape (1, 1, 28, 28), got {x.shape}")
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    try:
        for parameter, _ in flags:
            parameter.requires_grad = False
        image = Tensor(x, requires_grad=True)
        log_probabilities = model(image).log_softmax(1)
        digit = int(np.argmax(log_probabilities.data[0]))
        log_probabilities[0, digit].backward()
        saliency = image.grad
        assert saliency is not None  # the input requires grad and backward just ran
    finally:
        for parameter, flag in flags:
            parameter.requires_grad = flag
        model.train(was_training)
    return Reading(
        digit=digit,
        probabilities=np.exp(log_probabilities.data[0].astype(np.float64)),
        saliency=saliency[0, 0].astype(np.float64),
    )


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a message for the page."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


class DigitServer(ThreadingHTTPServer):
    """An HTTP server that reads drawn digits with `model`, one request at a time.

    `info` is shown on the page (model name, weights file, test accuracy); `normalize` must be
    what the model was trained with (see `data.preprocess`).
    """

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], model: nn.Module, normalize: bool, info: dict | None = None
    ):
        super().__init__(address, _Handler)
        self.model = model
        self.normalize = normalize
        self.info = dict(info or {}, normalize=normalize)
        self.lock = threading.Lock()  # the model and the grad mode are shared: one at a time
        self.page = (resources.files(__package__) / "web" / "draw.html").read_bytes()

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    def predict(self, request: object) -> dict:
        """The JSON answer to a POST /api/predict body (already parsed)."""
        image = _decode_image(request)
        try:
            pixels = data.prepare_image(image)  # 0-1, what the page shows
        except ValueError as err:
            raise RequestError(
                HTTPStatus.UNPROCESSABLE_ENTITY, str(err).removeprefix("prepare_image: ")
            ) from None
        x = data.preprocess(np.rint(pixels * 255).astype(np.uint8), normalize=self.normalize)
        start = time.perf_counter()
        with self.lock:
            reading = read_digit(self.model, x)
        scale = float(np.abs(reading.saliency).max())
        return {
            "digit": reading.digit,
            "probabilities": [round(float(p), 5) for p in reading.probabilities],
            "input": np.round(pixels[0, 0], 3).tolist(),
            "saliency": np.round(reading.saliency / (scale or 1.0), 3).tolist(),
            "saliency_scale": scale,
            "milliseconds": round(1000 * (time.perf_counter() - start), 1),
        }


def _decode_image(request: object):
    """The PIL image inside a request {"image": "data:image/png;base64,..."}, size-checked."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(request, dict) or not isinstance(request.get("image"), str):
        raise RequestError(
            HTTPStatus.BAD_REQUEST, 'expected a JSON object {"image": "data:image/png;base64,..."}'
        )
    text = request["image"]
    prefix = next((p for p in DATA_URL_PREFIXES if text.startswith(p)), None)
    if prefix is None:
        raise RequestError(
            HTTPStatus.BAD_REQUEST,
            "image must be a data URL starting with data:image/png;base64, "
            "or data:image/jpeg;base64,",
        )
    try:
        raw = base64.b64decode(text[len(prefix) :], validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(HTTPStatus.BAD_REQUEST, "image is not valid base64") from None
    try:
        image = Image.open(io.BytesIO(raw))
        if max(image.size) > MAX_SIDE:
            raise RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"image is {image.size[0]}x{image.size[1]} pixels; at most {MAX_SIDE} a side",
            )
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
        raise RequestError(HTTPStatus.BAD_REQUEST, "image is not a readable PNG or JPEG") from None
    return image


class _Handler(BaseHTTPRequestHandler):
    server: DigitServer
    server_version = "tinygrad-mnist"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's name)
        pass  # quiet: the terminal shows the URL and nothing per request

    def do_GET(self) -> None:
        route = self.path.split("?", 1)[0]
        if route in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
        elif route == "/api/model":
            self._send_json(HTTPStatus.OK, self.server.info)
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no page at {route}"})

    def do_POST(self) -> None:
        try:
            if self.path.split("?", 1)[0] != "/api/predict":
                raise RequestError(HTTPStatus.NOT_FOUND, f"no endpoint at {self.path}")
            self._send_json(HTTPStatus.OK, self.server.predict(self._read_json()))
        except RequestError as err:
            self._send_json(err.status, {"error": str(err)})

    def _read_json(self) -> object:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
        if int(length) > MAX_BODY:
            self.close_connection = True  # the body is not read
            raise RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request of {int(length)} bytes; at most {MAX_BODY}",
            )
        body = self.rfile.read(int(length))
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise RequestError(
                HTTPStatus.BAD_REQUEST, f"request is not valid JSON ({err})"
            ) from None

    def _send_json(self, status: HTTPStatus, obj: object) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)


def make_server(
    model: nn.Module,
    host: str = "127.0.0.1",
    port: int = 8000,
    normalize: bool = True,
    info: dict | None = None,
) -> DigitServer:
    """A DigitServer bound to host:port (port 0: any free port), not yet serving.

    Call `serve_forever()` on it (in a thread, for tests) and `shutdown()` / `server_close()`.
    Raises OSError when the address cannot be bound.
    """
    return DigitServer((host, port), model, normalize, info)


def serve(
    model: nn.Module,
    host: str = "127.0.0.1",
    port: int = 8000,
    normalize: bool = True,
    info: dict | None = None,
    weights: Path | None = None,
) -> None:
    """Serve the drawing page until Ctrl-C (or SIGTERM); prints the URL first.

    Raises OSError when host:port cannot be bound (in use, not an address of this computer).
    """
    server = make_server(model, host, port, normalize, info)
    where = f" ({info.get('model', 'model')} from {weights})" if info and weights else ""
    print(f"serving the draw-a-digit page{where} at {server.url} (Ctrl-C to stop)", flush=True)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C even when the shell started us with SIGINT ignored; SIGTERM stops as cleanly
        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()
        for number, handler in previous.items():
            signal.signal(number, handler)


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt
