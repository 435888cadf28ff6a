"""A classifier's predictions, in batches."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..explainers.base import check_images


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """The classifier's top-1 class index for each image, computed in batches on ``images``' device.

    Args:
        model: a classifier giving (B, n_classes) logits.
        images: (B, 3, H, W) float32 images.
        batch_size: images per forward pass.

    Returns:
        (B,) int64 class indices.

    Raises:
        TypeError: ``images`` is not a float32 tensor.
        ValueError: ``images`` is not of shape (B, 3, H, W) with B >= 1.
    """
    check_images(images)
    return torch.cat([model(chunk).argmax(dim=1) for chunk in images.split(batch_size)])


__all__ = ["predict"]
