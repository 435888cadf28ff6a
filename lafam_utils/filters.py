"""The paper's subset rules as plain functions over a dataset's index table.

An index table has one row per image with at least ``labels`` (a tuple of class names, one per
object class in the mask, background and ignore labels left out). Each rule returns the rows it
keeps, the original index untouched; ``class_histogram`` counts the images per class of a table,
e.g. before and after a rule.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

VOC_EXCLUDED = ("person", "tvmonitor", "sofa", "pottedplant", "diningtable", "chair", "bottle")
"""VOC classes the paper leaves out of its single-object subset."""


def _check(table: pd.DataFrame) -> None:
    if "labels" not in table.columns:
        raise KeyError(f"expected an index table with a 'labels' column, got columns {list(table.columns)}")


def with_n_classes(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """Images whose mask holds exactly ``n`` object classes.

    Raises:
        KeyError: the table has no "labels" column.
    """
    _check(table)
    return table[table["labels"].map(len) == n]


def without_classes(table: pd.DataFrame, names: Iterable[str]) -> pd.DataFrame:
    """Images none of whose classes is in ``names``.

    Raises:
        KeyError: the table has no "labels" column.
    """
    _check(table)
    excluded = set(names)
    return table[table["labels"].map(lambda labels: excluded.isdisjoint(labels))]


def voc_paper(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's VOC subset: exactly one class, not one of ``VOC_EXCLUDED`` (753 of 1449 val images)."""
    return without_classes(with_n_classes(table, 1), VOC_EXCLUDED)


def imagenet_s_paper(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's ImageNet-S subset: exactly one class (11,294 of 12,419 validation images)."""
    return with_n_classes(table, 1)


def multi_object(table: pd.DataFrame) -> pd.DataFrame:
    """Images with exactly two object classes, for the multi-object analysis."""
    return with_n_classes(table, 2)


def class_histogram(table: pd.DataFrame) -> pd.Series:
    """Number of images per class name (an image with two classes counts for both), most frequent first.

    Raises:
        KeyError: the table has no "labels" column.
    """
    _check(table)
    return table["labels"].explode().dropna().value_counts().rename("images")


__all__ = [
    "VOC_EXCLUDED",
    "class_histogram",
    "imagenet_s_paper",
    "multi_object",
    "voc_paper",
    "with_n_classes",
    "without_classes",
]
