"""Case 1: LaFAM against the bare forward pass up to layer4 (stem..layer4 as an nn.Sequential)."""

from __future__ import annotations

import torch
from torch import nn

import lafam_utils as lu

from . import Case, Comparison, Contenders, Settings, image_size, images, resnet50


def forward_to_layer4(model: nn.Module) -> nn.Sequential:
    """The ResNet's stem and layer1..layer4 as one module: what LaFAM cannot avoid computing."""
    return nn.Sequential(*list(model.children())[:-2])


def _contenders(batch: int, settings: Settings) -> Contenders:
    model = resnet50(settings.device)
    trunk = forward_to_layer4(model)
    x = images(batch, settings.device, image_size(settings))
    lafam = lu.LaFAM(model, layer="layer4")

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return trunk(x)

    return {"forward to layer4": forward, "LaFAM": lambda: lafam(x)}


def cases(settings: Settings) -> list[Case]:
    batches = (1, 2) if settings.tiny else (1, 32)
    return [
        Case(
            id=f"lafam-b{batch}",
            title=f"LaFAM, batch {batch}",
            build=lambda batch=batch: _contenders(batch, settings),
            comparisons=[Comparison("LaFAM", "forward to layer4", "LaFAM / forward to layer4", 1.05)],
            items=batch,
            rounds=9 if batch == 1 else 3,
        )
        for batch in batches
    ]
