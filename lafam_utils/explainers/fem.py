"""FEM, the Feature Explanation Method (Fuad et al. 2020): LaFAM with data-dependent channel weights."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..hooks import LayerSpec
from .base import ActivationExplainer
from .default_layers import AUTO
from .registry import register


@register
class FEM(ActivationExplainer):
    """``M = Up(N(ReLU(sum_k w_k A^k)))``, ``w_k`` = the share of positions where ``A^k > mu_k + k_sigma * sigma_k``.

    ``mu_k`` and ``sigma_k`` are channel k's mean and population standard deviation over the
    layer's positions (the "k-sigma rule", ``k_sigma=2`` as pytorch-grad-cam's ``FEM(k=2)``). A
    channel counts where it fires unusually strongly; where none does the map is zero. The ReLU
    is pytorch-grad-cam's (it clips every CAM before normalising). No labels, no gradients.

    Equal to pytorch-grad-cam 1.5.7's ``FEM`` (tests/test_fem.py: within 1e-5 at the layer's
    resolution and after its bilinear resize and second min-max; measured 3.6e-7 on ResNet50
    layer4). Deviation: the threshold is computed in float32 by torch's reductions rather than
    NumPy's, so a value within a few float32 steps of ``mu + k sigma`` can fall on the other side
    of it; a value exactly equal to the threshold does not count, as there. With ``k_sigma=2`` no
    value can exceed the threshold on 5 positions or fewer (the largest z-score of n values is
    ``sqrt(n - 1)``): such layers give zero maps on both sides.

    Args:
        model: the network to explain.
        layer: the layer whose activations are read (``"auto"``: the model's default layer).
        k_sigma: the threshold's multiple of the standard deviation.
        **options: ``Explainer``'s other arguments (``upsample``, ``threshold``, ``precision``, ``compile``).
    """

    name = "fem"
    title = "FEM"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | None = AUTO,
        k_sigma: float = 2.0,
        **options: Any,
    ) -> None:
        super().__init__(model, layer, **options)
        self.k_sigma = k_sigma

    def from_activations(self, acts: Tensor) -> Tensor:
        acts = acts.float()
        std, mean = torch.std_mean(acts, dim=(2, 3), correction=0, keepdim=True)
        weights = (acts > mean + self.k_sigma * std).float().mean(dim=(2, 3))
        return (weights[:, :, None, None] * acts).sum(dim=1).relu()

