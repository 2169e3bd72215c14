"""Module: the base of every layer and model; tracks parameters, buffers and sub-modules by name."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..files import NPZ_ERRORS, read_npz, write_npz
from ..tensor import Tensor, check_device, is_device


class Parameter(Tensor):
    """A Tensor that is a module's parameter: `requires_grad=True` by default, as
    `torch.nn.Parameter`. Assigning one to a Module attribute registers it (as does any Tensor
    that requires grad)."""

    def __init__(self, data=None, requires_grad: bool = True):
        if data is None:
            data = np.empty(0, dtype=np.float32)
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class IncompatibleKeys(NamedTuple):
    """What `load_state_dict` returns: the keys the model has and the state lacked, and the
    keys the state has and the model lacks (both empty after a strict load)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class RemovableHandle:
    """Returned by `register_forward_hook`; `remove()` unregisters the hook."""

    _next_id = 0

    def __init__(self, hooks: dict):
        self._hooks = hooks
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class Module(ABC):
    """A layer or a model. Assigning a Tensor that requires grad (or an `nn.Parameter`), or
    another Module, to an attribute registers it, so `named_parameters()` finds it under a
    dotted name (`0.weight`); `register_buffer` registers state that is not trained (BatchNorm's
    running statistics). Modules kept in a plain list are NOT registered: use `nn.ModuleList`.
    """

    # set in __init__ with object.__setattr__ (our own __setattr__ needs them to exist first)
    _parameters: dict[str, Tensor | None]
    _buffers: dict[str, Tensor | None]
    _non_persistent_buffers: set[str]
    _modules: dict[str, Module | None]
    _forward_hooks: dict[int, Callable]
    training: bool

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_forward_hooks", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(
                f"{type(self).__name__}: call super().__init__() before assigning attributes"
            )
        if name in self._buffers and (value is None or isinstance(value, Tensor | np.ndarray)):
            # assigning to a buffer keeps it a buffer (as PyTorch)
            value = _buffer_tensor(value)
            self._buffers[name] = value
            object.__setattr__(self, name, value)
            return
        # a replaced module or parameter keeps its place in the order (as in PyTorch)
        is_module = isinstance(value, Module)
        is_parameter = isinstance(value, Parameter) or (
            isinstance(value, Tensor) and value.requires_grad
        )
        if not is_module:
            self._modules.pop(name, None)
        if not is_parameter:
            self._parameters.pop(name, None)
        self._buffers.pop(name, None)
        self._non_persistent_buffers.discard(name)
        if is_module:
            self._parameters.pop(name, None)
            self._modules[name] = value
        elif is_parameter:
            self._parameters[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self._buffers.pop(name, None)
        self._non_persistent_buffers.discard(name)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """Register state that is saved but not trained, e.g. BatchNorm's `running_mean`.

        `tensor` (an ndarray, a Tensor or None) becomes the attribute `name`, a Tensor that
        never requires grad; it is listed by `named_buffers()` and, when `persistent`, saved in
        `state_dict()` next to the parameters.
        """
        if "_buffers" not in self.__dict__:
            raise RuntimeError(
                f"{type(self).__name__}: call super().__init__() before register_buffer"
            )
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"register_buffer: bad buffer name {name!r} (a non-empty str, no '.')")
        if name in self.__dict__ and name not in self._buffers:
            raise KeyError(f"register_buffer: attribute {name!r} already exists")
        if tensor is not None and not isinstance(tensor, Tensor | np.ndarray):
            raise TypeError(
                f"register_buffer: {name!r} must be an ndarray, a Tensor or None, got "
                f"{type(tensor).__name__}"
            )
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        value = _buffer_tensor(tensor)
        self._buffers[name] = value
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)
        object.__setattr__(self, name, value)

    def register_parameter(self, name: str, param: Tensor | None) -> None:
        """Register `param` (a Tensor, made to require grad; or None) under `name`."""
        if param is not None and not isinstance(param, Tensor):
            raise TypeError(
                f"register_parameter: {name!r} must be a Tensor or None, got {type(param).__name__}"
            )
        if param is not None and not param.requires_grad:
            param.requires_grad = True
        setattr(self, name, param)
        if param is None:
            self._parameters[name] = None

    def add_module(self, name: str, module: Module | None) -> None:
        """Register `module` as the sub-module `name` (same as assigning the attribute)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} is a {type(module).__name__}, not a Module")
        setattr(self, name, module)
        if module is None:
            self._modules[name] = None

    # ------------------------------------------------------------ running

    @abstractmethod
    def forward(self, *args, **kwargs):
        """The layer's computation; every Module subclass defines it (called by `__call__`)."""

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        if self._forward_hooks:
            for hook in list(self._forward_hooks.values()):
                result = hook(self, args, out)
                if result is not None:
                    out = result
        self._note_call(args, out)
        return out

    def _note_call(self, args: tuple, out) -> None:
        """Remember on `out` that this module made it from the tensors in `args`, so the graph
        drawer can box each layer's ops (innermost module first, Sequential last)."""
        if isinstance(out, Tensor) and out.requires_grad:
            inputs = tuple([a for a in args if isinstance(a, Tensor)])
            out.module_calls = (*out.module_calls, (self, inputs))

    def register_forward_hook(self, hook: Callable) -> RemovableHandle:
        """Call `hook(module, inputs, output)` after every forward; a non-None result replaces
        the output. Returns a handle whose `remove()` unregisters the hook."""
        if not callable(hook):
            raise TypeError(f"register_forward_hook: hook must be callable, got {hook!r}")
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # ------------------------------------------------------------ structure

    def children(self) -> Iterator[Module]:
        """The direct sub-modules, in the order they were assigned."""
        return (m for _, m in self.named_children())

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """(name, sub-module) pairs of the direct sub-modules (each module once)."""
        seen: set[int] = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

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
                if child is not None
            ]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        """This module and every sub-module below it, each once."""
        return (m for _, m in self.named_modules())

    def named_parameters(self) -> Iterator[tuple[str, Tensor]]:
        """(dotted name, tensor) for every parameter, as PyTorch names them: `0.weight`.

        A shared parameter is listed once, so an optimizer updates it once.
        """
        return self._named_members("_parameters")

    def parameters(self) -> list[Tensor]:
        """Every parameter tensor, in registration order."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, Tensor]]:
        """(dotted name, tensor) for every buffer (persistent or not): `1.running_mean`."""
        return self._named_members("_buffers")

    def buffers(self) -> list[Tensor]:
        """Every buffer tensor, in registration order."""
        return [b for _, b in self.named_buffers()]

    def _named_members(self, kind: str) -> Iterator[tuple[str, Tensor]]:
        seen: set[int] = set()
        for module_name, module in self.named_modules():
            for name, member in getattr(module, kind).items():
                if member is None or id(member) in seen:
                    continue
                seen.add(id(member))
                yield (f"{module_name}.{name}" if module_name else name), member

    def apply(self, fn: Callable[[Module], object]) -> Module:
        """Call `fn(module)` on every sub-module (children first, as PyTorch) and on self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def train(self, mode: bool = True) -> Module:
        """Set training mode on this module and all below it; returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"train: mode must be a bool, got {type(mode).__name__}")
        for _, module in self.named_modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        """Set evaluation mode (same as `train(False)`); returns self."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (False) or unfreeze (True) every parameter; they stay parameters. Returns self."""
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Set every parameter's `.grad` to None (or to zeros with `set_to_none=False`)."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = np.zeros_like(p.data)

    def to(self, dtype) -> Module:
        """Cast every parameter and floating-point buffer to `dtype` in place (e.g. float64
        for gradient checks); integer buffers (`num_batches_tracked`) keep their dtype.
        `to("cpu")` changes nothing (everything lives on the CPU; another device is an error)."""
        if isinstance(dtype, str) and is_device(dtype):
            check_device(dtype, "to")
            return self
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"to: expected a floating-point dtype, got {dtype}")
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        for b in self.buffers():
            if b.dtype.kind == "f":
                b.data = b.data.astype(dtype)
        return self

    def double(self) -> Module:
        """Cast parameters and floating buffers to float64 (for `gradcheck`); returns self."""
        return self.to(np.float64)

    def float(self) -> Module:
        """Cast parameters and floating buffers to float32; returns self."""
        return self.to(np.float32)

    # ------------------------------------------------------------ state

    def _state_entries(self) -> dict[str, Tensor]:
        """name -> Tensor for every entry of the state_dict: each module's parameters, then its
        persistent buffers, module by module (PyTorch's order and names)."""
        entries: dict[str, Tensor] = {}
        for module_name, module in self._all_named_modules():
            prefix = f"{module_name}." if module_name else ""
            for name, p in module._parameters.items():
                if p is not None:
                    entries[prefix + name] = p
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent_buffers:
                    entries[prefix + name] = b
        return entries

    def _all_named_modules(self) -> Iterator[tuple[str, Module]]:
        """Every module path, a shared module under each of its names (as PyTorch's
        state_dict lists tied weights under every name)."""
        stack = [("", self)]
        while stack:
            name, module = stack.pop()
            yield name, module
            children = [
                (f"{name}.{child_name}" if name else child_name, child)
                for child_name, child in module._modules.items()
                if child is not None
            ]
            stack.extend(reversed(children))

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter and persistent buffer as an ndarray, keyed by dotted name
        (`0.weight`, `1.running_mean`, `1.num_batches_tracked`), as PyTorch's."""
        return {name: t.data.copy() for name, t in self._state_entries().items()}

    def load_state_dict(self, state: dict, strict: bool = True) -> IncompatibleKeys:
        """Copy arrays into the parameters and persistent buffers (cast to each entry's dtype).

        With `strict` (the default), missing or unexpected keys raise KeyError naming them;
        otherwise they are returned as `IncompatibleKeys(missing_keys, unexpected_keys)`.
        Shape mismatches always raise ValueError naming key and shapes. Nothing is changed
        unless everything fits. Values may be ndarrays, Tensors or PyTorch tensors.
        """
        if not isinstance(state, dict):
            raise TypeError(
                f"load_state_dict: expected a dict of arrays, got {type(state).__name__}"
            )
        entries = self._state_entries()
        missing = [k for k in entries if k not in state]
        unexpected = [k for k in state if k not in entries]
        if strict and (missing or unexpected):
            raise KeyError(
                f"load_state_dict for {type(self).__name__}: missing keys {missing}, "
                f"unexpected keys {unexpected}; expected exactly {list(entries)}"
            )
        arrays = {k: _as_array(state[k]) for k in entries if k in state}
        bad = [
            f"{k}: got {a.shape}, expected {entries[k].shape}"
            for k, a in arrays.items()
            if a.shape != entries[k].shape
        ]
        if bad:
            raise ValueError(
                f"load_state_dict for {type(self).__name__}: shape mismatch: " + "; ".join(bad)
            )
        cast = {}
        for k, a in arrays.items():
            t = entries[k]
            try:
                cast[k] = a.astype(t.dtype, copy=True)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"load_state_dict for {type(self).__name__}: {k} has dtype {a.dtype}, which "
                    f"cannot be cast to the entry's {t.dtype} ({err})"
                ) from None
        for k, a in cast.items():
            entries[k].data = a
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------ files

    def save(self, path: str | os.PathLike) -> None:
        """Write the state_dict to an `.npz` file, atomically (temp file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_npz(path, self.state_dict())

    def load(self, path: str | os.PathLike) -> Module:
        """Load weights saved by `save()` into this model (same checks as load_state_dict)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"load: no weights file at {path}")
        try:
            state = read_npz(path)
        except NPZ_ERRORS as err:
            raise ValueError(f"load: {path} is not a valid .npz weights file ({err})") from None
        self.load_state_dict(state)
        return self

    # ------------------------------------------------------------ printing

    def extra_repr(self) -> str:
        """The text inside this layer's parentheses when printed."""
        return ""

    def __repr__(self) -> str:
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in self._modules.items():
            if child is None:
                continue
            child_text = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_text}")
        lines.append(")")
        return "\n".join(lines)


def _buffer_tensor(value) -> Tensor | None:
    """A buffer as a Tensor that never requires grad (None stays None)."""
    if value is None:
        return None
    if isinstance(value, Tensor):
        if value.requires_grad:
            value = value.detach()
        return value
    return Tensor(np.asarray(value))


def _as_array(value) -> np.ndarray:
    """An ndarray from an ndarray, a Tensor, a number or a PyTorch tensor."""
    if isinstance(value, Tensor):
        return value.data
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


class ModuleList(Module):
    """Sub-modules kept in a list and registered under their indices (`0`, `1`, ...), as
    `torch.nn.ModuleList`: their parameters are the model's, saved in its state_dict."""

    def __init__(self, modules: Iterable[Module] | None = None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(
            "ModuleList has no forward: iterate over it and call the modules yourself"
        )

    def _index(self, index: int) -> int:
        n = len(self._modules)
        if not isinstance(index, (int, np.integer)) or not -n <= index < n:
            raise IndexError(f"ModuleList: index {index} is out of range for {n} modules")
        return int(index) % n

    def _items(self) -> list[Module]:
        return [m for m in self._modules.values() if m is not None]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ModuleList(self._items()[index])
        return self._modules[str(self._index(index))]

    def __setitem__(self, index: int, module: Module) -> None:
        _check_module(module, "ModuleList", index)
        setattr(self, str(self._index(index)), module)

    def __delitem__(self, index) -> None:
        items = self._items()
        del items[index if isinstance(index, slice) else self._index(index)]
        for name in list(self._modules):
            delattr(self, name)
        self.extend(items)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._items())

    def append(self, module: Module) -> ModuleList:
        """Add `module` at the end; returns self."""
        _check_module(module, "ModuleList", len(self))
        setattr(self, str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        """Append every module of `modules`; returns self."""
        if isinstance(modules, Module) and not isinstance(modules, ModuleList):
            raise TypeError("ModuleList.extend: expected an iterable of Modules, got a Module")
        for module in list(modules):
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> None:
        """Insert `module` before position `index`."""
        _check_module(module, "ModuleList", index)
        items = self._items()
        items.insert(index, module)
        for name in list(self._modules):
            delattr(self, name)
        self.extend(items)

    def __repr__(self) -> str:
        """As PyTorch's: runs of identical modules print once, as `(1-3): 3 x Linear(...)`."""
        texts = [repr(m) for m in self]
        if not texts:
            return "ModuleList()"
        runs: list[list] = []  # [first index, last index, text]
        for i, text in enumerate(texts):
            if runs and runs[-1][2] == text:
                runs[-1][1] = i
            else:
                runs.append([i, i, text])
        lines = ["ModuleList("]
        for first, last, text in runs:
            text = text.replace("\n", "\n  ")
            label = f"({first})" if first == last else f"({first}-{last}): {last - first + 1} x"
            lines.append(f"  {label}: {text}" if first == last else f"  {label} {text}")
        lines.append(")")
        return "\n".join(lines)


def _check_module(module, owner: str, index) -> None:
    if not isinstance(module, Module):
        raise TypeError(f"{owner}: item {index} is a {type(module).__name__}, expected a Module")
