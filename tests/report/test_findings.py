"""The notebooks' findings: sentences computed from the tables, citing the test and n behind each comparison."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from lafam_utils.report.correctness import correctness_split
from lafam_utils.report.findings import (
    Difference,
    correct_vs_wrong,
    coverage_against_lafam,
    differences_sentence,
    exact_mcnemar,
    format_p,
    paired_against_lafam,
    paired_test_can_conclude,
    shown_coverage,
    shown_pointing,
    unpaired_test_can_conclude,
    verdict,
)


def test_exact_mcnemar_is_the_binomial_test_of_the_discordant_pairs():
    first = np.array([True] * 1 + [False] * 9 + [True] * 5 + [False] * 3)
    second = np.array([False] * 1 + [True] * 9 + [True] * 5 + [False] * 3)
    result = exact_mcnemar(first, second)
    assert (result.only_first, result.only_second) == (1, 9)
    assert result.p_value == pytest.approx(2 * (1 + 10) / 2**10)  # P(X <= 1) twice, X ~ Bin(10, 1/2)
    assert exact_mcnemar(first, first).p_value == 1.0  # no discordant pair


def test_exact_mcnemar_rejects_outcomes_of_different_lengths():
    with pytest.raises(ValueError, match="same length"):
        exact_mcnemar(np.ones(3, bool), np.ones(4, bool))


@pytest.mark.parametrize("n", [5, 6])
def test_a_paired_test_can_conclude_exactly_when_its_smallest_p_value_is_below_alpha(n):
    one_way = np.arange(1.0, n + 1)  # every pair differs the same way, distinct ranks: the most extreme outcome
    smallest = [
        stats.wilcoxon(one_way, np.zeros(n), method="exact").pvalue,
        exact_mcnemar(np.ones(n, bool), np.zeros(n, bool)).p_value,
    ]
    assert smallest == pytest.approx([2 * 0.5**n] * 2)
    assert paired_test_can_conclude(n) == (n == 6) == all(p < 0.05 for p in smallest)
    assert not paired_test_can_conclude(0)


@pytest.mark.parametrize(("n_first", "n_second"), [(3, 3), (4, 4), (1, 30), (2, 30)])
def test_an_unpaired_test_can_conclude_exactly_when_separated_groups_reach_alpha(n_first, n_second):
    low, high = np.arange(n_first, dtype=float), np.arange(n_second, dtype=float) + 100
    smallest = stats.mannwhitneyu(low, high, method="exact").pvalue
    assert unpaired_test_can_conclude(n_first, n_second) == (smallest < 0.05)
    assert not unpaired_test_can_conclude(0, 10)


def test_verdict_names_the_direction_only_for_a_significant_conclusive_difference():
    def difference(first, second, p, can_conclude=True):
        return Difference("m", first, second, p, (10,), can_conclude)

    assert verdict(difference(0.9, 0.1, 0.001)) == "higher"
    assert verdict(difference(0.1, 0.9, 0.001), more="more often", less="less often") == "less often"
    assert verdict(difference(0.5, 0.5, 0.001)) == "different"
    assert verdict(difference(0.9, 0.1, 0.05)) == "no significant difference"  # p < alpha, strictly
    assert verdict(difference(0.9, 0.1, 0.001, can_conclude=False)) == "too few images for a conclusion"
    assert format_p(0.0123) == "p=0.012" and format_p(math.nan) == "p=n/a"


def test_differences_sentence_groups_measures_and_gives_n_once_or_per_measure():
    same_n = [Difference("AUC", 0.4, 0.8, 0.001, (20,), True), Difference("Sparseness", 0.5, 0.5, 0.7, (20,), True)]
    sentence = differences_sentence("A vs B", "paired Wilcoxon signed-rank", same_n)
    assert sentence == (
        "A vs B (paired Wilcoxon signed-rank, n=20): lower in AUC (0.40 vs 0.80, p=0.001); "
        "no significant difference in Sparseness (0.50 vs 0.50, p=0.7)."
    )
    other_n = [
        Difference("AUC", 0.4, 0.8, 0.001, (10, 20), True),
        Difference("Sparseness", 0.5, 0.5, 0.7, (3, 17), False),
    ]
    sentence = differences_sentence("A", "Mann-Whitney U", other_n, ("wrong", "correct"))
    assert sentence == (
        "A (Mann-Whitney U): lower in AUC (0.40 vs 0.80, p=0.001, 10 wrong, 20 correct); "
        "too few images for a conclusion on Sparseness (0.50 vs 0.50, p=0.7, 3 wrong, 17 correct)."
    )


def coverage_of(per_image: list[list[float]]) -> torch.Tensor:
    return torch.tensor(per_image, dtype=torch.float64)


def test_coverage_against_lafam_cites_mcnemar_and_wilcoxon_over_the_two_object_images():
    n = 20
    one_object = coverage_of([[1.0, 0.1 * (i % 3)] for i in range(n)])  # never both covered
    both_objects = coverage_of([[0.9, 0.6 + 0.01 * i] for i in range(n)])  # always both covered
    coverage = {("m", "gradcam"): one_object, ("m", "lafam"): both_objects, ("other", "relax"): one_object}

    sentences = coverage_against_lafam(coverage)

    assert len(sentences) == 1  # "other" has no LaFAM to compare with
    least_p = stats.wilcoxon(one_object.min(dim=1).values.numpy(), both_objects.min(dim=1).values.numpy()).pvalue
    assert sentences[0] == (
        "m Grad-CAM covers both objects (each >= 0.5) in 0% of the 20 two-object images, m LaFAM in 100%: less often "
        f"(exact McNemar test: 0 vs 20 images where only one covers both, {format_p(2 * 0.5**20)}, n=20); "
        f"its least-covered object's mean coverage is {one_object.min(dim=1).values.mean():.2f} vs "
        f"{both_objects.min(dim=1).values.mean():.2f}: lower (Wilcoxon signed-rank, {format_p(least_p)}, n=20)."
    )


def test_coverage_against_lafam_says_when_the_images_are_too_few():
    coverage = {("m", "gradcam"): coverage_of([[1.0, 0.0]] * 3), ("m", "lafam"): coverage_of([[1.0, 1.0]] * 3)}
    (sentence,) = coverage_against_lafam(coverage)
    assert "of the 3 two-object images" in sentence and sentence.count("too few images for a conclusion") == 2
    assert "(Wilcoxon signed-rank, p=" in sentence and ", n=3, 3 differ)." in sentence


def test_coverage_against_lafam_counts_only_the_images_where_the_methods_differ():
    same = [[0.9, 0.8]] * 40
    coverage = {
        ("m", "fem"): coverage_of([[0.9, 0.1]] * 2 + same),
        ("m", "lafam"): coverage_of([[0.9, 0.6]] * 2 + same),
    }
    (sentence,) = coverage_against_lafam(coverage)
    assert "of the 42 two-object images" in sentence and "2 vs 0" not in sentence and "0 vs 2 images" in sentence
    assert sentence.count("too few images for a conclusion") == 2 and "n=42, 2 differ" in sentence


def test_coverage_against_lafam_skips_images_without_objects():
    coverage = {
        ("m", "eigencam"): coverage_of([[0.2, 0.9], [math.nan, math.nan]] * 4),
        ("m", "lafam"): coverage_of([[0.8, 0.9], [math.nan, math.nan]] * 4),
    }
    (sentence,) = coverage_against_lafam(coverage)
    assert "in 0% of the 4 two-object images, m LaFAM in 100%" in sentence and "n=4" in sentence


def test_shown_coverage_counts_the_scenes_each_map_covers_both_objects_of():
    masks = torch.zeros(2, 2, 4, 4, dtype=torch.bool)
    masks[:, 0, :2] = True  # top object
    masks[:, 1, 2:] = True  # bottom object
    top_only = torch.zeros(2, 4, 4)
    top_only[:, :2] = 1.0
    concepts = torch.stack([top_only, 1 - top_only], dim=1)  # one concept per object
    sentences = shown_coverage({("m", "gradcam"): top_only, ("m", "DFF concepts"): concepts}, list(masks))
    assert sentences == [
        "On the 2 scenes shown, both objects are covered (each >= 0.5) by m Grad-CAM in 0 of 2, "
        "m DFF concepts in 2 of 2 (the images shown only; no test)."
    ]


def results_table(n: int, seed: int = 0) -> pd.DataFrame:
    """A results table of two pairs on one model: Grad-CAM scores lower AUC than LaFAM on every image."""
    rng = np.random.default_rng(seed)
    lafam_auc = rng.uniform(0.6, 0.9, n)
    rows = {
        "gradcam": {"AUC": lafam_auc - rng.uniform(0.1, 0.3, n), "Sparseness": rng.uniform(0, 1, n)},
        "lafam": {"AUC": lafam_auc, "Sparseness": rng.uniform(0, 1, n)},
    }
    return pd.concat(
        pd.DataFrame(
            {"index": range(n), "id": [f"im{i}" for i in range(n)], "model": "m", "method": method,
             "Pointing-Game": (np.arange(n) % 2 == 0).astype(float), **scores}
        )
        for method, scores in rows.items()
    )


def test_paired_against_lafam_cites_the_paired_wilcoxon_test_per_metric():
    results = results_table(12)
    (sentence,) = paired_against_lafam(results, "misclassified images", metrics=["AUC", "Sparseness", "Deletion"])
    gradcam, lafam = (rows.set_index("id") for _, rows in results.groupby("method"))
    auc_p = stats.wilcoxon(gradcam["AUC"], lafam["AUC"]).pvalue
    sparseness_p = stats.wilcoxon(gradcam["Sparseness"], lafam["Sparseness"]).pvalue
    head = "m Grad-CAM vs LaFAM on the 12 misclassified images (paired Wilcoxon signed-rank, n=12): "
    assert sentence.startswith(head)
    assert f"lower in AUC ({gradcam['AUC'].mean():.2f} vs {lafam['AUC'].mean():.2f}, {format_p(auc_p)})" in sentence
    assert f"{format_p(sparseness_p)})" in sentence and "Deletion" not in sentence  # a metric without column: left out


def test_paired_against_lafam_counts_only_the_images_where_the_methods_differ():
    results = results_table(30)
    lafam = results["method"] == "lafam"
    results.loc[~lafam, "Sparseness"] = results.loc[lafam, "Sparseness"].to_numpy()
    results.loc[~lafam & (results["index"] < 3), "Sparseness"] += 0.1  # three images differ
    (sentence,) = paired_against_lafam(results, metrics=["AUC", "Sparseness"])
    assert "lower in AUC" in sentence
    assert "too few images for a conclusion on Sparseness (" in sentence and ", 3 differ)" in sentence


def test_paired_against_lafam_on_no_images_says_so():
    assert paired_against_lafam(results_table(4).iloc[:0], images="misclassified images") == [
        "No misclassified images: nothing to compare."
    ]


def test_paired_against_lafam_pairs_by_id_and_leaves_out_missing_scores():
    results = results_table(8)
    results.loc[(results["method"] == "gradcam") & (results["id"] == "im0"), "AUC"] = np.nan
    (sentence,) = paired_against_lafam(results, metrics=["AUC", "Sparseness"])
    assert "(0." in sentence and "n=7" in sentence and "n=8" in sentence  # AUC over 7 pairs, Sparseness over 8


def test_shown_pointing_counts_the_hits_on_the_images_shown():
    (sentence,) = shown_pointing(results_table(6), [0, 1, 2])
    assert sentence == (
        "On the 3 images shown, the map's maximum lies inside the object (Pointing-Game) for "
        "m Grad-CAM in 2 of 3, m LaFAM in 2 of 3 (the images shown only; no test)."
    )
    assert shown_pointing(results_table(6), []) == []


def test_correct_vs_wrong_cites_the_mann_whitney_tests_of_the_split():
    results = results_table(30)
    results["correct"] = results["index"] >= 10  # images 0-9 wrong
    results.loc[~results["correct"], "AUC"] -= 0.5
    split = correctness_split(results, ["AUC", "Sparseness"])
    sentences = correct_vs_wrong(split)
    row = split[(split["method"] == "gradcam") & (split["metric"] == "AUC")].iloc[0]
    head = "m Grad-CAM on wrong vs correct predictions (Mann-Whitney U, 10 wrong, 20 correct): "
    auc = f"lower in AUC ({row['wrong mean']:.2f} vs {row['correct mean']:.2f}, {format_p(row['p (Mann-Whitney U)'])})"
    assert sentences[0].startswith(head) and auc in sentences[0]
    assert sentences[1].startswith("m LaFAM on wrong vs correct predictions")


def test_correct_vs_wrong_without_wrong_predictions_or_with_too_few_says_so():
    results = results_table(6)
    results["correct"] = True
    assert correct_vs_wrong(correctness_split(results, ["AUC"]))[0] == (
        "m Grad-CAM: 0 wrong and 6 correct predictions, nothing to compare."
    )
    results["correct"] = results["index"] > 0  # one wrong image
    assert "too few images for a conclusion on AUC" in correct_vs_wrong(correctness_split(results, ["AUC"]))[0]
