"""LaFAM of several layers fused: the simplest way to a finer map, the baseline of LaFAM-LRP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..hooks import capture, layer_name
from .base import Explainer, feature_map, minmax_normalize, upsample_maps
from .default_layers import model_layers
from .registry import register

FUSED_STAGES = 3
"""How many of a ResNet-staged CNN's last stages ``layers=None`` fuses: ``layer2``, ``layer3``, ``layer4``."""


def default_fused_layers(model: nn.Module) -> list[str]:
    """The last ``FUSED_STAGES`` stages of a ResNet-staged CNN (torchvision's ResNets, the shapes CNNs).

    Raises:
        ValueError: ``model`` has no ``layer1``.. stages; the message asks for ``layers=``.
    """
    stages = [name for name in model_layers(model) if name.startswith("layer")]
    if not stages:
        raise ValueError(
            f"{type(model).__name__} has no ResNet stages (layer1..layer4) to fuse by default; pass layers= "
            "with the names of the convolutional layers to fuse"
        )
    return stages[-FUSED_STAGES:]


@register
class LaFAMFused(Explainer):
    """The mean of LaFAM's normalised maps of several layers, at the finest layer's resolution.

    Each layer's channel mean is min-max normalised per image, upsampled bilinearly to the finest
    layer's grid (28x28 at ``layer2`` for 224 inputs) and the maps are averaged: the rule
    pytorch-grad-cam uses for several target layers (``BaseCAM.aggregate_multi_layers``). One
    forward pass up to the deepest layer, no labels, no gradients. A map that a finer layer
    shows on its own grid keeps the blocks of the coarser layers beside it: it is finer than
    LaFAM's but not the image's resolution.

    Args:
        model: the network to explain.
        layers: the layers to fuse (names, any order); None: ``default_fused_layers`` (``layer2``,
            ``layer3``, ``layer4`` on a ResNet or a shapes CNN).
        **options: ``Explainer``'s other arguments (``upsample``, ``threshold``, ``precision``, ``compile``).

    Raises:
        ValueError: fewer than two layers, a layer not in ``model``, or no default layers.
    """

    name = "lafam-fused"
    title = "LaFAM fused"
    needs_layer = False

    def __init__(self, model: nn.Module, layers: Sequence[str] | None = None, **options: Any) -> None:
        super().__init__(model, None, **options)
        if isinstance(layers, str) or (layers is not None and len(layers) < 2):
            raise ValueError(f"layers must name at least two layers to fuse, got {layers!r}")
        layers = default_fused_layers(model) if layers is None else list(layers)
        self.layers = [layer_name(model, layer) for layer in layers]

    def layer_maps(self, x: Tensor) -> Tensor:
        with torch.no_grad(), self.forward_context(x), capture(self.model, self.layers, stop=True) as rec:
            self.model(x)
        missing = [layer for layer in self.layers if layer not in rec.outputs]
        if missing:
            raise RuntimeError(f"layers {missing} were not reached by the forward pass of {type(self.model).__name__}")
        size = tuple(x.shape[-2:])
        means = [feature_map(rec.outputs[layer], self.model, layer, size).float().mean(dim=1) for layer in self.layers]
        finest = max((m.shape[-2:] for m in means), key=lambda shape: shape[0] * shape[1])
        return torch.stack([upsample_maps(minmax_normalize(m), finest, "bilinear") for m in means]).mean(dim=0)

    def __repr__(self) -> str:
        return f"LaFAMFused(layers={self.layers!r}, upsample={self.upsample!r}, precision={self.precision!r})"
