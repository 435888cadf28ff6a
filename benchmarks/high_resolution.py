"""Does LRP redistribution fix LaFAM's resolution? LaFAM-LRP against LaFAM and its baselines on exact masks.

    OMP_NUM_THREADS=1 python benchmarks/high_resolution.py    # writes benchmarks/results/high_resolution.md
    OMP_NUM_THREADS=1 python benchmarks/high_resolution.py --n-select 16 --n-report 32   # a quick look

Selection split: the demo's images (``SyntheticShapes(split="single", seed=0)``, ``--n-select``), on
which LaFAM-LRP's composite is chosen: the one of ``EpsilonPlusFlat`` and ``EpsilonGammaBox`` with
the higher mean Relevance Mass Accuracy over both shipped CNNs. Report split: held-out images of
another seed (``seed=3``, used by nothing else, ``--n-report``), where every method is evaluated
with ``lu.evaluate`` on ``shapes-supervised`` and ``shapes-simclr``: LaFAM (nearest-upsampled, the
paper's), LaFAM bilinear-upsampled (smoothing, not resolution), the fused multi-layer LaFAM, LaFAM-LRP,
and on the classifier Grad-CAM, LayerCAM and LRP of the class score; and LaFAM and LaFAM-LRP of
the classifier's architecture with random weights (an untrained control). Tables: metric means x100 with
95 % bootstrap intervals and the two-sided paired Wilcoxon p-value against the model's LaFAM on the
same images (``lu.summarize``), and the explainer time per image.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lafam_utils as lu  # noqa: E402
from benchmarks.report import command_line  # noqa: E402
from lafam_utils.explainers import method_title  # noqa: E402
from lafam_utils.report.summary import to_markdown  # noqa: E402

MODELS = ("shapes-supervised", "shapes-simclr")
CONTROL = "shapes-supervised-random-init"
"""``shapes-supervised``'s architecture, random weights (torch seed 0): how far an untrained network's maps localise."""
SELECT_SEED, REPORT_SEED = 0, 3
COMPOSITES = ("EpsilonPlusFlat", "EpsilonGammaBox")
LABEL_FREE = ("lafam", "lafam-bilinear", "lafam-fused", "lafam-lrp")
CLASS_SCORE = ("gradcam", "layercam", "lrp")


def lafam_bilinear(model: nn.Module, **options: Any) -> lu.explainers.LaFAM:
    """LaFAM with its 7x7 map upsampled bilinearly instead of nearest: a smoother map of the same resolution."""
    return lu.explainers.LaFAM(model, upsample="bilinear", **options)


def lafam_lrp_with(composite: str):
    """A factory of LaFAM-LRP with ``composite`` (its name is the method's in the table)."""

    def factory(model: nn.Module, **options: Any) -> lu.explainers.LaFAMLRP:
        return lu.explainers.LaFAMLRP(model, composite=composite, **options)

    factory.__qualname__ = f"lafam_lrp_{composite}"
    return factory


def select_composite(n: int, results_dir: Path) -> tuple[str, pd.DataFrame]:
    """The composite with the higher mean Relevance Mass Accuracy on the selection split, and the table."""
    dataset = lu.SyntheticShapes(n=n, split="single", seed=SELECT_SEED)
    factories = {f"lafam-lrp_{c}": lafam_lrp_with(c) for c in COMPOSITES}
    pairs = [(model, method) for model in MODELS for method in ("lafam", *factories)]
    results = lu.evaluate(dataset, pairs, results_dir=results_dir, explainers=factories, progress=False, num_workers=0)
    mass = results.groupby("method")["Relevance Mass Accuracy"].mean()
    chosen = max(COMPOSITES, key=lambda c: mass[f"lafam-lrp_{c}"])
    return chosen, results


def random_init_control() -> nn.Module:
    """``CONTROL``: the classifier's architecture at the init of torch seed 0, whatever ran before."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return lu.load_model(MODELS[0], weights=None)


def report(n: int, composite: str, results_dir: Path) -> pd.DataFrame:
    """Every method on the report split (the class-score methods on the classifier only), and LaFAM and
    LaFAM-LRP of the untrained control."""
    dataset = lu.SyntheticShapes(n=n, split="single", seed=REPORT_SEED)
    pairs = [(model, method) for model in MODELS for method in LABEL_FREE]
    pairs += [(MODELS[0], method) for method in CLASS_SCORE]
    pairs += [(CONTROL, "lafam"), (CONTROL, "lafam-lrp")]
    models = {**{name: lu.load_model(name) for name in MODELS}, CONTROL: random_init_control()}
    factories = {"lafam-bilinear": lafam_bilinear}
    kwargs = {"lafam-lrp": {"composite": composite}}
    return lu.evaluate(dataset, pairs, results_dir=results_dir, models=models, explainers=factories,
                       explainer_kwargs=kwargs, progress=False, num_workers=0)


def title(method: str) -> str:
    """A method's display title; a factory's suffix (the composite) kept."""
    if method == "lafam-bilinear":
        return "LaFAM bilinear"
    name, _, variant = method.partition("_")
    return " ".join(filter(None, (method_title(name), variant)))


def model_table(results: pd.DataFrame, model: str) -> str:
    """One model's Markdown table: rows metrics, columns methods; ``mean [CI] (p vs LaFAM)``."""
    rows = results[results["model"] == model]
    return to_markdown(lu.summarize(rows).rename(columns=title, level=1))


def time_table(results: pd.DataFrame) -> str:
    """Mean explainer milliseconds per image, one row per model, one column per method."""
    means = results.groupby(["model", "method"], sort=False)["seconds"].mean() * 1e3
    methods = list(dict.fromkeys(results["method"]))
    lines = ["| model | " + " | ".join(title(m) for m in methods) + " |", "|---|" + "---:|" * len(methods)]
    for model in dict.fromkeys(results["model"]):
        cells = [f"{means[(model, m)]:.1f}" if (model, m) in means else "" for m in methods]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-select", type=int, default=64, help="selection images, the demo's (default 64)")
    parser.add_argument("--n-report", type=int, default=256, help="held-out report images (default 256)")
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "high_resolution",
                        help="lu.evaluate's folder (git-ignored)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "high_resolution.md")
    args = parser.parse_args(argv)
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    composite, selection = select_composite(args.n_select, args.results / "select")
    print(f"chosen composite: {composite}", flush=True)
    results = report(args.n_report, composite, args.results / "report")
    command = command_line(__file__, argv)
    mass = selection.groupby(["model", "method"], sort=False)["Relevance Mass Accuracy"].mean() * 100
    parts = [
        f"Command: `{command}` ({started:%Y-%m-%d %H:%M} UTC, torch threads {torch.get_num_threads()})",
        f"\nSelection split (SyntheticShapes single, seed {SELECT_SEED}, {args.n_select} images): mean Relevance "
        "Mass Accuracy x100 per composite:\n",
        *(f"- {model} / {title(method)}: {value:.1f}" for (model, method), value in mass.items()),
        f"\nChosen: {composite}.",
        *(f"\n{model} (report split: SyntheticShapes single, seed {REPORT_SEED}, {args.n_report} images; "
          f"LaFAM-LRP with {composite}):\n\n{model_table(results, model)}" for model in (*MODELS, CONTROL)),
        f"\nExplainer time per image (ms, mean over the images; lu.evaluate's ``seconds``):\n\n{time_table(results)}",
        f"\n{time.perf_counter() - clock:.0f} s in all",
    ]
    text = "\n".join(parts) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
