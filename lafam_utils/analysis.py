"""Small analyses the notebooks share: which models a dataset uses, predictions, per-object mask
coverage in multi-object scenes, and metrics split by correct vs wrong predictions.

The paper shows the last two only by example (its Fig. 2 and Fig. 3); these functions measure
them over every image of a dataset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import Tensor, nn

from .explainers.base import check_images

DATASET_MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "synthetic": ("shapes-supervised", ("shapes-simclr",)),
    "voc": ("resnet50", ("simclr", "swav")),
    "imagenet-s": ("resnet50", ("simclr", "swav")),
}
"""dataset -> (classifier explained with Grad-CAM and LaFAM, encoders explained with RELAX and LaFAM)."""


def dataset_models(
    dataset: str, classifier: str | None = None, encoders: Sequence[str] | None = None
) -> tuple[str, tuple[str, ...]]:
    """The dataset's (classifier, encoders) as in the paper; a name given here replaces the default."""
    if dataset not in DATASET_MODELS:
        raise ValueError(f"dataset must be one of {sorted(DATASET_MODELS)}, got {dataset!r}")
    default_classifier, default_encoders = DATASET_MODELS[dataset]
    return classifier or default_classifier, tuple(encoders) if encoders else default_encoders


def model_method_pairs(classifier: str, encoders: Sequence[str]) -> list[tuple[str, str]]:
    """The paper's columns: (classifier, gradcam), (classifier, lafam), then (encoder, relax), (encoder, lafam)."""
    pairs = [(classifier, "gradcam"), (classifier, "lafam")]
    for encoder in encoders:
        pairs += [(encoder, "relax"), (encoder, "lafam")]
    return pairs


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """The classifier's top-1 class index for each image, computed in batches on ``images``' device."""
    check_images(images)
    return torch.cat([model(chunk).argmax(dim=1) for chunk in images.split(batch_size)])


def object_coverage(maps: Tensor, object_masks: Tensor, threshold: float = 0.5) -> Tensor:
    """Share of each object's pixels where the map is >= ``threshold``: (B, H, W), (B, K, H, W) -> (B, K).

    An object with an empty mask gets NaN. Maps must be upsampled to the masks' size.
    """
    if maps.ndim != 3 or object_masks.ndim != 4 or object_masks.shape[0] != maps.shape[0]:
        raise ValueError(
            f"expected maps (B, H, W) and object masks (B, K, H, W), got {tuple(maps.shape)} and {tuple(object_masks.shape)}"
        )
    if object_masks.shape[-2:] != maps.shape[-2:]:
        raise ValueError(
            f"maps of size {tuple(maps.shape[-2:])} do not match masks of size {tuple(object_masks.shape[-2:])}; "
            "upsample the maps to the image size"
        )
    objects = object_masks.bool()
    hot = (maps >= threshold)[:, None] & objects
    area = objects.flatten(2).sum(dim=2)
    covered = hot.flatten(2).sum(dim=2).float() / area.clamp_min(1)
    return covered.masked_fill(area == 0, float("nan"))


def coverage_table(coverage: Mapping[str, Tensor], both_at_least: float = 0.5) -> pd.DataFrame:
    """Per column name, the mean coverage of the best- and least-covered object of each image, and
    the share of images where every object is covered at least ``both_at_least``.

    A method that finds all objects has a high least-covered mean; one that finds only the
    predicted object has a high best-covered and a low least-covered mean.
    """
    rows = {}
    for name, values in coverage.items():
        per_object = values.detach().cpu().double().numpy()
        valid = ~np.isnan(per_object).all(axis=1)
        best = np.nanmax(per_object[valid], axis=1)
        least = np.nanmin(per_object[valid], axis=1)
        rows[name] = {
            "best-covered object": best.mean(),
            "least-covered object": least.mean(),
            f"all objects >= {both_at_least:g}": (least >= both_at_least).mean(),
            "images": int(valid.sum()),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def correctness_split(
    results: pd.DataFrame, metrics: Sequence[str], by: Sequence[str] = ("model", "method"), correct: str = "correct"
) -> pd.DataFrame:
    """Metric means for correct vs wrong predictions per group, with a two-sided Mann-Whitney U test.

    ``results`` holds one row per image and group, a boolean column ``correct`` and the metric
    columns; NaN scores are left out. The p-value is NaN when one side has no scores.
    """
    missing = [c for c in (*by, correct, *metrics) if c not in results.columns]
    if missing:
        raise KeyError(f"results lack the columns {missing}; they have {list(results.columns)}")
    rows = []
    for key, group in results.groupby(list(by), sort=False):
        is_correct = group[correct].astype(bool)
        for metric in metrics:
            right = group.loc[is_correct, metric].dropna().to_numpy(float)
            wrong = group.loc[~is_correct, metric].dropna().to_numpy(float)
            p_value = stats.mannwhitneyu(right, wrong).pvalue if len(right) and len(wrong) else np.nan
            rows.append(
                {
                    **dict(zip(by, key if isinstance(key, tuple) else (key,))),
                    "metric": metric,
                    "correct mean": right.mean() if len(right) else np.nan,
                    "wrong mean": wrong.mean() if len(wrong) else np.nan,
                    "n correct": len(right),
                    "n wrong": len(wrong),
                    "p (Mann-Whitney U)": p_value,
                }
            )
    return pd.DataFrame(rows)


__all__ = [
    "DATASET_MODELS",
    "correctness_split",
    "coverage_table",
    "dataset_models",
    "model_method_pairs",
    "object_coverage",
    "predict",
]
