"""What every kernel is: a faster twin of one textbook op.

A kernel class derives from `Kernel` and from the textbook op it replaces, in that order:

    class WinogradConv2d(Kernel, ops.Conv2d):
        kernel = "winograd"          # what `op.kernel` reports once it ran
        exact = False                # trades a little float32 accuracy: only at precision "high"

        @classmethod
        def applies(cls, x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                    groups=1) -> bool: ...
        def forward(self, x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                    groups=1): ...
        def backward(self, grad): ...

It takes the same inputs and attributes as the textbook op, returns the same values (to
rounding), the same gradients, and follows the same rules for ties, NaN and dtypes;
`tests/test_kernels.py` checks each against its op. Its `name` stays the op's ("Conv2d"), so
everything that reads the graph treats it as that op. `kernels.table` says where it is used.
"""

from __future__ import annotations

from typing import ClassVar


class Kernel:
    """Mixin for a kernel class (see the module docstring)."""

    kernel: ClassVar[str]
    exact: ClassVar[bool] = True  # False: allowed only at set_float32_precision("high")

    @classmethod
    def applies(cls, *inputs, **attrs) -> bool:
        """True when this kernel can run (and is worth running) on these inputs and attributes."""
        return True
