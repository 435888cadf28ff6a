"""Case 4: the six metrics, torch backend against Quantus 0.6.0, on nearest-upsampled 7x7 maps.

Quantus is timed the two ways it gets called: once per metric on the whole batch, and once per
metric per image (the reference evaluation's loop).
"""

from __future__ import annotations

import torch
from torch import Tensor

import lafam_utils as lu
from lafam_utils.explainers import upsample_maps

from . import Case, Comparison, Contenders, Settings, image_size


def maps_and_masks(batch: int, size: int, device: str, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Nearest-upsampled random 7x7 maps (full of ties, like real ones) and one random box mask each."""
    generator = torch.Generator().manual_seed(seed)
    maps = upsample_maps(torch.rand(batch, 7, 7, generator=generator), (size, size), "nearest")
    corners = torch.randint(0, size // 2, (batch, 2), generator=generator)
    extents = torch.randint(size // 8, size // 2, (batch, 2), generator=generator)
    rows, cols = torch.arange(size)[None, :, None], torch.arange(size)[None, None, :]
    top, left = corners[:, 0, None, None], corners[:, 1, None, None]
    height, width = extents[:, 0, None, None], extents[:, 1, None, None]
    masks = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
    return maps.to(device), masks.to(device)


def _contenders(batch: int, settings: Settings) -> Contenders:
    size = image_size(settings)
    maps, masks = maps_and_masks(batch, size, settings.device)
    k = min(1000, size * size)

    def quantus_per_image() -> None:
        for i in range(batch):
            lu.metrics.compute(maps[i : i + 1], masks[i : i + 1], backend="quantus", k=k)

    return {
        "torch backend": lambda: lu.metrics.compute(maps, masks, k=k),
        "Quantus, per batch": lambda: lu.metrics.compute(maps, masks, backend="quantus", k=k),
        "Quantus, per image": quantus_per_image,
    }


def cases(settings: Settings) -> list[Case]:
    batch = 2 if settings.tiny else 128 if settings.large else 32
    return [
        Case(
            id="metrics",
            title=f"Six metrics, batch {batch}",
            build=lambda: _contenders(batch, settings),
            comparisons=[
                Comparison("Quantus, per batch", "torch backend", "speed-up vs Quantus called per batch", 20, ">="),
                Comparison("Quantus, per image", "torch backend", "speed-up vs Quantus called per image", 20, ">="),
            ],
            items=batch,
        )
    ]
