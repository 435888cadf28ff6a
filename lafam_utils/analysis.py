"""What the notebooks share beyond the other modules: a dataset's models and (model, method)
pairs, its images for a figure, predictions, per-object mask coverage in multi-object scenes,
and metrics split by correct vs wrong predictions.

The paper shows the last two only by example (its Fig. 2 and Fig. 3); these functions measure
them over every image of a dataset.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from .explainers.base import Upsample, check_images
from .precision import Precision

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


SYNTHETIC_SPLITS = {"paper": "single", "multi": "multi", "hard": "hard"}
"""subset -> SyntheticShapes split: the paper's single-object images, two-object scenes, failure cases."""


def open_dataset(
    dataset: str,
    subset: str = "paper",
    data_root: str | Path | None = None,
    images_root: str | Path | None = None,
    n_images: int | None = None,
    seed: int = 0,
    image_size: int = 224,
) -> Dataset:
    """The images a notebook uses: ``subset`` "paper" | "multi" | "hard" of ``dataset``.

    Synthetic: ``n_images`` images of side ``image_size`` of the matching split (64 when None). VOC / ImageNet-S: the
    loader's subset ("hard" means the paper subset; a notebook picks the failures itself), reduced
    to ``n_images`` indices drawn with ``seed`` (kept in dataset order); None keeps all.
    """
    if subset not in SYNTHETIC_SPLITS:
        raise ValueError(f"subset must be one of {sorted(SYNTHETIC_SPLITS)}, got {subset!r}")
    if dataset == "synthetic":
        from .synthetic import SyntheticShapes

        return SyntheticShapes(
            64 if n_images is None else n_images, split=SYNTHETIC_SPLITS[subset], seed=seed, size=image_size
        )
    if data_root is None:
        raise ValueError(f"dataset {dataset!r} needs data_root (see the parameter sets in notebooks/params)")
    from . import datasets

    real_subset = "paper" if subset == "hard" else subset
    if dataset not in ("voc", "imagenet-s"):
        raise ValueError(f"dataset must be one of {sorted(DATASET_MODELS)}, got {dataset!r}")
    if dataset == "imagenet-s" and images_root is None:
        raise ValueError("dataset 'imagenet-s' needs images_root, the folder of the ImageNet validation images")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\w+: skipped \d+ of \d+ images")  # noted in one line below
        if dataset == "voc":
            full = datasets.VOC2012(data_root, split="val", subset=real_subset)
        else:
            full = datasets.ImageNetS(data_root, images_root, subset=real_subset)
    if len(full.skipped):
        first = full.skipped["reason"].iloc[0]
        print(f"note: {len(full.skipped)} file(s) skipped (dataset.skipped lists them), e.g. {first}")
    if n_images is None or n_images >= len(full):
        return full
    chosen = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))[:n_images]
    return Subset(full, chosen.sort().values.tolist())


def load_models(
    names: Sequence[str],
    device: str = "cpu",
    random_init: bool = False,
    checkpoints: Mapping[str, str | Path] | None = None,
    weights_dir: str | Path | None = None,
) -> dict[str, nn.Module]:
    """Each named model once, in eval mode on ``device``; ``random_init`` skips all weights (smoke runs).

    ``checkpoints`` maps model names to local weight files, ``weights_dir`` is a folder holding the
    published files under their download names (both as in ``lu.load_model``).
    """
    from .models import load_model

    checkpoints = dict(checkpoints or {})
    unknown = sorted(set(checkpoints) - set(names))
    if unknown:
        raise ValueError(f"checkpoints name models that are not used: {unknown}; the models are {list(dict.fromkeys(names))}")
    if random_init and (checkpoints or weights_dir):
        raise ValueError("random_init=True loads no weights; leave checkpoints and weights_dir empty with it")

    def options(name: str) -> dict[str, Any]:
        if random_init:
            return {"weights": None}
        if name in checkpoints:
            return {"checkpoint": checkpoints[name]}
        return {"weights_dir": weights_dir} if weights_dir is not None else {}

    return {name: load_model(name, **options(name)).to(device).eval() for name in dict.fromkeys(names)}


def build_explainers(
    pairs: Sequence[tuple[str, str]],
    models: Mapping[str, nn.Module],
    upsample: Upsample = "nearest",
    relax_masks: int = 2048,
    seed: int = 0,
    precision: Precision = "fp32",
    progress: bool = False,
) -> dict[tuple[str, str], Callable[[Tensor], Tensor]]:
    """One explainer per (model, method) pair at ``precision``; RELAX gets the paper's settings but
    ``relax_masks`` masks, and shows a progress bar with ``progress``."""
    from .explainers import explainer

    options = {"relax": {"n_masks": relax_masks, "seed": seed, "progress": progress}}
    return {
        (model, method): explainer(method, models[model], upsample=upsample, precision=precision, **options.get(method, {}))
        for model, method in pairs
    }


def stack_items(dataset: Dataset, indices: Sequence[int], device: str = "cpu") -> dict[str, Any]:
    """Items ``indices`` batched: "image" (N, 3, H, W) and "mask" (N, H, W) on ``device``, the rest as lists."""
    items = [dataset[i] for i in indices]
    if not items:
        raise ValueError("expected at least one index")
    batch: dict[str, Any] = {key: [item[key] for item in items] for key in items[0]}
    batch["image"] = torch.stack(batch["image"]).to(device)
    batch["mask"] = torch.stack(batch["mask"]).bool().to(device)
    return batch


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


def two_object_coverage(
    dataset: Dataset,
    explainers: Mapping[str, Callable[[Tensor], Tensor]],
    threshold: float = 0.5,
    batch_size: int = 16,
    device: str = "cpu",
    progress: bool = False,
) -> dict[str, Tensor]:
    """``object_coverage`` of every explainer over all items of ``dataset`` with exactly two object
    masks (item key "masks"); column name -> (N, 2). Items with another number of objects are skipped.
    ``progress`` shows a bar over the batches."""
    from .progress import progress_bar

    parts: dict[str, list[Tensor]] = {name: [] for name in explainers}
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


def mark_correct(results: pd.DataFrame, classifier: str) -> pd.DataFrame:
    """``results`` with a boolean column "correct": the classifier's prediction for the image is one of
    its labels. Every row of an image (all models and methods) gets the classifier's verdict."""
    rows = results[results["model"] == classifier]
    if rows.empty:
        raise ValueError(f"results hold no rows of the classifier {classifier!r}")
    verdict = {
        index: prediction in labels.split("|")
        for index, prediction, labels in zip(rows["index"], rows["prediction"], rows["labels"])
    }
    return results.assign(correct=results["index"].map(verdict).astype(bool))


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
    "build_explainers",
    "load_models",
    "mark_correct",
    "open_dataset",
    "stack_items",
    "two_object_coverage",
    "correctness_split",
    "coverage_table",
    "dataset_models",
    "model_method_pairs",
    "object_coverage",
    "predict",
]
