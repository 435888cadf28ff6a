"""The base of VOC 2012 and ImageNet-S: an index of masks, the paper's subsets, and items.

Each dataset first indexes its masks (``index_cache``): one row per image with the object classes
in the mask (background and the ignore label left out), their pixel counts and the image's file.
A bad file (unreadable, truncated, implausibly large, wrong format, mask without image) is skipped
with a warning and listed in ``dataset.skipped``.

Items are dicts: ``"image"`` (3, size, size) float, ImageNet-normalised; ``"mask"`` (size, size)
bool, the pixels of the image's object classes; ``"masks"`` (n_classes, size, size) bool, one per
class in the order of ``"labels"`` (class names) and ``"label_ids"`` (the dataset's class ids);
``"id"``. Image and masks share the paper's geometry (``lafam_utils.datasets.transforms``).
``encoded_item`` gives the same item with the image file's bytes in place of the image, for
decoding in batches on a device (``transforms.decode_images``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from .files import check_sizes, decoded_size, load_image, read_encoded
from .index_cache import build_index
from .transforms import preprocess_image, preprocess_mask

Subset = str | Callable[[pd.DataFrame], pd.DataFrame] | None
"""A subset rule: a name of the dataset's ``subsets``, a function of the index table, or None (all)."""


class SegmentationDataset(Dataset):
    """Shared by VOC2012 and ImageNetS: the index table, its cache, subsets and items.

    A subclass lists its files and sets ``subsets`` (name -> rule), ``ignore`` (the ignore label)
    and ``item_columns`` (index columns copied into each item). Files left out are reported in one
    warning.

    Args:
        entries: one row per image: ``id``, ``mask_path``, ``image_path`` and extra columns.
        subset: a name of ``subsets``, a function of the index table, or None (all).
        size: the side of the square images and masks.
        cache_files: where the index may be cached (``index_cache.cache_locations``).
        read_labels: a mask file -> its (H, W) class ids, raising ``DataFileError`` for a bad file.
        class_names: the class names; the position is the class id.

    Attributes:
        table: the selected images, one row per item.
        full_table: every usable image before the subset rule.
        skipped: file and reason of each file left out.
        class_names: position = class id.

    Raises:
        ValueError: ``size`` is not a positive int, or ``subset`` is not a known name, a function or None.
    """

    subsets: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {}
    ignore: int
    item_columns: tuple[str, ...] = ()

    def __init__(
        self,
        entries: pd.DataFrame,
        subset: Subset,
        size: int,
        cache_files: Sequence[Path],
        read_labels: Callable[[Path], np.ndarray],
        class_names: Sequence[str],
    ) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        select = self._select(subset)
        self.size, self.read_labels, self.class_names = size, read_labels, tuple(class_names)
        rows = self._classify(build_index(entries, self._read_facts, cache_files))
        ok = rows["error"] == ""
        self.skipped = rows.loc[~ok, ["id", "error"]].rename(columns={"error": "reason"}).reset_index(drop=True)
        self.full_table = self._describe(rows[ok].drop(columns="error"))
        self.table = select(self.full_table).reset_index(drop=True)
        if len(self.skipped):
            listed = "\n  ".join(self.skipped["reason"].head(10))
            more = f"\n  ... and {len(self.skipped) - 10} more" if len(self.skipped) > 10 else ""
            warnings.warn(
                f"{type(self).__name__}: skipped {len(self.skipped)} of {len(rows)} images (see .skipped):\n"
                f"  {listed}{more}",
                stacklevel=3,
            )

    def _select(self, subset: Subset) -> Callable[[pd.DataFrame], pd.DataFrame]:
        if subset is None:
            return lambda table: table
        if callable(subset):
            return subset
        if subset not in self.subsets:
            raise ValueError(
                f"subset must be one of {[*self.subsets, None]} or a function of the index table, got {subset!r}"
            )
        return self.subsets[subset]

    def _read_facts(self, mask: Path, image: Path) -> dict[str, Any]:
        """The label values in one mask, their pixel counts and its size.

        The image is decoded once to find truncated or corrupt files before a run does (the
        index's only reads).
        """
        labels = self.read_labels(mask)
        check_sizes(mask, labels.shape[::-1], decoded_size(image))
        counts = np.bincount(labels.ravel())
        values = np.flatnonzero(counts)
        return {
            "values": values.tolist(),
            "pixels": counts[values].tolist(),
            "height": labels.shape[0],
            "width": labels.shape[1],
        }

    def _classify(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Object classes (``class_ids``, ``class_pixels``) from each mask's label values.

        A value that is neither a class, the background nor the ignore label makes the row an error.
        """
        class_ids, class_pixels, errors = [], [], []
        for values, pixels, mask, error in zip(rows["values"], rows["pixels"], rows["mask_path"], rows["error"]):
            histogram = dict(zip(map(int, values), map(int, pixels))) if not error else {}
            bad = [v for v in histogram if v >= len(self.class_names) and v != self.ignore]
            if bad:
                error = (
                    f"{mask}: expected class ids 0..{len(self.class_names) - 1} or {self.ignore} (ignore), got {bad}"
                )
            objects = [v for v in histogram if 0 < v < len(self.class_names)]
            class_ids.append(tuple(objects))
            class_pixels.append(tuple(histogram[v] for v in objects))
            errors.append(error)
        return rows.drop(columns=["values", "pixels"]).assign(
            class_ids=class_ids, class_pixels=class_pixels, error=errors
        )

    def _describe(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The index table of the usable rows.

        Columns: ``dataset_idx`` (position among all entries), ``id``, ``labels`` (class names),
        file paths, ``class_ids``, ``class_pixels``, mask ``height`` and ``width``.
        """
        table = rows.astype({"height": int, "width": int})
        table.insert(2, "labels", table["class_ids"].map(lambda ids: tuple(self.class_names[i] for i in ids)))
        return table

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row, labels = self._labels(index)
        image = load_image(Path(row["image_path"]), labels.shape[::-1], Path(row["mask_path"]))
        return {"image": preprocess_image(image, self.size), **self._annotations(row, labels)}

    def encoded_item(self, index: int) -> dict[str, Any]:
        """Item ``index`` with the image file's bytes (``"encoded"``, a 1-D uint8 tensor) in place of ``"image"``.

        ``transforms.decode_images(encoded, size)`` turns a batch of them into the images
        ``__getitem__`` gives, on any device (equal on the CPU; on CUDA decoded by nvJPEG).

        Raises:
            DataFileError: the mask or the image file cannot be read, or their sizes do not fit.
        """
        row, labels = self._labels(index)
        encoded = read_encoded(Path(row["image_path"]), labels.shape[::-1], Path(row["mask_path"]))
        return {"encoded": encoded, **self._annotations(row, labels)}

    def _labels(self, index: int) -> tuple[pd.Series, np.ndarray]:
        row = self.table.iloc[index]
        return row, self.read_labels(Path(row["mask_path"]))

    def _annotations(self, row: pd.Series, labels: np.ndarray) -> dict[str, Any]:
        """An item's keys besides the image, from its index row and its mask's class ids."""
        labels = preprocess_mask(labels, self.size)
        ids = torch.tensor(row["class_ids"], dtype=labels.dtype).reshape(-1, 1, 1)
        masks = labels[None] == ids
        return {
            "mask": masks.any(dim=0),
            "masks": masks,
            "labels": row["labels"],
            "label_ids": row["class_ids"],
            "id": row["id"],
            **{column: row[column] for column in self.item_columns},
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images of {len(self.full_table)}, {len(self.skipped)} skipped)"


__all__ = ["SegmentationDataset", "Subset"]
