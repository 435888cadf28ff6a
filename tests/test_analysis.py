import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

from lafam_utils import analysis


def test_dataset_models_follow_the_paper_and_accept_overrides():
    assert analysis.dataset_models("voc") == ("resnet50", ("simclr", "swav"))
    assert analysis.dataset_models("synthetic") == ("shapes-supervised", ("shapes-simclr",))
    assert analysis.dataset_models("imagenet-s", encoders=["swav"]) == ("resnet50", ("swav",))
    with pytest.raises(ValueError, match="dataset must be one of"):
        analysis.dataset_models("coco")


def test_pairs_are_the_papers_columns():
    assert analysis.model_method_pairs("resnet50", ["simclr", "swav"]) == [
        ("resnet50", "gradcam"),
        ("resnet50", "lafam"),
        ("simclr", "relax"),
        ("simclr", "lafam"),
        ("swav", "relax"),
        ("swav", "lafam"),
    ]


def test_predict_in_batches_equals_one_pass():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)).eval()
    images = torch.randn(7, 3, 17, 19)
    expected = model(images).argmax(dim=1)
    assert torch.equal(analysis.predict(model, images, batch_size=3), expected)
    assert analysis.predict(model, images[:1]).shape == (1,)


def test_object_coverage_counts_pixels_at_or_above_the_threshold():
    maps = torch.zeros(1, 4, 4)
    maps[0, :2] = 0.5  # exactly the threshold: covered
    maps[0, 2:, :2] = 0.49
    masks = torch.zeros(1, 3, 4, 4, dtype=torch.bool)
    masks[0, 0, :2, :2] = True  # fully covered
    masks[0, 1, 1:3, :] = True  # half covered
    coverage = analysis.object_coverage(maps, masks, threshold=0.5)
    assert coverage[0, 0] == 1.0 and coverage[0, 1] == 0.5
    assert math.isnan(coverage[0, 2])  # empty mask


def test_object_coverage_rejects_maps_at_layer_resolution():
    with pytest.raises(ValueError, match="upsample the maps"):
        analysis.object_coverage(torch.rand(2, 7, 7), torch.ones(2, 2, 28, 28, dtype=torch.bool))


def test_coverage_table_separates_finding_one_from_finding_both():
    one = torch.tensor([[1.0, 0.0], [0.8, 0.2]])
    both = torch.tensor([[0.7, 0.6], [0.5, 0.9]])
    table = analysis.coverage_table({"Grad-CAM": one, "LaFAM": both}, both_at_least=0.5)
    assert table.loc["Grad-CAM", "best-covered object"] == pytest.approx(0.9)
    assert table.loc["Grad-CAM", "least-covered object"] == pytest.approx(0.1)
    assert table.loc["LaFAM", "least-covered object"] == pytest.approx(0.55)
    assert table.loc["LaFAM", "all objects >= 0.5"] == 1.0
    assert table.loc["Grad-CAM", "all objects >= 0.5"] == 0.0


def test_coverage_table_skips_images_without_objects():
    values = torch.tensor([[float("nan"), float("nan")], [0.4, float("nan")]])
    table = analysis.coverage_table({"m": values})
    assert table.loc["m", "images"] == 1
    assert table.loc["m", "least-covered object"] == pytest.approx(0.4)


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
    split = analysis.correctness_split(results, ["AUC"])
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
    row = analysis.correctness_split(results, ["AUC"]).iloc[0]
    assert row["n wrong"] == 0 and math.isnan(row["wrong mean"]) and math.isnan(row["p (Mann-Whitney U)"])
    assert row["correct mean"] == pytest.approx(0.3)


def test_correctness_split_names_missing_columns():
    with pytest.raises(KeyError, match="correct"):
        analysis.correctness_split(pd.DataFrame({"model": [], "method": [], "AUC": []}), ["AUC"])
