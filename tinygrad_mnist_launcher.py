"""The `tinygrad-mnist` command's entry point, kept outside the package on purpose.

Importing `tinygrad_mnist` (NumPy, the ops, nn, ...) takes a few tenths of a second, and a
Ctrl-C in that time would otherwise print a KeyboardInterrupt traceback. This module imports
nothing heavy itself, so it can turn that into the command's usual one-line message.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

PROG = "tinygrad-mnist"


def main() -> int:
    """Import the command line and run it, answering a Ctrl-C that comes before the command
    itself handles them (during the import or while the arguments are read)."""
    ctrl_c: list[int] = []

    def note_ctrl_c(signum: int, frame: FrameType | None) -> None:
        ctrl_c.append(signum)
        raise KeyboardInterrupt

    # noted, because an extension module may turn the KeyboardInterrupt raised inside its own
    # import into an ImportError (NumPy 1.24: 'PyCapsule_Import could not import "datetime"')
    watching = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if watching:
        signal.signal(signal.SIGINT, note_ctrl_c)
    try:
        try:
            from tinygrad_mnist.cli import main as run_command
        finally:
            if watching:
                signal.signal(signal.SIGINT, signal.default_int_handler)
        return run_command()
    except (KeyboardInterrupt, ImportError) as err:
        if isinstance(err, ImportError) and not ctrl_c:
            raise
        print(f"{PROG}: interrupted (Ctrl-C) while starting", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
