"""Explainers by name, for notebooks and parameter files, and as a Quantus ``explain_func``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .base import Explainer
from .eigencam import EigenCAM
from .gradcam import GradCAM
from .lafam import LaFAM
from .relax import RELAX

EXPLAINERS: dict[str, type[Explainer]] = {
    "lafam": LaFAM,
    "gradcam": GradCAM,
    "relax": RELAX,
    "eigencam": EigenCAM,
}


def explainer(name: str, model: nn.Module, **kwargs: Any) -> Explainer:
    """Build the explainer called ``name`` ("lafam", "gradcam", "relax", "eigencam"; case, "-" and
    "_" ignored, so "Grad-CAM" works) on ``model``; ``kwargs`` go to its constructor."""
    key = name.lower().replace("-", "").replace("_", "") if isinstance(name, str) else name
    if key not in EXPLAINERS:
        raise ValueError(f"unknown explainer {name!r}; known: {', '.join(EXPLAINERS)}")
    return EXPLAINERS[key](model, **kwargs)


def explain_func(
    model: nn.Module,
    inputs: np.ndarray,
    targets: np.ndarray | None = None,
    *,
    method: str = "lafam",
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Quantus' explain_func: (B, 3, H, W) numpy images in, (B, 1, H, W) float32 maps out.

    Pass ``explain_func_kwargs={"method": "gradcam", "layer": "layer4", ...}`` to a Quantus
    metric; the rest of the kwargs go to the explainer. ``targets`` are used by Grad-CAM and
    ignored by the label-free methods. ``device`` defaults to the model's.
    """
    if device is None:
        device = next(model.parameters(), torch.empty(0)).device
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32, device=device)
    built = explainer(method, model, **kwargs)
    if isinstance(built, GradCAM):
        maps = built(x, target=None if targets is None else torch.as_tensor(np.asarray(targets)))
    else:
        maps = built(x)
    return maps[:, None].cpu().numpy()
