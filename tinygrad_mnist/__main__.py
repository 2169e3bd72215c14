"""`python -m tinygrad_mnist ...` runs the `tinygrad-mnist` command."""

import sys

from .cli import main

sys.exit(main())
