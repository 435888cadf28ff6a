"""FEM, the Feature Explanation Method (Fuad et al. 2020): each channel's strong responses, weighted by its mean."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..hooks import LayerSpec
from .base import ActivationExplainer, check_choice
from .default_layers import AUTO
from .registry import register

FEMVariant = Literal["paper", "pytorch-grad-cam"]
FEM_VARIANTS = ("paper", "pytorch-grad-cam")


@register
class FEM(ActivationExplainer):
    """``M = Up(N(sum_k mu_k 1[A^k >= mu_k + k_sigma sigma_k]))``: binary masks weighted by the channel means.

    ``mu_k`` and ``sigma_k`` are channel k's mean and population standard deviation over the
    layer's positions (the "k-sigma rule", ``k_sigma=2``). ``variant="paper"`` (default) is Fuad
    et al.'s definition as xplique implements it (``xplique/attributions/fem.py``: ``>=``, channel
    means as weights, no ReLU): where channel k fires unusually strongly, it adds its mean.

    ``variant="pytorch-grad-cam"`` is pytorch-grad-cam 1.5.7's ``FEM(k=2)``:
    ``ReLU(sum_k w_k A^k)``, ``w_k`` the share of positions where ``A^k > mu_k + k_sigma sigma_k``
    (strict), i.e. the activations weighted by how often the channel fires strongly. Equal to it
    within 1e-5 at the layer's resolution and after its bilinear resize and second min-max
    (tests/explainers/test_fem.py). The threshold is computed by torch's float32 reductions rather
    than NumPy's, so a value within a few float32 steps of it can fall on the other side.

    With ``k_sigma=2`` no value exceeds the threshold on 5 positions or fewer (the largest z-score
    of n values is ``sqrt(n - 1)``): such layers give zero maps in the pytorch-grad-cam variant;
    the paper's ``>=`` still counts a value exactly at it. No labels, no gradients.

    Args:
        model: the network to explain.
        layer: the layer whose activations are read (``"auto"``: the model's default layer).
        k_sigma: the threshold's multiple of the standard deviation.
        variant: ``"paper"`` or ``"pytorch-grad-cam"``, as above.
        **options: ``Explainer``'s other arguments (``upsample``, ``threshold``, ``precision``, ``compile``).

    Raises:
        ValueError: ``variant`` is not one of ``FEM_VARIANTS``.
    """

    name = "fem"
    title = "FEM"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | None = AUTO,
        k_sigma: float = 2.0,
        variant: FEMVariant = "paper",
        **options: Any,
    ) -> None:
        super().__init__(model, layer, **options)
        check_choice("variant", variant, FEM_VARIANTS)
        self.k_sigma, self.variant = k_sigma, variant

    def from_activations(self, acts: Tensor) -> Tensor:
        acts = acts.float()
        std, mean = torch.std_mean(acts, dim=(2, 3), correction=0, keepdim=True)
        threshold = mean + self.k_sigma * std
        if self.variant == "paper":
            return ((acts >= threshold) * mean).sum(dim=1)
        weights = (acts > threshold).float().mean(dim=(2, 3), keepdim=True)
        return (weights * acts).sum(dim=1).relu()
