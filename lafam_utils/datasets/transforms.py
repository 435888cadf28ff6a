"""The paper's preprocessing in one place: centre square crop, resize to 224, ImageNet normalisation.

Images are resized bilinearly, label masks with nearest-neighbour on the same crop, so an image
and its mask stay aligned pixel for pixel. ``denormalize`` inverts the normalisation for display.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor

IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def square_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box of the centred square of side min(width, height)."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def preprocess_image(image: Image.Image, size: int = IMAGE_SIZE) -> Tensor:
    """PIL image -> (3, size, size) float tensor: centre square crop, bilinear resize, ImageNet normalisation."""
    image = image.convert("RGB")
    square = image.crop(square_box(*image.size)).resize((size, size), Image.Resampling.BILINEAR)
    return TF.normalize(TF.to_tensor(square), IMAGENET_MEAN, IMAGENET_STD)


def preprocess_mask(mask: np.ndarray | Tensor, size: int = IMAGE_SIZE) -> Tensor:
    """(H, W) label or boolean mask -> (size, size) on the same crop, nearest-neighbour, dtype kept.

    Raises:
        ValueError: ``mask`` is not two-dimensional.
    """
    labels = torch.as_tensor(np.asarray(mask))
    if labels.ndim != 2:
        raise ValueError(f"expected a (H, W) mask, got shape {tuple(labels.shape)}")
    height, width = labels.shape
    left, top, right, bottom = square_box(width, height)
    side = right - left
    index = ((torch.arange(size, dtype=torch.float64) + 0.5) * side / size).floor().long().clamp_max(side - 1)
    return labels[top + index][:, left + index]


def denormalize(x: Tensor) -> Tensor:
    """Invert the ImageNet normalisation of (..., 3, H, W) images and clip to [0, 1] for display."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype)[:, None, None]
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype)[:, None, None]
    return (x * std + mean).clamp(0.0, 1.0)


def to_display(x: Tensor) -> np.ndarray:
    """A normalised (3, H, W) image as a (H, W, 3) float array in [0, 1] for matplotlib."""
    return denormalize(x.detach()).permute(1, 2, 0).cpu().numpy()
