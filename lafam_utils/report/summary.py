"""The paper's tables from a per-image results table: means x100, bootstrap intervals, paired tests.

``summarize`` gives one column per (model, method) and, per metric, the mean, a seeded 95%
percentile-bootstrap interval of the mean, the number of images and, in each column of a model
that has a LaFAM column (LaFAM's own excepted), the p-value of a paired Wilcoxon signed-rank test
of that method against the model's LaFAM (images paired by id). Means and interval bounds are shown
x100 with two decimals. The metrics are the six localisation metrics and the scalar columns of the
metrics that query the model (``lu.metrics.MODEL_METRIC_COLUMNS``); the tables mark the latter's
direction, "↑" where higher is better and "↓" where lower is (the six localisation metrics: all higher).

Rounding: the paper truncates (ResNet50 LaFAM's ImageNet-S Pointing-Game mean 0.906765 is printed
90.67). ``rounding="round"`` (the default) rounds to the nearest instead, because truncation
lowers every cell by up to 0.01 on average 0.005; ``rounding="truncate"`` reproduces the paper's
printing digit for digit, for comparisons with its tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from itertools import groupby
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from ..metrics import HIGHER_IS_BETTER, METRIC_NAMES, MODEL_METRIC_COLUMNS
from ..paper import PAPER_DATASETS, PAPER_METRIC_ORDER
from .titles import method_title, model_title, pair_title

Rounding = Literal["round", "truncate"]
STATS = ("mean", "ci_low", "ci_high", "n", "p_value")
REQUIRED_COLUMNS = ("id", "model", "method")
DIRECTIONS: dict[str, bool] = {**HIGHER_IS_BETTER, **MODEL_METRIC_COLUMNS}
"""Every metric column a summary knows -> whether higher is better."""


def metric_label(metric: str) -> str:
    """The metric's row label in the tables: a model metric's name with its direction ("MPRT ↓")."""
    if metric not in MODEL_METRIC_COLUMNS:
        return metric
    return f"{metric} {'↑' if MODEL_METRIC_COLUMNS[metric] else '↓'}"


def to_percent(values: np.ndarray | float, rounding: Rounding = "round") -> np.ndarray:
    """Values in [0, 1] as percentages with two decimals, rounded or truncated (as the paper prints them).

    Raises:
        ValueError: ``rounding`` is neither "round" nor "truncate".
    """
    scaled = np.asarray(values, dtype=float) * 100
    if rounding == "round":
        return np.round(scaled, 2)
    if rounding == "truncate":
        return np.trunc(np.round(scaled * 100, 6)) / 100  # round first: 0.9083 * 1e4 is 9082.999...
    raise ValueError(f"rounding must be 'round' or 'truncate', got {rounding!r}")


def bootstrap_ci(
    values: np.ndarray, *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (NaN-free), reproducible through ``seed``.

    Returns:
        (low, high) of the ``confidence`` interval from ``n_boot`` resamples; (NaN, NaN) for no values.
    """
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    blocks = [min(100, n_boot - start) for start in range(0, n_boot, 100)]  # bounded memory for large n
    means = np.concatenate(
        [values[rng.integers(0, len(values), (block, len(values)))].mean(axis=1) for block in blocks]
    )
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def paired_wilcoxon(a: pd.Series, b: pd.Series) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test of ``a`` vs ``b`` over the ids both have.

    NaN rows are left out. The p-value is NaN when no id is left, 1.0 when all differences are 0.
    """
    both = pd.concat([a, b], axis=1, join="inner").dropna()
    if both.empty:
        return float("nan")
    differences = both.iloc[:, 0] - both.iloc[:, 1]
    if (differences == 0).all():
        return 1.0
    return float(wilcoxon(both.iloc[:, 0], both.iloc[:, 1]).pvalue)


def _check_results(results: pd.DataFrame) -> list[str]:
    """The metric columns of a results table; raise if it cannot be summarised."""
    missing = [c for c in REQUIRED_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(f"results table lacks the columns {missing}; expected the output of lu.evaluate")
    if "dataset" in results.columns and results["dataset"].nunique() > 1:
        raise ValueError(
            f"results hold several datasets {sorted(results['dataset'].unique())}; summarise one at a time"
        )
    duplicated = results.duplicated(["model", "method", "id"])
    if duplicated.any():
        example = results.loc[duplicated, "id"].iloc[0]
        raise ValueError(f"image ids repeat within a (model, method) pair, e.g. {example!r}; ids must be unique")
    metrics = [m for m in PAPER_METRIC_ORDER if m in results.columns]
    metrics += [m for m in (*METRIC_NAMES, *MODEL_METRIC_COLUMNS) if m in results.columns and m not in metrics]
    if not metrics:
        raise ValueError(f"results table has no metric column; expected some of {list(DIRECTIONS)}")
    return metrics


def summarize(
    results: pd.DataFrame,
    *,
    rounding: Rounding = "round",
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """The paper's table: rows (metric, stat), columns (model, method).

    ``summary.xs("mean", level="stat")`` is the paper's layout.

    Args:
        results: the per-image results table of ``lu.evaluate`` (one dataset).
        rounding: "round" to the nearest, or "truncate" as the paper prints (see the module docstring).
        n_boot: bootstrap resamples per interval.
        confidence: the intervals' coverage.
        seed: the bootstrap's seed.

    Returns:
        Stats: ``mean``, ``ci_low``, ``ci_high`` (x100, two decimals, see ``rounding``), ``n`` (images
        with a value; NaN rows such as failed images or empty masks are left out) and ``p_value``
        (in every column of a model that also has a ``lafam`` column, but LaFAM's own: the paired
        Wilcoxon test of that method against the model's LaFAM, images paired by id);
        ``attrs["confidence"]`` is the intervals' coverage.

    Raises:
        ValueError: ``results`` lacks the id, model or method column or any metric column, holds
            several datasets, or repeats an id within a (model, method) pair; or ``rounding`` is unknown.
    """
    metrics = _check_results(results)
    pairs = list(dict.fromkeys(zip(results["model"], results["method"])))
    per_pair = {pair: rows.set_index("id") for pair, rows in results.groupby(["model", "method"], sort=False)}
    table = pd.DataFrame(
        index=pd.MultiIndex.from_product([metrics, STATS], names=["metric", "stat"]),
        columns=pd.MultiIndex.from_tuples(pairs, names=["model", "method"]),
        dtype=float,
    )
    for pair in pairs:
        for metric in metrics:
            values = per_pair[pair][metric].dropna().to_numpy(dtype=float)
            low, high = bootstrap_ci(values, n_boot=n_boot, confidence=confidence, seed=seed)
            mean = values.mean() if len(values) else float("nan")
            table.loc[(metric, ["mean", "ci_low", "ci_high"]), pair] = to_percent([mean, low, high], rounding)
            table.loc[(metric, "n"), pair] = len(values)
    for model, method in pairs:
        if method == "lafam" or (model, "lafam") not in per_pair:
            continue
        lafam, other = per_pair[(model, "lafam")], per_pair[(model, method)]
        for metric in metrics:
            table.loc[(metric, "p_value"), (model, method)] = paired_wilcoxon(
                lafam[metric].astype(float), other[metric].astype(float)
            )
    table.attrs["confidence"] = confidence
    return table


def _cells(summary: pd.DataFrame, ci: bool, p_values: bool) -> pd.DataFrame:
    """One display string per (metric, pair): mean, optional interval, optional p-value."""
    means = summary.xs("mean", level="stat")
    cells = means.map(lambda v: "–" if np.isnan(v) else f"{v:.2f}")
    if ci:
        low, high = summary.xs("ci_low", level="stat"), summary.xs("ci_high", level="stat")
        intervals = " [" + low.map("{:.2f}".format) + ", " + high.map("{:.2f}".format) + "]"
        cells = cells + intervals.where(low.notna(), "")
    if p_values:
        p = summary.xs("p_value", level="stat")
        cells = cells + (" (p=" + p.map("{:.2g}".format) + ")").where(p.notna(), "")
    cells.columns = [pair_title(*pair) for pair in cells.columns]
    cells.index = [metric_label(metric) for metric in cells.index]
    return cells


def to_markdown(summary: pd.DataFrame, *, ci: bool = True, p_values: bool = True) -> str:
    """The summary as a Markdown table: one row per metric, one column per (model, method).

    Each cell is the mean, with ``ci`` its interval and with ``p_values`` the p-value where there is one.
    """
    cells = _cells(summary, ci, p_values)
    lines = ["| Metric | " + " | ".join(cells.columns) + " |", "|---|" + "---:|" * len(cells.columns)]
    lines += [f"| {metric} | " + " | ".join(row) + " |" for metric, row in zip(cells.index, cells.to_numpy())]
    return "\n".join(lines)


def _latex_escape(text: str) -> str:
    for char in "\\&%$#_{}":
        text = text.replace(char, "\\" + char)
    return text.replace("↑", "$\\uparrow$").replace("↓", "$\\downarrow$")


def to_latex(summary: pd.DataFrame, *, ci: bool = True, p_values: bool = True) -> str:
    """The summary as a booktabs LaTeX tabular: a model header row over a method header row.

    Each cell is the mean, with ``ci`` its interval and with ``p_values`` the p-value where there is one.
    """
    cells = _cells(summary, ci, p_values)
    pairs = list(summary.columns)
    runs = [(model, len(list(group))) for model, group in groupby(pairs, key=lambda pair: pair[0])]
    spans = [f"\\multicolumn{{{width}}}{{c}}{{{_latex_escape(model_title(m))}}}" for m, width in runs]
    methods = [_latex_escape(method_title(method)) for _, method in pairs]
    lines = [
        "\\begin{tabular}{l" + "c" * len(pairs) + "}",
        "\\toprule",
        " & " + " & ".join(spans) + " \\\\",
        "Metric & " + " & ".join(methods) + " \\\\",
        "\\midrule",
        *(
            " & ".join(map(_latex_escape, [metric, *row])) + " \\\\"
            for metric, row in zip(cells.index, cells.to_numpy())
        ),
        "\\bottomrule",
        "\\end{tabular}",
    ]
    return "\n".join(lines)


def paper_table(dataset: str) -> pd.DataFrame:
    """The paper's published means x100 (Tables 1-2) for ``"imagenet-s"`` or ``"voc"``.

    Rows are metrics in the paper's order, columns (model, method) in the paper's order.

    Raises:
        ValueError: ``dataset`` is not one of ``PAPER_DATASETS``.
    """
    if dataset not in PAPER_DATASETS:
        raise ValueError(f"dataset must be one of {PAPER_DATASETS}, got {dataset!r}")
    with resources.files("lafam_utils").joinpath("resources/paper_tables.csv").open() as f:
        published = pd.read_csv(f)
    rows = published[published["dataset"] == dataset]
    table = rows.pivot(index="metric", columns=["model", "method"], values="value")
    pairs = list(dict.fromkeys(zip(rows["model"], rows["method"])))
    return table.loc[list(PAPER_METRIC_ORDER), pairs].rename_axis(columns=["model", "method"])


def compare_with_paper(summary: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Published and fresh means side by side: rows (metric, source in paper / this run / difference).

    Raises:
        ValueError: ``dataset`` is not one of ``PAPER_DATASETS``.
    """
    paper = paper_table(dataset)
    fresh = summary.xs("mean", level="stat").reindex(index=paper.index, columns=paper.columns)
    combined = pd.concat({"paper": paper, "this run": fresh, "difference": (fresh - paper).round(2)}, names=["source"])
    return combined.swaplevel().loc[list(paper.index)]


__all__: Sequence[str] = [
    "DIRECTIONS",
    "bootstrap_ci",
    "compare_with_paper",
    "metric_label",
    "paired_wilcoxon",
    "paper_table",
    "summarize",
    "to_latex",
    "to_markdown",
    "to_percent",
]
