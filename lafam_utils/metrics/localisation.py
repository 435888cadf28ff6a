"""The paper's six Quantus metrics, one score per image, batched on the maps' device.

``compute(maps, masks)`` scores (B, H, W) maps against (B, H, W) boolean object masks with the
definitions of Quantus 0.6.0 and its defaults; ``backend="quantus"`` calls Quantus itself (the
reference path of the paper). The torch backend has no per-image loop, sorts each map once for
all rank-based metrics, and is deterministic where Quantus is not:

- an empty mask gives NaN for every mask-based metric (Quantus' Pointing-Game reports a hit);
- ties in the ranking count as the expected value over uniformly random tie-breaking (Quantus
  depends on how its unstable argsort happens to order them);
- AUC uses average ranks for ties (Mann-Whitney), equal to ``sklearn.metrics.roc_auc_score``;
- each map is normalised by its own maximum, not the batch's, so a score never depends on the
  other images in the batch (only Sparseness is affected: the other metrics are scale-free);
- a map with a NaN or infinite value gives NaN for every metric of that image.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

Backend = Literal["torch", "quantus"]

CPU_CHUNK_PIXELS = 1 << 19
"""On the CPU, maps are scored in chunks of about this many pixels (ten 224x224 maps): smaller
temporaries are reused from the heap instead of being freshly mapped and zeroed by the kernel
for every operation. On a GPU the whole batch goes at once."""

SPARSENESS_OFFSET = 1e-7
"""Quantus adds this to every magnitude before the Gini index, so an all-zero map scores 0."""


class _Batch:
    """Flattened maps and masks, with the sorted order and counts that several metrics share.

    Everything rank-based comes from one ascending sort per map: ``hits_before[:, i]`` counts the
    mask pixels among the ``i`` lowest, and a run of tied values is found by binary search.
    """

    def __init__(self, maps: Tensor, masks: Tensor, k: int) -> None:
        self.maps = maps.flatten(1)
        self.masks = masks.flatten(1)
        self.k = k
        self.pixels = self.maps.shape[1]

    @cached_property
    def mask_size(self) -> Tensor:
        return self.masks.sum(dim=1)

    @cached_property
    def total(self) -> Tensor:
        """Each map's sum in float64: exact enough for mass ratios, NaN or inf if a value is."""
        return self.maps.sum(dim=1, dtype=torch.float64)

    @cached_property
    def _sorted(self) -> tuple[Tensor, Tensor]:
        values, order = self.maps.sort(dim=1)
        return values, self.masks.gather(1, order)

    @property
    def ascending(self) -> Tensor:
        return self._sorted[0]

    @property
    def sorted_masks(self) -> Tensor:
        return self._sorted[1]

    @cached_property
    def hits_before(self) -> Tensor:
        """(B, n + 1): number of mask pixels among the i lowest pixels, for i = 0..n."""
        return F.pad(self.sorted_masks.cumsum(dim=1, dtype=torch.int32), (1, 0))

    @cached_property
    def run_start(self) -> Tensor:
        """(B, n): sorted position of the first pixel tied with the pixel at each sorted position."""
        values = self.ascending
        starts = torch.ones_like(values, dtype=torch.bool)
        starts[:, 1:] = values[:, 1:] != values[:, :-1]
        positions = torch.arange(self.pixels, dtype=torch.int32, device=values.device).expand_as(values)
        return torch.where(starts, positions, 0).cummax(dim=1).values

    def tied_run(self, position: Tensor) -> tuple[Tensor, Tensor]:
        """First and one-past-last sorted positions of the values equal to the one at ``position``."""
        value = self.ascending.gather(1, position[:, None])
        start = torch.searchsorted(self.ascending, value, side="left")
        end = torch.searchsorted(self.ascending, value, side="right")
        return start, end

    def expected_hits(self, top: Tensor) -> Tensor:
        """Expected count of mask pixels among each map's ``top`` highest, ties broken at random.

        With ``v`` the ``top``-th highest value, every pixel above ``v`` is taken and the remaining
        ``top - n_above`` places go to a uniformly random subset of the ``n_at`` pixels equal to
        ``v``, of which ``hits_at`` lie in the mask: ``hits_above + (top - n_above) * hits_at / n_at``.
        """
        start, end = self.tied_run((self.pixels - top).clamp(0, self.pixels - 1))
        hits_up_to_end = self.hits_before.gather(1, end)
        hits_above = self.mask_size[:, None] - hits_up_to_end
        hits_at = hits_up_to_end - self.hits_before.gather(1, start)
        taken_at = top[:, None] - (self.pixels - end)
        return (hits_above + taken_at * hits_at.double() / (end - start))[:, 0]


def pointing_game(batch: _Batch) -> Tensor:
    """1 if a pixel equal to the map's maximum lies in the mask, else 0."""
    start, _ = batch.tied_run(torch.full_like(batch.mask_size, batch.pixels - 1))
    return (batch.mask_size[:, None] > batch.hits_before.gather(1, start))[:, 0].double()


def top_k_intersection(batch: _Batch) -> Tensor:
    """Share of the k highest pixels that lie in the mask."""
    return batch.expected_hits(torch.full_like(batch.mask_size, batch.k)) / batch.k


def relevance_rank_accuracy(batch: _Batch) -> Tensor:
    """Share of the |mask| highest pixels that lie in the mask."""
    return batch.expected_hits(batch.mask_size) / batch.mask_size


def relevance_mass_accuracy(batch: _Batch) -> Tensor:
    """Sum of the map inside the mask over its total sum; NaN where the total is 0."""
    inside = torch.where(batch.masks, batch.maps, 0).sum(dim=1, dtype=torch.float64)
    return torch.where(batch.total != 0, inside / batch.total, torch.nan)


def auc(batch: _Batch) -> Tensor:
    """ROC AUC of the map as a score for the mask; a tied (mask, background) pair counts 1/2.

    Exact integer pair counts from the sorted order: with ``f`` the sorted position where a
    pixel's run of ties starts and ``C[f]`` the mask pixels before it, the number of pairs won
    (ties lost) plus the number won (ties won) is ``sum_mask f - sum_all C[f] + m (n - m)``.
    Equals the Mann-Whitney U with average ranks and sklearn's ``roc_auc_score``; NaN where the
    mask covers the whole image (no background).
    """
    positives = batch.mask_size
    pairs = positives * (batch.pixels - positives)
    run_starts_in_mask = torch.where(batch.sorted_masks, batch.run_start, 0).sum(dim=1)
    hits_before_runs = batch.hits_before.gather(1, batch.run_start).sum(dim=1)
    return (run_starts_in_mask - hits_before_runs + pairs).double() / (2 * pairs)


def sparseness(batch: _Batch) -> Tensor:
    """Gini index of ``x = |a| / max|a| + 1e-7`` (Quantus' ``abs=True``, ``normalise_by_max`` per map).

    ``sum_i (2i - n - 1) x_(i) / (n sum_i x_i)`` over the ascending ``x_(i)``; the offset drops out
    of the numerator (the weights sum to 0), so the normalised copy is never built.
    """
    if bool((batch.ascending[:, 0] >= 0).all()):  # one scalar read decides whether to sort again
        magnitudes = batch.ascending
    else:
        magnitudes = batch.maps.abs().sort(dim=1).values
    n = batch.pixels
    peak = magnitudes[:, -1].double()
    scale = torch.where(peak > 0, peak, 1.0)
    weights = torch.arange(1 - n, n, 2, dtype=torch.float64, device=magnitudes.device)
    weighted = magnitudes.double() @ weights / scale
    total = magnitudes.sum(dim=1, dtype=torch.float64) / scale + n * SPARSENESS_OFFSET
    return weighted / (n * total)


@dataclass(frozen=True)
class Metric:
    """A metric's Quantus name, its direction and its torch implementation.

    Attributes:
        name: the name in results tables ("Pointing-Game", ...).
        quantus_class: the Quantus 0.6.0 class that defines it.
        score: the torch implementation: a batch -> (B,) float64 scores.
        uses_mask: False for Sparseness, which ignores the mask (an empty mask does not make it NaN).
        higher_is_better: the direction.
    """

    name: str
    quantus_class: str
    score: Callable[[_Batch], Tensor]
    uses_mask: bool = True
    higher_is_better: bool = True


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("Pointing-Game", "PointingGame", pointing_game),
        Metric("Top-K Intersection", "TopKIntersection", top_k_intersection),
        Metric("Sparseness", "Sparseness", sparseness, uses_mask=False),
        Metric("AUC", "AUC", auc),
        Metric("Relevance Rank Accuracy", "RelevanceRankAccuracy", relevance_rank_accuracy),
        Metric("Relevance Mass Accuracy", "RelevanceMassAccuracy", relevance_mass_accuracy),
    )
}
HIGHER_IS_BETTER: dict[str, bool] = {name: m.higher_is_better for name, m in METRICS.items()}
METRIC_NAMES = tuple(METRICS)
"""The six metrics' names, in the order of the results tables."""


def check_maps_and_masks(maps: Tensor, masks: Tensor, k: int) -> None:
    """Check that maps are float (B, H, W), masks bool of the same shape and device, and ``k`` fits.

    Raises:
        TypeError: maps or masks are not tensors, maps are not floating-point, or masks not bool.
        ValueError: maps or masks are empty or not (B, H, W), their shapes or devices differ, or
            ``k`` is not an integer in [1, H * W].
    """
    for what, value in (("maps", maps), ("masks", masks)):
        if not isinstance(value, Tensor):
            raise TypeError(f"expected {what} as a torch.Tensor of shape (B, H, W), got {type(value).__name__}")
        if value.ndim != 3 or value.numel() == 0:
            raise ValueError(f"expected non-empty {what} of shape (B, H, W), got {tuple(value.shape)}")
    if not maps.is_floating_point():
        raise TypeError(f"expected floating-point maps, got dtype {maps.dtype}")
    if masks.dtype != torch.bool:
        raise TypeError(f"expected boolean masks, got dtype {masks.dtype}; use masks > 0 or masks.bool()")
    if maps.shape != masks.shape:
        raise ValueError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} must have the same shape")
    if maps.device != masks.device:
        raise ValueError(f"maps on {maps.device} and masks on {masks.device} must be on the same device")
    pixels = maps.shape[1] * maps.shape[2]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= pixels:
        raise ValueError(f"k must be an integer in [1, {pixels}] (pixels per map), got {k!r}")


def select(metrics: Iterable[str] | None) -> list[Metric]:
    """The metrics named in ``metrics`` (one name or several; all six when None).

    Raises:
        ValueError: a name is unknown, or none is given (the message lists the known ones).
    """
    if metrics is None:
        return list(METRICS.values())
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise ValueError(f"unknown or no metrics {unknown}; choose from {list(METRICS)}")
    return [METRICS[name] for name in names]


def compute(
    maps: Tensor,
    masks: Tensor,
    backend: Backend = "torch",
    k: int = 1000,
    metrics: Iterable[str] | None = None,
) -> dict[str, Tensor]:
    """Score each map against its mask: metric name -> (B,) float64 tensor on the maps' device.

    Args:
        maps: (B, H, W) float maps.
        masks: (B, H, W) bool object masks.
        backend: "torch", or "quantus" for Quantus 0.6.0's own numbers (one call per metric), ties
            and empty masks handled as Quantus handles them.
        k: Top-K Intersection's pixel count.
        metrics: a subset of ``METRICS`` by name (None: all six).

    Returns:
        Metric name -> (B,) float64 scores, NaN where a metric is undefined (see the module docstring).

    Raises:
        TypeError: maps or masks are not tensors of the right dtype (``check_maps_and_masks``).
        ValueError: bad shapes, devices or ``k``, an unknown metric, or an unknown backend.
    """
    check_maps_and_masks(maps, masks, k)
    chosen = select(metrics)
    if backend == "quantus":
        return {m.name: _quantus_scores(m, maps, masks, k) for m in chosen}
    if backend != "torch":
        raise ValueError(f"backend must be 'torch' or 'quantus', got {backend!r}")
    maps = maps.detach()
    if maps.dtype in (torch.float16, torch.bfloat16):
        maps = maps.float()
    pixels = maps.shape[1] * maps.shape[2]
    rows = max(1, CPU_CHUNK_PIXELS // pixels) if maps.device.type == "cpu" else len(maps)
    chunks = [_torch_scores(chosen, m, s, k) for m, s in zip(maps.split(rows), masks.split(rows))]
    return {m.name: torch.cat([chunk[m.name] for chunk in chunks]) for m in chosen}


def _torch_scores(chosen: list[Metric], maps: Tensor, masks: Tensor, k: int) -> dict[str, Tensor]:
    """The chosen metrics on one batch, NaN where a map is not finite or a mask is empty."""
    batch = _Batch(maps, masks, k)
    broken_map = ~batch.total.isfinite()
    empty_mask = batch.mask_size == 0
    scores = {}
    for metric in chosen:
        undefined = broken_map | empty_mask if metric.uses_mask else broken_map
        scores[metric.name] = metric.score(batch).masked_fill(undefined, torch.nan)
    return scores


def _quantus_scores(metric: Metric, maps: Tensor, masks: Tensor, k: int) -> Tensor:
    """One Quantus 0.6.0 call with its defaults on the whole batch, its warnings and prints silenced."""
    import quantus

    maps_as_float = maps.detach().to("cpu", torch.promote_types(maps.dtype, torch.float32))
    attributions = maps_as_float.numpy().copy()[:, None]
    segmentations = masks.cpu().numpy()[:, None]
    options = {"k": k} if metric.name == "Top-K Intersection" else {}
    evaluate = getattr(quantus, metric.quantus_class)(disable_warnings=True, **options)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        scores = evaluate(
            model=None,
            x_batch=np.zeros_like(attributions),
            y_batch=np.zeros(len(attributions), dtype=np.int64),
            a_batch=attributions,
            s_batch=segmentations,
            channel_first=True,
        )
    return torch.as_tensor(np.asarray(scores, dtype=np.float64), device=maps.device)
