"""lu.summarize with the columns of the metrics that query the model: order, direction, tests, list columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

import lafam_utils as lu
from lafam_utils.metrics import MODEL_METRIC_COLUMNS
from lafam_utils.report.summary import DIRECTIONS, metric_label, to_latex, to_markdown

PAIRS = [("shapes-supervised", "lafam"), ("shapes-supervised", "gradcam"), ("shapes-supervised", "random")]


def results(n: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frames = []
    for shift, (model, method) in enumerate(PAIRS):
        frame = pd.DataFrame({"dataset": "toy", "id": [f"im{i}" for i in range(n)], "model": model, "method": method})
        frame["AUC"] = rng.random(n)
        for column in MODEL_METRIC_COLUMNS:
            frame[column] = rng.normal(0.3 + 0.2 * shift, 0.1, n)
        frame["MPRT curve"] = [list(rng.random(4)) for _ in range(n)]  # list columns are not metrics
        frame["MPRT layers"] = [["fc", "layer4", "layer3", "stem"]] * n
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_model_metric_columns_are_summarised_with_their_direction_and_paired_tests():
    table = results()
    summary = lu.summarize(table)
    means = summary.xs("mean", level="stat")
    assert list(means.index) == ["AUC", *MODEL_METRIC_COLUMNS]
    lafam, gradcam = (table[table.method == m].set_index("id") for m in ("lafam", "gradcam"))
    for column in MODEL_METRIC_COLUMNS:
        assert means.loc[column, PAIRS[1]] == round(gradcam[column].mean() * 100, 2)
        expected = stats.wilcoxon(lafam[column], gradcam[column]).pvalue
        assert summary.loc[(column, "p_value"), PAIRS[1]] == expected
    assert DIRECTIONS["MPRT"] is False and DIRECTIONS["eMPRT"] is True and DIRECTIONS["AUC"] is True
    assert metric_label("Deletion") == "Deletion ↓" and metric_label("Insertion") == "Insertion ↑"
    assert metric_label("AUC") == "AUC"
    rows = {line.split(" | ")[0] for line in to_markdown(summary).splitlines()}
    assert {"| MPRT ↓", "| ROAD ↑", "| ROAD MoRF ↓", "| AUC"} <= rows
    assert "MPRT $\\downarrow$" in to_latex(summary) and "↓" not in to_latex(summary)


def test_the_sanity_figures_and_findings():
    import matplotlib

    matplotlib.use("Agg")
    import torch

    from lafam_utils.report.sanity import cascade_figure, findings, mean_curves

    maps = [torch.rand(7, 7) for _ in range(3)]
    fig = cascade_figure(
        torch.zeros(3, 16, 16),
        {"LaFAM": maps, "Random": maps},
        ["fc", "layer4"],
        {"LaFAM": [1.0, 0.5], "Random": [1.0, 1.0]},
        title="Model",
    )
    assert fig._suptitle.get_text() == "Model" and fig.axes[0].get_ylabel() == "LaFAM"
    assert [fig.axes[i].get_title() for i in range(4)] == ["Image", "Trained", "+ fc", "+ layer4"]
    table = results()
    assert len(mean_curves(table, "MPRT curve", ["fc", "layer4", "layer3", "stem"]).axes) == 1
    sentences = findings(lu.summarize(table), ["MPRT", "eMPRT"])
    assert len(sentences) == 2 and sentences[0].startswith("Shapes supervised, MPRT ↓ (x100, n=30): LaFAM ")
    assert "better than Grad-CAM" in sentences[0] and "worse than Grad-CAM" in sentences[1]  # MPRT ↓, eMPRT ↑
