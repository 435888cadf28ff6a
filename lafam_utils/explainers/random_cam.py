"""RandomCAM: a random map per image, the floor every comparison table should show."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..hooks import LayerSpec
from .base import Explainer
from .default_layers import AUTO
from .registry import register

PRIME = 2**31 - 1
"""The modulus of the hashes: a Mersenne prime, so the products of two residues fit in int64."""


def image_keys(x: Tensor, generator: torch.Generator) -> Tensor:
    """A (B,) key per image: a random linear hash modulo ``PRIME`` of its float32 bit patterns.

    Two images that differ in any pixel get the same key with probability about ``1 / PRIME``
    over the generator's draws; the same pixels give the same key in any batch, on any device.

    Args:
        x: (B, 3, H, W) float32 images.
        generator: the CPU generator the hash's coefficients are drawn from.

    Returns:
        The keys, int64 in [0, PRIME), on ``x``'s device.
    """
    bits = x.reshape(len(x), -1).contiguous().view(torch.int32).long().remainder(PRIME)
    coefficients = torch.randint(0, PRIME, (bits.shape[1],), generator=generator).to(x.device)
    return (bits * coefficients).remainder(PRIME).sum(dim=1).remainder(PRIME)


def random_maps(x: Tensor, size: tuple[int, int], seed: int) -> Tensor:
    """(B, h, w) maps of values ``((key * a_p + b_p) mod PRIME) / PRIME``, ``a_p``, ``b_p`` drawn per position.

    Args:
        x: (B, 3, H, W) float32 images; their content picks their maps (``image_keys``).
        size: the maps' (h, w).
        seed: the seed of the CPU generator that draws the hash's coefficients.

    Returns:
        float32 maps in [0, 1] on ``x``'s device.
    """
    generator = torch.Generator().manual_seed(seed)
    keys = image_keys(x, generator)
    positions = size[0] * size[1]
    slopes = torch.randint(1, PRIME, (positions,), generator=generator).to(x.device)
    offsets = torch.randint(0, PRIME, (positions,), generator=generator).to(x.device)
    values = (keys[:, None] * slopes + offsets).remainder(PRIME)
    return (values.double() / PRIME).float().view(len(x), *size)


@register
class RandomCAM(Explainer):
    """A random map at the layer's resolution, a function of the image's pixels and ``seed`` alone.

    Distribution: over the seed, each of the ``h*w`` positions of an image's raw map is uniform on
    ``{0, 1/P, ..., (P-1)/P}`` (``P = 2^31 - 1``), independently of the other positions; two
    images with different pixels get pairwise independent maps (a 2-universal hash of a random
    linear key of their pixels; their keys coincide with probability about ``1/P``). For a fixed
    seed an image gets the same map in any batch, at any position in it, on any device, so a
    resumed ``lu.evaluate`` run and a differently batched one give the same table. The base then
    min-max normalises each map (its smallest value becomes 0, its largest 1) and upsamples it
    like the other explainers' maps, so it is as coarse as theirs.

    The forward pass up to ``layer`` runs only to learn the layer's (h, w). pytorch-grad-cam's
    ``RandomCAM`` is another method (random channel weights in [-1, 1] times the activations,
    which keeps the features' structure); this one ignores the features.

    Args:
        model: the network to explain.
        layer: the layer whose activations are read (``"auto"``: the model's default layer).
        seed: the seed of the maps.
        **options: ``Explainer``'s other arguments (``upsample``, ``threshold``, ``precision``, ``compile``).
    """

    name = "random"
    title = "Random"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | None = AUTO,
        seed: int = 0,
        **options: Any,
    ) -> None:
        super().__init__(model, layer, **options)
        self.seed = seed

    def layer_maps(self, x: Tensor) -> Tensor:
        size = tuple(self.activations(x).shape[-2:])
        return random_maps(x, size, self.seed)
