"""Embedding heads shared by the self-supervised encoders: what a ResNet50's ``fc`` becomes."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

WIDTH = 2048  # ResNet50's pooled feature size
EMBEDDINGS = ("backbone", "projection")
"""``"backbone"``: ``fc = nn.Identity()``, the pooled layer4 features; ``"projection"``: the release's head."""


class L2Normalized(nn.Sequential):
    """A projection head whose output is L2-normalised (MoCo v2's query encoder, SimCLR's and SwAV's heads)."""

    def forward(self, x: Tensor) -> Tensor:
        """The layers' (B, D) output, each row L2-normalised."""
        return F.normalize(super().forward(x), dim=1)


class NormalizedProjection(L2Normalized):
    """SimCLR's and SwAV's projection head, 2048 -> 2048 -> 128, with an L2-normalised output.

    Args:
        out_bias: whether the last Linear has a bias (SwAV's has, SimCLR's has not).
        width: the input and hidden width.
        out_dim: the output width.
    """

    def __init__(self, out_bias: bool, width: int = WIDTH, out_dim: int = 128) -> None:
        super().__init__(
            nn.Linear(width, width),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
            nn.Linear(width, out_dim, bias=out_bias),
        )


__all__ = ["EMBEDDINGS", "WIDTH", "L2Normalized", "NormalizedProjection"]
