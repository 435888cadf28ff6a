"""A small classifier and encoder case for the metrics that query the model."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

import lafam_utils as lu


class SmallNet(nn.Module):
    """Conv-BN-ReLU, a strided conv (the explained ``layer4``), a linear head: six randomisable layers."""

    def __init__(self, channels: int = 3, classes: int | None = 5, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.layer1 = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.layer4 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Linear(16, classes or 8)
        with torch.no_grad():  # trained-looking batch statistics, so that reset_parameters changes them
            for norm in (self.layer1[1], self.layer4[1]):
                norm.running_mean.uniform_(-0.5, 0.5)
                norm.running_var.uniform_(0.5, 2.0)
                norm.weight.uniform_(0.5, 1.5)
        if classes:
            self.class_names = [f"class{i}" for i in range(classes)]
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layer4(self.layer1(x)).mean(dim=(2, 3)))


def images(batch: int = 4, channels: int = 3, height: int = 16, width: int = 18, seed: int = 1) -> Tensor:
    return torch.randn(batch, channels, height, width, generator=torch.Generator().manual_seed(seed))


def distinct_maps(batch: int, height: int, width: int, seed: int = 2) -> Tensor:
    """Maps without ties (Quantus' argsort breaks ties its own way)."""
    g = torch.Generator().manual_seed(seed)
    return (
        torch.stack([torch.randperm(height * width, generator=g) for _ in range(batch)])
        .float()
        .view(batch, height, width)
    )


def factory(method: str, **options) -> Callable[[nn.Module], Callable[..., Tensor]]:
    return lambda model: lu.explainer(method, model, **options)
