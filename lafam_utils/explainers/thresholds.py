"""Histogram thresholds of one map, as scikit-image computes them: REPEAT's split of a map into
important and unimportant pixels (``explanation_threshold``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

NBINS = 256


def histogram(values: Tensor, nbins: int = NBINS) -> tuple[Tensor, Tensor]:
    """NumPy's ``np.histogram(values, nbins, range=(min, max))`` of float32 values, as skimage takes it.

    The bin edges are NumPy's for a float32 range (computed in float64, rounded to float32); a
    value lies in the bin with ``edge[i] <= value < edge[i + 1]``, the maximum in the last one.

    Args:
        values: (N,) float32 values, not all equal.
        nbins: the number of bins.

    Returns:
        ``(counts, centers)``: (nbins,) float64 counts and float64 bin centres (float32 midpoints).
    """
    values = values.float()
    low, high = values.min().double(), values.max().double()
    edges = torch.arange(nbins + 1, dtype=torch.float64, device=values.device) * ((high - low) / nbins) + low
    edges[-1] = high
    edges = edges.float()
    index = (torch.bucketize(values, edges, right=True) - 1).clamp(0, nbins - 1)
    counts = torch.zeros(nbins, dtype=torch.float64, device=values.device).index_add_(
        0, index, torch.ones_like(values, dtype=torch.float64)
    )
    return counts, ((edges[:-1] + edges[1:]) / 2).double()


def threshold_mean(values: Tensor) -> Tensor:
    """The mean of the values, in their dtype (skimage's ``threshold_mean``)."""
    return values.mean()


def threshold_otsu(values: Tensor) -> Tensor:
    """Otsu's threshold: the bin centre that maximises the between-class variance (skimage's ``threshold_otsu``)."""
    if (values == values[0]).all():
        return values[0].double()
    counts, centers = histogram(values)
    weight_low, weight_high = counts.cumsum(0), counts.flip(0).cumsum(0).flip(0)
    mean_low = (counts * centers).cumsum(0) / weight_low
    mean_high = ((counts * centers).flip(0).cumsum(0) / weight_high.flip(0)).flip(0)
    between = weight_low[:-1] * weight_high[1:] * (mean_low[:-1] - mean_high[1:]) ** 2
    return centers[int(between.argmax())]


def threshold_triangle(values: Tensor) -> Tensor:
    """The triangle threshold: the bin farthest below the line from the histogram's peak to the end of
    its longer tail (skimage's ``threshold_triangle``)."""
    if (values == values[0]).all():
        return values[0].double()
    counts, centers = histogram(values)
    nbins = len(counts)
    peak = int(counts.argmax())
    occupied = counts.nonzero().flatten()
    low, high = int(occupied[0]), int(occupied[-1])
    flip = peak - low < high - peak
    if flip:
        counts, low, peak = counts.flip(0), nbins - high - 1, nbins - peak - 1
    width = peak - low
    norm = (counts[peak] ** 2 + width**2).sqrt()
    steps = torch.arange(width, dtype=torch.float64, device=counts.device)
    length = counts[peak] / norm * steps - width / norm * counts[low : low + width]
    level = int(length.argmax()) + low
    return centers[nbins - level - 1 if flip else level]


def threshold_li(values: Tensor) -> Tensor:
    """Li's minimum cross-entropy threshold, iterated from the mean (skimage's ``threshold_li``), in float64.

    The tolerance is half the smallest gap between distinct values; the iteration stops when the
    threshold moves by less, or when the background's mean is 0.
    """
    values = values.double()
    if (values == values[0]).all():
        return values[0]
    low = values.min()
    shifted = values - low
    tolerance = float(torch.unique(shifted).diff().min()) / 2
    current, following = -2 * tolerance, shifted.mean()
    while abs(float(following) - current) > tolerance:
        current = float(following)
        foreground = shifted > current
        mean_high, mean_low = shifted[foreground].mean(), shifted[~foreground].mean()
        if mean_low == 0:
            break
        following = (mean_low - mean_high) / (mean_low.log() - mean_high.log())
    return following + low


THRESHOLDS: dict[str, Callable[[Tensor], Tensor]] = {
    "mean": threshold_mean,
    "otsu": threshold_otsu,
    "triangle": threshold_triangle,
    "li": threshold_li,
}
"""REPEAT's thresholds by name: each maps (N,) values to a 0-d threshold (float64; "mean": the values' dtype)."""
