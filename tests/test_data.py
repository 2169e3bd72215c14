"""Tests for tinygrad_mnist.data: IDX parsing, finding and downloading files, sample, batching.

Downloads only ever talk to HTTP servers on 127.0.0.1 started here; the real-MNIST tests read
../shared/data/mnist and skip when it is absent.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygrad_mnist import data
from tinygrad_mnist.data import (
    MNIST,
    DownloadError,
    MNISTFormatError,
    batches,
    limit_per_digit,
    load_mnist,
    load_sample,
    preprocess,
)

REAL_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
needs_real_mnist = pytest.mark.skipif(
    not (REAL_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"real MNIST files not found at {REAL_MNIST}",
)

# ---------------------------------------------------------------- tiny IDX files


def idx_images(images: np.ndarray, magic: int = 2051, count: int | None = None) -> bytes:
    """IDX image bytes for uint8 images (N, rows, cols); header fields can be forced."""
    n, rows, cols = images.shape
    header = struct.pack(">IIII", magic, n if count is None else count, rows, cols)
    return header + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray, magic: int = 2049, count: int | None = None) -> bytes:
    """IDX label bytes for uint8 labels (N,); header fields can be forced."""
    header = struct.pack(">II", magic, len(labels) if count is None else count)
    return header + labels.astype(np.uint8).tobytes()


def tiny_mnist(n_train: int = 20, n_test: int = 10, seed: int = 0) -> MNIST:
    """A random MNIST-shaped data set with n_train / n_test examples."""
    rng = np.random.default_rng(seed)
    return MNIST(
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    )


def mnist_files(mnist: MNIST) -> dict[str, bytes]:
    """The four IDX files of ``mnist``, uncompressed, by name (no .gz)."""
    return {
        data.TRAIN_IMAGES: idx_images(mnist.train_images),
        data.TRAIN_LABELS: idx_labels(mnist.train_labels),
        data.TEST_IMAGES: idx_images(mnist.test_images),
        data.TEST_LABELS: idx_labels(mnist.test_labels),
    }


def gz_files(mnist: MNIST) -> dict[str, bytes]:
    """The four files gzipped, by name with .gz, as a mirror serves them."""
    return {name + ".gz": gzip.compress(raw, mtime=0) for name, raw in mnist_files(mnist).items()}


def write_folder(folder: Path, mnist: MNIST, gz: bool = True) -> Path:
    """Write the four files of ``mnist`` into ``folder`` (gzipped or raw)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, raw in mnist_files(mnist).items():
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return folder


def content_checksums(mnist: MNIST) -> dict[str, str]:
    """The SHA-256 of the content of the four files of ``mnist``, by name (no .gz)."""
    return {name: hashlib.sha256(raw).hexdigest() for name, raw in mnist_files(mnist).items()}


def assert_same(a: MNIST, b: MNIST) -> None:
    for field in MNIST._fields:
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == np.uint8, field
        np.testing.assert_array_equal(x, y, err_msg=field)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the user's environment, cache or the real mirrors."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TINYGRAD_MNIST_DATA", raising=False)
    monkeypatch.delenv("TINYGRAD_MNIST_MIRRORS", raising=False)
    monkeypatch.setattr(data, "DEFAULT_MIRRORS", ())  # any use of the defaults fails loudly
    monkeypatch.setattr(data, "STALL_TIMEOUT", 2.0)  # no download test waits long
    monkeypatch.setattr(data, "DEADLINE", 5.0)
    monkeypatch.setattr(data, "MIN_SPEED", 1e12)


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_parses_tiny_idx_files(tmp_path: Path, gz: bool) -> None:
    mnist = tiny_mnist(n_train=7, n_test=3)
    loaded = load_mnist(root=write_folder(tmp_path, mnist, gz=gz), download=False)
    assert_same(loaded, mnist)
    assert loaded.train_images.shape == (7, 28, 28) and loaded.test_labels.shape == (3,)
    assert loaded.train_images.flags.writeable


def test_accepts_mixed_gzip_and_raw_and_misnamed_gz(tmp_path: Path) -> None:
    mnist = tiny_mnist()
    files = mnist_files(mnist)
    (tmp_path / data.TRAIN_IMAGES).write_bytes(files[data.TRAIN_IMAGES])
    # A browser may have gunzipped the file but kept the .gz name: detection is by magic bytes.
    (tmp_path / (data.TRAIN_LABELS + ".gz")).write_bytes(files[data.TRAIN_LABELS])
    (tmp_path / (data.TEST_IMAGES + ".gz")).write_bytes(gzip.compress(files[data.TEST_IMAGES]))
    (tmp_path / data.TEST_LABELS).write_bytes(gzip.compress(files[data.TEST_LABELS]))
    assert_same(load_mnist(root=tmp_path, download=False), mnist)


def test_accepts_empty_splits(tmp_path: Path) -> None:
    loaded = load_mnist(root=write_folder(tmp_path, tiny_mnist(0, 0)), download=False)
    assert loaded.train_images.shape == (0, 28, 28) and loaded.test_labels.shape == (0,)


def _corrupt_cases() -> list:
    imgs = np.zeros((4, 28, 28), np.uint8)
    labels = np.arange(4, dtype=np.uint8)
    good_gz = gzip.compress(idx_images(imgs))
    return [
        # (file to replace, its new bytes, a phrase the message must contain)
        (data.TRAIN_IMAGES, idx_images(imgs, magic=2049), "wrong magic number 2049"),
        (data.TRAIN_LABELS, idx_labels(labels, magic=2051), "wrong magic number 2051"),
        (data.TEST_IMAGES, idx_images(imgs, magic=1234), "wrong magic number 1234"),
        (
            data.TRAIN_IMAGES,
            idx_images(imgs)[:1000],
            "expected 3136 bytes of pixel data from the header (4 images of 28x28), found 984",
        ),
        (data.TRAIN_IMAGES, idx_images(imgs) + b"\0", "found 3137"),
        (data.TRAIN_IMAGES, idx_images(imgs)[:10], "truncated header"),
        (data.TRAIN_LABELS, idx_labels(labels)[:5], "truncated header"),
        (data.TRAIN_IMAGES, idx_images(imgs, count=5), "(5 images of 28x28)"),
        (data.TRAIN_LABELS, idx_labels(labels, count=3), "expected 3 bytes of label data"),
        (data.TRAIN_IMAGES, idx_images(np.zeros((4, 27, 28), np.uint8)), "27x28"),
        (data.TRAIN_LABELS, idx_labels(np.array([1, 2, 10, 3])), "label 2 is 10"),
        (data.TRAIN_IMAGES, b"\x1f\x8b" + b"not gzip at all" * 10, "not a valid gzip file"),
        (data.TRAIN_IMAGES, good_gz[: len(good_gz) // 2], "not a valid gzip file"),
        (data.TRAIN_IMAGES, b"", "truncated header"),
    ]


@pytest.mark.parametrize("name, content, phrase", _corrupt_cases())
def test_corrupt_files_raise_format_error_naming_the_file(
    tmp_path: Path, name: str, content: bytes, phrase: str
) -> None:
    mnist = MNIST(
        np.zeros((4, 28, 28), np.uint8),
        np.arange(4, dtype=np.uint8),
        np.zeros((4, 28, 28), np.uint8),
        np.arange(4, dtype=np.uint8),
    )
    write_folder(tmp_path, mnist, gz=False)
    (tmp_path / name).write_bytes(content)
    with pytest.raises(MNISTFormatError) as info:
        load_mnist(root=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / name) in message
    assert phrase in message
    assert isinstance(info.value, ValueError)


def test_image_and_label_counts_must_agree(tmp_path: Path) -> None:
    mnist = tiny_mnist(n_train=6)
    mnist = mnist._replace(train_labels=mnist.train_labels[:5])
    write_folder(tmp_path, mnist)
    with pytest.raises(MNISTFormatError, match="has 6 images but .* has 5 labels") as info:
        load_mnist(root=tmp_path, download=False)
    assert str(tmp_path / (data.TRAIN_IMAGES + ".gz")) in str(info.value)
    assert str(tmp_path / (data.TRAIN_LABELS + ".gz")) in str(info.value)


# ---------------------------------------------------------------- where files are looked for


def test_root_then_env_then_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    in_root = write_folder(tmp_path / "root", tiny_mnist(1, 1, seed=1))
    in_env = write_folder(tmp_path / "env", tiny_mnist(2, 2, seed=2))
    write_folder(tmp_path / "xdg-cache" / "tinygrad_mnist", tiny_mnist(3, 3, seed=3))
    monkeypatch.setattr(data, "CONTENT_CHECKSUMS", content_checksums(tiny_mnist(3, 3, seed=3)))
    assert len(load_mnist(download=False).train_images) == 3
    monkeypatch.setenv("TINYGRAD_MNIST_DATA", str(in_env))
    assert len(load_mnist(download=False).train_images) == 2
    assert len(load_mnist(root=in_root, download=False).train_images) == 1
    assert len(load_mnist(root=str(in_root), download=False).train_images) == 1


def test_incomplete_folder_is_skipped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = write_folder(tmp_path / "root", tiny_mnist(1, 1))
    (root / (data.TEST_LABELS + ".gz")).unlink()
    monkeypatch.setenv("TINYGRAD_MNIST_DATA", str(write_folder(tmp_path / "env", tiny_mnist(2, 2))))
    assert len(load_mnist(root=root, download=False).train_images) == 2


def test_cache_defaults_to_home_dot_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME")
    write_folder(tmp_path / "home" / ".cache" / "tinygrad_mnist", tiny_mnist(4, 4))
    monkeypatch.setattr(data, "CONTENT_CHECKSUMS", content_checksums(tiny_mnist(4, 4)))
    assert len(load_mnist(download=False).train_images) == 4


def test_missing_root_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope"))):
        load_mnist(root=tmp_path / "nope")


def test_missing_files_without_download_says_where_it_looked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TINYGRAD_MNIST_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(root=tmp_path, download=False)
    message = str(info.value)
    for place in (tmp_path, tmp_path / "env", tmp_path / "xdg-cache" / "tinygrad_mnist"):
        assert f"  {place}\n" in message
    assert "train-images-idx3-ubyte" in message and "download=True" in message
    assert list(tmp_path.iterdir()) == []  # nothing created, nothing downloaded


# ---------------------------------------------------------------- downloading from local mirrors


FLOOD = 200 << 20  # what a flooding mirror offers to send: 200 MiB


class Mirror:
    """An HTTP server on 127.0.0.1 serving ``files``, in one of these ways (``mode``):

    ok; 404; truncate (announces the right length, sends half, hangs up); stall (sends the
    headers and one byte, then nothing); trickle (a byte every 50 ms); flood (no Content-Length,
    then up to FLOOD bytes); announce-flood (the same, announcing FLOOD bytes). ``requests``
    lists the files asked for, ``sent`` the bytes a flood got out.
    """

    def __init__(self, files: dict[str, bytes], mode: str = "ok") -> None:
        self.files = files
        self.mode = mode
        self.requests: list[str] = []
        self.sent = 0
        self.stopping = threading.Event()  # set on close: stalling and trickling answers end
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                name = self.path.rsplit("/", 1)[-1]
                mirror.requests.append(name)
                body = mirror.files.get(name)
                if body is None or mirror.mode == "404":
                    self.send_error(404)
                    return
                self.close_connection = True
                try:
                    mirror.answer(self, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up, as it should on a bad mirror

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mnist/"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def answer(self, handler: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        """Send ``body`` the way ``mode`` says."""
        handler.send_response(200)
        if self.mode != "flood":
            length = FLOOD if self.mode == "announce-flood" else len(body)
            handler.send_header("Content-Length", str(length))
        handler.end_headers()
        out = handler.wfile
        if self.mode == "ok":
            out.write(body)
        elif self.mode == "truncate":
            out.write(body[: len(body) // 2])
        elif self.mode == "stall":
            out.write(body[:1])
            self.stopping.wait(30)
        elif self.mode == "trickle":
            for i in range(len(body)):
                out.write(body[i : i + 1])
                if self.stopping.wait(0.05):
                    break
        elif self.mode in ("flood", "announce-flood"):
            block = bytes(1 << 16)
            while self.sent < FLOOD and not self.stopping.is_set():
                out.write(block)
                self.sent += len(block)

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirrors() -> Iterator:
    """A factory for local mirrors, all shut down after the test."""
    started: list[Mirror] = []

    def start(files: dict[str, bytes], mode: str = "ok") -> Mirror:
        started.append(Mirror(files, mode))
        return started[-1]

    yield start
    for mirror in started:
        mirror.close()


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> tuple[MNIST, dict[str, bytes]]:
    """A tiny data set, its gzip files, and the tables of MNIST's checksums and sizes swapped
    for theirs (as if they were MNIST)."""
    mnist = tiny_mnist()
    files = gz_files(mnist)
    checksums = {name: hashlib.sha256(body).hexdigest() for name, body in files.items()}
    monkeypatch.setattr(data, "CHECKSUMS", checksums)
    monkeypatch.setattr(data, "SIZES", {name: len(body) for name, body in files.items()})
    monkeypatch.setattr(data, "CONTENT_CHECKSUMS", content_checksums(mnist))
    return mnist, files


def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def test_download_into_cache_then_reuse(tiny, mirrors, tmp_path: Path) -> None:
    mnist, files = tiny
    mirror = mirrors(files)
    assert_same(load_mnist(mirrors=[mirror.url]), mnist)
    cache = tmp_path / "xdg-cache" / "tinygrad_mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(files)
    for name, body in files.items():
        assert (cache / name).read_bytes() == body
    assert sorted(mirror.requests) == sorted(files)
    assert_same(load_mnist(mirrors=[dead_url()]), mnist)  # from the cache, no network
    assert len(mirror.requests) == 4


def test_download_into_root_and_only_missing_files(tiny, mirrors, tmp_path: Path) -> None:
    mnist, files = tiny
    root = tmp_path / "root"
    root.mkdir()
    (root / (data.TRAIN_LABELS + ".gz")).write_bytes(files[data.TRAIN_LABELS + ".gz"])
    mirror = mirrors(files)
    assert_same(load_mnist(root=root, mirrors=[mirror.url.rstrip("/")]), mnist)
    assert data.TRAIN_LABELS + ".gz" not in mirror.requests and len(mirror.requests) == 3
    assert sorted(p.name for p in root.iterdir()) == sorted(files)
    assert not (tmp_path / "xdg-cache").exists()


def test_mirrors_from_environment(tiny, mirrors, monkeypatch: pytest.MonkeyPatch) -> None:
    mnist, files = tiny
    mirror = mirrors(files)
    monkeypatch.setenv("TINYGRAD_MNIST_MIRRORS", f"{dead_url()}, {mirror.url}")
    assert_same(load_mnist(), mnist)
    assert len(mirror.requests) == 4


def test_checksum_mismatch_falls_through_to_next_mirror(tiny, mirrors, tmp_path: Path) -> None:
    mnist, files = tiny
    wrong = {name: body[:-1] + bytes([body[-1] ^ 1]) for name, body in files.items()}
    bad, good = mirrors(wrong), mirrors(files)
    assert_same(load_mnist(mirrors=[bad.url, good.url]), mnist)
    assert len(bad.requests) == 4 and len(good.requests) == 4
    cache = tmp_path / "xdg-cache" / "tinygrad_mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(files)


def test_all_mirrors_failing_lists_every_url(tiny, mirrors, tmp_path: Path) -> None:
    _, files = tiny
    wrong = {name: b"x" + body[1:] for name, body in files.items()}  # right size, wrong bytes
    urls = [dead_url(), mirrors(files, mode="404").url, mirrors(wrong).url]
    with pytest.raises(DownloadError) as info:
        load_mnist(root=tmp_path, mirrors=urls)
    message = str(info.value)
    assert isinstance(info.value, OSError)
    first = data.TRAIN_IMAGES + ".gz"
    for url in urls:
        assert url + first in message
    assert "HTTP 404" in message and "checksum mismatch" in message
    assert re.search(r"refused|Errno", message)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_transfer_leaves_nothing(tiny, mirrors, tmp_path: Path) -> None:
    _, files = tiny
    mirror = mirrors(files, mode="truncate")
    with pytest.raises(DownloadError, match="truncated transfer"):
        load_mnist(root=tmp_path, mirrors=[mirror.url])
    assert list(tmp_path.iterdir()) == []


def test_interrupted_transfer_then_next_mirror(tiny, mirrors, tmp_path: Path) -> None:
    mnist, files = tiny
    urls = [mirrors(files, mode="truncate").url, mirrors(files).url]
    assert_same(load_mnist(root=tmp_path, mirrors=urls), mnist)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)


def test_timeout_gives_up(tiny, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(data, "STALL_TIMEOUT", 0.2)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        outcome: list[BaseException | None] = []

        def attempt() -> None:
            try:
                load_mnist(root=tmp_path, mirrors=[url])
                outcome.append(None)
            except BaseException as e:
                outcome.append(e)

        worker = threading.Thread(target=attempt, daemon=True)
        worker.start()
        worker.join(timeout=10)  # fail rather than hang if the timeout is not applied
        assert not worker.is_alive(), "load_mnist did not give up on a silent server"
    assert isinstance(outcome[0], DownloadError) and "timed out" in str(outcome[0])
    assert list(tmp_path.iterdir()) == []


def test_keyboard_interrupt_cleans_up(
    tiny, mirrors, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    class InterruptedBar:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def __enter__(self) -> InterruptedBar:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def update(self, n: int) -> None:
            raise KeyboardInterrupt

    _, files = tiny
    monkeypatch.setattr(data, "tqdm", InterruptedBar)
    with pytest.raises(KeyboardInterrupt):
        load_mnist(root=tmp_path, mirrors=[mirrors(files).url])
    assert list(tmp_path.iterdir()) == []


def run_bounded(call: Callable[[], object], limit: float = 15.0) -> tuple[object, float]:
    """Run ``call()`` in a thread, failing the test if it has not returned after ``limit`` s.

    Returns what it returned (or the exception it raised) and the seconds it took.
    """
    outcome: list[object] = []

    def attempt() -> None:
        try:
            outcome.append(call())
        except BaseException as e:  # noqa: BLE001 (handed to the test)
            outcome.append(e)

    start = time.monotonic()
    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=limit)
    assert not worker.is_alive(), f"still running after {limit} s"
    return outcome[0], time.monotonic() - start


def damage(path: Path, how: str) -> None:
    """Damage a gzipped IDX file: "truncated" (half of it), or "changed" (one byte of its
    content flipped, in a valid gzip file: only the checksum can tell)."""
    body = path.read_bytes()
    if how == "truncated":
        path.write_bytes(body[: len(body) // 2])
    else:
        content = bytearray(gzip.decompress(body))
        content[-1] ^= 1
        path.write_bytes(gzip.compress(bytes(content)))


# ---------------------------------------------------------------- a damaged cache or folder


@pytest.mark.parametrize("how", ["truncated", "changed"])
def test_corrupt_cached_file_is_moved_aside_and_downloaded_again(
    tiny, mirrors, tmp_path: Path, how: str
) -> None:
    mnist, files = tiny
    mirror = mirrors(files)
    load_mnist(mirrors=[mirror.url])
    cache = tmp_path / "xdg-cache" / "tinygrad_mnist"
    name = data.TEST_IMAGES + ".gz"
    damage(cache / name, how)
    moved = rf"^{re.escape(str(cache / name))}: .*moved it aside to {re.escape(name)}\.corrupt"
    with pytest.warns(UserWarning, match=moved):
        assert_same(load_mnist(mirrors=[mirror.url]), mnist)
    assert mirror.requests[4:] == [name]
    assert (cache / name).read_bytes() == files[name]
    assert (cache / (name + ".corrupt")).is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same(load_mnist(mirrors=[dead_url()]), mnist)  # repaired for good


def test_corrupt_cached_file_without_download_is_an_error(tiny, mirrors, tmp_path: Path) -> None:
    _, files = tiny
    load_mnist(mirrors=[mirrors(files).url])
    path = tmp_path / "xdg-cache" / "tinygrad_mnist" / (data.TRAIN_LABELS + ".gz")
    damage(path, "changed")
    with pytest.raises(MNISTFormatError, match="SHA-256") as info:
        load_mnist(download=False)
    assert str(path) in str(info.value) and "download=True" in str(info.value)
    assert path.is_file() and not path.with_name(path.name + ".corrupt").exists()


def test_corrupt_cached_file_is_asked_for_again_after_a_failed_download(
    tiny, mirrors, tmp_path: Path
) -> None:
    mnist, files = tiny
    load_mnist(mirrors=[mirrors(files).url])
    name = data.TRAIN_IMAGES + ".gz"
    damage(tmp_path / "xdg-cache" / "tinygrad_mnist" / name, "truncated")
    offline = dead_url()
    with pytest.warns(UserWarning, match="moved it aside"), pytest.raises(DownloadError) as info:
        load_mnist(mirrors=[offline])
    assert info.value.name == name
    assert len(info.value.failures) == 1 and info.value.failures[0].startswith(offline + name)
    mirror = mirrors(files)
    assert_same(load_mnist(mirrors=[mirror.url]), mnist)  # the mirror is asked again
    assert mirror.requests == [name]


@pytest.mark.parametrize("how", ["truncated", "changed"])
@pytest.mark.parametrize("place", ["root", "env"])
def test_damaged_file_in_a_named_folder_is_an_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, how: str, place: str
) -> None:
    mnist = tiny_mnist()
    # these files hold as many examples as MNIST's (as far as the tables say), so they claim to
    # be MNIST and are checked by SHA-256 too
    counts = {name: len(array) for name, array in zip(data.FILES, mnist, strict=True)}
    monkeypatch.setattr(data, "COUNTS", counts)
    monkeypatch.setattr(data, "CONTENT_CHECKSUMS", content_checksums(mnist))
    folder = write_folder(tmp_path / "mine", mnist)
    assert_same(load_mnist(root=folder, download=False), mnist)
    path = folder / (data.TRAIN_LABELS + ".gz")
    damage(path, how)
    if place == "env":
        monkeypatch.setenv("TINYGRAD_MNIST_DATA", str(folder))
    with pytest.raises(MNISTFormatError) as info:
        load_mnist(root=folder if place == "root" else None, mirrors=[dead_url()])
    assert str(info.value).startswith(f"{path}: ")
    assert ("SHA-256" if how == "changed" else "not a valid gzip file") in str(info.value)
    assert not (tmp_path / "xdg-cache").exists()  # no download, no fallback to the cache


def test_named_folder_with_other_counts_is_checked_by_structure_only(tmp_path: Path) -> None:
    mnist = tiny_mnist()
    folder = write_folder(tmp_path, mnist)
    damage(folder / (data.TRAIN_LABELS + ".gz"), "changed")  # still digits 0-9
    loaded = load_mnist(root=folder, download=False)
    assert loaded.train_labels[-1] == mnist.train_labels[-1] ^ 1


# ---------------------------------------------------------------- bad mirrors


def test_stalled_mirror_is_cut_off_and_skipped_for_later_files(
    tiny, mirrors, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(data, "STALL_TIMEOUT", 0.3)
    mnist, files = tiny
    stalled, good = mirrors(files, mode="stall"), mirrors(files)
    urls = [stalled.url, good.url]
    loaded, seconds = run_bounded(lambda: load_mnist(root=tmp_path, mirrors=urls))
    assert_same(loaded, mnist)
    assert stalled.requests == [data.TRAIN_IMAGES + ".gz"]  # not asked for the other three
    assert seconds < 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)


def test_skipped_mirror_is_listed_in_the_error(
    tiny, mirrors, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(data, "STALL_TIMEOUT", 0.3)
    _, files = tiny
    first = data.TRAIN_IMAGES + ".gz"
    stalled, partial = mirrors(files, mode="stall"), mirrors({first: files[first]})
    error, _ = run_bounded(lambda: load_mnist(root=tmp_path, mirrors=[stalled.url, partial.url]))
    assert isinstance(error, DownloadError) and error.name == data.TRAIN_LABELS + ".gz"
    skipped, missing = error.failures
    assert skipped.startswith(stalled.url + error.name + ": skipped")
    assert "timed out: nothing received for 0.3 s (1 of" in skipped
    assert missing == f"{partial.url}{error.name}: HTTP 404 Not Found"
    assert sorted(p.name for p in tmp_path.iterdir()) == [first]


@pytest.mark.parametrize("min_speed", [1e12, 1000.0])
def test_trickling_mirror_is_cut_off_at_the_deadline(
    tiny, mirrors, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, min_speed: float
) -> None:
    # a byte every 50 ms never stalls; 20 bytes/s, far below MIN_SPEED, adds no time to speak of
    monkeypatch.setattr(data, "STALL_TIMEOUT", 0.3)
    monkeypatch.setattr(data, "DEADLINE", 0.6)
    monkeypatch.setattr(data, "MIN_SPEED", min_speed)
    _, files = tiny
    mirror = mirrors(files, mode="trickle")
    error, seconds = run_bounded(lambda: load_mnist(root=tmp_path, mirrors=[mirror.url]))
    assert isinstance(error, DownloadError)
    speed = re.escape(f"{min_speed:g}")
    expected = (
        r"timed out: too slow, \d+ of \d+ bytes in 0\.6\d* s \(a file gets 0\.6 s "
        rf"plus 1 s per {speed} bytes received\)"
    )
    assert re.search(expected, str(error)), str(error)
    assert 0.5 < seconds < 2.5
    assert list(tmp_path.iterdir()) == []


def test_steady_download_gets_time_for_every_byte(
    tiny, mirrors, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # the deadline alone is long past when the file completes, but bytes keep coming fast enough
    monkeypatch.setattr(data, "DEADLINE", 0.2)
    monkeypatch.setattr(data, "MIN_SPEED", 10.0)  # the mirror sends 20 bytes/s
    first = data.TRAIN_LABELS + ".gz"
    _, files = tiny
    mirror = mirrors({first: files[first][:12]}, mode="trickle")
    monkeypatch.setattr(data, "SIZES", {first: 12})
    monkeypatch.setattr(data, "CHECKSUMS", {first: hashlib.sha256(files[first][:12]).hexdigest()})
    down: dict[str, str] = {}
    start = time.monotonic()
    data._download(first, tmp_path, [mirror.url], down)
    assert time.monotonic() - start > 0.4
    assert (tmp_path / first).read_bytes() == files[first][:12] and not down


def test_deadline_shorter_than_the_stall_timeout_is_kept(
    tiny, mirrors, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(data, "STALL_TIMEOUT", 10.0)
    monkeypatch.setattr(data, "DEADLINE", 0.4)
    _, files = tiny
    mirror = mirrors(files, mode="stall")
    error, seconds = run_bounded(lambda: load_mnist(root=tmp_path, mirrors=[mirror.url]))
    assert isinstance(error, DownloadError) and "timed out" in str(error)
    assert seconds < 3.0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "mode, phrase",
    [
        ("flood", "too much data: the mirror sends more than"),
        ("announce-flood", f"wrong size: the mirror announces {FLOOD} bytes, expected"),
    ],
)
def test_flooding_mirror_is_not_read_past_the_expected_size(
    tiny, mirrors, tmp_path: Path, mode: str, phrase: str
) -> None:
    _, files = tiny
    mirror = mirrors(files, mode=mode)
    error, _ = run_bounded(lambda: load_mnist(root=tmp_path, mirrors=[mirror.url]))
    assert isinstance(error, DownloadError) and phrase in str(error)
    assert mirror.sent < FLOOD // 8  # what the socket buffers took, not the 200 MiB
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- temporary files


def finished_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(child.stdout)


@pytest.mark.parametrize("folder", ["cache", "root"])
def test_stale_part_files_are_removed(tiny, mirrors, tmp_path: Path, folder: str) -> None:
    mnist, files = tiny
    where = tmp_path / "xdg-cache" / "tinygrad_mnist" if folder == "cache" else tmp_path / "root"
    where.mkdir(parents=True)
    name = data.TRAIN_IMAGES + ".gz"
    dead = finished_pid()
    stale = [f".{name}.{dead}.abcd_123.part", f".{name}.k2j4h5g6.part"]  # killed; older version
    kept = [
        f".{name}.{os.getppid()}.abcd_123.part",  # a download still running
        f".notes.gz.{dead}.abcd_123.part",
        "mine.part",  # not MNIST downloads
    ]
    for part in stale + kept:
        (where / part).write_bytes(b"partial")
    root = where if folder == "root" else None
    assert_same(load_mnist(root=root, mirrors=[mirrors(files).url]), mnist)
    assert sorted(p.name for p in where.iterdir()) == sorted(kept + list(files))


def test_part_file_is_named_with_the_process_id(
    tiny, mirrors, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[str] = []

    class PeekingBar:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def __enter__(self) -> PeekingBar:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def update(self, n: int) -> None:
            seen.extend(p.name for p in tmp_path.iterdir() if p.name.endswith(".part"))

    mnist, files = tiny
    monkeypatch.setattr(data, "tqdm", PeekingBar)
    assert_same(load_mnist(root=tmp_path, mirrors=[mirrors(files).url]), mnist)
    assert len(set(seen)) == 4
    for part in seen:
        match = data.PART_NAME.match(part)
        assert match and match["pid"] == str(os.getpid()) and match["file"] in files
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)


def test_mirror_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="list of base URLs"):
        load_mnist(root=tmp_path, mirrors="http://127.0.0.1/")
    with pytest.raises(ValueError, match="empty"):
        load_mnist(root=tmp_path, mirrors=[])


def test_default_mirrors_are_https_and_skip_lecun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the real module constants
    assert len(data.DEFAULT_MIRRORS) >= 2
    assert all(m.startswith("https://") and m.endswith("/") for m in data.DEFAULT_MIRRORS)
    assert "yann.lecun.com" not in data.DEFAULT_MIRRORS[0]
    assert data.CHECKSUMS[data.TRAIN_IMAGES + ".gz"].startswith("440fcabf")


# ---------------------------------------------------------------- the real files


@pytest.fixture(scope="module")
def real_mnist() -> MNIST:
    if not (REAL_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST files not found at {REAL_MNIST}")
    return load_mnist(root=REAL_MNIST, download=False)


@needs_real_mnist
def test_real_mnist(real_mnist: MNIST) -> None:
    assert real_mnist.train_images.shape == (60000, 28, 28)
    assert real_mnist.train_labels.shape == (60000,)
    assert real_mnist.test_images.shape == (10000, 28, 28)
    assert real_mnist.test_labels.shape == (10000,)
    assert all(a.dtype == np.uint8 for a in real_mnist)
    train_counts = np.bincount(real_mnist.train_labels, minlength=10)
    test_counts = np.bincount(real_mnist.test_labels, minlength=10)
    assert train_counts.sum() == 60000 and test_counts.sum() == 10000
    assert train_counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert test_counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert real_mnist.train_images.max() == 255 and real_mnist.train_images.min() == 0


@needs_real_mnist
def test_real_checksums_match_the_tables() -> None:
    assert set(data.CHECKSUMS) == set(data.SIZES) == {name + ".gz" for name in data.FILES}
    for name, sha256 in data.CHECKSUMS.items():
        body = (REAL_MNIST / name).read_bytes()
        assert hashlib.sha256(body).hexdigest() == sha256, name
        assert len(body) == data.SIZES[name], name
        content = gzip.decompress(body)
        assert hashlib.sha256(content).hexdigest() == data.CONTENT_CHECKSUMS[name[:-3]], name
        assert struct.unpack(">I", content[4:8])[0] == data.COUNTS[name[:-3]], name


@needs_real_mnist
def test_sample_is_reproducible_from_real_mnist(real_mnist: MNIST) -> None:
    sample = load_sample()
    train = limit_per_digit(real_mnist.train_images, real_mnist.train_labels, 500, seed=0)
    test = limit_per_digit(real_mnist.test_images, real_mnist.test_labels, 100, seed=0)
    assert_same(sample, MNIST(*train, *test))


# ---------------------------------------------------------------- the bundled sample


def test_sample_shapes_dtypes_and_counts() -> None:
    sample = load_sample()
    assert isinstance(sample, MNIST)
    assert sample.train_images.shape == (5000, 28, 28)
    assert sample.train_labels.shape == (5000,)
    assert sample.test_images.shape == (1000, 28, 28)
    assert sample.test_labels.shape == (1000,)
    assert all(a.dtype == np.uint8 for a in sample)
    assert np.bincount(sample.train_labels, minlength=10).tolist() == [500] * 10
    assert np.bincount(sample.test_labels, minlength=10).tolist() == [100] * 10
    assert sample.train_images.max() == 255 and sample.train_images.min() == 0
    assert 0.08 < sample.train_images.mean() / 255 < 0.2  # real digits: mostly background


def test_sample_file_is_small_and_documented() -> None:
    assert data.SAMPLE_PATH.stat().st_size < 2_000_000
    readme = (data.SAMPLE_PATH.parent / "README.md").read_text()
    assert "CC BY-SA 3.0" in readme and "LeCun" in readme and "seed=0" in readme


# ---------------------------------------------------------------- limit_per_digit


def test_limit_per_digit_counts_order_and_seed() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 500).astype(np.uint8)
    images = np.arange(500)  # each "image" is its original index
    picked, picked_labels = limit_per_digit(images, labels, 7)
    assert np.bincount(picked_labels, minlength=10).max() == 7
    assert np.all(np.diff(picked) > 0)  # original order kept
    np.testing.assert_array_equal(labels[picked], picked_labels)
    again, _ = limit_per_digit(images, labels, 7)
    np.testing.assert_array_equal(picked, again)
    other, _ = limit_per_digit(images, labels, 7, seed=1)
    assert not np.array_equal(picked, other)


def test_limit_per_digit_keeps_everything_of_rare_digits() -> None:
    labels = np.array([0, 0, 0, 1, 2, 2], np.uint8)
    images = np.zeros((6, 28, 28), np.uint8)
    out_images, out_labels = limit_per_digit(images, labels, 2)
    assert out_labels.tolist().count(0) == 2
    assert out_labels.tolist().count(1) == 1 and out_labels.tolist().count(2) == 2
    assert out_images.shape == (5, 28, 28)
    assert len(limit_per_digit(images, labels, 100)[1]) == 6


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_limit_per_digit_rejects_bad_n(n) -> None:
    with pytest.raises(ValueError, match="n must be"):
        limit_per_digit(np.zeros((3, 28, 28)), np.zeros(3), n)


def test_limit_per_digit_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(3, 28, 28\).*\(4,\)"):
        limit_per_digit(np.zeros((3, 28, 28)), np.zeros(4), 1)
    with pytest.raises(ValueError, match="1-D"):
        limit_per_digit(np.zeros((3, 28, 28)), np.zeros((3, 1)), 1)


# ---------------------------------------------------------------- preprocess


@pytest.mark.parametrize("shape", [(5, 28, 28), (5, 1, 28, 28), (5, 784)])
def test_preprocess_shapes_and_scale(shape: tuple[int, ...]) -> None:
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    x = preprocess(images)
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x.ravel(), images.ravel() / 255.0, rtol=1e-6)
    z = preprocess(images, normalize=True)
    assert z.dtype == np.float32
    np.testing.assert_allclose(
        z, (images.reshape(5, 1, 28, 28) / 255 - 0.1307) / 0.3081, rtol=1e-5, atol=1e-5
    )


def test_preprocess_normalized_sample_is_roughly_standard() -> None:
    z = preprocess(load_sample().train_images, normalize=True)
    assert abs(z.mean()) < 0.1 and abs(z.std() - 1) < 0.1


@pytest.mark.parametrize("shape", [(28, 28), (5, 28, 27), (5, 3, 28, 28), (5, 783), (5,)])
def test_preprocess_rejects_other_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=re.escape(str(shape))):
        preprocess(np.zeros(shape, np.uint8))


# ---------------------------------------------------------------- batches


def test_batches_in_order_without_shuffle() -> None:
    x, y = np.arange(10).reshape(10, 1) * 10, np.arange(10)
    got = list(batches(x, y, 4, shuffle=False))
    assert [b[1].tolist() for b in got] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all(np.array_equal(bx[:, 0], by * 10) for bx, by in got)
    assert [len(b[1]) for b in batches(x, y, 4, shuffle=False, drop_last=True)] == [4, 4]


def test_batches_shuffle_is_seeded_and_pairs_stay_together() -> None:
    x, y = np.arange(100) * 2, np.arange(100)
    first = [by.tolist() for _, by in batches(x, y, 32, seed=3)]
    assert first == [by.tolist() for _, by in batches(x, y, 32, seed=3)]
    assert first != [by.tolist() for _, by in batches(x, y, 32, seed=4)]
    assert sum(first, []) != list(range(100))
    assert all(np.array_equal(bx, by * 2) for bx, by in batches(x, y, 32, seed=3))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 60),
    batch_size=st.integers(1, 70),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
)
def test_batches_cover_each_example_once(
    n: int, batch_size: int, shuffle: bool, drop_last: bool
) -> None:
    y = np.arange(n)
    got = [
        by for _, by in batches(y * 3, y, batch_size, shuffle=shuffle, seed=0, drop_last=drop_last)
    ]
    assert all(len(b) == batch_size for b in got[:-1])
    seen = np.concatenate(got) if got else np.zeros(0, int)
    if drop_last:
        assert len(seen) == n - n % batch_size and all(len(b) == batch_size for b in got)
    else:
        assert sorted(seen.tolist()) == list(range(n))


@pytest.mark.parametrize("batch_size", [0, -3, 2.0, True, None])
def test_batches_rejects_bad_batch_size_when_called(batch_size) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        batches(np.zeros(4), np.zeros(4), batch_size)  # no iteration needed


def test_batches_rejects_length_mismatch_when_called() -> None:
    with pytest.raises(ValueError, match=r"\(4,\).*\(5,\)"):
        batches(np.zeros(4), np.zeros(5), 2)
