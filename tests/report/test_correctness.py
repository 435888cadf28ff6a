"""Metrics split by correct and wrong predictions."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lafam_utils.report import correctness


def test_correctness_split_matches_pandas_and_scipy():
    rng = np.random.default_rng(0)
    n = 40
    results = pd.DataFrame(
        {
            "model": ["resnet50"] * n,
            "method": ["gradcam"] * 20 + ["lafam"] * 20,
            "correct": rng.random(n) < 0.6,
            "AUC": rng.random(n),
        }
    )
    results.loc[3, "AUC"] = np.nan
    split = correctness.correctness_split(results, ["AUC"])
    assert list(split["method"]) == ["gradcam", "lafam"]
    for _, row in split.iterrows():
        group = results[results["method"] == row["method"]].dropna()
        right, wrong = group.loc[group.correct, "AUC"], group.loc[~group.correct, "AUC"]
        assert row["correct mean"] == pytest.approx(right.mean())
        assert row["wrong mean"] == pytest.approx(wrong.mean())
        assert (row["n correct"], row["n wrong"]) == (len(right), len(wrong))
        assert row["p (Mann-Whitney U)"] == pytest.approx(stats.mannwhitneyu(right, wrong).pvalue)


def test_correctness_split_with_no_wrong_predictions_has_nan_p():
    results = pd.DataFrame({"model": "m", "method": "lafam", "correct": [True, True], "AUC": [0.2, 0.4]})
    row = correctness.correctness_split(results, ["AUC"]).iloc[0]
    assert row["n wrong"] == 0 and math.isnan(row["wrong mean"]) and math.isnan(row["p (Mann-Whitney U)"])
    assert row["correct mean"] == pytest.approx(0.3)


def test_correctness_split_names_missing_columns():
    with pytest.raises(KeyError, match="correct"):
        correctness.correctness_split(pd.DataFrame({"model": [], "method": [], "AUC": []}), ["AUC"])


def test_mark_correct_gives_every_row_of_an_image_the_classifiers_verdict():
    results = pd.DataFrame(
        {
            "index": [0, 1, 0, 1],
            "labels": ["cat|dog", "car", "cat|dog", "car"],
            "model": ["clf", "clf", "enc", "enc"],
            "prediction": ["dog", "bus", "", ""],
        }
    )
    assert correctness.mark_correct(results, "clf")["correct"].tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="no rows of the classifier"):
        correctness.mark_correct(results, "resnet50")
