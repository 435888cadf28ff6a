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
    paper_closeness,
    paper_directions,
    per_image_spread,
    seconds_against_lafam,
    shown_coverage,
    shown_localisation,
    shown_mass_against_lafam,
    shown_pointing,
    unpaired_test_can_conclude,
    verdict,
)
from lafam_utils.report.summary import paper_table, summarize


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


def test_paired_against_lafam_names_a_metric_without_scores_and_gives_the_others_n_once():
    results = results_table(8)
    results.loc[results["method"] == "gradcam", "AUC"] = np.nan  # e.g. an all-zero map: undefined
    (sentence,) = paired_against_lafam(results, metrics=["AUC", "Sparseness"])
    assert "(paired Wilcoxon signed-rank, n=8): " in sentence
    assert "too few images for a conclusion on AUC (no image with both scores); " in sentence and "nan" not in sentence


def test_shown_pointing_counts_the_hits_on_the_images_shown():
    (sentence,) = shown_pointing(results_table(6), [0, 1, 2])
    assert sentence == (
        "On the 3 images shown, the map's maximum lies inside the object (Pointing-Game) for "
        "m Grad-CAM in 2 of 3, m LaFAM in 2 of 3 (the images shown only; no test)."
    )
    assert shown_pointing(results_table(6), []) == []
    assert shown_pointing(results_table(6), [4])[0].startswith("On the 1 image shown, ")


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


def test_paired_against_lafam_in_percent_cites_the_means_and_p_values_of_the_summary_table():
    results = results_table(15, seed=3)
    (sentence,) = paired_against_lafam(results, metrics=["AUC", "Sparseness"], percent=True)
    summary = summarize(results)
    means, p_values = (summary.xs(stat, level="stat") for stat in ("mean", "p_value"))
    assert sentence.startswith("m Grad-CAM vs LaFAM on the 15 images (x100) (paired Wilcoxon signed-rank, n=15): ")
    for metric in ("AUC", "Sparseness"):
        cited = f"{metric} ({means.loc[metric, ('m', 'gradcam')]:.2f} vs {means.loc[metric, ('m', 'lafam')]:.2f}, "
        assert cited + f"{format_p(p_values.loc[metric, ('m', 'gradcam')])})" in sentence


def object_in_top_half(n: int = 2, size: int = 8) -> torch.Tensor:
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    masks[:, : size // 2] = True
    return masks


def test_shown_localisation_scores_layer_resolution_maps_upsampled_to_the_masks():
    masks = object_in_top_half()
    inside = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])  # all mass inside; all spread out
    outside = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]] * 2)  # 2x2 maps, peak in the bottom half
    sentences = shown_localisation({("m", "lafam"): inside, ("m", "gradcam"): outside}, masks)
    assert sentences == [
        "On the 2 images shown, the map's maximum lies inside the object (Pointing-Game) for m LaFAM in 2 of 2, "
        "m Grad-CAM in 0 of 2 (the images shown only; no test).",
        "On the same images, the mean share of the map's mass inside the object (Relevance Mass Accuracy) is: "
        "m LaFAM 0.75, m Grad-CAM 0.00 (the images shown only; no test).",
    ]


def test_shown_mass_against_lafam_compares_each_map_with_its_models_lafam():
    masks = object_in_top_half(n=3)
    lafam = torch.tensor([[[1.0, 1.0], [1.0, 1.0]]] * 3)  # half the mass inside
    concentrated = torch.zeros(3, 8, 8)
    concentrated[:2, :4] = 1.0  # pixel resolution: all inside on two images
    concentrated[2, 4:] = 1.0  # all outside on the third
    maps = {("m", "lafam"): lafam, ("m", "lafam-lrp"): concentrated, ("other", "relax"): lafam}
    assert shown_mass_against_lafam(maps, masks) == [
        "On the 3 images shown, the mean share of the map's mass inside the object (Relevance Mass Accuracy) is "
        "0.67 for m LaFAM-LRP against 0.50 for its LaFAM (more on 2 of 3 images) (the images shown only; no test)."
    ]
    assert shown_mass_against_lafam({("other", "relax"): lafam}, masks) == []
    (sentence,) = shown_mass_against_lafam({("m", "gradcam"): torch.zeros(3, 2, 2), ("m", "lafam"): lafam}, masks)
    assert "is n/a for m Grad-CAM against 0.50 for its LaFAM (more on 0 of 0 images)" in sentence  # all-zero: no mass
    assert shown_localisation({("m", "gradcam"): torch.zeros(3, 2, 2)}, masks)[1].endswith(
        "is: m Grad-CAM n/a (the images shown only; no test)."
    )


def paper_results(dataset: str, values: dict[tuple[str, str], dict[str, np.ndarray]]) -> pd.DataFrame:
    """A results table on ``dataset``: (model, method) -> metric -> per-image scores."""
    return pd.concat(
        pd.DataFrame({"id": [f"im{i}" for i in range(len(next(iter(scores.values()))))], "dataset": dataset,
                      "model": model, "method": method, "seconds": 0.0, **scores})
        for (model, method), scores in values.items()
    )


def test_paper_closeness_counts_published_means_inside_the_interval_and_names_the_extremes():
    paper = paper_table("voc")
    published = {pair: paper.loc["Pointing-Game", pair] / 100 for pair in paper.columns[:2]}
    results = paper_results("voc", {
        ("resnet50", "gradcam"): {"Pointing-Game": np.full(10, published[("resnet50", "gradcam")])},
        ("resnet50", "lafam"): {"Pointing-Game": np.full(10, published[("resnet50", "lafam")] + 0.05)},
    })
    summary = summarize(results, confidence=0.9)
    assert paper_closeness(summary, "voc") == [
        "Pointing-Game (x100): 1 of the paper's 2 means (this run has 2 of its 6 pairs) lie inside this run's 90% "
        "bootstrap interval; this run minus the paper ranges from +0.00 (ResNet50 Grad-CAM) to +5.00 (ResNet50 LaFAM)."
    ]
    summary.attrs.clear()  # e.g. a summary read back from a file: the coverage is not known
    assert "lie inside this run's bootstrap interval;" in paper_closeness(summary, "voc")[0]


def test_paper_closeness_and_directions_without_the_papers_pairs_say_so():
    results = paper_results("voc", {("vit_b_16", method): {"AUC": np.ones(3)} for method in ("gradcam", "lafam")})
    (closeness,) = paper_closeness(summarize(results), "voc")
    assert closeness.startswith("This run has none of the pairs the paper publishes for voc (ResNet50 Grad-CAM, ")
    assert paper_directions(results, "voc") == [
        "This run has none of the method-vs-LaFAM comparisons the paper publishes for voc."
    ]
    with pytest.raises(ValueError, match="dataset must be one of"):
        paper_directions(results, "synthetic")


def test_paper_directions_says_where_a_significant_difference_goes_the_papers_way():
    paper = paper_table("voc")
    rng = np.random.default_rng(0)
    lafam = {metric: rng.uniform(0.2, 0.8, 20) for metric in paper.index}
    gradcam = {metric: scores + rng.uniform(0.05, 0.1, 20) for metric, scores in lafam.items()}  # higher everywhere
    gradcam["AUC"] = lafam["AUC"] + 0.01 * (-1) ** np.arange(20)  # as often higher as lower by as much: no difference
    results = paper_results("voc", {("resnet50", "gradcam"): gradcam, ("resnet50", "lafam"): lafam})

    (sentence,) = paper_directions(results, "voc")

    head = "ResNet50 Grad-CAM vs LaFAM against the paper's voc table (x100) (paired Wilcoxon signed-rank, n=20): "
    assert sentence.startswith(head)
    words = ("as in the paper", "opposite to the paper", "no significant difference")
    clauses = {w: c.removeprefix(f"{w} in ") for c in sentence.removeprefix(head).split("; ") for w in words
               if c.startswith(w)}
    gradcam_higher = paper[("resnet50", "gradcam")] > paper[("resnet50", "lafam")]
    higher_in_paper = [m for m in paper.index if m != "AUC" and gradcam_higher[m]]
    lower_in_paper = [m for m in paper.index if m != "AUC" and not gradcam_higher[m]]
    assert higher_in_paper and lower_in_paper  # the paper's ResNet50 rows go both ways
    assert [m for m in paper.index if f"{m} (here" in clauses["as in the paper"]] == higher_in_paper
    assert [m for m in paper.index if f"{m} (here" in clauses["opposite to the paper"]] == lower_in_paper
    auc = paper.loc["AUC"]
    assert clauses["no significant difference"].startswith(
        f"AUC (here {100 * gradcam['AUC'].mean():.2f} vs {100 * lafam['AUC'].mean():.2f}, "
        f"paper {auc[('resnet50', 'gradcam')]:.2f} vs {auc[('resnet50', 'lafam')]:.2f}, p="
    )
    p_value = stats.wilcoxon(gradcam["Sparseness"], lafam["Sparseness"]).pvalue
    means = f"{100 * gradcam['Sparseness'].mean():.2f} vs {100 * lafam['Sparseness'].mean():.2f}"
    sparseness = f"Sparseness (here {means}, "
    assert sparseness + f"paper 44.39 vs 36.20, {format_p(p_value)})" in clauses["as in the paper"]


def test_paper_directions_on_too_few_images_draws_no_conclusion():
    scores = {("resnet50", "gradcam"): {"AUC": np.full(3, 0.9)}, ("resnet50", "lafam"): {"AUC": np.full(3, 0.5)}}
    results = paper_results("voc", scores)
    (sentence,) = paper_directions(results, "voc")
    assert sentence.endswith(
        "too few images for a conclusion on AUC (here 90.00 vs 50.00, paper 82.87 vs 84.00, p=0.25, 3 differ)."
    )


def test_per_image_spread_gives_the_range_of_medians_and_interquartile_ranges():
    results = paper_results("synthetic", {
        ("m", "lafam"): {"AUC": np.array([0.1, 0.2, 0.3, 0.4, 0.5])},
        ("m", "gradcam"): {"AUC": np.array([0.9, 0.9, 0.9, 0.9, 0.9])},
    })
    assert per_image_spread(results) == [
        "AUC per image: the medians run from 0.30 (m LaFAM) to 0.90 (m Grad-CAM); the interquartile ranges "
        "run from 0.00 (m Grad-CAM) to 0.20 (m LaFAM) (descriptive; no test)."
    ]
    methods = {("m", method): {"AUC": np.full(3, 0.5)} for method in ("lafam", "gradcam", "eigencam", "fem")}
    methods[("m", "random")] = {"AUC": np.full(3, 0.2)}
    (sentence,) = per_image_spread(paper_results("synthetic", methods))
    assert sentence == (
        "AUC per image: the medians run from 0.20 (m Random) to 0.50 (4 of 5 pairs); "
        "the interquartile ranges are 0.00 for all 5 pairs (descriptive; no test)."
    )


def test_seconds_against_lafam_gives_each_methods_time_as_a_multiple_of_lafams():
    results = paper_results("synthetic", {
        ("m", "gradcam"): {"AUC": np.ones(4)},
        ("m", "lafam"): {"AUC": np.ones(4)},
        ("enc", "relax"): {"AUC": np.ones(4)},
    })
    results["seconds"] = np.repeat([0.03, 0.01, 2.0], 4)
    results.loc[0, "seconds"] = np.nan  # a failed image: no time
    assert seconds_against_lafam(results, "cpu") == [
        "m, mean explainer seconds per image over 4 images on cpu: Grad-CAM 0.03 s (3.0x LaFAM's), LaFAM 0.01 s "
        "(one run's timings; no test).",
        "enc, mean explainer seconds per image over 4 images on cpu: RELAX 2 s (one run's timings; no test).",
    ]
