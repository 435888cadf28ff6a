"""Pillow's bilinear resize of 8-bit images, bit for bit, in torch on any device.

Pillow (``Image.resize(..., BILINEAR)``, libImaging/Resample.c) resamples in two passes: each
output pixel is a sum of input pixels times fixed-point weights (22 fractional bits, the filter's
support widened by the scale when shrinking), rounded and clipped to 8 bits after each pass.
Pillow 13 runs the vertical pass first where the height shrinks by more than twice the width's
change (earlier versions always start with the horizontal pass), which moves some pixels by one
level. This module computes the same weights in float64, applies them with int32 arithmetic and
orders the passes as the installed Pillow does, so an image resized here equals Pillow's, on the
CPU and on CUDA (tested against Pillow). A float resize (``F.interpolate(..., antialias=True)``)
differs from Pillow's by one level in a few percent of the pixels.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import PIL
import torch
from torch import Tensor

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point fraction for 8-bit images
RESIZE = f"Pillow {PIL.__version__} bilinear"
"""Whose arithmetic ``resize_like_pillow`` follows (the run identity of device decoding records it)."""
VERTICAL_FIRST = int(PIL.__version__.split(".")[0]) >= 13
"""Whether the installed Pillow may start with the vertical pass (Pillow >= 13)."""


def vertical_first(in_size: tuple[int, int], out_size: tuple[int, int]) -> bool:
    """Pillow 13's order: the vertical pass first where the height shrinks by more than twice as many
    pixels as the width does. ``in_size``, ``out_size``: (height, width)."""
    shrink_height, shrink_width = in_size[0] - out_size[0], in_size[1] - out_size[1]
    return VERTICAL_FIRST and shrink_height > 0 and shrink_height > 2 * shrink_width


@lru_cache(maxsize=64)
def pillow_coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` for a bilinear resize of a whole
    axis: per output pixel, the first input index of each tap and its fixed-point weight, as
    (out_size, taps) arrays (unused taps: weight 0 on a valid index)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    inverse = 1.0 / filterscale
    support = 1.0 * filterscale  # the bilinear filter's support is 1
    taps = math.ceil(support) * 2 + 1
    index = np.zeros((out_size, taps), dtype=np.int64)
    weight = np.zeros((out_size, taps), dtype=np.int64)
    for out in range(out_size):
        center = (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)  # C's (int) truncates toward zero, as int() does
        count = min(int(center + support + 0.5), in_size) - first
        w = [max(0.0, 1.0 - abs((x + first - center + 0.5) * inverse)) for x in range(count)]
        total = 0.0
        for value in w:  # in order, as C adds them (Python 3.12's sum() compensates)
            total += value
        for x, value in enumerate(w):  # bilinear weights are never negative: Pillow rounds half up
            weight[out, x] = int(0.5 + (value / total if total != 0.0 else value) * (1 << PRECISION_BITS))
        index[out, :count] = np.arange(first, first + count)
        index[out, count:] = first
    return index, weight


def _resample_axis(x: Tensor, out_size: int, dim: int) -> Tensor:
    """One pass along ``dim`` (-1 or -2) of int32 pixels in 0-255: Pillow's rounding and clipping."""
    index, weight = pillow_coefficients(x.shape[dim], out_size)
    index_t = torch.from_numpy(index).to(x.device)
    weight_t = torch.from_numpy(weight).to(device=x.device, dtype=torch.int32)
    total = torch.full((*x.shape[:dim], out_size, *x.shape[dim:][1:]), 1 << (PRECISION_BITS - 1),
                       dtype=torch.int32, device=x.device)
    for tap in range(index.shape[1]):
        if not weight[:, tap].any():
            continue
        taken = x.index_select(dim, index_t[:, tap])
        shape = (-1, 1) if dim == -2 else (-1,)
        total += taken * weight_t[:, tap].view(shape)
    return torch.div(total, 1 << PRECISION_BITS, rounding_mode="floor").clamp_(0, 255)


def resize_like_pillow(images: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, C, H, W) uint8 images -> (N, C, *size) uint8, equal to Pillow's bilinear ``resize`` of each.

    An axis whose length does not change is not resampled, as in Pillow.
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected (N, C, H, W) uint8 images, got {images.dtype} of shape {tuple(images.shape)}")
    x = images.to(torch.int32)
    passes = [(size[1], -1), (size[0], -2)]
    for out_size, dim in reversed(passes) if vertical_first(tuple(x.shape[-2:]), size) else passes:
        if out_size != x.shape[dim]:
            x = _resample_axis(x, out_size, dim)
    return x.to(torch.uint8)
