"""Reading weights files safely: no code from a checkpoint runs unless the caller trusts it.

Plain state dicts load with ``torch.load(weights_only=True)``; Lightning/Bolts checkpoints of any
Lightning version go through a restricted unpickler that maps training records to inert stand-ins
and refuses every other global. ``load_weights`` loads a state dict exactly, and
``torchvision_names`` is the one key-renaming rule every release layout uses.
"""

from __future__ import annotations

import argparse
import importlib
import pickle
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


class CheckpointError(RuntimeError):
    """A weights file cannot be read, needs trust to unpickle, or does not fit the model."""


TRAINING_RECORD_MODULES = (
    "pytorch_lightning.", "lightning.", "lightning_fabric.", "lightning_lite.", "pl_bolts.", "torchmetrics."
)
"""Modules whose objects a Lightning/Bolts checkpoint holds beside the weights (hyper-parameters as
``AttributeDict``, callback states keyed by the callback class, trainer enums); they are read as
inert ``TrainingRecord`` stand-ins, so no code of these packages (installed or not) runs."""
HARMLESS_GLOBALS = {
    "argparse.Namespace": argparse.Namespace,
    "numpy.dtype": "numpy:dtype",
    "numpy.core.multiarray.scalar": "numpy.core.multiarray:scalar",
    "numpy._core.multiarray.scalar": "numpy._core.multiarray:scalar",
}
"""Globals of training records that only hold data: read as themselves."""
DANGEROUS_MODULES = ("os", "posix", "nt", "subprocess", "builtins", "sys", "shutil", "socket", "importlib",
                     "runpy", "pty", "code", "webbrowser", "ctypes", "multiprocessing", "pickle", "marshal", "types")


def read_checkpoint(path: str | Path, trust: bool = False) -> dict[str, Any]:
    """Read a weights file on the CPU without running code from it (unless ``trust``).

    Plain files are read with ``torch.load(weights_only=True)``. Lightning/Bolts checkpoints of
    any Lightning version also hold training records (``AttributeDict`` hyper-parameters, callback
    states keyed by the callback class, ``argparse.Namespace``); those are read by a restricted
    unpickler that allows torch's weights-only globals, maps the records to inert stand-ins
    (``TrainingRecord``) and refuses every other global.

    Args:
        path: the weights file.
        trust: unpickle such a file fully (it can run arbitrary code: only for files you made).

    Returns:
        The file's dict: a state dict or a Lightning checkpoint.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        CheckpointError: the file is unreadable (the message names the file), refers to a global the
            restricted unpickler refuses (the message names the global), or holds no dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "WeightsUnpickler" not in str(err):
            raise CheckpointError(f"{path} is corrupt or not a PyTorch checkpoint ({first_line(err)})") from None
        loaded = _load_trusted(path) if trust else _load_restricted(path)
    except Exception as err:  # noqa: BLE001 - a damaged file raises any type; re-raised as CheckpointError
        raise CheckpointError(
            f"{path} is corrupt, truncated or not a PyTorch checkpoint ({first_line(err)})"
        ) from None
    if not isinstance(loaded, dict):
        raise CheckpointError(
            f"{path} holds a {type(loaded).__name__}; expected a state dict or a Lightning checkpoint"
        )
    return loaded


class TrainingRecord(dict):
    """Inert stand-in for an object of a training package found in a checkpoint; it runs nothing.

    It keeps what the file stored: items, constructor ``args``, ``state``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __reduce__(self) -> tuple:
        return (dict, (dict(self),))


class BlockedGlobal(pickle.UnpicklingError):
    """A checkpoint refers to a global that reading weights never needs."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


_STAND_INS: dict[str, type] = {}


def _stand_in(full_name: str) -> type:
    """One ``TrainingRecord`` subclass per global name, so that e.g. two callback classes stay two keys."""
    if full_name not in _STAND_INS:
        module, _, name = full_name.rpartition(".")
        _STAND_INS[full_name] = type(name, (TrainingRecord,), {"__module__": f"{__name__}.stand_in.{module}"})
    return _STAND_INS[full_name]


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only torch's weights-only globals, harmless data types and training-record stand-ins."""

    def find_class(self, module: str, name: str) -> Any:
        from torch._weights_only_unpickler import _get_allowed_globals  # torch's own weights-only allow-list

        full_name = f"{module}.{name}"
        allowed = _get_allowed_globals()
        if full_name in allowed:
            return allowed[full_name]
        if full_name in HARMLESS_GLOBALS:
            found = HARMLESS_GLOBALS[full_name]
            if isinstance(found, str):
                owner, _, attribute = found.partition(":")
                return getattr(importlib.import_module(owner), attribute)
            return found
        if full_name.startswith(TRAINING_RECORD_MODULES):
            return _stand_in(full_name)
        raise BlockedGlobal(full_name)


_RESTRICTED_PICKLE = types.ModuleType("lafam_restricted_pickle")
_RESTRICTED_PICKLE.Unpickler = _RestrictedUnpickler
_RESTRICTED_PICKLE.load = lambda file, **kwargs: _RestrictedUnpickler(file, **kwargs).load()
_RESTRICTED_PICKLE.__name__ = "lafam_restricted_pickle"


def _load_restricted(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RESTRICTED_PICKLE)
    except BlockedGlobal as blocked:
        if blocked.name.split(".")[0] in DANGEROUS_MODULES:
            raise CheckpointError(
                f"{path} was not loaded: blocked global {blocked.name}, which unpickling it would call. A weights "
                "file never needs it; this file looks malicious or damaged. Do not load it."
            ) from None
        raise CheckpointError(
            f"{path} was not loaded: blocked global {blocked.name}, a Python object beside the weights that "
            "is neither a tensor, a container nor a Lightning/Bolts training record. If you made this file "
            "yourself, pass trust_checkpoint=True to unpickle it fully (that runs its code)."
        ) from None
    except Exception as err:  # noqa: BLE001 - a damaged file raises any type; re-raised as CheckpointError
        raise CheckpointError(f"{path} is corrupt or cannot be unpickled ({first_line(err)})") from None


def _load_trusted(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - a damaged file raises any type; re-raised as CheckpointError
        raise CheckpointError(f"{path} is corrupt or cannot be unpickled ({first_line(err)})") from None


def torchvision_names(
    state: Mapping[str, Any], backbone: str, head: str | None, unused: Iterable[str], keep_head: bool
) -> dict[str, Any]:
    """A checkpoint's state dict under torchvision's ResNet50 names, its projection head as ``fc``.

    Args:
        state: the checkpoint's state dict.
        backbone: the key prefix of the ResNet50 (stripped; "" when the keys are torchvision's already).
        head: the key prefix of the projection head, or None when the file has none.
        unused: key prefixes of parts no embedding uses (dropped by name).
        keep_head: keep the head's keys (renamed to ``fc.*``); False drops them.

    Returns:
        The renamed state dict. Every other key keeps its name, so that ``load_weights`` reports
        it as unexpected.
    """
    unused = tuple(unused)
    renamed = {}
    for key, value in state.items():
        if unused and key.startswith(unused):
            continue
        if head and key.startswith(head):
            if keep_head:
                renamed["fc." + key[len(head) :]] = value
        elif key.startswith(backbone):
            renamed[key[len(backbone) :]] = value
        else:
            renamed[key] = value
    return renamed


def load_weights(model: nn.Module, state: Any, source: str | Path, what: str) -> None:
    """Load a state dict exactly: every parameter and buffer present, nothing unknown left over.

    Args:
        model: the model to load into.
        state: the weights, a dict of tensors under the model's names.
        source: the file they come from, named in errors.
        what: the model, named in errors.

    Raises:
        CheckpointError: ``state`` is not a dict of tensors, or keys are missing, unexpected or of
            another shape (the message names them, ``what`` names the model).
    """
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{source} does not hold a state dict (a dict of tensors) for {what}")
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    resized = [
        f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    problems = [
        f"{label} ({len(keys)}): {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}"
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", resized))
        if keys
    ]
    if problems:
        raise CheckpointError(f"{source} does not fit {what}: " + "; ".join(problems))
    model.load_state_dict(state)


def first_line(err: BaseException) -> str:
    """The first line of an error's message (after torch's weights-only preamble, if any)."""
    text = str(err).partition("WeightsUnpickler error:")[2].strip() or str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__




__all__ = ["CheckpointError", "TrainingRecord", "first_line", "load_weights", "read_checkpoint", "torchvision_names"]
