"""LaFAM: label-free activation maps, and the tools to compare them with Grad-CAM, RELAX and EigenCAM.

The small core: ``hooks`` (capture a layer), ``explainers`` (one base, a method per module,
registered by name) and ``filters`` (the paper's subset rules). Around it, the pipeline's stages:
``datasets`` -> ``models`` -> ``explainers`` -> ``metrics`` -> ``evaluation`` -> ``report``, the
synthetic benchmark in ``shapes``, the paper's setup in ``paper`` and the notebook layer in
``notebook``. Names are imported on first use, so ``import lafam_utils`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_NAMES = {
    "Explainer": "explainers",
    "ActivationExplainer": "explainers",
    "LaFAM": "explainers",
    "GradCAM": "explainers",
    "RELAX": "explainers",
    "EigenCAM": "explainers",
    "explainer": "explainers",
    "explain_func": "explainers",
    "applies_to": "explainers",
    "default_layer": "explainers",
    "register": "explainers",
    "load_model": "models",
    "SyntheticShapes": "shapes",
    "evaluate": "evaluation",
    "summarize": "report.summary",
    "capture": "hooks",
    "native_bf16": "precision",
}
_SUBMODULES = (
    "compiling",
    "datasets",
    "evaluation",
    "explainers",
    "filters",
    "hooks",
    "metrics",
    "models",
    "notebook",
    "paper",
    "precision",
    "progress",
    "report",
    "shapes",
)

__all__ = sorted(_NAMES) + list(_SUBMODULES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
