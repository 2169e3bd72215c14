"""Devices, as tutorials ask for them: everything here runs on the CPU.

`device = tm.device("cuda" if tm.cuda.is_available() else "cpu")` gives "cpu", and
`x.to(device)` or `model.to(device)` then changes nothing. Asking for any other device is a
clear error, never a silent CPU run.
"""

from __future__ import annotations

from .tensor import check_device


def device(type: str, index: int | None = None) -> str:  # noqa: A002 - torch.device(type)
    """The device named `type` ("cpu" is the only one): returned as the string "cpu"."""
    name = str(type) if index is None else f"{type}:{index}"
    check_device(name, "device")
    return "cpu"


class cuda:  # noqa: N801 - torch.cuda, as tutorials spell it
    """What tutorials ask of `torch.cuda`: there is no GPU here."""

    @staticmethod
    def is_available() -> bool:
        """False: tinygrad_mnist runs on the CPU only."""
        return False

    @staticmethod
    def device_count() -> int:
        """0: no GPUs."""
        return 0
