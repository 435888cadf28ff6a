"""LayerCAM (Jiang et al. 2021): Grad-CAM with one weight per position instead of one per channel."""

from __future__ import annotations

from torch import Tensor

from .gradcam import GradCAM
from .registry import register


@register
class LayerCAM(GradCAM):
    """``M = Up(N(ReLU(sum_k ReLU(d y_c / d A^k) * A^k)))``: each activation weighed by its own positive gradient.

    Where Grad-CAM averages the gradient over the positions, LayerCAM keeps it per position, so
    a shallow layer's map keeps that layer's resolution (Jiang et al. 2021, "LayerCAM: exploring
    hierarchical class activation maps for localization"); the paper fuses such maps of several
    layers, ``lafam-fused`` does the same for LaFAM. Everything else is Grad-CAM's: ``target``,
    one backward through the layers after ``layer``, no parameter gradients, a shared forward.
    Equal to pytorch-grad-cam 1.5.7's ``LayerCAM`` on one target layer
    (tests/explainers/test_layercam.py).

    Args:
        model: a classifier returning (B, n_classes) scores; ``class_names`` for named targets.
        layer: the layer whose activations and gradients are read (``"auto"``: the model's default layer).
        upsample: as for ``Explainer``.
        threshold: as for ``Explainer``.
        precision: as for ``Explainer``.
        compile: as for ``Explainer``.
    """

    name = "layercam"
    title = "LayerCAM"

    def weigh(self, grads: Tensor, acts: Tensor) -> Tensor:
        return (grads.relu() * acts).sum(dim=1).relu()
