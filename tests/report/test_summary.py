"""lu.summarize and the paper tables: means x100, rounding rules, bootstrap intervals, paired Wilcoxon tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lafam_utils as lu
from lafam_utils.metrics import METRIC_NAMES
from lafam_utils.paper import PAPER_PAIRS
from lafam_utils.report.summary import (
    PAPER_METRIC_ORDER,
    bootstrap_ci,
    compare_with_paper,
    paired_wilcoxon,
    paper_table,
    to_latex,
    to_markdown,
    to_percent,
)


def results_table(n: int = 60, pairs=PAPER_PAIRS, seed: int = 0) -> pd.DataFrame:
    """A results table like lu.evaluate's: random metric values per (image, pair), rows of each pair shuffled."""
    rng = np.random.default_rng(seed)
    frames = []
    for shift, (model, method) in enumerate(pairs):
        frame = pd.DataFrame({"dataset": "toy", "id": [f"im{i}" for i in range(n)], "model": model, "method": method})
        for name in METRIC_NAMES:
            frame[name] = np.clip(rng.normal(0.4 + 0.05 * shift, 0.2, n), 0, 1)
        frame["Pointing-Game"] = (rng.random(n) < 0.6 + 0.05 * shift).astype(float)
        frames.append(frame.sample(frac=1, random_state=shift))
    return pd.concat(frames, ignore_index=True)


def test_layout_means_and_counts():
    results = results_table()
    results.loc[3, list(METRIC_NAMES)] = np.nan  # a failed image of the first pair
    summary = lu.summarize(results)
    means = summary.xs("mean", level="stat")
    assert list(means.index) == list(PAPER_METRIC_ORDER)
    assert list(means.columns) == list(PAPER_PAIRS)
    for (model, method), rows in results.groupby(["model", "method"]):
        for metric in METRIC_NAMES:
            values = rows[metric].dropna()
            assert means.loc[metric, (model, method)] == pytest.approx(round(values.mean() * 100, 2), abs=1e-9)
            assert summary.loc[(metric, "n"), (model, method)] == len(values)
    assert summary.loc[("AUC", "n"), ("resnet50", "gradcam")] == 59


def test_rounding_rules():
    assert to_percent(0.906765, "round") == 90.68
    assert to_percent(0.906765, "truncate") == 90.67
    assert to_percent(0.9083, "truncate") == 90.83  # 0.9083 * 10000 is 9082.999... in floating point
    assert to_percent(1.0, "truncate") == 100.0 and to_percent(0.0, "round") == 0.0
    with pytest.raises(ValueError, match="'round' or 'truncate'"):
        to_percent(0.5, "floor")


def test_bootstrap_interval():
    values = np.random.default_rng(1).normal(0.5, 0.1, 400)
    low, high = bootstrap_ci(values, seed=3)
    assert (low, high) == bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)
    half_width = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert low < values.mean() < high
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.15)
    reference = stats.bootstrap(
        (values,), np.mean, method="percentile", n_resamples=1000, random_state=0
    ).confidence_interval
    assert low == pytest.approx(reference.low, abs=0.003) and high == pytest.approx(reference.high, abs=0.003)
    assert bootstrap_ci(np.full(5, 0.25)) == (0.25, 0.25)
    assert bootstrap_ci(np.array([0.7])) == (0.7, 0.7)
    assert all(np.isnan(bootstrap_ci(np.array([]))))


def test_paired_wilcoxon_pairs_by_id():
    results = results_table(n=80)
    summary = lu.summarize(results, n_boot=10)
    p = summary.xs("p_value", level="stat")
    for model, other in [("resnet50", "gradcam"), ("simclr", "relax"), ("swav", "relax")]:
        lafam = results[(results.model == model) & (results.method == "lafam")].set_index("id").sort_index()
        compared = results[(results.model == model) & (results.method == other)].set_index("id").sort_index()
        for metric in METRIC_NAMES:
            expected = stats.wilcoxon(lafam[metric], compared[metric]).pvalue
            assert p.loc[metric, (model, other)] == pytest.approx(expected, rel=1e-12)
        assert p[(model, "lafam")].isna().all()
    a = pd.Series([0.1, 0.5, 0.9, 0.2], index=["a", "b", "c", "d"])
    b = pd.Series([0.3, 0.2, 0.9, np.nan], index=["c", "b", "a", "d"])  # pairs: a-a, b-b, c-c; d dropped
    assert paired_wilcoxon(a, b) == pytest.approx(stats.wilcoxon([0.1, 0.5, 0.9], [0.9, 0.2, 0.3]).pvalue)
    assert paired_wilcoxon(a, a) == 1.0
    assert np.isnan(paired_wilcoxon(a, pd.Series([0.5], index=["z"])))


def test_every_method_is_tested_against_its_models_lafam():
    results = results_table(
        n=20, pairs=[("resnet50", "gradcam"), ("resnet50", "eigencam"), ("resnet50", "lafam"), ("swav", "relax")]
    )
    p = lu.summarize(results, n_boot=10).xs("p_value", level="stat")
    assert p[("resnet50", "gradcam")].notna().all() and p[("resnet50", "eigencam")].notna().all()
    assert p[("resnet50", "lafam")].isna().all() and p[("swav", "relax")].isna().all()  # swav has no LaFAM column


def test_bad_results_raise_clear_errors():
    results = results_table(n=5)
    with pytest.raises(ValueError, match="lacks the columns"):
        lu.summarize(results.drop(columns="id"))
    with pytest.raises(ValueError, match="ids repeat"):
        lu.summarize(pd.concat([results, results.iloc[:1]]))
    with pytest.raises(ValueError, match="several datasets"):
        lu.summarize(results.assign(dataset=["voc", "toy"] * (len(results) // 2)))
    with pytest.raises(ValueError, match="no metric column"):
        lu.summarize(results[["id", "model", "method"]])


def test_markdown_and_latex():
    results = results_table(n=30, pairs=[("resnet50", "my_method"), ("resnet50", "lafam")])
    summary = lu.summarize(results, n_boot=50)
    markdown = to_markdown(summary).splitlines()
    assert markdown[0] == "| Metric | ResNet50 my_method | ResNet50 LaFAM |"
    assert len(markdown) == 2 + len(METRIC_NAMES)
    cells = {}
    for method in ("my_method", "lafam"):
        mean, low, high = (summary.loc[("AUC", stat), ("resnet50", method)] for stat in ("mean", "ci_low", "ci_high"))
        cells[method] = f"{mean:.2f} [{low:.2f}, {high:.2f}]"
    auc_row = next(line for line in markdown if line.startswith("| AUC |"))
    assert f"| {cells['my_method']} (p=" in auc_row and auc_row.endswith(f"| {cells['lafam']} |")
    assert to_markdown(summary, ci=False, p_values=False).splitlines()[2].count("[") == 0
    latex = to_latex(summary)
    assert latex.startswith("\\begin{tabular}{lcc}") and latex.endswith("\\end{tabular}")
    assert "\\multicolumn{2}{c}{ResNet50}" in latex and "my\\_method" in latex
    assert sum(line.endswith("\\\\") for line in latex.splitlines()) == 2 + len(METRIC_NAMES)


def test_paper_tables():
    voc, imagenet = paper_table("voc"), paper_table("imagenet-s")
    for table in (voc, imagenet):
        assert table.shape == (6, 6) and list(table.index) == list(PAPER_METRIC_ORDER)
        assert list(table.columns) == list(PAPER_PAIRS)
        assert table.notna().all().all() and ((table > 0) & (table < 100)).all().all()
    assert voc.loc["AUC", ("swav", "lafam")] == 87.74  # Table 2, last cell
    assert imagenet.loc["Pointing-Game", ("resnet50", "gradcam")] == 94.00  # Table 1, first cell
    with pytest.raises(ValueError, match="one of"):
        paper_table("coco")


def test_compare_with_paper_reproduces_published_means():
    published = paper_table("voc")
    frames = []
    for model, method in PAPER_PAIRS:
        frame = pd.DataFrame({"id": ["a", "b", "c"], "model": model, "method": method})
        for metric in PAPER_METRIC_ORDER:
            frame[metric] = published.loc[metric, (model, method)] / 100
        frames.append(frame)
    summary = lu.summarize(pd.concat(frames), rounding="truncate", n_boot=20)
    comparison = compare_with_paper(summary, "voc")
    assert list(comparison.index.get_level_values("source")[:3]) == ["paper", "this run", "difference"]
    assert (comparison.xs("difference", level="source") == 0).all().all()
    partial = compare_with_paper(summary.drop(columns=[("swav", "relax")]), "voc")
    assert partial.xs("this run", level="source")[("swav", "relax")].isna().all()


def test_summarize_an_evaluation_run(tmp_path):
    from evaluation_toy import ToyDataset, run

    results = run(tmp_path, ToyDataset(n=8, broken=(2,)))
    summary = lu.summarize(results, n_boot=50)
    assert list(summary.columns) == [("toynet", "gradlike"), ("toynet", "lafam"), ("toyenc", "lafam")]
    assert (summary.xs("n", level="stat") == 7).all().all()
    assert summary.xs("p_value", level="stat")[("toynet", "gradlike")].notna().all()


def test_a_metric_without_values_shows_a_dash():
    results = results_table(n=10, pairs=[("resnet50", "gradcam"), ("resnet50", "lafam")])
    results.loc[results.method == "lafam", "AUC"] = np.nan  # e.g. every mask empty
    summary = lu.summarize(results, n_boot=20)
    assert summary.loc[("AUC", "n"), ("resnet50", "lafam")] == 0
    assert summary.loc[("AUC", ["mean", "ci_low", "ci_high"]), ("resnet50", "lafam")].isna().all()
    assert np.isnan(summary.loc[("AUC", "p_value"), ("resnet50", "gradcam")])  # nothing to pair with
    auc_row = next(line for line in to_markdown(summary).splitlines() if line.startswith("| AUC |"))
    assert auc_row.endswith("| – |")
