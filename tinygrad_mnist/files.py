"""Writing files atomically (a temporary file in the same folder, renamed over the target), and
reading back the `.npz` archives the package writes.

Temporary files are named ``.NAME.PID.RANDOM.tmp``: the id of the process writing them lets a
later run tell the leftovers of a killed process (removed by `remove_stale_temp_files`) from
the files another live process is writing.
"""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[a-z0-9_]{8}\.(tmp|part)$")
OLD_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.(tmp|part)$")  # before the process id


def write_atomically(path: str | os.PathLike, write: Callable, binary: bool = False) -> Path:
    """Call write(file) on a temporary file next to `path`, then rename it over `path`.

    A failure (or Ctrl-C) leaves neither a half-written `path` nor the temporary file. The file
    gets the usual permissions (0666 minus the umask), not mkstemp's owner-only 0600.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"
        )
    except OSError as err:
        raise _naming(err, path) from None
    try:
        with os.fdopen(fd, "wb" if binary else "w", newline=None if binary else "") as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise _naming(err, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _naming(err: OSError, path: Path) -> OSError:
    """`err` with `path` as its file name (so "No space left on device" says where)."""
    if err.filename is not None and not str(err.filename).startswith(str(path.parent)):
        return err
    return type(err)(err.errno, err.strerror or str(err), str(path))


def process_alive(pid: int) -> bool:
    """Whether a process with id `pid` exists (on this machine)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    except (OverflowError, ValueError):
        return False  # no process can have that id
    return True


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (``.NAME.PID.RANDOM.tmp`` or ``.part``) in `folder` left by
    processes that no longer run; returns what was deleted. Others' live files are kept."""
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = TEMP_NAME.match(entry.name)
        stale = (
            not process_alive(int(match.group(1)))
            if match
            else bool(OLD_TEMP_NAME.match(entry.name))
        )
        if stale and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


# what reading a damaged or foreign file as an .npz archive can raise
NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile)


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write `arrays` to an `.npz` archive at `path`, atomically, each under its own name."""
    # NumPy's stubs fear a key named like a keyword of savez; ours are "0.weight", "meta", ...
    savez: Callable[..., None] = np.savez
    return write_atomically(path, lambda f: savez(f, **arrays), binary=True)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of the `.npz` archive at `path` (pickles refused).

    Raises one of `NPZ_ERRORS`; a lone `.npy` array renamed `.npz` is a ValueError saying so.
    """
    archive = np.load(path, allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            f"it holds a single {type(archive).__name__} (an .npy file?), not an .npz archive "
            "of named arrays"
        )
    with archive:
        return {name: archive[name] for name in archive.files}
