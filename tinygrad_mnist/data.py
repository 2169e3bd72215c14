"""MNIST: IDX parsing, download with checksum and cache, the bundled sample, preprocessing, batches,
and preparing one's own digit images (`prepare_image`, which reads them with Pillow).

This module imports nothing from the rest of the package, so it can be read (and used) alone.

The four MNIST files are IDX files, usually gzip-compressed. Their big-endian header is
``magic, count`` for labels (magic 2049) and ``magic, count, rows, cols`` for images (magic 2051),
followed by one unsigned byte per label or pixel.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import re
import socket
import struct
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm  # a widget in Jupyter (with ipywidgets), text in a terminal

__all__ = [
    "CHECKSUMS",
    "DEFAULT_MIRRORS",
    "DownloadError",
    "MNIST",
    "MNISTFormatError",
    "batches",
    "limit_per_digit",
    "load_mnist",
    "load_sample",
    "prepare_image",
    "preprocess",
]

# The four files, without the ".gz" that the mirrors add.
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# What the real files are. These tables are looked up when used, so tests can swap in tiny files.
# SHA-256 and size in bytes of the gzip files that the mirrors serve:
CHECKSUMS: dict[str, str] = {
    TRAIN_IMAGES + ".gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    TRAIN_LABELS + ".gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    TEST_IMAGES + ".gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    TEST_LABELS + ".gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
SIZES: dict[str, int] = {
    TRAIN_IMAGES + ".gz": 9_912_422,
    TRAIN_LABELS + ".gz": 28_881,
    TEST_IMAGES + ".gz": 1_648_877,
    TEST_LABELS + ".gz": 4_542,
}
# SHA-256 of their content (the IDX bytes, gunzipped), which is what local files are checked by,
# and the number of images or labels each holds:
CONTENT_CHECKSUMS: dict[str, str] = {
    TRAIN_IMAGES: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    TRAIN_LABELS: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    TEST_IMAGES: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    TEST_LABELS: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
COUNTS: dict[str, int] = {
    TRAIN_IMAGES: 60_000,
    TRAIN_LABELS: 60_000,
    TEST_IMAGES: 10_000,
    TEST_LABELS: 10_000,
}

# yann.lecun.com is left out: it answers 403 to scripts.
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

# Download limits (module settings, so tests can shrink them). A mirror gets STALL_TIMEOUT
# seconds to connect, to answer and to send each next piece; a file gets DEADLINE seconds plus
# one second per MIN_SPEED bytes received, so a steady download is never cut off (train images:
# at most about 220 s), while a trickling mirror is after about DEADLINE seconds.
STALL_TIMEOUT = 15.0
DEADLINE = 20.0
MIN_SPEED = 50_000  # bytes per second
CHUNK = 1 << 16

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
ROWS = COLS = 28
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

SAMPLE_PATH = Path(__file__).resolve().parent / "sample" / "mnist_sample.npz"

# A download in progress: ".NAME.gz.PID.RANDOM.part", PID being the downloading process's id
# (older versions wrote ".NAME.gz.RANDOM.part").
PART_NAME = re.compile(r"^\.(?P<file>.+\.gz)\.(?:(?P<pid>\d+)\.)?[a-z0-9_]{8}\.part$")


class MNIST(NamedTuple):
    """The MNIST splits: images (N, 28, 28) uint8 with 0 = background, labels (N,) uint8 in 0-9."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


class MNISTFormatError(ValueError):
    """A local MNIST file is not a well-formed IDX file of the expected kind, or is damaged."""


class DownloadError(OSError):
    """No mirror delivered a file of the right size and checksum.

    ``name`` is the file, ``failures`` one "URL: reason" line per mirror tried or skipped.
    """

    def __init__(self, message: str, name: str = "", failures: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.name = name
        self.failures = list(failures)


class _TransferError(OSError):
    """A download went wrong in a way noticed here (size, checksum); the message says it all."""


class _TransferTimeout(_TransferError, TimeoutError):
    """A download cut off by the stall timeout or by the file's deadline."""


# ---------------------------------------------------------------- IDX parsing


def _read_bytes(path: Path) -> bytes:
    """The contents of ``path``, gunzipped when it starts with the gzip magic bytes 1f 8b."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise MNISTFormatError(f"{path}: not a valid gzip file ({e})") from e


def _parse_idx_images(path: Path, data: bytes) -> np.ndarray:
    """Parse the bytes of an IDX image file (magic 2051) read from ``path``: (N, 28, 28) uint8."""
    if len(data) < 16:
        raise MNISTFormatError(
            f"{path}: truncated header: an IDX image file starts with 16 header bytes, "
            f"found {len(data)} bytes in all"
        )
    magic, count, rows, cols = struct.unpack(">IIII", data[:16])
    _check_magic(path, magic, IMAGE_MAGIC)
    if (rows, cols) != (ROWS, COLS):
        raise MNISTFormatError(
            f"{path}: header says images are {rows}x{cols}, MNIST images are {ROWS}x{COLS}"
        )
    expected = count * rows * cols
    found = len(data) - 16
    if found != expected:
        raise MNISTFormatError(
            f"{path}: expected {expected} bytes of pixel data from the header "
            f"({count} images of {rows}x{cols}), found {found}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols).copy()


def _parse_idx_labels(path: Path, data: bytes) -> np.ndarray:
    """Parse the bytes of an IDX label file (magic 2049) read from ``path``: (N,) uint8, 0-9."""
    if len(data) < 8:
        raise MNISTFormatError(
            f"{path}: truncated header: an IDX label file starts with 8 header bytes, "
            f"found {len(data)} bytes in all"
        )
    magic, count = struct.unpack(">II", data[:8])
    _check_magic(path, magic, LABEL_MAGIC)
    found = len(data) - 8
    if found != count:
        raise MNISTFormatError(
            f"{path}: expected {count} bytes of label data from the header "
            f"({count} labels), found {found}"
        )
    labels = np.frombuffer(data, dtype=np.uint8, offset=8).copy()
    if count and labels.max() > 9:
        bad = int(np.flatnonzero(labels > 9)[0])
        raise MNISTFormatError(f"{path}: label {bad} is {labels[bad]}, MNIST labels are digits 0-9")
    return labels


def _check_magic(path: Path, magic: int, expected: int) -> None:
    """Raise MNISTFormatError unless ``magic`` is the IDX magic number ``expected``."""
    if magic == expected:
        return
    kinds = {IMAGE_MAGIC: "an image file", LABEL_MAGIC: "a label file"}
    what = kinds.get(magic, "not an MNIST IDX file")
    raise MNISTFormatError(
        f"{path}: wrong magic number {magic} (0x{magic:08x}, {what}), "
        f"expected {expected} (0x{expected:08x}, {kinds[expected]})"
    )


def _read_file(path: Path, name: str, strict: bool) -> np.ndarray:
    """Parse ``path``, which holds MNIST's file ``name`` (no .gz), and check it by SHA-256.

    strict (a file in the cache, which holds nothing but MNIST): the content must be MNIST's.
    Otherwise (a folder the user named, which may hold any number of examples) the content is
    checked when the file holds as many examples as MNIST's, that is when it claims to be it.
    """
    content = _read_bytes(path)
    images = name in (TRAIN_IMAGES, TEST_IMAGES)
    array = _parse_idx_images(path, content) if images else _parse_idx_labels(path, content)
    if strict or len(array) == COUNTS[name]:
        _check_content(path, name, content, f"{len(array)} {'images' if images else 'labels'}")
    return array


def _check_content(path: Path, name: str, content: bytes, holding: str) -> None:
    """Raise MNISTFormatError unless ``content``, read from ``path``, is MNIST's file ``name``."""
    digest = hashlib.sha256(content).hexdigest()
    expected = CONTENT_CHECKSUMS[name]
    if digest != expected:
        raise MNISTFormatError(
            f"{path}: damaged, or not MNIST's {name}: the SHA-256 of its content ({holding}, "
            f"{len(content)} bytes unzipped) is {digest}, expected {expected}"
        )


def _assemble(paths: dict[str, Path], arrays: dict[str, np.ndarray]) -> MNIST:
    """The MNIST tuple of the four parsed files; each split must have as many images as labels."""
    for images, labels in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)):
        if len(arrays[images]) != len(arrays[labels]):
            raise MNISTFormatError(
                f"{paths[images]} has {len(arrays[images])} images but {paths[labels]} has "
                f"{len(arrays[labels])} labels; they must agree"
            )
    return MNIST(*(arrays[name] for name in FILES))


def _load_folder(paths: dict[str, Path]) -> MNIST:
    """Parse the four files named in ``paths``, in a folder the user named, into an MNIST tuple."""
    return _assemble(
        paths, {name: _read_file(path, name, strict=False) for name, path in paths.items()}
    )


# ---------------------------------------------------------------- finding files


def _cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tinygrad_mnist``, or ``~/.cache/tinygrad_mnist``."""
    base = os.environ.get("XDG_CACHE_HOME")
    root = Path(base).expanduser() if base else Path.home() / ".cache"
    return root / "tinygrad_mnist"


def _find_file(folder: Path, name: str) -> Path | None:
    """``folder/name.gz`` or ``folder/name``, whichever exists first, else None."""
    for candidate in (folder / (name + ".gz"), folder / name):
        if candidate.is_file():
            return candidate
    return None


def _find_all(folder: Path) -> dict[str, Path] | None:
    """The paths of the four files in ``folder`` if all four are there, else None."""
    found = {name: _find_file(folder, name) for name in FILES}
    if any(path is None for path in found.values()):
        return None
    return found  # type: ignore[return-value]


def _user_folders(root: str | os.PathLike | None) -> list[Path]:
    """The folders the user named, in order: root, then $TINYGRAD_MNIST_DATA."""
    folders = []
    if root is not None:
        folders.append(Path(root).expanduser())
    env = os.environ.get("TINYGRAD_MNIST_DATA")
    if env:
        folders.append(Path(env).expanduser())
    return folders


def _read_cache(cache: Path, repair: bool) -> tuple[dict[str, Path], dict[str, np.ndarray]]:
    """The intact MNIST files in the cache folder: their paths and their parsed arrays, by name.

    A file that fails (truncated, damaged, not MNIST's) raises MNISTFormatError, or with
    ``repair`` is moved aside as NAME.corrupt with a warning, so that it is downloaded again.
    """
    paths: dict[str, Path] = {}
    arrays: dict[str, np.ndarray] = {}
    for name in FILES:
        path = _find_file(cache, name)
        if path is None:
            continue
        try:
            arrays[name] = _read_file(path, name, strict=True)
            paths[name] = path
        except MNISTFormatError as err:
            if not repair:
                raise MNISTFormatError(
                    f"{err} (in the cache; load_mnist(download=True) downloads it again)"
                ) from None
            _move_aside(path, err)
    return paths, arrays


def _move_aside(path: Path, reason: MNISTFormatError) -> None:
    """Rename the corrupt cached file ``path`` to NAME.corrupt (replacing an older one)."""
    aside = path.with_name(path.name + ".corrupt")
    os.replace(path, aside)
    warnings.warn(f"{reason}; moved it aside to {aside.name}, downloading it again", stacklevel=4)


def _process_running(pid: int) -> bool:
    """Whether a process with id ``pid`` runs on this machine (True when it cannot be told)."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it runs, as another user
    except (OverflowError, ValueError):
        return False  # no process can have that id
    return True


def _remove_stale_parts(folder: Path) -> None:
    """Delete the .part files of MNIST downloads in ``folder`` whose process no longer runs.

    Only names of the form PART_NAME for the four MNIST files are touched; a .part without a
    process id (from an older version) counts as stale.
    """
    names = {name + ".gz" for name in FILES}
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        match = PART_NAME.match(entry.name)
        if match is None or match["file"] not in names:
            continue
        if match["pid"] is None or not _process_running(int(match["pid"])):
            try:
                entry.unlink(missing_ok=True)
            except OSError:
                pass  # someone else's, in a shared folder: theirs to remove


def _mirror_list(mirrors: Sequence[str] | None) -> list[str]:
    """The base URLs to try: ``mirrors``, else $TINYGRAD_MNIST_MIRRORS, else the defaults."""
    if mirrors is None:
        env = os.environ.get("TINYGRAD_MNIST_MIRRORS", "").strip()
        mirrors = re.split(r"[,\s]+", env) if env else DEFAULT_MIRRORS
    if isinstance(mirrors, str):
        raise TypeError(f"mirrors must be a list of base URLs, got the string {mirrors!r}")
    urls = [m.strip() for m in mirrors if m.strip()]
    if not urls:
        raise ValueError("mirrors is empty: give at least one base URL")
    return [u if u.endswith("/") else u + "/" for u in urls]


# ---------------------------------------------------------------- downloading


class _Deadline:
    """A file's time limit, DEADLINE seconds plus one per MIN_SPEED bytes received so far: how
    long the next wait on the mirror may take, until the limit has passed."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.start = time.monotonic()

    def passed(self, received: int) -> _TransferTimeout:
        """The error for a file cut off by the deadline, saying how far it got."""
        elapsed = time.monotonic() - self.start
        return _TransferTimeout(
            f"timed out: too slow, {received} of {self.size} bytes in {elapsed:.3g} s (a file "
            f"gets {DEADLINE:g} s plus 1 s per {MIN_SPEED:g} bytes received)"
        )

    def next_wait(self, received: int) -> float:
        """STALL_TIMEOUT, or less as the deadline nears; _TransferTimeout once it has passed."""
        left = self.start + DEADLINE + received / MIN_SPEED - time.monotonic()
        if left <= 0:
            raise self.passed(received)
        return min(STALL_TIMEOUT, left)


def _fetch(url: str, dest: Path, sha256: str, size: int) -> None:
    """Download ``url`` to ``dest`` atomically, checking its size and SHA-256; raise on failure.

    The bytes go to ``.NAME.PID.RANDOM.part`` in ``dest``'s folder, renamed to ``dest`` once the
    checks pass and removed on any failure (Ctrl-C included). The mirror gets STALL_TIMEOUT
    seconds per wait, the file DEADLINE seconds plus one per MIN_SPEED bytes received, and at
    most ``size`` + 1 bytes are read (one more than expected shows that there are too many).
    """
    deadline = _Deadline(size)
    fd, tmp_name = tempfile.mkstemp(
        dir=dest.parent, prefix=f".{dest.name}.{os.getpid()}.", suffix=".part"
    )
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            wait = deadline.next_wait(0)
            with urllib.request.urlopen(url, timeout=wait) as response:
                _check_announced_size(response, size)
                digest = _copy(response, out, size, deadline, dest.name)
        if digest != sha256:
            raise _TransferError(
                f"checksum mismatch: SHA-256 of the {size} bytes received is {digest}, "
                f"expected {sha256}"
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_announced_size(response: http.client.HTTPResponse, size: int) -> None:
    """Refuse a response whose Content-Length is not the expected ``size``, before reading it."""
    length = (response.headers.get("Content-Length") or "").strip()
    if length.isdigit() and int(length) != size:
        raise _TransferError(f"wrong size: the mirror announces {length} bytes, expected {size}")


def _copy(
    response: http.client.HTTPResponse, out, size: int, deadline: _Deadline, label: str
) -> str:
    """Copy the body of ``response`` (``size`` bytes expected) to the file ``out`` with a tqdm
    bar, within ``deadline``; returns its SHA-256 (hex). Reads what has arrived (``read1``), so a
    trickling mirror is cut off on time, and never more than ``size`` + 1 bytes."""
    digest = hashlib.sha256()
    received = 0
    sock = _socket_of(response)
    with tqdm(total=size, unit="B", unit_scale=True, desc=label) as bar:
        while True:
            wait = deadline.next_wait(received)
            if sock is not None and sock.fileno() >= 0:  # 3.13 closes it after the body
                sock.settimeout(wait)
            try:
                chunk = response.read1(min(CHUNK, size + 1 - received))
            except TimeoutError:
                if wait < STALL_TIMEOUT:  # the wait was cut short by the deadline
                    raise deadline.passed(received) from None
                raise _TransferTimeout(
                    f"timed out: nothing received for {wait:.3g} s "
                    f"({received} of {size} bytes received)"
                ) from None
            if not chunk:
                break
            received += len(chunk)
            if received > size:
                raise _TransferError(f"too much data: the mirror sends more than {size} bytes")
            out.write(chunk)
            digest.update(chunk)
            bar.update(len(chunk))
    if received < size:
        raise _TransferError(f"truncated transfer: received {received} of {size} bytes")
    return digest.hexdigest()


def _socket_of(response: http.client.HTTPResponse) -> socket.socket | None:
    """The socket an urlopen response reads from, so its timeout can shrink as the deadline
    nears; None if it cannot be found (then the deadline may be overrun by one stall timeout)."""
    raw = getattr(getattr(response, "fp", None), "raw", None)
    sock = getattr(raw, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _describe(err: BaseException) -> str:
    """Why a download failed, in one line."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        if not isinstance(err.reason, BaseException):
            return str(err.reason)
        err = err.reason
    if isinstance(err, _TransferError):
        return str(err)
    if isinstance(err, TimeoutError):
        return f"timed out: no answer within {STALL_TIMEOUT:.3g} s"
    return f"{type(err).__name__}: {err}"


def _mirror_is_down(err: BaseException) -> bool:
    """Whether ``err`` says the mirror is not worth asking for the next file: it timed out,
    refused the connection or its host is unknown."""
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        err = err.reason if isinstance(err.reason, BaseException) else err
    return isinstance(err, (TimeoutError, ConnectionRefusedError, socket.gaierror))


def _download(name: str, folder: Path, mirrors: list[str], down: dict[str, str]) -> Path:
    """Fetch ``name`` (ending in .gz) into ``folder`` from the first mirror that delivers it.

    ``down`` maps the mirrors found down to why: they are skipped, and a mirror found down now
    is added, so that the next file does not wait for it again.
    """
    dest = folder / name
    failures = []
    for base in mirrors:
        url = base + name
        if base in down:
            failures.append(f"{url}: skipped (the mirror failed earlier: {down[base]})")
            continue
        try:
            _fetch(url, dest, CHECKSUMS[name], SIZES[name])
            return dest
        except (OSError, ValueError, http.client.HTTPException) as err:  # ValueError: bad URL
            failures.append(f"{url}: {_describe(err)}")
            if _mirror_is_down(err):
                down[base] = _describe(err)
    tried = "\n".join(f"  {f}" for f in failures)
    raise DownloadError(
        f"could not download {name} into {folder}; tried:\n{tried}\n"
        "Put the four MNIST files in a folder and pass load_mnist(root=...) or set "
        "$TINYGRAD_MNIST_DATA, or name working mirrors with $TINYGRAD_MNIST_MIRRORS.",
        name=name,
        failures=failures,
    )


def _download_missing(folder: Path, mirrors: list[str]) -> None:
    """Download into ``folder`` each of the four files it lacks (after removing stale .parts)."""
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(folder)
    down: dict[str, str] = {}
    for name in FILES:
        if _find_file(folder, name) is None:
            _download(name + ".gz", folder, mirrors, down)


# ---------------------------------------------------------------- public API


def load_mnist(
    root: str | os.PathLike | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
) -> MNIST:
    """Load full MNIST: 60,000 train and 10,000 test images, downloading them if needed.

    Looks for the four IDX files (gzipped or not, named ``train-images-idx3-ubyte[.gz]`` etc.) in
    ``root``, then ``$TINYGRAD_MNIST_DATA``, then ``$XDG_CACHE_HOME/tinygrad_mnist`` (default
    ``~/.cache/tinygrad_mnist``); a folder counts only if it holds all four. Otherwise, with
    ``download``, fetches the missing files into ``root`` (or the cache folder when no root is
    given) from ``mirrors`` (base URLs; default ``$TINYGRAD_MNIST_MIRRORS`` or DEFAULT_MIRRORS).

    Every file is checked: its structure, and its SHA-256 against MNIST's. In the cache, a file
    that fails is moved aside (as NAME.corrupt, with a warning) and downloaded again. In a folder
    the user named, a file that fails the structure check, or holds as many examples as MNIST's
    but other content, is an MNISTFormatError; a file with another count is accepted as it is.
    A download has a stall timeout and a deadline that grows with the bytes received
    (STALL_TIMEOUT, DEADLINE, MIN_SPEED), reads at most the expected size, and leaves no
    temporary file; a mirror that timed out or refused is not asked again for the next files.

    Returns MNIST(train_images (N, 28, 28) uint8, train_labels (N,) uint8, test_images (M, 28,
    28) uint8, test_labels (M,) uint8).
    Raises FileNotFoundError (root missing, or files missing with download=False),
    DownloadError (every mirror failed) or MNISTFormatError (a file is corrupt).
    """
    if root is not None and not Path(root).expanduser().is_dir():
        raise FileNotFoundError(f"MNIST root folder {root} does not exist (or is not a folder)")
    for folder in _user_folders(root):
        paths = _find_all(folder)
        if paths is not None:
            return _load_folder(paths)
    cache = _cache_dir()
    _remove_stale_parts(cache)
    paths, arrays = _read_cache(cache, repair=download)
    if len(arrays) == len(FILES):
        return _assemble(paths, arrays)
    if not download:
        looked = "\n".join(f"  {folder}" for folder in [*_user_folders(root), cache])
        raise FileNotFoundError(
            f"MNIST files not found; looked for {', '.join(FILES)} (each with or without .gz) "
            f"in:\n{looked}\n"
            "Call load_mnist(download=True) to fetch them, or download them yourself and pass "
            "root=FOLDER or set $TINYGRAD_MNIST_DATA."
        )
    target = Path(root).expanduser() if root is not None else cache
    _download_missing(target, _mirror_list(mirrors))
    if root is not None:
        paths = _find_all(target)
        assert paths is not None
        return _load_folder(paths)
    paths, arrays = _read_cache(cache, repair=False)
    return _assemble(paths, arrays)


def load_sample() -> MNIST:
    """Load the bundled sample: 5,000 train (500 per digit) and 1,000 test (100 per digit) images.

    Returns MNIST(train_images (5000, 28, 28) uint8, train_labels (5000,) uint8,
    test_images (1000, 28, 28) uint8, test_labels (1000,) uint8); real MNIST digits, see
    ``sample/README.md`` for how they were chosen.
    """
    with np.load(SAMPLE_PATH, allow_pickle=False) as f:
        return MNIST(*(f[field] for field in MNIST._fields))


def limit_per_digit(
    images: np.ndarray, labels: np.ndarray, n: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most ``n`` random examples of each digit, in their original order.

    images (N, ...) and labels (N,) -> images (K, ...), labels (K,) with K <= 10 * n; the
    examples of each label are chosen with ``np.random.default_rng(seed)``.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"limit_per_digit: n must be an integer >= 1, got {n!r}")
    if labels.ndim != 1:
        raise ValueError(f"limit_per_digit: labels must be 1-D (N,), got shape {labels.shape}")
    if images.ndim == 0 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"limit_per_digit: images {images.shape} and labels {labels.shape} must have the "
            "same first dimension"
        )
    rng = np.random.default_rng(seed)
    keep = []
    for digit in np.unique(labels):
        idx = np.flatnonzero(labels == digit)
        keep.append(rng.choice(idx, size=n, replace=False) if len(idx) > n else idx)
    order = np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.intp)
    return images[order], labels[order]


def preprocess(images: np.ndarray, normalize: bool = False) -> np.ndarray:
    """Turn uint8 pixels (0-255) into float32 network input (N, 1, 28, 28) in [0, 1].

    images (N, 28, 28), (N, 1, 28, 28) or (N, 784) -> float32 (N, 1, 28, 28) = pixels / 255;
    with ``normalize``, further standardised as (x - 0.1307) / 0.3081 (MNIST's mean and std).
    """
    images = np.asarray(images)
    shape = images.shape
    if not (
        (len(shape) == 3 and shape[1:] == (ROWS, COLS))
        or (len(shape) == 4 and shape[1:] == (1, ROWS, COLS))
        or (len(shape) == 2 and shape[1] == ROWS * COLS)
    ):
        raise ValueError(
            f"preprocess: expected images of shape (N, 28, 28), (N, 1, 28, 28) or (N, 784), "
            f"got {shape}"
        )
    x = images.reshape(shape[0], 1, ROWS, COLS).astype(np.float32) / np.float32(255)
    if normalize:
        x = (x - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)
    return x


def batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    shuffle: bool = True,
    seed: int | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (x_batch, y_batch) pairs of ``batch_size`` examples, covering the data once.

    x (N, ...) and y (N, ...) -> pairs (B, ...), (B, ...) with B = batch_size, the last pair
    smaller unless ``drop_last``. With ``shuffle`` the order is a permutation drawn from
    ``np.random.default_rng(seed)``. Arguments are checked when called, not when iterated.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"batches: batch_size must be an integer >= 1, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batches: batch_size must be >= 1, got {batch_size}")
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
        raise ValueError(f"batches: x {x.shape} and y {y.shape} must have the same first dimension")
    order = np.random.default_rng(seed).permutation(len(x)) if shuffle else None
    return _batch_iter(x, y, int(batch_size), order, drop_last)


def _batch_iter(
    x: np.ndarray, y: np.ndarray, batch_size: int, order: np.ndarray | None, drop_last: bool
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The generator behind ``batches``: slices when unshuffled, fancy indexing when shuffled."""
    n = len(x)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            yield x[start : start + batch_size], y[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]


# ---------------------------------------------------------------- one's own images
#
# MNIST was made from binary scans of handwriting: each digit's ink was scaled to fit a 20x20
# box (keeping its aspect ratio, anti-aliased, hence grey edges), then placed in a 28x28 field
# so that its centre of mass sits at the centre. `prepare_image` does the same to a photo,
# a scan or a drawing, after turning it into MNIST's colours (bright ink on black).

DIGIT_BOX = 20  # the ink of an MNIST digit fits in DIGIT_BOX x DIGIT_BOX pixels
CENTRE = 14.0  # row and column (0-based) of the centre of mass of an MNIST digit in 28x28
MIN_CONTRAST = 0.1  # ink must differ from the paper by at least this fraction of full scale
NOISE_FLOOR = 0.1  # ink fainter than this fraction of the strongest ink is paper or noise
NOISE_SIGMAS = 5.0  # ... as is ink within this many standard deviations of the paper's level
INK_EDGE = 0.3  # the ink's extent: pixels at least this bright (faint halos don't widen it)
# ITU-R 601 luma weights of red, green and blue, as Pillow's convert("L")
RGB_TO_GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def prepare_image(image_or_path, invert="auto", normalize: bool = False) -> np.ndarray:
    """Make one's own digit look like an MNIST test image: float32 (1, 1, 28, 28).

    image_or_path: a PNG or JPEG file (path, or a binary file object), a PIL image, or an array
    (H, W) grey, (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA, of any size; integer arrays hold
    0-255, float arrays [0, 1] (or 0-255 when a value exceeds 1). Transparent pixels count as
    paper.

    invert: "auto" (the default) decides from the paper, the colour of most pixels: light paper
    means dark ink, which is inverted; True inverts (dark ink on light paper, as people write);
    False does not (light ink on dark, as MNIST).

    The steps, as MNIST was made: greyscale; ink bright on black; the paper's level subtracted
    and the ink stretched to full brightness; cropped to the ink; scaled to fit 20x20 keeping the
    aspect ratio; placed in 28x28 with its centre of mass at the centre (row 14, column 14); then
    ``preprocess(..., normalize)``, so pass the same ``normalize`` the model was trained with.

    Raises FileNotFoundError (no such file), ValueError (not an image, a bad shape or value,
    no ink) or TypeError (neither a path, a file, an image nor an array).
    """
    if invert not in ("auto", True, False):
        raise ValueError(f'prepare_image: invert must be "auto", True or False, got {invert!r}')
    grey, alpha = _read_grey(image_or_path)
    if alpha is not None:
        grey = _fill_transparent(grey, alpha)
    paper = float(np.median(grey))
    chosen = invert
    if invert == "auto":
        invert = paper > 0.5
    ink = 1.0 - grey if invert else grey
    paper = 1.0 - paper if invert else paper

    strength = float(ink.max()) - paper
    if strength < MIN_CONTRAST:
        hint = (
            ""
            if chosen == "auto"
            else f" (with invert={invert}: is the ink {'light' if invert else 'dark'}?)"
        )
        raise ValueError(
            f"prepare_image: found no ink: no pixel stands out from the paper (paper level "
            f"{paper:.2f}, brightest ink {paper + strength:.2f} on a 0-1 scale){hint}; expected "
            f"a digit clearly darker or lighter than its background"
        )
    # paper texture and sensor noise: a few times the paper's spread (median absolute
    # deviation), at least NOISE_FLOOR of the ink's strength, counts as paper
    spread = 1.4826 * float(np.median(np.abs(ink - paper)))
    floor = min(max(NOISE_FLOOR * strength, NOISE_SIGMAS * spread), 0.5 * strength)
    ink = np.clip((ink - paper - floor) / (strength - floor), 0.0, 1.0)

    digit = _fit_in_box(_crop_to_ink(ink), DIGIT_BOX)
    pixels = np.rint(_centre_by_mass(digit, ROWS, COLS) * 255).astype(np.uint8)
    return preprocess(pixels[None], normalize=normalize)


def _read_grey(image_or_path) -> tuple[np.ndarray, np.ndarray | None]:
    """Grey levels (H, W) in [0, 1] and the alpha channel (H, W) in [0, 1] or None."""
    from PIL import Image, UnidentifiedImageError  # Pillow: only needed here

    if isinstance(image_or_path, (str, os.PathLike)):
        source = Path(image_or_path).expanduser()
        if not source.is_file():
            kind = " (it is a folder)" if source.is_dir() else ""
            raise FileNotFoundError(f"prepare_image: no image file at {source}{kind}")
        name = str(source)
    elif hasattr(image_or_path, "read"):
        source, name = image_or_path, str(getattr(image_or_path, "name", "the file object"))
    else:
        source = None
    if source is not None:
        try:
            with Image.open(source) as opened:
                opened.load()
                image = opened.copy()
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise ValueError(
                f"prepare_image: {name} is not a readable image ({err}); expected a PNG or "
                f"JPEG file"
            ) from None
        return _image_to_grey(image)
    if isinstance(image_or_path, Image.Image):
        return _image_to_grey(image_or_path)
    if isinstance(image_or_path, (np.ndarray, list, tuple)):
        return _array_to_grey(np.asarray(image_or_path))
    raise TypeError(
        f"prepare_image: expected a file path, a binary file, a PIL image or an array, got "
        f"{type(image_or_path).__name__}"
    )


def _image_to_grey(image) -> tuple[np.ndarray, np.ndarray | None]:
    """A PIL image as grey levels and alpha, both in [0, 1] (alpha None when opaque)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image, dtype=np.float32) / np.float32(65535), None
    if image.mode in ("I", "F"):  # 32-bit integer or float grey: the ranges of arrays apply
        return _array_to_grey(np.asarray(image))
    if "A" in image.getbands() or "transparency" in image.info:
        return _array_to_grey(np.asarray(image.convert("RGBA")))
    return np.asarray(image.convert("L"), dtype=np.float32) / np.float32(255), None


def _array_to_grey(array: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """An (H, W[, C]) array as grey levels and alpha, both in [0, 1] (alpha None if absent)."""
    if (
        array.dtype == object
        or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_)
        or np.issubdtype(array.dtype, np.complexfloating)
    ):
        raise TypeError(f"prepare_image: expected an array of numbers, got dtype {array.dtype}")
    channels = array.shape[2] if array.ndim == 3 else None
    if array.ndim not in (2, 3) or channels not in (None, 1, 3, 4) or 0 in array.shape:
        raise ValueError(
            f"prepare_image: expected an image array of shape (H, W), (H, W, 1), (H, W, 3) or "
            f"(H, W, 4), got {array.shape}"
        )
    values = array.astype(np.float32)
    if not np.isfinite(values).all():
        raise ValueError("prepare_image: the image array holds NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if array.dtype == np.bool_:
        scale = 1.0
    elif np.issubdtype(array.dtype, np.integer) or high > 1.0:
        scale = 255.0
    else:
        scale = 1.0
    if low < 0 or high > scale:
        expected = "0-255" if scale == 255.0 else "[0, 1] (or 0-255)"
        raise ValueError(
            f"prepare_image: pixel values must be in {expected}, got values from {low:g} to "
            f"{high:g}"
        )
    values /= scale
    if channels is None:
        return values, None
    if channels == 1:
        return values[:, :, 0], None
    grey = values[:, :, :3] @ RGB_TO_GREY
    return grey, (values[:, :, 3] if channels == 4 else None)


def _fill_transparent(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Grey levels with transparent pixels painted in the colour of the paper.

    Mostly opaque images carry their own paper (the median opaque grey). In mostly transparent
    ones (a drawing on a clear layer) the opaque pixels are the ink, so the paper is the
    opposite of the ink: white under dark ink, black under light ink.
    """
    if not alpha.any():
        raise ValueError("prepare_image: found no ink: the image is fully transparent")
    if alpha.mean() < 0.5:
        ink = float(np.average(grey, weights=alpha))
        paper = 1.0 if ink < 0.5 else 0.0
    else:
        paper = float(np.median(grey[alpha >= 0.5]))
    return grey * alpha + paper * (1.0 - alpha)


def _crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """The smallest rectangle of `ink` (H, W) holding every pixel at least INK_EDGE bright."""
    rows = np.flatnonzero((ink >= INK_EDGE).any(axis=1))
    cols = np.flatnonzero((ink >= INK_EDGE).any(axis=0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _fit_in_box(ink: np.ndarray, box: int) -> np.ndarray:
    """`ink` (h, w) resized to fit box x box, keeping the aspect ratio, brightest pixel 1."""
    from PIL import Image

    height, width = ink.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # Pillow: (w, h)
    resized = Image.fromarray(ink.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    fitted = np.clip(np.asarray(resized, dtype=np.float32), 0.0, None)
    return np.clip(fitted / fitted.max(), 0.0, 1.0)


def _centre_by_mass(digit: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """`digit` (h, w) placed in a (rows, cols) field with its centre of mass at (14, 14)."""
    height, width = digit.shape
    mass = digit.sum()
    centre_row = float(np.arange(height) @ digit.sum(axis=1)) / mass
    centre_col = float(np.arange(width) @ digit.sum(axis=0)) / mass
    top = int(np.clip(np.rint(CENTRE - centre_row), 0, rows - height))
    left = int(np.clip(np.rint(CENTRE - centre_col), 0, cols - width))
    field = np.zeros((rows, cols), dtype=np.float32)
    field[top : top + height, left : left + width] = digit
    return field
