"""Module: the base of every layer and model; tracks parameters and sub-modules by name."""

from __future__ import annotations

import os
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..files import write_atomically
from ..tensor import Tensor


class Module(ABC):
    """A layer or a model. Assigning a Tensor that requires grad, or another Module, to an
    attribute registers it, so `named_parameters()` finds it under a dotted name (`0.weight`).
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(
                f"{type(self).__name__}: call super().__init__() before assigning attributes"
            )
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Module):
            self._modules[name] = value
        elif isinstance(value, Tensor) and value.requires_grad:
            self._parameters[name] = value
        object.__setattr__(self, name, value)

    # ------------------------------------------------------------ running

    @abstractmethod
    def forward(self, *args, **kwargs):
        """The layer's computation; every Module subclass defines it (called by `__call__`)."""

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        if isinstance(out, Tensor) and out.requires_grad:
            # remember which module made this tensor from which inputs, so the graph drawer
            # can box each layer's ops (innermost module first, Sequential last)
            inputs = tuple(a for a in args if isinstance(a, Tensor))
            out.module_calls = (*out.module_calls, (self, inputs))
        return out

    # ------------------------------------------------------------ structure

    def children(self) -> Iterator[Module]:
        """The direct sub-modules, in the order they were assigned."""
        return iter(self._modules.values())

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """(name, sub-module) pairs of the direct sub-modules."""
        return iter(self._modules.items())

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module (name "") and every sub-module below it, with dotted names.

        A module reachable twice (a shared layer) is listed once, under its first name.
        """
        stack = [(prefix, self)]
        seen: set[int] = set()
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [
                (f"{name}.{child_name}" if name else child_name, child)
                for child_name, child in module._modules.items()
            ]
            stack.extend(reversed(children))

    def named_parameters(self) -> Iterator[tuple[str, Tensor]]:
        """(dotted name, tensor) for every parameter, as PyTorch names them: `0.weight`.

        A shared parameter is listed once, so an optimizer updates it once.
        """
        seen: set[int] = set()
        for module_name, module in self.named_modules():
            for name, param in module._parameters.items():
                if id(param) in seen:
                    continue
                seen.add(id(param))
                yield (f"{module_name}.{name}" if module_name else name), param

    def parameters(self) -> list[Tensor]:
        """Every parameter tensor, in registration order."""
        return [p for _, p in self.named_parameters()]

    def train(self, mode: bool = True) -> Module:
        """Set training mode on this module and all below it; returns self."""
        for _, module in self.named_modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        """Set evaluation mode (same as `train(False)`); returns self."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Set every parameter's `.grad` to None."""
        for p in self.parameters():
            p.grad = None

    def to(self, dtype) -> Module:
        """Cast every parameter to `dtype` in place (e.g. float64 for gradient checks)."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        return self

    def double(self) -> Module:
        """Cast parameters to float64 (for `gradcheck`); returns self."""
        return self.to(np.float64)

    def float(self) -> Module:
        """Cast parameters to float32; returns self."""
        return self.to(np.float32)

    # ------------------------------------------------------------ state

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter as an ndarray, keyed by dotted name."""
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict) -> Module:
        """Copy arrays into the parameters (cast to each parameter's dtype).

        Raises KeyError naming missing and unexpected keys, ValueError naming shape mismatches;
        nothing is changed unless every key and shape fits.
        """
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state]
        unexpected = [k for k in state if k not in params]
        if missing or unexpected:
            raise KeyError(
                f"load_state_dict for {type(self).__name__}: missing keys {missing}, "
                f"unexpected keys {unexpected}; expected exactly {list(params)}"
            )
        arrays = {k: np.asarray(getattr(v, "data", v)) for k, v in state.items()}
        bad = [
            f"{k}: got {arrays[k].shape}, expected {p.shape}"
            for k, p in params.items()
            if arrays[k].shape != p.shape
        ]
        if bad:
            raise ValueError(
                f"load_state_dict for {type(self).__name__}: shape mismatch: " + "; ".join(bad)
            )
        cast = {}
        for k, p in params.items():
            try:
                cast[k] = arrays[k].astype(p.dtype, copy=True)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"load_state_dict for {type(self).__name__}: {k} has dtype "
                    f"{arrays[k].dtype}, which cannot be cast to the parameter's {p.dtype} ({err})"
                ) from None
        for k, p in params.items():
            p.data = cast[k]
        return self

    def save(self, path: str | os.PathLike) -> None:
        """Write the state_dict to an `.npz` file, atomically (temp file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        write_atomically(path, lambda f: np.savez(f, **state), binary=True)

    def load(self, path: str | os.PathLike) -> Module:
        """Load weights saved by `save()` into this model (same checks as load_state_dict)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"load: no weights file at {path}")
        try:
            archive = np.load(path, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError(f"it holds a single {type(archive).__name__}, not an .npz archive")
            with archive:
                state = {k: archive[k] for k in archive.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
            raise ValueError(f"load: {path} is not a valid .npz weights file ({err})") from None
        return self.load_state_dict(state)

    # ------------------------------------------------------------ printing

    def extra_repr(self) -> str:
        """The text inside this layer's parentheses when printed."""
        return ""

    def __repr__(self) -> str:
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in self._modules.items():
            child_text = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_text}")
        lines.append(")")
        return "\n".join(lines)
