"""Per-object coverage of multi-object scenes: does a map find every object, or only one?

The paper shows this only by example (its Fig. 2); these functions measure it over every image
of a dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import TypeVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

Key = TypeVar("Key", bound=Hashable)


def object_coverage(maps: Tensor, object_masks: Tensor, threshold: float = 0.5) -> Tensor:
    """Share of each object's pixels where the map is >= ``threshold``: (B, H, W), (B, K, H, W) -> (B, K).

    ``maps`` may also hold several maps per image, (B, M, H, W) (e.g. DFF's concepts): each object
    then gets its best-covering map's share. An object with an empty mask gets NaN. Maps must be
    upsampled to the masks' size.

    Raises:
        ValueError: the shapes are not (B, H, W) or (B, M, H, W), and (B, K, H, W), with the same B, H and W.
    """
    if maps.ndim not in (3, 4) or object_masks.ndim != 4 or object_masks.shape[0] != maps.shape[0]:
        raise ValueError(
            f"expected maps (B, H, W) or (B, M, H, W) and object masks (B, K, H, W), "
            f"got {tuple(maps.shape)} and {tuple(object_masks.shape)}"
        )
    if object_masks.shape[-2:] != maps.shape[-2:]:
        raise ValueError(
            f"maps of size {tuple(maps.shape[-2:])} do not match masks of size {tuple(object_masks.shape[-2:])}; "
            "upsample the maps to the image size"
        )
    per_map = maps[:, None] if maps.ndim == 3 else maps
    objects = object_masks.bool()
    hot = (per_map >= threshold)[:, :, None] & objects[:, None]  # (B, M, K, H, W)
    area = objects.flatten(2).sum(dim=2)
    covered = hot.flatten(3).sum(dim=3).float().amax(dim=1) / area.clamp_min(1)
    return covered.masked_fill(area == 0, float("nan"))


def two_object_coverage(
    dataset: Dataset,
    explainers: Mapping[Key, Callable[[Tensor], Tensor]],
    threshold: float = 0.5,
    batch_size: int = 16,
    device: str = "cpu",
    progress: bool = False,
) -> dict[Key, Tensor]:
    """``object_coverage`` of every explainer over all items of ``dataset`` with exactly two object masks.

    Items with another number of objects (item key "masks") are skipped.

    Args:
        dataset: items with "image" and "masks".
        explainers: column name (any key, e.g. a (model, method) pair) -> a function from (B, 3, H, W)
            images to (B, H, W) maps, or (B, M, H, W) several maps per image (each object's best counts).
        threshold: the map value from which a pixel counts as covered.
        batch_size: items per explainer call.
        device: where the images go.
        progress: show a bar over the batches.

    Returns:
        Column name -> (N, 2) coverage, N the number of two-object items.

    Raises:
        ValueError: the dataset holds no item with exactly two object masks.
    """
    from ..progress import progress_bar

    parts: dict[Key, list[Tensor]] = {name: [] for name in explainers}
    found = 0
    starts = range(0, len(dataset), batch_size)
    for start in progress_bar(starts, desc="coverage", unit="batch", disable=not progress):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        items = [item for item in items if len(item["masks"]) == 2]
        found += len(items)
        if not items:
            continue
        images = torch.stack([item["image"] for item in items]).to(device)
        objects = torch.stack([item["masks"] for item in items]).to(device)
        for name, explain in explainers.items():
            parts[name].append(object_coverage(explain(images), objects, threshold))
    if not found:
        raise ValueError("the dataset holds no item with exactly two object masks")
    return {name: torch.cat(values) for name, values in parts.items()}


def coverage_table(coverage: Mapping[str, Tensor], both_at_least: float = 0.5) -> pd.DataFrame:
    """Per column name, the mean coverage of each image's best- and least-covered object, and a share.

    The share is that of the images where every object is covered at least ``both_at_least``. A method
    that finds all objects has a high least-covered mean; one that finds only the predicted object
    has a high best-covered and a low least-covered mean.

    Args:
        coverage: column name -> (N, K) coverage (``two_object_coverage``).
        both_at_least: the coverage every object of an image needs for the share.

    Returns:
        One row per column name: "best-covered object", "least-covered object",
        "all objects >= <both_at_least>" and "images" (those with at least one non-empty object).
    """
    rows = {}
    for name, values in coverage.items():
        best, least = best_covered(values), least_covered(values)
        valid = ~np.isnan(least)
        rows[name] = {
            "best-covered object": best[valid].mean(),
            "least-covered object": least[valid].mean(),
            f"all objects >= {both_at_least:g}": (least[valid] >= both_at_least).mean(),
            "images": int(valid.sum()),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def _per_image(coverage: Tensor, reduce: Callable[..., np.ndarray]) -> np.ndarray:
    """``reduce`` over each image's objects, skipping empty masks; NaN for an image whose masks are all empty."""
    per_object = coverage.detach().cpu().double().numpy()
    valid = ~np.isnan(per_object).all(axis=1)
    per_image = np.full(len(per_object), np.nan)
    per_image[valid] = reduce(per_object[valid], axis=1)
    return per_image


def best_covered(coverage: Tensor) -> np.ndarray:
    """Per image, the coverage of its best-covered object: (N, K) -> (N,), NaN where every mask is empty."""
    return _per_image(coverage, np.nanmax)


def least_covered(coverage: Tensor) -> np.ndarray:
    """Per image, the coverage of its least-covered object: (N, K) -> (N,), NaN where every mask is empty.

    An image has all its objects covered at least ``t`` exactly when this is >= ``t``.
    """
    return _per_image(coverage, np.nanmin)


__all__ = ["best_covered", "coverage_table", "least_covered", "object_coverage", "two_object_coverage"]
