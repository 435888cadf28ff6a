"""Opening the images a notebook uses: the paper's subset, two-object scenes or hard cases of a dataset."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from ..paper import DATASET_MODELS

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

    Args:
        dataset: "synthetic", "voc" or "imagenet-s".
        subset: "paper" (single-object images), "multi" (several objects) or "hard" (synthetic:
            the failure cases; real data: the paper subset, from which a notebook picks the failures).
        data_root: VOC: the folder holding ``VOCdevkit/``; ImageNet-S: the one holding ``validation-segmentation/``.
        images_root: ImageNet-S only: the folder of the ImageNet validation images.
        n_images: synthetic: this many images (64 when None); real data: this many indices drawn
            with ``seed`` and kept in dataset order (None keeps all).
        seed: the synthetic images' seed, and the draw of real images.
        image_size: the synthetic images' side (real images are always 224 x 224).

    Returns:
        The dataset (a ``torch.utils.data.Subset`` when real images were drawn).

    Raises:
        ValueError: an unknown dataset or subset, or a real dataset without its folders.
        FileNotFoundError: a real dataset's files are not under its folders (the message shows the expected layout).
    """
    if subset not in SYNTHETIC_SPLITS:
        raise ValueError(f"subset must be one of {sorted(SYNTHETIC_SPLITS)}, got {subset!r}")
    if dataset not in DATASET_MODELS:
        raise ValueError(f"dataset must be one of {sorted(DATASET_MODELS)}, got {dataset!r}")
    if dataset == "synthetic":
        from ..shapes.dataset import SyntheticShapes

        return SyntheticShapes(
            64 if n_images is None else n_images, split=SYNTHETIC_SPLITS[subset], seed=seed, size=image_size
        )
    if data_root is None:
        raise ValueError(f"dataset {dataset!r} needs data_root (see the parameter sets in notebooks/params)")
    if dataset == "imagenet-s" and images_root is None:
        raise ValueError("dataset 'imagenet-s' needs images_root, the folder of the ImageNet validation images")
    real_subset = "paper" if subset == "hard" else subset
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\w+: skipped \d+ of \d+ images")  # noted in one line below
        if dataset == "voc":
            from .voc import VOC2012

            full = VOC2012(data_root, split="val", subset=real_subset)
        else:
            from .imagenet_s import ImageNetS

            full = ImageNetS(data_root, images_root, subset=real_subset)
    if len(full.skipped):
        first = full.skipped["reason"].iloc[0]
        print(f"note: {len(full.skipped)} file(s) skipped (dataset.skipped lists them), e.g. {first}")
    if n_images is None or n_images >= len(full):
        return full
    chosen = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))[:n_images]
    return Subset(full, chosen.sort().values.tolist())


def stack_items(dataset: Dataset, indices: Sequence[int], device: str | torch.device = "cpu") -> dict[str, Any]:
    """Items ``indices`` batched: "image" (N, 3, H, W) and "mask" (N, H, W) on ``device``, the rest as lists.

    Raises:
        ValueError: ``indices`` is empty.
    """
    items = [dataset[i] for i in indices]
    if not items:
        raise ValueError("expected at least one index")
    batch: dict[str, Any] = {key: [item[key] for item in items] for key in items[0]}
    batch["image"] = torch.stack(batch["image"]).to(device)
    batch["mask"] = torch.stack(batch["mask"]).bool().to(device)
    return batch


__all__ = ["SYNTHETIC_SPLITS", "open_dataset", "stack_items"]
