"""Does LaFAM-LRP's map still depend on the model? Randomisation checks and faithfulness of the high-resolution maps.

    OMP_NUM_THREADS=1 python benchmarks/high_resolution_sanity.py   # writes benchmarks/results/high_resolution_sanity.*
    OMP_NUM_THREADS=1 python benchmarks/high_resolution_sanity.py --n 8 --out /tmp/hr.md   # a quick look

The methods of ``benchmarks/high_resolution.py`` (LaFAM, LaFAM bilinear, the fused LaFAM, LaFAM-LRP
with the composite chosen there and with ``EpsilonPlusFlat``, and on the classifier Grad-CAM, LayerCAM
and LRP of the class score) and the random map, on ``shapes-supervised`` and ``shapes-simclr``,
scored by ``lu.evaluate``
with the metrics that query the model: MPRT (Spearman, the full cascade: a step per randomisable
layer, from the output down), eMPRT, sMPRT, ROAD, deletion and insertion. Images: the first ``--n``
of that script's report split (``SyntheticShapes(split="single", seed=3)``), held out from the
selection split (seed 0, the demo's) on which the composite was chosen. Tables: means x100 with 95 %
bootstrap intervals and the two-sided paired Wilcoxon p-value against the model's LaFAM
(``lu.summarize``), the mean Spearman similarity after each step of the cascade, the mean ROAD
curves, and the explainer time. The JSON beside the Markdown records the settings, the run's
identity, the weights' sha256 and the versions.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lafam_utils as lu  # noqa: E402
from benchmarks.high_resolution import (  # noqa: E402
    CLASS_SCORE,
    LABEL_FREE,
    MODELS,
    REPORT_SEED,
    lafam_bilinear,
    lafam_lrp_with,
    model_table,
    time_table,
    title,
)
from benchmarks.report import command_line  # noqa: E402
from benchmarks.timing import machine  # noqa: E402
from lafam_utils.metrics import MODEL_METRIC_COLUMNS, MODEL_METRICS  # noqa: E402
from lafam_utils.report.summary import metric_label  # noqa: E402
from lafam_utils.shapes.shipped import read_manifest  # noqa: E402

COMPOSITE = "EpsilonGammaBox"
"""LaFAM-LRP's composite: the one ``benchmarks/high_resolution.py`` chose on the selection split (its default)."""
PLUS_FLAT = "lafam-lrp_EpsilonPlusFlat"
"""LaFAM-LRP with the other composite (z+ on the convolutions), the rule family that Sixt et al. 2020 found to
lose the deeper layers' information."""
METRIC_OPTIONS: dict[str, dict[str, Any]] = {
    "MPRT": {"depth": None},
    "sMPRT": {"samples": 10},
    "ROAD": {"percentages": [10, 30, 50, 70, 90]},
    "Deletion": {"steps": 56},
    "Insertion": {"steps": 56},
}
"""Over the metrics' defaults: the full cascade; 10 noisy copies for sMPRT (50 by default), five ROAD percentages
and 56 deletion / insertion steps of 896 pixels, so that the run fits about half an hour on one thread."""
VERSIONS = ("torch", "torchvision", "zennit", "quantus", "numpy", "scipy", "pandas")


def pairs() -> list[tuple[str, str]]:
    """Every label-free method on both models, the class-score methods on the classifier, the random map on both."""
    classifier, encoder = MODELS
    label_free = (*LABEL_FREE, PLUS_FLAT)
    return [(classifier, m) for m in (*label_free, *CLASS_SCORE, "random")] + [
        (encoder, m) for m in (*label_free, "random")
    ]


def evaluate(n: int, results_dir: Path) -> pd.DataFrame:
    """``lu.evaluate`` of ``pairs()`` on the first ``n`` report images with every model metric."""
    dataset = lu.SyntheticShapes(n=n, split="single", seed=REPORT_SEED)
    return lu.evaluate(
        dataset, pairs(), results_dir=results_dir, metrics=list(MODEL_METRICS), metric_options=METRIC_OPTIONS,
        explainers={"lafam-bilinear": lafam_bilinear, PLUS_FLAT: lafam_lrp_with("EpsilonPlusFlat")},
        explainer_kwargs={"lafam-lrp": {"composite": COMPOSITE}},
        progress=True, num_workers=0,
    )


def curve_means(results: pd.DataFrame, model: str, column: str, steps: list[Any]) -> pd.DataFrame:
    """The mean x100 of a per-image curve ``column`` at each of its ``steps`` (rows), one column per method;
    NaN points (a similarity undefined for a constant map) left out."""
    means = {}
    for method, group in results[results["model"] == model].groupby("method", sort=False):
        curves = np.array([list(curve) for curve in group[column].dropna()], dtype=float)
        means[title(method)] = np.nanmean(curves, axis=0) * 100
    return pd.DataFrame(means, index=steps)


def curve_table(means: pd.DataFrame, header: str) -> str:
    """``curve_means`` as Markdown, the steps headed ``header``."""
    lines = [f"| {header} | " + " | ".join(means.columns) + " |", "|---|" + "---:|" * len(means.columns)]
    lines += [f"| {step} | " + " | ".join(f"{v:.1f}" for v in row) + " |" for step, row in means.iterrows()]
    return "\n".join(lines)


def curves(results: pd.DataFrame) -> dict[str, dict[str, pd.DataFrame]]:
    """Per model: MPRT's similarity after each cascade step and the ROAD curves, ``curve_means`` each."""
    percentages = METRIC_OPTIONS["ROAD"]["percentages"]
    found = {}
    for model in MODELS:
        layers = list(results.loc[results["model"] == model, "MPRT layers"].dropna().iloc[0])
        found[model] = {
            "MPRT curve": curve_means(results, model, "MPRT curve", layers),
            "ROAD MoRF curve": curve_means(results, model, "ROAD MoRF curve", percentages),
            "ROAD LeRF curve": curve_means(results, model, "ROAD LeRF curve", percentages),
        }
    return found


def compact_table(summary: pd.DataFrame) -> str:
    """One row per (model, method), one column per scalar metric: means x100 (the docs' layout)."""
    means = summary.xs("mean", level="stat")
    metrics = [m for m in means.index if m in MODEL_METRIC_COLUMNS]
    lines = ["| model | method | " + " | ".join(metric_label(m) for m in metrics) + " |",
             "|---|---|" + "---:|" * len(metrics)]
    for (model, method), column in means.items():
        lines.append(f"| {model} | {title(method)} | " + " | ".join(f"{column[m]:.1f}" for m in metrics) + " |")
    return "\n".join(lines)


def summary_record(summary: pd.DataFrame) -> dict[str, Any]:
    """``lu.summarize``'s numbers as JSON: model -> method -> metric -> stat -> value (NaN as None)."""
    record: dict[str, Any] = {}
    for (model, method), column in summary.items():
        cells = record.setdefault(model, {}).setdefault(method, {})
        for (metric, stat), value in column.items():
            cells.setdefault(metric, {})[stat] = None if np.isnan(value) else float(value)
    return record


def versions() -> dict[str, str]:
    """Python's and the relevant packages' versions."""
    found = {"python": platform.python_version()}
    for package in VERSIONS:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="report images (default 64)")
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "high_resolution_sanity",
                        help="lu.evaluate's folder (git-ignored); a rerun resumes there")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "high_resolution_sanity.md",
                        help="the Markdown; the JSON goes beside it")
    args = parser.parse_args(argv)
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    results = evaluate(args.n, args.results)
    seconds = time.perf_counter() - clock
    command = command_line(__file__, argv)
    summary = lu.summarize(results)
    run = json.loads((Path(results.attrs["run_dir"]) / "run.json").read_text())
    errors = results.loc[results["error"] != "", ["model", "method", "id", "error"]]
    means = curves(results)
    manifest = read_manifest()
    data = f"SyntheticShapes single, seed {REPORT_SEED}, the first {args.n} images"
    parts = [
        f"Command: `{command}` ({started:%Y-%m-%d %H:%M} UTC, torch threads {torch.get_num_threads()}, "
        f"{seconds:.0f} s in all; {len(errors)} rows with an error)",
        f"\nImages: {data} (benchmarks/high_resolution.py's report split). LaFAM-LRP with {COMPOSITE}, and "
        f"with EpsilonPlusFlat as {title(PLUS_FLAT)}. "
        f"Metric options over the defaults: `{json.dumps(METRIC_OPTIONS)}`; the settings as used, the faithfulness "
        "target per model included, are in the JSON beside this file.",
        "\nMeans x100 (MPRT, sMPRT: Spearman similarity with the trained model's map after randomisation, 100: "
        "unchanged; eMPRT: entropy ratio, 100: unchanged; ROAD: LeRF minus MoRF; Deletion, Insertion: areas under "
        "the model's score):\n",
        compact_table(summary),
        *(f"\n{model}: means x100 [95 % bootstrap interval] (paired Wilcoxon p against LaFAM):\n\n"
          f"{model_table(results, model)}" for model in MODELS),
        *(f"\n{model}: MPRT's mean Spearman similarity x100 after each step of the cascade (the layers randomised "
          f"from the output down to the named one):\n\n{curve_table(means[model]['MPRT curve'], 'randomised down to')}"
          for model in MODELS),
        *(f"\n{model}: ROAD's mean model score x100 after imputing the given share of pixels, most relevant first "
          f"(MoRF) and least relevant first (LeRF):\n\n{curve_table(means[model]['ROAD MoRF curve'], 'MoRF, %')}\n\n"
          f"{curve_table(means[model]['ROAD LeRF curve'], 'LeRF, %')}" for model in MODELS),
        f"\nExplainer time per image (ms, mean over the images; lu.evaluate's ``seconds``):\n\n{time_table(results)}",
    ]
    text = "\n".join(parts) + "\n"
    record = {
        "command": command,
        "started": f"{started:%Y-%m-%d %H:%M} UTC",
        "seconds": round(seconds, 1),
        "images": {"dataset": "SyntheticShapes", "split": "single", "seed": REPORT_SEED, "n": args.n},
        "pairs": pairs(),
        "composite": COMPOSITE,
        "metric_options": METRIC_OPTIONS,
        "model_metric_settings": run["identity"].get("model_metrics"),
        "run_identity": run["identity"],
        "weights_sha256": {model: manifest[model]["sha256"] for model in MODELS},
        "machine": machine("cpu"),
        "versions": versions(),
        "errors": errors.to_dict(orient="records"),
        "summary": summary_record(summary),
        "curve_means_x100": {model: {column: table.to_dict() for column, table in tables.items()}
                             for model, tables in means.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(text)
    return record


if __name__ == "__main__":
    main()
