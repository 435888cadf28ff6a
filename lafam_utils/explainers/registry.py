"""Explainers by name, for notebooks and parameter files, and as a Quantus ``explain_func``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from .base import Explainer

ExplainerClass = TypeVar("ExplainerClass", bound=type[Explainer])

EXPLAINERS: dict[str, type[Explainer]] = {}
"""Registered explainers by key (``name`` lower-cased, without "-" and "_"), in registration order."""


def method_key(name: str) -> str:
    """The registry key of a method name: case, "-" and "_" ignored, so "Grad-CAM" finds "gradcam".

    Raises:
        TypeError: ``name`` is not a str.
    """
    if not isinstance(name, str):
        raise TypeError(f"expected a method name as a string, got {type(name).__name__}")
    return name.lower().replace("-", "").replace("_", "")


def register(cls: ExplainerClass) -> ExplainerClass:
    """Class decorator: make an ``Explainer`` subclass available by its ``name``.

    The name then works in ``lu.explainer``, ``lu.evaluate``, the Explorer and the notebooks'
    ``methods`` parameter.

    Raises:
        TypeError: ``cls`` is not an ``Explainer`` subclass, or has no ``name`` / ``title``.
        ValueError: another class is already registered under the same key.
    """
    if not (isinstance(cls, type) and issubclass(cls, Explainer)):
        raise TypeError(f"register expects an Explainer subclass, got {cls!r}")
    if not cls.name or not cls.title:
        raise TypeError(f"{cls.__name__} needs the class attributes name (its key) and title (its display name)")
    key = method_key(cls.name)
    known = EXPLAINERS.get(key)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise ValueError(f"explainer name {cls.name!r} is taken by {known.__module__}.{known.__qualname__}")
    EXPLAINERS[key] = cls
    return cls


def explainer_class(name: str) -> type[Explainer]:
    """The registered class called ``name``.

    Raises:
        ValueError: no explainer of that name is registered (the message lists the known ones).
    """
    key = method_key(name)
    if key not in EXPLAINERS:
        raise ValueError(f"unknown explainer {name!r}; known: {', '.join(sorted(c.name for c in EXPLAINERS.values()))}")
    return EXPLAINERS[key]


def accepted_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``options`` that method ``name``'s constructor takes (e.g. RELAX's ``n_masks``),
    so that one set of run settings serves every method.

    Raises:
        ValueError: no explainer of that name is registered.
    """
    parameters = inspect.signature(explainer_class(name)).parameters
    return {key: value for key, value in options.items() if key in parameters}


def method_title(name: str) -> str:
    """The display name of a method ("gradcam" -> "Grad-CAM"); an unregistered name is its own title."""
    try:
        return explainer_class(name).title
    except (ValueError, TypeError):
        return str(name)


def explainer(name: str, model: nn.Module, **kwargs: Any) -> Explainer:
    """Build the explainer called ``name`` on ``model``; ``kwargs`` go to its constructor.

    Args:
        name: a registered name ("lafam", "gradcam", "relax", "eigencam", or one added with
            ``register``); case, "-" and "_" are ignored.
        model: the network to explain.
        **kwargs: the explainer's constructor arguments (``layer``, ``upsample``, ...).

    Returns:
        The explainer, a callable from (B, 3, H, W) images to (B, H, W) maps.

    Raises:
        ValueError: the name is unknown (the message lists the known ones).
    """
    return explainer_class(name)(model, **kwargs)


def has_class_logits(model: nn.Module) -> bool:
    """A classifier (Grad-CAM has a class to explain): the model names its classes."""
    return getattr(model, "class_names", None) is not None


def applies_to(method: str, model: nn.Module) -> bool:
    """Whether ``method`` can explain ``model``.

    It needs class logits where it needs labels and a model of a kind it ``supports``; a layer-free
    method must build on the model (a layer-based one is checked when its layer is chosen).
    """
    cls = explainer_class(method)
    if (cls.needs_labels and not has_class_logits(model)) or not cls.supports(model):
        return False
    if cls.needs_layer:
        return True
    try:
        cls(model)
    except (ValueError, TypeError):
        return False
    return True


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

    Args:
        model: the network to explain.
        inputs: (B, 3, H, W) images.
        targets: (B,) class indices, for methods that need labels.
        method: a registered method name.
        device: where the maps are computed (None: the model's device).
        **kwargs: the explainer's constructor arguments.

    Returns:
        (B, 1, H, W) float32 maps in [0, 1].

    Raises:
        ValueError: ``method`` is not registered.
    """
    if device is None:
        device = next(model.parameters(), torch.empty(0)).device
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32, device=device)
    built = explainer(method, model, **kwargs)
    if built.needs_labels:
        maps = built(x, target=None if targets is None else torch.as_tensor(np.asarray(targets)))
    else:
        maps = built(x)
    return maps[:, None].cpu().numpy()
