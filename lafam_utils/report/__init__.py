"""From results to what a reader sees: display names (``titles``), summary tables (``summary``),
figures (``figures``), correctness splits (``correctness``), the notebooks' computed findings
(``findings``) and the randomisation and faithfulness figures and findings (``sanity``); each
imported on first use."""

from __future__ import annotations

import importlib
from types import ModuleType

_SUBMODULES = ("correctness", "figures", "findings", "sanity", "summary", "titles")
__all__ = list(_SUBMODULES)


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
