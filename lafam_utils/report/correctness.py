"""Metrics split by whether the classifier got the image right: are wrong predictions explained worse?

The paper shows this only by example (its Fig. 3); these functions measure it over a results table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats


def mark_correct(results: pd.DataFrame, classifier: str) -> pd.DataFrame:
    """``results`` with a boolean column "correct": the classifier's prediction for the image is one of its labels.

    Every row of an image (all models and methods) gets the classifier's verdict.

    Args:
        results: a results table with "model", "index", "prediction" and "labels" ("|"-joined) columns.
        classifier: the model whose predictions decide.

    Raises:
        ValueError: ``results`` holds no row of ``classifier``.
    """
    rows = results[results["model"] == classifier]
    if rows.empty:
        raise ValueError(f"results hold no rows of the classifier {classifier!r}")
    verdict = {
        index: prediction in labels.split("|")
        for index, prediction, labels in zip(rows["index"], rows["prediction"], rows["labels"])
    }
    return results.assign(correct=results["index"].map(verdict).astype(bool))


def correctness_split(
    results: pd.DataFrame, metrics: Sequence[str], by: Sequence[str] = ("model", "method"), correct: str = "correct"
) -> pd.DataFrame:
    """Metric means for correct vs wrong predictions per group, with a two-sided Mann-Whitney U test.

    NaN scores are left out. The p-value is NaN when one side has no scores.

    Args:
        results: one row per image and group, a boolean column ``correct`` and the metric columns.
        metrics: the metric columns.
        by: the columns that define a group.
        correct: the name of the boolean column.

    Returns:
        One row per group and metric: the group's columns, "metric", "correct mean", "wrong mean",
        "n correct", "n wrong" and "p (Mann-Whitney U)".

    Raises:
        KeyError: a column is missing (the message lists the table's columns).
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


__all__ = ["correctness_split", "mark_correct"]
