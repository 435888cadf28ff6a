"""Datasets x models x methods -> one results row per (image, model, method), resumable and shardable.

One module per job: ``evaluator`` (``evaluate``, ``load_results``), ``loading`` (items and
batches, the loading processes), ``runner`` (explaining and scoring a batch), ``identity`` (the
run's identity), ``run_store`` (the run's folder, chunks and claims), ``scheduling`` (resume,
claims, waiting, progress) and ``distributed`` (``torchrun`` ranks). Names are imported on first
use, so a loading process imports only ``loading`` (and torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {"evaluate": "evaluator", "load_results": "evaluator", "close_loading_pool": "loading"}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
