"""Figures and findings of the randomisation checks and the faithfulness metrics (notebook 06).

``cascade_figure`` is Adebayo et al.'s Fig. 2: each row a method, its map of the trained model
and then its map after each step of the cascading randomisation. ``mean_curves`` draws the
per-layer MPRT similarities or the deletion / insertion / ROAD curves averaged over images.
``findings`` turns a summary table into sentences, each with LaFAM's mean and interval and every
other method's mean with the paired test against LaFAM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from torch import Tensor

from .figures import show_image, show_map
from .summary import DIRECTIONS, metric_label
from .titles import method_title, model_title

SIGNIFICANCE = 0.05
"""The level at which ``findings`` calls a paired test's difference significant."""


def cascade_figure(
    image: Tensor,
    rows: Mapping[str, Sequence[Tensor]],
    steps: Sequence[str],
    similarities: Mapping[str, Sequence[float]] | None = None,
    similarity: str = "Spearman",
    title: str | None = None,
    cell_size: float = 1.3,
) -> Figure:
    """Maps as the model's layers are randomised, from the output down (Adebayo et al. 2018, Fig. 2).

    Args:
        image: the normalised (3, H, W) image, drawn first in every row.
        rows: a row title (a method) -> its (h, w) maps: of the trained model, then after each step.
        steps: the steps' names (the layer or block randomised last, cumulatively).
        similarities: a row title -> the similarity of each step's map with the trained model's
            (MPRT), written under the map.
        similarity: the similarity's name, for the caption.
        title: the figure's title (e.g. the model).
        cell_size: the side of one cell in inches.

    Returns:
        The figure.

    Raises:
        ValueError: a row does not hold one map more than there are steps.
    """
    for method, maps in rows.items():
        if len(maps) != len(steps) + 1:
            raise ValueError(f"row {method!r}: expected {len(steps) + 1} maps (trained, per step), got {len(maps)}")
    columns = ["Image", "Trained", *(f"+ {step}" for step in steps)]
    figsize = (cell_size * len(columns), cell_size * len(rows))
    fig, axes = plt.subplots(len(rows), len(columns), figsize=figsize, squeeze=False)
    size = tuple(image.shape[-2:])
    for row, (method, maps) in enumerate(rows.items()):
        show_image(axes[row, 0], image)
        axes[row, 0].set_ylabel(method, fontsize=8)
        for col, saliency in enumerate(maps, start=1):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlim(-0.5, size[1] - 0.5)
            ax.set_ylim(size[0] - 0.5, -0.5)
            show_map(ax, saliency, size, alpha=1.0)
            if similarities is not None and col > 1:
                ax.set_xlabel(f"{similarities[method][col - 2]:.2f}", fontsize=7)
    for col, column in enumerate(columns):
        axes[0, col].set_title(column, fontsize=8)
    below = f"; below each map: its {similarity} similarity with the trained map" if similarities is not None else ""
    fig.supxlabel(f"cascading randomisation, output layer first{below}", fontsize=8)
    if title is not None:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def mean_curves(
    table: pd.DataFrame,
    column: str,
    x: Sequence[float] | Sequence[str] | None = None,
    xlabel: str = "",
    ylabel: str = "",
    cell_size: tuple[float, float] = (4.0, 3.0),
) -> Figure:
    """One panel per model: each method's ``column`` curve averaged over its images (a band of +- 1 s.e.).

    Args:
        table: results of ``lu.evaluate`` with the list column ``column`` (e.g. "Deletion curve").
        column: a list-valued column: per image, one value per point of the curve.
        x: the points' positions or labels (None: evenly spaced over [0, 1]).
        xlabel, ylabel: the axes' labels.
        cell_size: one panel's size in inches.

    Returns:
        The figure.

    Raises:
        ValueError: ``table`` has no column ``column``, or a method's curves differ in length.
    """
    if column not in table.columns:
        raise ValueError(f"results have no column {column!r}; compute its metric with lu.evaluate(metrics=[...])")
    models = list(dict.fromkeys(table["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(cell_size[0] * len(models), cell_size[1]), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        rows = table[(table["model"] == model) & table[column].notna()]
        for method, group in rows.groupby("method", sort=False):
            curves = [np.asarray(curve, dtype=float) for curve in group[column]]
            if len({len(c) for c in curves}) > 1:
                raise ValueError(f"{model} {method}: the {column} curves differ in length")
            values = np.stack(curves)
            mean = values.mean(axis=0)
            error = values.std(axis=0, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else np.zeros_like(mean)
            labels = x is not None and isinstance(x[0], str)
            positions = np.linspace(0, 1, len(mean)) if x is None else np.arange(len(mean)) if labels else x
            ax.plot(positions, mean, label=method_title(method))
            ax.fill_between(positions, mean - error, mean + error, alpha=0.2)
        if x is not None and isinstance(x[0], str):
            ax.set_xticks(np.arange(len(x)), list(x), rotation=60, fontsize=7)
        ax.set(title=model_title(model), xlabel=xlabel, ylabel=ylabel)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def findings(summary: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    """One sentence per (model, metric) of ``summary`` (``lu.summarize``): LaFAM against every other method.

    Each gives LaFAM's mean (x100) and interval and, per other method of the model, its mean and
    the paired Wilcoxon p-value against LaFAM, grouped by whether LaFAM is significantly better,
    significantly worse (p < ``SIGNIFICANCE``, by the metric's direction) or neither. Models
    without a LaFAM column, and metrics without values, are left out.
    """
    sentences = []
    pairs = list(summary.columns)
    for model in dict.fromkeys(model for model, _ in pairs):
        if (model, "lafam") not in pairs:
            continue
        others = [method for m, method in pairs if m == model and method != "lafam"]
        for metric in metrics:
            if metric not in summary.index.get_level_values("metric"):
                continue
            stat = summary.loc[metric]
            mean, low, high = (stat.loc[s, (model, "lafam")] for s in ("mean", "ci_low", "ci_high"))
            if np.isnan(mean):
                continue
            groups: dict[str, list[str]] = {"better than": [], "worse than": [], "not significantly different from": []}
            for method in others:
                other, p = stat.loc["mean", (model, method)], stat.loc["p_value", (model, method)]
                if np.isnan(other):
                    continue
                ahead = mean > other if DIRECTIONS[metric] else mean < other
                key = "better than" if ahead else "worse than"
                key = key if p < SIGNIFICANCE else "not significantly different from"
                groups[key].append(f"{method_title(method)} {other:.1f} (p={p:.2g})")
            clauses = [f"{key} {', '.join(items)}" for key, items in groups.items() if items]
            sentences.append(
                f"{model_title(model)}, {metric_label(metric)} (x100, n={int(stat.loc['n', (model, 'lafam')])}): "
                f"LaFAM {mean:.1f} [{low:.1f}, {high:.1f}]" + (f"; {'; '.join(clauses)}." if clauses else ".")
            )
    return sentences


__all__ = ["SIGNIFICANCE", "cascade_figure", "findings", "mean_curves"]
