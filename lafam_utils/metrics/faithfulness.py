"""Faithfulness: does removing what the map calls relevant change the model's output? Batched in torch.

- **Deletion** and **Insertion** (Petsiuk et al. 2018, RISE): pixels are removed from the image
  (replaced by a baseline) or inserted into a blurred copy, most relevant first, ``steps`` at a time;
  the score is the area under the model's score along the way (trapezoids over the fraction of
  pixels, in [0, 1]). Deletion: lower is better; Insertion: higher is better.
- **ROAD** (Rong et al. 2022): the most (MoRF) or least (LeRF) relevant ``p`` % of the pixels are
  removed by noisy linear imputation (``imputation``), for each ``p`` of ``percentages``; the score
  of an order is the mean model score over the percentages. A faithful map gives a low MoRF and a
  high LeRF mean.

The model's score (``target``): for a classifier the probability of the class it predicts for the
unperturbed image ("probability"; "accuracy": 1 while that class stays the prediction, as ROAD and
Quantus define it), for an encoder the cosine similarity between the embedding of the perturbed
image and that of the original ("cosine"). Pixels tied in the map are removed in an order drawn
at random with ``seed``. The perturbed images of a batch are made on the images' device, a few steps at a time, and
scored in forwards of ``images_per_forward`` images.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..explainers import has_class_logits
from .imputation import noisy_linear_imputation
from .localisation import CPU_CHUNK_PIXELS

Target = Literal["auto", "probability", "accuracy", "cosine"]
Baseline = Literal["zero", "black", "blur"]
TARGETS = ("auto", "probability", "accuracy", "cosine")
BASELINES = ("zero", "black", "blur")
CUDA_IMAGES_PER_FORWARD = 64
BLUR_SIZE, BLUR_SIGMA = 11, 5.0
"""RISE's insertion substrate: an 11x11 Gaussian blur of standard deviation 5 (zero padding)."""
ROAD_PERCENTAGES = tuple(range(10, 100, 10))
"""The ROAD paper's grid of removed percentages (Quantus' default is 1, 3, ..., 99)."""


def images_per_forward(x: Tensor) -> int:
    """How many perturbed images go through the model at once: on the CPU about ``CPU_CHUNK_PIXELS``
    pixels (larger temporaries are freshly mapped by the kernel for every forward: the deletion
    curves of 8 images at 192 x 192 took 3.3 times as long in forwards of 64 images as in forwards
    of 8, one thread), on a GPU ``CUDA_IMAGES_PER_FORWARD``."""
    if x.device.type == "cpu":
        return max(1, CPU_CHUNK_PIXELS // (x.shape[-2] * x.shape[-1]))
    return CUDA_IMAGES_PER_FORWARD


def resolve_target(model: nn.Module, target: Target = "auto") -> str:
    """``target`` as used for ``model``: "auto" is "probability" for a classifier, "cosine" for an encoder.

    Raises:
        ValueError: ``target`` is unknown, or a class target is asked of a model without class names.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    classifier = has_class_logits(model)
    if target == "auto":
        return "probability" if classifier else "cosine"
    if target != "cosine" and not classifier:
        raise ValueError(f"target {target!r} needs a classifier (a model with class_names); an encoder takes 'cosine'")
    return target


class ModelScore:
    """The model's score of perturbed copies of a batch, relative to the unperturbed images.

    Args:
        model: the network (in eval mode).
        x: (B, 3, H, W) the unperturbed images.
        target: "probability", "accuracy" or "cosine" (``resolve_target``; "auto" is resolved here).
    """

    def __init__(self, model: nn.Module, x: Tensor, target: Target = "auto") -> None:
        self.model = model
        self.target = resolve_target(model, target)
        output = self._forward(x)
        self.reference = output.argmax(dim=1) if self.target != "cosine" else output.flatten(1)

    def _forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.cat([self.model(chunk).float() for chunk in x.split(images_per_forward(x))])

    def __call__(self, perturbed: Tensor) -> Tensor:
        """(S, B, 3, H, W) perturbed copies -> (S, B) float64 scores (copy ``[s, b]`` of image ``b``)."""
        steps, batch = perturbed.shape[:2]
        output = self._forward(perturbed.flatten(0, 1)).view(steps, batch, -1)
        if self.target == "cosine":
            return F.cosine_similarity(output, self.reference[None], dim=2).double()
        classes = self.reference[None, :, None].expand(steps, batch, 1)
        if self.target == "accuracy":
            return (output.argmax(dim=2) == classes[..., 0]).double()
        return output.softmax(dim=2).gather(2, classes)[..., 0].double()


def removal_ranks(maps: Tensor, most_relevant_first: bool = True, seed: int = 0) -> Tensor:
    """Each pixel's position in the removal order: (B, H, W) maps -> (B, H*W) int64 ranks.

    Pixels are ordered by their map value (highest first with ``most_relevant_first``); tied
    pixels in an order drawn at random (a CPU generator seeded with ``seed``, the same on every device).
    """
    flat = maps.flatten(1)
    shuffle = torch.randperm(flat.shape[1], generator=torch.Generator().manual_seed(seed)).to(flat.device)
    _, order = flat[:, shuffle].sort(dim=1, descending=most_relevant_first, stable=True)
    order = shuffle[order]
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


@lru_cache(maxsize=4)
def _blur_kernel(dtype: torch.dtype, device: str) -> Tensor:
    """RISE's ``gkern(11, 5)``: SciPy's ``gaussian_filter`` (reflecting edges) of an 11x11 delta, separable."""
    from scipy.ndimage import gaussian_filter1d

    delta = torch.zeros(BLUR_SIZE, dtype=torch.float64)
    delta[BLUR_SIZE // 2] = 1
    line = torch.from_numpy(gaussian_filter1d(delta.numpy(), BLUR_SIGMA))
    return torch.outer(line, line).to(device=device, dtype=dtype)


def blur(x: Tensor) -> Tensor:
    """RISE's insertion substrate: each channel blurred by an 11x11 Gaussian of sigma 5, zero padding."""
    kernel = _blur_kernel(x.dtype, str(x.device))
    channels = x.shape[1]
    return F.conv2d(x, kernel.expand(channels, 1, BLUR_SIZE, BLUR_SIZE), padding=BLUR_SIZE // 2, groups=channels)


def baseline_images(x: Tensor, baseline: Baseline) -> Tensor:
    """What removed pixels become: "zero" (RISE's deletion), "black" (each image's minimum, Quantus'
    default) or "blur" (``blur``, RISE's insertion start)."""
    if baseline == "zero":
        return torch.zeros_like(x)
    if baseline == "black":
        return x.flatten(1).amin(dim=1)[:, None, None, None].expand_as(x)
    if baseline == "blur":
        return blur(x)
    raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")


def trapezoid_area(curve: Tensor, fractions: Tensor) -> Tensor:
    """Area under (B, n) ``curve`` sampled at the ``fractions`` of pixels (n,), by trapezoids."""
    widths = fractions[1:] - fractions[:-1]
    return ((curve[:, 1:] + curve[:, :-1]) / 2 * widths).sum(dim=1)


def perturbation_curve(
    x: Tensor,
    maps: Tensor,
    score: ModelScore,
    steps: int,
    insert: bool,
    baseline: Baseline,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """The model's score as pixels are deleted from ``x`` (or inserted into the baseline), most relevant first.

    Args:
        x: (B, 3, H, W) images.
        maps: (B, H, W) maps.
        score: the model's score (``ModelScore`` of ``x``).
        steps: the number of steps; each moves ``ceil(H*W / steps)`` pixels (the last one the rest).
        insert: False: start from ``x`` and replace pixels by the baseline (deletion); True: start
            from the baseline and put back ``x``'s pixels (insertion).
        baseline: what removed pixels become (``baseline_images``).
        seed: the tie-breaking order's seed (``removal_ranks``).

    Returns:
        (B, n + 1) scores after 0, 1, ..., n steps, and (n + 1,) the fractions of pixels moved.
    """
    pixels = maps.shape[1] * maps.shape[2]
    per_step = -(-pixels // steps)
    counts = torch.arange(0, pixels + per_step, per_step, device=x.device).clamp(max=pixels)
    ranks = removal_ranks(maps, True, seed).view(len(x), 1, *maps.shape[1:])
    start, end = (baseline_images(x, baseline), x) if insert else (x, baseline_images(x, baseline))
    chunk = max(1, images_per_forward(x) // len(x))
    moved = (ranks[None] < part[:, None, None, None, None] for part in counts.split(chunk))
    curve = torch.cat([score(torch.where(m, end[None], start[None])) for m in moved])
    return curve.T.contiguous(), counts.double() / pixels


def deletion(
    x: Tensor, maps: Tensor, score: ModelScore, steps: int = 224, baseline: Baseline = "zero", seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Deletion (Petsiuk et al. 2018): (B,) areas under the deletion curves, and the (B, n + 1) curves.

    RISE's settings are the defaults: zeros replace the removed pixels, 224 steps (224 pixels
    each for 224x224 images). See ``perturbation_curve`` for the arguments.
    """
    curve, fractions = perturbation_curve(x, maps, score, steps, insert=False, baseline=baseline, seed=seed)
    return trapezoid_area(curve, fractions), curve


def insertion(
    x: Tensor, maps: Tensor, score: ModelScore, steps: int = 224, baseline: Baseline = "blur", seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Insertion (Petsiuk et al. 2018): (B,) areas under the insertion curves, and the (B, n + 1) curves.

    RISE's settings are the defaults: pixels are put back into a blurred copy (``blur``), 224
    steps. See ``perturbation_curve`` for the arguments.
    """
    curve, fractions = perturbation_curve(x, maps, score, steps, insert=True, baseline=baseline, seed=seed)
    return trapezoid_area(curve, fractions), curve


def road_curve(
    x: Tensor,
    maps: Tensor,
    score: ModelScore,
    percentages: Sequence[float] = ROAD_PERCENTAGES,
    most_relevant_first: bool = True,
    noise: float = 0.01,
    seed: int = 0,
) -> Tensor:
    """ROAD (Rong et al. 2022): the model's score with ``p`` % of the pixels imputed, for each ``p``.

    Args:
        x: (B, 3, H, W) images.
        maps: (B, H, W) maps.
        score: the model's score (``ModelScore`` of ``x``).
        percentages: the removed percentages, each in (0, 100); ``int(H*W*p/100)`` pixels, as Quantus counts.
        most_relevant_first: MoRF (True) or LeRF (False).
        noise: the imputation noise's standard deviation (Quantus: 0.01).
        seed: the seed of the tie-breaking order and of the imputation noise (a CPU generator).

    Returns:
        (B, len(percentages)) float64 scores.

    Raises:
        ValueError: a percentage is not in (0, 100).
    """
    if not percentages or any(not 0 < p < 100 for p in percentages):
        raise ValueError(f"percentages must be values in (0, 100), got {list(percentages)}")
    pixels = maps.shape[1] * maps.shape[2]
    ranks = removal_ranks(maps, most_relevant_first, seed).view(maps.shape)
    generator = torch.Generator().manual_seed(seed)
    columns = []
    for p in percentages:
        removed = ranks < int(pixels * p / 100)
        imputed = noisy_linear_imputation(x, removed, noise, generator)
        columns.append(score(imputed[None])[0])
    return torch.stack(columns, dim=1)


__all__ = [
    "BASELINES",
    "CUDA_IMAGES_PER_FORWARD",
    "ModelScore",
    "ROAD_PERCENTAGES",
    "TARGETS",
    "baseline_images",
    "blur",
    "deletion",
    "images_per_forward",
    "insertion",
    "perturbation_curve",
    "removal_ranks",
    "resolve_target",
    "road_curve",
    "trapezoid_area",
]
