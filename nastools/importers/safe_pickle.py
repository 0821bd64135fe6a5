"""Read foreign ``torch.save`` files without running code from them.

Published supernets are ``torch.save`` pickles, often in the legacy (non-zip) format, that
also hold objects of their authors' classes (a training config). ``torch.load(weights_only=True)``
refuses those, and a plain ``torch.load`` imports and calls whatever the pickle names: a
crafted file runs arbitrary code.

:func:`safe_torch_load` hands ``torch.load`` this module as its ``pickle_module``. Its
:class:`Unpickler` resolves only the globals that rebuild tensors and plain containers
(:func:`allowed_globals`); every other name a pickle mentions (a config class, ``os.system``,
``builtins.eval``) resolves to a :class:`Foreign` placeholder class that records what it was
called with and does nothing else. No module is imported and no foreign callable is called.
:func:`plain` turns placeholders into plain dicts for reading.
"""

from __future__ import annotations

import collections
import functools
import io
import pickle
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

from nastools.errors import NastoolsError, brief


class Foreign:
    """An object of a class that a pickle named and that was not loaded.

    Its subclass per name (made by :func:`foreign_class`) stands where the pickle expects
    the class: calling it, ``__new__``, item and attribute state all just record their
    arguments."""

    qualname = "?"
    __slots__ = ("args", "items", "elements", "state")

    def __new__(cls, *args: Any, **kwargs: Any) -> "Foreign":
        obj = super().__new__(cls)
        obj.args = (args, kwargs) if kwargs else args
        obj.items, obj.elements, obj.state = {}, [], None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # __new__ recorded the arguments

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.elements.append(value)

    def extend(self, values: Any) -> None:
        self.elements.extend(values)

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __reduce__(self):  # never pickled back as the foreign class
        raise TypeError(f"a placeholder of {self.qualname} cannot be pickled")

    def __repr__(self) -> str:
        return f"<not loaded: {self.qualname}>"


_FOREIGN: dict[str, type] = {}


def foreign_class(module: str, name: str) -> type:
    """The placeholder class for ``module.name`` (one per name)."""
    qualname = f"{module}.{name}"
    cls = _FOREIGN.get(qualname)
    if cls is None:
        cls = type("Foreign", (Foreign,), {"qualname": qualname, "__slots__": ()})
        _FOREIGN[qualname] = cls
    return cls


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    """``torch._utils._rebuild_tensor_v2`` for a real storage and no hooks only."""
    import torch

    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError(f"a tensor whose storage is a {type(storage).__name__}")
    if backward_hooks:
        raise pickle.UnpicklingError("a tensor with backward hooks")
    if metadata is not None and not isinstance(metadata, dict):
        raise pickle.UnpicklingError(f"a tensor with metadata of type {type(metadata).__name__}")
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, collections.OrderedDict(), metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks, *state):
    """An ``nn.Parameter`` is read as its plain tensor."""
    import torch

    if not isinstance(data, torch.Tensor) or backward_hooks:
        raise pickle.UnpicklingError("a parameter that is not a plain tensor")
    return data


@functools.lru_cache(maxsize=None)
def allowed_globals() -> dict[tuple[str, str], Any]:
    """The globals a pickle may name and get (``torch.load`` resolves storage types itself):
    containers, and tensor rebuilders that take a storage and no hooks."""
    import torch

    return {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch", "Size"): torch.Size,
    }


class Unpickler(pickle.Unpickler):
    """A pickle reader that resolves :func:`allowed_globals` and a :class:`Foreign`
    placeholder for every other name; ``torch.load`` adds storage types and ``persistent_load``."""

    def find_class(self, module: str, name: str) -> Any:
        if not isinstance(module, str) or not isinstance(name, str):
            raise pickle.UnpicklingError(f"a global with a non-text name {module!r}.{name!r}")
        found = allowed_globals().get((module, name))
        return found if found is not None else foreign_class(module, name)


def load(file, **kwargs: Any) -> Any:
    """``pickle.load`` through :class:`Unpickler` (what ``torch.load`` calls on its
    ``pickle_module`` for the legacy format's header records)."""
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs: Any) -> Any:
    """``pickle.loads`` through :class:`Unpickler`."""
    return Unpickler(io.BytesIO(data), **kwargs).load()


def safe_torch_load(path: str | Path, what: str = "checkpoint") -> Any:
    """The object a ``torch.save`` file holds (zip or legacy format), read on the CPU with
    foreign objects replaced by :class:`Foreign` placeholders; a one-line
    :class:`NastoolsError` naming the file for anything that is not such a file."""
    import torch

    path = Path(path)
    where = f"{what} {str(path)!r}"
    if path.is_dir():
        raise NastoolsError(f"{where} is a folder: give the checkpoint file")
    if not path.is_file():
        raise NastoolsError(f"{where} does not exist" if not path.exists() else f"{where} is not a regular file")
    if not zipfile.is_zipfile(path) and tarfile.is_tarfile(path):
        # torch's oldest (tar) format extracts members to disk before reading them
        raise NastoolsError(f"{where} is in torch's old tar format, which nastools does not read; re-save it with torch.save")
    try:  # this module is the pickle module: torch.load calls its Unpickler and load
        return torch.load(path, map_location="cpu", pickle_module=sys.modules[__name__], weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch and pickle raise many types on damaged input
        raise NastoolsError(f"{where} is truncated, damaged or not a torch.save file ({brief(exc, 160)})") from None


def plain(obj: Any, _seen: set[int] | None = None) -> Any:
    """``obj`` with placeholders as dicts ``{"__class__": name, ...its recorded state}``,
    tuples as lists and tensors as ``"tensor[shape]"`` text: JSON-like data to read."""
    import torch

    seen = _seen if _seen is not None else set()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, torch.Tensor):
        return f"tensor{list(obj.shape)}"
    if id(obj) in seen:
        return "<cycle>"
    seen = seen | {id(obj)}
    if isinstance(obj, Foreign):
        out: dict[str, Any] = {"__class__": obj.qualname}
        if obj.args:
            out["args"] = plain(obj.args, seen)
        out.update({str(k): plain(v, seen) for k, v in obj.items.items()})
        if obj.elements:
            out["elements"] = plain(obj.elements, seen)
        state = obj.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):  # (dict, slots)
            state = {**(state[0] or {}), **state[1]}
        if isinstance(state, dict):
            out.update({str(k): plain(v, seen) for k, v in state.items() if v is not obj})
        elif state is not None and state is not obj:
            out["state"] = plain(state, seen)
        return out
    if isinstance(obj, dict):
        return {str(k): plain(v, seen) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [plain(v, seen) for v in obj]
    return repr(obj)[:200]
