"""LaFAM, the Label-free Activation Map (Karjauv & Albayrak)."""

from __future__ import annotations

from torch import Tensor

from .base import ActivationExplainer
from .registry import register


@register
class LaFAM(ActivationExplainer):
    """Channel mean of one layer's activations: ``M = Up(N(mean_k A^k))``.

    One forward pass up to the layer, no labels, no gradients; the layers after it are skipped.

    The arguments are ``Explainer``'s.
    """

    name = "lafam"
    title = "LaFAM"

    def from_activations(self, acts: Tensor) -> Tensor:
        return acts.float().mean(dim=1)
