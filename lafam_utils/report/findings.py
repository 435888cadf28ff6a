"""Findings: the sentences a notebook prints at the end of a section, computed from the run's tables.

One small function per finding; each returns sentences (``list[str]``) that carry the numbers and,
where they compare methods or groups, the test behind the comparison (two-sided p-value and n).
A difference is called one when p < ``alpha`` (``ALPHA`` unless given). Where the images are so
few that no outcome of the test could reach ``alpha`` (the smoke parameter set; for a paired test,
the images where the two differ), the sentence says there is no conclusion. The p-values are per
comparison, not corrected for the number of comparisons a notebook makes. Built from the run's
tables, the sentences hold for any parameter set.

- Notebook 02 (figures of a few images): ``shown_localisation``, ``shown_mass_against_lafam``.
- Notebook 03 (two-object scenes): ``shown_coverage``, ``coverage_against_lafam``.
- Notebook 04 (misclassified images): ``shown_pointing``, ``paired_against_lafam``, ``correct_vs_wrong``.
- Notebook 05 (the paper's tables): ``paired_against_lafam``, ``paper_closeness``, ``paper_directions``,
  ``per_image_spread``, ``seconds_against_lafam``.

A new finding is one more function, built from ``Difference``, ``verdict``, ``differences_sentence``
and the ``*_can_conclude`` checks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from scipy.stats import binomtest
from torch import Tensor

from ..explainers import upsample_maps
from ..metrics.coverage import least_covered, object_coverage
from ..metrics.localisation import METRIC_NAMES, compute
from ..paper import PAPER_METRIC_ORDER, Pair
from .summary import compare_with_paper, paired_wilcoxon, paper_table
from .titles import method_title, model_title, pair_title

ALPHA = 0.05
"""The two-sided significance level below which a sentence calls a difference one."""
REFERENCE = "lafam"
"""The method every other method of the same model is compared with (as in ``summarize``)."""


def format_p(p_value: float) -> str:
    """A p-value as the sentences print it: "p=0.034", "p=1.2e-05"."""
    return "p=n/a" if math.isnan(p_value) else f"p={p_value:.2g}"


def paired_test_can_conclude(differing: int, alpha: float = ALPHA) -> bool:
    """Whether a paired test with ``differing`` pairs that differ can give a two-sided p < ``alpha``.

    Pairs without a difference carry no information: the McNemar test counts only the discordant
    pairs, the Wilcoxon signed-rank test drops zero differences. The smallest p-value of the exact
    McNemar (sign) test and of the exact Wilcoxon test over ``differing`` pairs is 2 * 0.5**differing,
    reached when all of them differ the same way.
    """
    return differing > 0 and 2 * 0.5**differing < alpha


def unpaired_test_can_conclude(n_first: int, n_second: int, alpha: float = ALPHA) -> bool:
    """Whether groups of ``n_first`` and ``n_second`` can give a two-sided Mann-Whitney U p < ``alpha``.

    The smallest exact p-value is 2 / C(n_first + n_second, n_first), reached when the groups do not overlap.
    """
    return n_first > 0 and n_second > 0 and 2 / math.comb(n_first + n_second, n_first) < alpha


@dataclass(frozen=True)
class McNemar:
    """An exact McNemar test: the pairs where only the first or only the second outcome holds, and the p-value."""

    only_first: int
    only_second: int
    p_value: float


def exact_mcnemar(first: np.ndarray, second: np.ndarray) -> McNemar:
    """Exact McNemar test of two paired boolean outcomes (e.g. "both objects covered" per image, two methods).

    Two-sided binomial test of the discordant pairs against 1/2; p is 1.0 when no pair is discordant.

    Raises:
        ValueError: the outcomes are not two 1-D arrays of the same length.
    """
    first, second = np.asarray(first, dtype=bool), np.asarray(second, dtype=bool)
    if first.ndim != 1 or first.shape != second.shape:
        raise ValueError(f"expected two 1-D outcomes of the same length, got shapes {first.shape} and {second.shape}")
    only_first, only_second = int((first & ~second).sum()), int((second & ~first).sum())
    discordant = only_first + only_second
    p_value = binomtest(only_first, discordant, 0.5).pvalue if discordant else 1.0
    return McNemar(only_first, only_second, float(p_value))


@dataclass(frozen=True)
class Difference:
    """One measure compared between two groups: each group's mean, the test's p-value, its sample size(s).

    ``n`` is (pairs,) for a paired test, (first group, second group) for an unpaired one; ``can_conclude``
    is False where so few images could not reach the significance level whatever the data;
    ``differing`` is, for a paired test, the number of pairs that differ (cited when too few).
    """

    measure: str
    first: float
    second: float
    p_value: float
    n: tuple[int, ...]
    can_conclude: bool
    differing: int | None = None


def verdict(difference: Difference, alpha: float = ALPHA, more: str = "higher", less: str = "lower") -> str:
    """The first group against the second: ``more``, ``less``, "different", "no significant difference"
    or "too few images for a conclusion"."""
    if not difference.can_conclude:
        return "too few images for a conclusion"
    if not difference.p_value < alpha:
        return "no significant difference"
    if difference.first == difference.second:
        return "different"
    return more if difference.first > difference.second else less


_PREPOSITION = {"too few images for a conclusion": "on"}


def _n_text(n: tuple[int, ...], labels: Sequence[str]) -> str:
    """ "n=12" for a paired test's size, "12 wrong, 52 correct" for an unpaired test's groups ``labels``."""
    if len(n) == 1:
        return f"n={n[0]}"
    return ", ".join(f"{count} {label}" for count, label in zip(n, labels, strict=True))


def _differ(count: int) -> str:
    return f"{count} differ{'s' if count == 1 else ''}"


def _images(count: int) -> str:
    return f"{count} image{'' if count == 1 else 's'}"


def _share(value: float) -> str:
    """A share with two decimals; "n/a" where it is undefined (an all-zero map, an empty mask)."""
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def differences_sentence(
    subject: str, test: str, differences: Sequence[Difference], group_names: Sequence[str] = (), alpha: float = ALPHA
) -> str:
    """One sentence: ``subject`` (``test``, n), then the measures grouped by ``verdict``, each with its means and p.

    The sample size is given once when every measure has the same, else with each measure; an
    unpaired test's sizes are named by ``group_names`` ("wrong", "correct").
    """
    return _grouped_sentence(
        subject, test, [(verdict(d, alpha), d, f"{d.first:.2f} vs {d.second:.2f}") for d in differences], group_names
    )


def _grouped_sentence(
    subject: str, test: str, judged: Sequence[tuple[str, Difference, str]], group_names: Sequence[str] = ()
) -> str:
    """``subject`` (``test``, n): the (word, difference, means text) triples grouped by word, each with its p.

    A measure no image has for both groups is named as such, without means or p.
    """
    sizes = {d.n for _, d, _ in judged if 0 not in d.n}
    shared = len(sizes) == 1
    groups: dict[str, list[str]] = {}
    for word, d, means in judged:
        if 0 in d.n:
            groups.setdefault(word, []).append(f"{d.measure} (no image with both scores)")
            continue
        detail = f"{means}, {format_p(d.p_value)}"
        detail += "" if shared else f", {_n_text(d.n, group_names)}"
        detail += f", {_differ(d.differing)}" if d.differing is not None and not d.can_conclude else ""
        groups.setdefault(word, []).append(f"{d.measure} ({detail})")
    head = f"{subject} ({test}" + (f", {_n_text(next(iter(sizes)), group_names)}" if shared else "") + ")"
    clauses = [f"{word} {_PREPOSITION.get(word, 'in')} " + ", ".join(items) for word, items in groups.items()]
    return f"{head}: " + "; ".join(clauses) + "."


def shown_coverage(
    maps: Mapping[Pair, Tensor], object_masks: Tensor | Sequence[Tensor], at_least: float = 0.5
) -> list[str]:
    """How many of the scenes shown in a figure each map covers both objects of (each >= ``at_least``).

    Args:
        maps: (model, method) -> (B, H, W) maps, or (B, M, H, W) several maps per image (each
            object's best counts, e.g. DFF's concepts), at the masks' size.
        object_masks: (B, K, H, W) masks, one per object, or the B items' (K, H, W) masks.
        at_least: the share of an object's pixels a map must cover (its value >= ``at_least``).
    """
    masks = object_masks if isinstance(object_masks, Tensor) else torch.stack(list(object_masks))
    counts = []
    for (model, method), values in maps.items():
        least = least_covered(object_coverage(values, masks.to(values.device), at_least))
        valid = ~np.isnan(least)
        counts.append(f"{pair_title(model, method)} in {int((least[valid] >= at_least).sum())} of {int(valid.sum())}")
    return [
        f"On the {len(masks)} scenes shown, both objects are covered (each >= {at_least:g}) by " + ", ".join(counts)
        + " (the images shown only; no test)."
    ]


def _coverage_sentence(
    method: Pair, method_values: Tensor, reference: Pair, reference_values: Tensor, at_least: float, alpha: float
) -> str:
    """One method against its model's LaFAM: both objects covered (exact McNemar), least-covered object (Wilcoxon)."""
    least, least_reference = least_covered(method_values), least_covered(reference_values)
    valid = ~np.isnan(least) & ~np.isnan(least_reference)
    least, least_reference, n = least[valid], least_reference[valid], int(valid.sum())
    both, both_reference = least >= at_least, least_reference >= at_least
    mcnemar = exact_mcnemar(both, both_reference)
    discordant = mcnemar.only_first + mcnemar.only_second
    shares = Difference(
        "both covered", both.mean(), both_reference.mean(), mcnemar.p_value, (n,),
        paired_test_can_conclude(discordant, alpha), discordant,
    )
    differing = int((least != least_reference).sum())
    p_least = paired_wilcoxon(pd.Series(least), pd.Series(least_reference))
    means = Difference(
        "least covered", least.mean(), least_reference.mean(), p_least, (n,),
        paired_test_can_conclude(differing, alpha), differing,
    )
    wilcoxon_n = f"n={n}" if means.can_conclude else f"n={n}, {_differ(differing)}"
    return (
        f"{pair_title(*method)} covers both objects (each >= {at_least:g}) in {shares.first:.0%} of the {n} "
        f"two-object images, {pair_title(*reference)} in {shares.second:.0%}: "
        f"{verdict(shares, alpha, 'more often', 'less often')} (exact McNemar test: {mcnemar.only_first} vs "
        f"{mcnemar.only_second} images where only one covers both, {format_p(mcnemar.p_value)}, n={n}); "
        f"its least-covered object's mean coverage is {means.first:.2f} vs {means.second:.2f}: "
        f"{verdict(means, alpha)} (Wilcoxon signed-rank, {format_p(p_least)}, {wilcoxon_n})."
    )


def coverage_against_lafam(coverage: Mapping[Pair, Tensor], at_least: float = 0.5, alpha: float = ALPHA) -> list[str]:
    """Each method's two-object coverage against its model's LaFAM, paired by image, one sentence per method.

    Args:
        coverage: (model, method) -> (N, 2) per-object coverage of the same N images
            (``lu.metrics.two_object_coverage``); methods of a model without a LaFAM entry are left out.
        at_least: the coverage each object needs for "both covered".
        alpha: the significance level.
    """
    return [
        _coverage_sentence((model, method), values, (model, REFERENCE), coverage[(model, REFERENCE)], at_least, alpha)
        for (model, method), values in coverage.items()
        if method != REFERENCE and (model, REFERENCE) in coverage
    ]


def shown_pointing(results: pd.DataFrame, indices: Sequence[int]) -> list[str]:
    """On the images ``indices`` shown in a figure, how often each pair's map peaks inside the object (Pointing-Game).

    Args:
        results: a results table with "index", "model", "method" and "Pointing-Game" columns.
        indices: the dataset indices of the images shown; none shown gives no sentence.
    """
    if not len(indices):
        return []
    shown = results[results["index"].isin(list(indices))]
    counts = [
        f"{pair_title(model, method)} in {int(hits.sum())} of {hits.notna().sum()}"
        for (model, method), hits in shown.groupby(["model", "method"], sort=False)["Pointing-Game"]
    ]
    return [
        f"On the {_images(len(set(indices)))} shown, the map's maximum lies inside the object (Pointing-Game) for "
        + ", ".join(counts) + " (the images shown only; no test)."
    ]


def _scored_metrics(results: pd.DataFrame, metrics: Sequence[str] | None) -> list[str]:
    """``metrics`` (default ``METRIC_NAMES``) that are columns of ``results`` with at least one value."""
    wanted = METRIC_NAMES if metrics is None else metrics
    return [m for m in wanted if m in results.columns and results[m].notna().any()]


def _paired_differences(results: pd.DataFrame, metrics: Sequence[str], alpha: float) -> dict[Pair, list[Difference]]:
    """Each (model, method) with a LaFAM of the same model: per metric, the method against that LaFAM,
    paired by image id (the paired Wilcoxon test of ``summarize``; images without both scores left out)."""
    per_pair = {pair: rows.set_index("id") for pair, rows in results.groupby(["model", "method"], sort=False)}
    found = {}
    for (model, method), rows in per_pair.items():
        if method == REFERENCE or (model, REFERENCE) not in per_pair:
            continue
        reference = per_pair[(model, REFERENCE)]
        differences = []
        for metric in metrics:
            both = pd.concat([rows[metric], reference[metric]], axis=1, join="inner").astype(float).dropna()
            first, second = both.iloc[:, 0], both.iloc[:, 1]
            n, differing, p_value = len(both), int((first != second).sum()), paired_wilcoxon(first, second)
            conclusive = paired_test_can_conclude(differing, alpha)
            differences.append(Difference(metric, first.mean(), second.mean(), p_value, (n,), conclusive, differing))
        found[(model, method)] = differences
    return found


def paired_against_lafam(
    results: pd.DataFrame,
    images: str = "images",
    metrics: Sequence[str] | None = None,
    alpha: float = ALPHA,
    percent: bool = False,
) -> list[str]:
    """Each method against its model's LaFAM on the images of ``results``, per metric, paired by image id.

    Args:
        results: a results table (``lu.evaluate``), e.g. restricted to the misclassified images.
        images: what the images are, for the sentence ("misclassified images").
        metrics: the metric columns (default: those of ``METRIC_NAMES`` that have values).
        alpha: the significance level.
        percent: means x100, as ``summarize`` shows them.

    Returns:
        One sentence per (model, method) with a LaFAM of the same model: the paired Wilcoxon
        signed-rank test per metric (the p-values of ``summarize``); "No <images>" when ``results`` is empty.
    """
    if results.empty:
        return [f"No {images}: nothing to compare."]
    scale, unit = (100, " (x100)") if percent else (1, "")
    n_images = results["id"].nunique()
    paired = _paired_differences(results, _scored_metrics(results, metrics), alpha)
    return [
        differences_sentence(
            f"{pair_title(model, method)} vs {method_title(REFERENCE)} on the {n_images} {images}{unit}",
            "paired Wilcoxon signed-rank",
            [replace(d, first=scale * d.first, second=scale * d.second) for d in differences],
            alpha=alpha,
        )
        for (model, method), differences in paired.items()
    ]


def correct_vs_wrong(split: pd.DataFrame, alpha: float = ALPHA) -> list[str]:
    """Each pair's metrics on wrong vs correct predictions, with the split's Mann-Whitney U tests.

    Args:
        split: the table of ``correctness_split`` (grouped by "model" and "method").
        alpha: the significance level.

    Returns:
        One sentence per (model, method); where one side has no image, a sentence that says so.
    """
    sentences = []
    for (model, method), rows in split.groupby(["model", "method"], sort=False):
        title = pair_title(model, method)
        n_wrong, n_correct = int(rows["n wrong"].max()), int(rows["n correct"].max())
        if not n_wrong or not n_correct:
            sentences.append(f"{title}: {n_wrong} wrong and {n_correct} correct predictions, nothing to compare.")
            continue
        rows = rows[(rows["n correct"] + rows["n wrong"]) > 0]
        differences = [
            Difference(
                row["metric"], row["wrong mean"], row["correct mean"], row["p (Mann-Whitney U)"],
                (int(row["n wrong"]), int(row["n correct"])),
                unpaired_test_can_conclude(int(row["n wrong"]), int(row["n correct"]), alpha),
            )
            for _, row in rows.iterrows()
        ]
        subject = f"{title} on wrong vs correct predictions"
        sentences.append(differences_sentence(subject, "Mann-Whitney U", differences, ("wrong", "correct"), alpha))
    return sentences


SHOWN_METRICS = ("Pointing-Game", "Relevance Mass Accuracy")
"""What the findings under a figure measure on the images shown: where the peak lies, how much mass is inside."""


def _shown_scores(maps: Mapping[Pair, Tensor], masks: Tensor) -> pd.DataFrame:
    """A results table of the images shown: per image and pair, ``SHOWN_METRICS`` of the map, upsampled
    (nearest, as the evaluation scores it) to the masks' size; "index" numbers the images from 0."""
    size = tuple(masks.shape[-2:])
    tables = []
    for (model, method), values in maps.items():
        upsampled = upsample_maps(values.float(), size, "nearest")
        scores = compute(upsampled, masks.to(upsampled.device), k=1, metrics=SHOWN_METRICS)  # k: Top-K is not computed
        columns = {name: score.cpu().numpy() for name, score in scores.items()}
        tables.append(pd.DataFrame({"index": range(len(values)), "model": model, "method": method, **columns}))
    return pd.concat(tables, ignore_index=True)


def shown_localisation(maps: Mapping[Pair, Tensor], masks: Tensor) -> list[str]:
    """On the images shown in a figure, per column: the Pointing-Game hits and the mean share of the map's mass
    inside the object (Relevance Mass Accuracy).

    Args:
        maps: (model, method) -> (B, h, w) maps, at any resolution (upsampled nearest to the masks' size).
        masks: (B, H, W) boolean object masks of the B images shown.
    """
    scores = _shown_scores(maps, masks)
    mass = scores.groupby(["model", "method"], sort=False)["Relevance Mass Accuracy"].mean()
    shares = ", ".join(f"{pair_title(*pair)} {_share(share)}" for pair, share in mass.items())
    return [
        *shown_pointing(scores, range(len(masks))),
        f"On the same images, the mean share of the map's mass inside the object (Relevance Mass Accuracy) is: "
        f"{shares} (the images shown only; no test).",
    ]


def shown_mass_against_lafam(maps: Mapping[Pair, Tensor], masks: Tensor) -> list[str]:
    """On the images shown in a figure, each map's share of mass inside the object against its model's LaFAM's.

    Args:
        maps: (model, method) -> (B, h, w) maps, at any resolution (upsampled nearest to the masks' size);
            methods of a model without a LaFAM entry are left out.
        masks: (B, H, W) boolean object masks of the B images shown.

    Returns:
        One sentence, or none where no method has a LaFAM of its model beside it. Each mean is over the
        images where the map's share is defined (not an all-zero map), the count over those where both are.
    """
    mass = _shown_scores(maps, masks).set_index(["model", "method", "index"])["Relevance Mass Accuracy"]
    comparisons = []
    for model, method in maps:
        if method == REFERENCE or (model, REFERENCE) not in maps:
            continue
        own, reference = mass.loc[(model, method)], mass.loc[(model, REFERENCE)]
        both = pd.concat([own, reference], axis=1).dropna()
        more = int((both.iloc[:, 0] > both.iloc[:, 1]).sum())
        comparisons.append(
            f"{_share(own.mean())} for {pair_title(model, method)} against {_share(reference.mean())} for its "
            f"{method_title(REFERENCE)} (more on {more} of {len(both)} images)"
        )
    if not comparisons:
        return []
    return [
        f"On the {_images(len(masks))} shown, the mean share of the map's mass inside the object (Relevance Mass "
        f"Accuracy) is " + ", ".join(comparisons) + " (the images shown only; no test)."
    ]


def paper_closeness(summary: pd.DataFrame, dataset: str) -> list[str]:
    """Per metric, how this run's means (x100) compare with the paper's: how many published means lie inside
    this run's bootstrap interval, and the smallest and largest difference (this run minus the paper).

    Args:
        summary: the table of ``summarize`` (its ``attrs["confidence"]`` names the intervals' coverage).
        dataset: one of ``PAPER_DATASETS``.

    Returns:
        One sentence per metric the run scored, or one sentence saying the run has none of the paper's pairs.

    Raises:
        ValueError: ``dataset`` is not one of ``PAPER_DATASETS``.
    """
    comparison = compare_with_paper(summary, dataset)
    published = paper_table(dataset)
    low, high = (summary.xs(stat, level="stat").reindex_like(published) for stat in ("ci_low", "ci_high"))
    confidence = summary.attrs.get("confidence")
    interval = "bootstrap interval" if confidence is None else f"{confidence:.0%} bootstrap interval"
    sentences = []
    for metric in published.index:
        difference = comparison.loc[(metric, "difference")].dropna()
        if difference.empty:
            continue
        pairs = difference.index
        paper = published.loc[metric, pairs]
        inside = int(((paper >= low.loc[metric, pairs]) & (paper <= high.loc[metric, pairs])).sum())
        smallest, largest = difference.idxmin(), difference.idxmax()
        n_published = len(published.columns)
        held = "" if len(pairs) == n_published else f" (this run has {len(pairs)} of its {n_published} pairs)"
        sentences.append(
            f"{metric} (x100): {inside} of the paper's {len(difference)} means{held} lie inside this run's {interval}; "
            f"this run minus the paper ranges from {difference[smallest]:+.2f} ({pair_title(*smallest)}) to "
            f"{difference[largest]:+.2f} ({pair_title(*largest)})."
        )
    if not sentences:
        pairs = ", ".join(pair_title(*pair) for pair in published.columns)
        return [f"This run has none of the pairs the paper publishes for {dataset} ({pairs}): nothing to compare."]
    return sentences


_AGREEMENT = {1: "as in the paper", -1: "opposite to the paper", 0: "unlike the paper's equal means"}


def paper_directions(results: pd.DataFrame, dataset: str, alpha: float = ALPHA) -> list[str]:
    """Each method against its model's LaFAM, per metric: whether this run's paired difference goes the paper's way.

    A difference counts as going one way only where the paired Wilcoxon test finds it (p < ``alpha``);
    otherwise the sentence says "no significant difference" or "too few images for a conclusion".

    Args:
        results: the results table of ``lu.evaluate`` on ``dataset``.
        dataset: one of ``PAPER_DATASETS``.
        alpha: the significance level.

    Returns:
        One sentence per (model, method) that the paper compares with its model's LaFAM and this run
        has, or one sentence saying the run has none.

    Raises:
        ValueError: ``dataset`` is not one of ``PAPER_DATASETS``.
    """
    published = paper_table(dataset)
    metrics = _scored_metrics(results, [m for m in PAPER_METRIC_ORDER if m in published.index])
    sentences = []
    for (model, method), differences in _paired_differences(results, metrics, alpha).items():
        if (model, method) not in published.columns or (model, REFERENCE) not in published.columns:
            continue
        judged = []
        for d in differences:
            paper, paper_reference = (published.loc[d.measure, pair] for pair in ((model, method), (model, REFERENCE)))
            word = verdict(d, alpha)
            if word in ("higher", "lower"):
                word = _AGREEMENT[int(np.sign(d.first - d.second) * np.sign(paper - paper_reference))]
            means = f"here {100 * d.first:.2f} vs {100 * d.second:.2f}, paper {paper:.2f} vs {paper_reference:.2f}"
            judged.append((word, d, means))
        subject = f"{pair_title(model, method)} vs {method_title(REFERENCE)} against the paper's {dataset} table (x100)"
        sentences.append(_grouped_sentence(subject, "paired Wilcoxon signed-rank", judged))
    if not sentences:
        return [f"This run has none of the method-vs-LaFAM comparisons the paper publishes for {dataset}."]
    return sentences


def _value_range(name: str, values: pd.Series, named: int = 3) -> str:
    """ "<name> run from <lowest> (<pairs>) to <highest> (<pairs>)" over ``values`` indexed by pair; the pairs
    that share an extreme are named up to ``named``, else counted."""
    low, high = values.min(), values.max()
    if low == high:
        return f"{name} are {low:.2f} for all {len(values)} pairs"

    def holders(value: float) -> str:
        pairs = [pair_title(*pair) for pair, v in values.items() if v == value]
        return ", ".join(pairs) if len(pairs) <= named else f"{len(pairs)} of {len(values)} pairs"

    return f"{name} run from {low:.2f} ({holders(low)}) to {high:.2f} ({holders(high)})"


def per_image_spread(results: pd.DataFrame, metrics: Sequence[str] | None = None) -> list[str]:
    """Per metric, the per-image distributions across pairs: the range of the medians and of the interquartile ranges.

    Args:
        results: a results table (``lu.evaluate``).
        metrics: the metric columns (default: those of ``METRIC_NAMES`` that have values).

    Returns:
        One sentence per metric (descriptive: the tests are those of ``paired_against_lafam``).
    """
    sentences = []
    for metric in _scored_metrics(results, metrics):
        scores = results.groupby(["model", "method"], sort=False)[metric]
        medians = scores.median().dropna()
        spreads = (scores.quantile(0.75) - scores.quantile(0.25)).dropna()
        sentences.append(
            f"{metric} per image: {_value_range('the medians', medians)}; "
            f"{_value_range('the interquartile ranges', spreads)} (descriptive; no test)."
        )
    return sentences


def seconds_against_lafam(results: pd.DataFrame, device: str) -> list[str]:
    """Per model, each method's mean explainer time per image, as a multiple of its model's LaFAM's.

    Args:
        results: a results table with "model", "method" and "seconds" (``lu.evaluate``; NaN for failed images).
        device: where the run measured them, for the sentence.

    Returns:
        One sentence per model (one run's timings; no test).
    """
    seconds = results.groupby(["model", "method"], sort=False)["seconds"].mean()
    sentences = []
    for model in dict.fromkeys(results["model"]):
        per_method = seconds.loc[model]
        reference = per_method.get(REFERENCE, np.nan)
        timings = []
        for method, value in per_method.items():
            timing = f"{method_title(method)} {value:.2g} s"
            if method != REFERENCE and reference > 0:
                timing += f" ({value / reference:.1f}x {method_title(REFERENCE)}'s)"
            timings.append(timing)
        n_images = results.loc[results["model"] == model, "id"].nunique()
        sentences.append(
            f"{model_title(model)}, mean explainer seconds per image over {n_images} images on {device}: "
            + ", ".join(timings) + " (one run's timings; no test)."
        )
    return sentences


__all__ = [
    "ALPHA",
    "REFERENCE",
    "SHOWN_METRICS",
    "Difference",
    "McNemar",
    "correct_vs_wrong",
    "coverage_against_lafam",
    "differences_sentence",
    "exact_mcnemar",
    "format_p",
    "paired_against_lafam",
    "paired_test_can_conclude",
    "paper_closeness",
    "paper_directions",
    "per_image_spread",
    "seconds_against_lafam",
    "shown_coverage",
    "shown_localisation",
    "shown_mass_against_lafam",
    "shown_pointing",
    "unpaired_test_can_conclude",
    "verdict",
]
