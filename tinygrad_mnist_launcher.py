"""The `tinygrad-mnist` command's entry point, kept outside the package on purpose.

Importing `tinygrad_mnist` (NumPy, the ops, nn, ...) takes a few tenths of a second, and a
Ctrl-C in that time would otherwise print a KeyboardInterrupt traceback. This module imports
nothing heavy itself, so it can turn that into the command's usual one-line message.
"""

from __future__ import annotations

import sys

PROG = "tinygrad-mnist"


def main() -> int:
    """Import the command line and run it, answering a Ctrl-C that comes before the command
    itself handles them (during the import or while the arguments are read)."""
    try:
        from tinygrad_mnist.cli import main as run_command

        return run_command()
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted (Ctrl-C) while starting", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
