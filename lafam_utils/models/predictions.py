"""A classifier's predictions, in batches."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..explainers.base import check_images


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """The classifier's top-1 class index for each image, computed in batches on ``images``' device.

    Raises:
        ValueError, TypeError: ``images`` is not a float32 (B, 3, H, W) tensor.
    """
    check_images(images)
    return torch.cat([model(chunk).argmax(dim=1) for chunk in images.split(batch_size)])


__all__ = ["predict"]
