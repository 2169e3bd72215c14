"""The one random generator of the package: constructors (`rand`, `randn`, `randint`) and layer
initialisation draw from it, so `manual_seed(seed)` makes them all reproducible, as
`torch.manual_seed` does."""

from __future__ import annotations

import numpy as np

generator: np.random.Generator = np.random.default_rng()
"""The shared generator. Re-seeded in place, so every module holding it sees the new seed."""


def manual_seed(seed: int) -> None:
    """Seed everything random in the package (constructors, initialisation), as PyTorch's."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
    generator.bit_generator.state = np.random.default_rng(int(seed)).bit_generator.state
