"""LaFAM: label-free activation maps, and the tools to compare them with Grad-CAM, RELAX and EigenCAM.

Names are imported on first use, so ``import lafam_utils`` stays fast and a notebook only pays
for what it touches.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_NAMES = {
    "Explainer": "explainers",
    "LaFAM": "explainers",
    "GradCAM": "explainers",
    "RELAX": "explainers",
    "EigenCAM": "explainers",
    "explainer": "explainers",
    "explain_func": "explainers",
    "load_model": "models",
    "SyntheticShapes": "synthetic",
    "evaluate": "evaluation",
    "summarize": "summary",
    "capture": "hooks",
    "native_bf16": "precision",
}
_SUBMODULES = (
    "analysis",
    "datasets",
    "evaluation",
    "explainers",
    "explorer",
    "filters",
    "hooks",
    "metrics",
    "models",
    "notebook_runner",
    "plotting",
    "precision",
    "progress",
    "shared_forward",
    "ssl_releases",
    "summary",
    "synthetic",
    "transforms",
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
