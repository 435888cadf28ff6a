"""Helpers shared by the tests of the label-free peers (FEM, KPCA-CAM, DFF, REPEAT, RandomCAM)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import lafam_utils as lu
from lafam_utils.explainers import minmax_normalize


def identity_model() -> nn.Module:
    """A model whose ``layer4`` passes the images through: the images are the activations."""
    model = nn.Sequential()
    model.add_module("layer4", nn.Identity())
    return model


def layer4_activations(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    """The (B, C, h, w) output of ``model.layer4`` as the float32 NumPy array pytorch-grad-cam works on."""
    with torch.no_grad():
        return lu.hooks.layer_output(model, "layer4", images).numpy()


def normalised(cams: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's treatment of raw CAMs at the layer's resolution: ReLU, then min-max per map."""
    return minmax_normalize(torch.from_numpy(np.maximum(cams, 0)).float()).numpy()
