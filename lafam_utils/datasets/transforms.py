"""The paper's preprocessing in one place: centre square crop, resize to 224, ImageNet normalisation.

Images are resized bilinearly, label masks with nearest-neighbour on the same crop, so an image
and its mask stay aligned pixel for pixel. ``preprocess_image`` works on a Pillow image;
``decode_images`` does the same from the files' bytes for a batch, on any device (torchvision's
decoders: nvJPEG on CUDA). ``denormalize`` inverts the normalisation for display.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from .pillow_resize import resize_like_pillow

IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
JPEG_MAGIC = b"\xff\xd8\xff"


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


def decode_images(encoded: Sequence[Tensor], size: int = IMAGE_SIZE, device: str | torch.device = "cpu") -> Tensor:
    """Image files' bytes -> (N, 3, size, size) ImageNet-normalised float images on ``device``.

    The preprocessing of ``preprocess_image`` for a batch: the JPEGs are decoded in one call of
    ``torchvision.io.decode_jpeg`` on ``device`` (nvJPEG on CUDA; on the CPU libjpeg-turbo, which
    gives Pillow's pixels), other formats by ``decode_image`` on the CPU. Each centre square is
    resized by Pillow's bilinear arithmetic (``pillow_resize``, integer, images of one shape in one
    call), so on the CPU the images equal ``preprocess_image``'s; on CUDA only the decoder differs.

    Args:
        encoded: the files' bytes, each a 1-D uint8 tensor on the CPU.
        size: the side of the square output.
        device: where to decode and resize.

    Raises:
        RuntimeError: a file does not decode (truncated or corrupt); the caller may retry one by one.
    """
    device = torch.device(device)
    jpegs = [i for i, data in enumerate(encoded) if bytes(data[:3].tolist()) == JPEG_MAGIC]
    decoded: list[Tensor] = [torch.empty(0)] * len(encoded)
    if jpegs:
        images = decode_jpeg([encoded[i] for i in jpegs], mode=ImageReadMode.RGB, device=device)
        for i, image in zip(jpegs, images, strict=True):
            decoded[i] = image
    for i in sorted(set(range(len(encoded))) - set(jpegs)):
        decoded[i] = decode_image(encoded[i], mode=ImageReadMode.RGB).to(device)
    squares = []
    for image in decoded:
        left, top, right, bottom = square_box(image.shape[2], image.shape[1])
        squares.append(image[:, top:bottom, left:right])
    x = torch.empty(len(encoded), 3, size, size, device=device)
    by_side: dict[int, list[int]] = {}
    for i, square in enumerate(squares):
        by_side.setdefault(square.shape[1], []).append(i)
    for members in by_side.values():
        x[members] = resize_like_pillow(torch.stack([squares[i] for i in members]), (size, size)).float()
    return TF.normalize(x.div_(255), IMAGENET_MEAN, IMAGENET_STD)


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
