"""The label-free peers' metric tables on the shipped shapes models (docs/label-free-peers.md).

    OMP_NUM_THREADS=1 python benchmarks/label_free_peers.py --n 96 --repeats 4 --masks 64

Evaluates LaFAM, EigenCAM, FEM, KPCA-CAM, DFF, REPEAT and the random baseline with ``lu.evaluate``
on ``--n`` held-out ``SyntheticShapes(split="single", seed=0)`` images for ``shapes-supervised``
and ``shapes-simclr``, and prints one Markdown table per model: metric means x100 with 95 %
bootstrap intervals (``lu.summarize``) and, for every method but LaFAM, the two-sided paired
Wilcoxon p-value against LaFAM on the same images. It also measures how far DFF's torch start
moves its map from pytorch-grad-cam's (scikit-learn's NumPy start) on the same activations.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lafam_utils as lu  # noqa: E402
from lafam_utils.explainers import method_title, minmax_normalize  # noqa: E402
from lafam_utils.report.summary import to_markdown  # noqa: E402

MODELS = ("shapes-supervised", "shapes-simclr")
METHODS = ("lafam", "eigencam", "fem", "kpca-cam", "dff", "repeat", "random")


def evaluate_peers(n: int, n_repeats: int, n_masks: int, results_dir: Path) -> pd.DataFrame:
    """The per-image results table of every (model, method) pair on ``n`` held-out images."""
    dataset = lu.SyntheticShapes(n=n, split="single", seed=0)
    pairs = [(model, method) for model in MODELS for method in METHODS]
    kwargs = {"repeat": {"n_repeats": n_repeats, "n_masks": n_masks}}
    return lu.evaluate(dataset, pairs, results_dir=results_dir, explainer_kwargs=kwargs, progress=False)


def model_table(results: pd.DataFrame, model: str) -> str:
    """One model's Markdown table: rows metrics, columns methods; ``mean [CI] (p vs LaFAM)``."""
    return to_markdown(lu.summarize(results[results["model"] == model]))


def time_table(results: pd.DataFrame) -> str:
    """Mean explainer milliseconds per image, one row per model, one column per method."""
    means = results.groupby(["model", "method"])["seconds"].mean() * 1e3
    lines = ["| model | " + " | ".join(method_title(m) for m in METHODS) + " |", "|---|" + "---:|" * len(METHODS)]
    lines += [f"| {model} | " + " | ".join(f"{means[(model, m)]:.1f}" for m in METHODS) + " |" for model in MODELS]
    return "\n".join(lines)


def reference_dff_maps(acts: np.ndarray, n_components: int = 5) -> np.ndarray:
    """pytorch-grad-cam's ``dff`` image by image, with DFF's rule (most activation mass) picking the map."""
    from pytorch_grad_cam.feature_factorization.deep_feature_factorization import dff

    maps = []
    for image in acts:
        offset = image.reshape(len(image), -1).min(axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-learn's ConvergenceWarning at max_iter
            concepts, concept_maps = dff(image[None].copy(), n_components=n_components)
        mass = (concepts - offset[:, None]).sum(axis=0) * concept_maps[0].sum(axis=(1, 2))
        maps.append(concept_maps[0, mass.argmax()])
    return np.stack(maps)


def dff_start_agreement(model_name: str, n: int) -> str:
    """How far DFF's map (torch start) lies from pytorch-grad-cam's (NumPy start), at layer4, min-max normalised."""
    model = lu.load_model(model_name)
    data = lu.SyntheticShapes(n=n, split="single", seed=0)
    x = torch.stack([data[i]["image"] for i in range(n)])
    with torch.no_grad():
        acts = lu.hooks.layer_output(model, "layer4", x)
    ours = minmax_normalize(lu.explainer("dff", model).from_activations(acts))
    theirs = minmax_normalize(torch.from_numpy(reference_dff_maps(acts.numpy())))
    distance = (ours - theirs).abs().flatten(1).amax(dim=1)
    return (
        f"{model_name}: max |map - pytorch-grad-cam map| per image: median {distance.median():.3f}, "
        f"90th percentile {distance.quantile(0.9):.3f}; within 0.01 on {int((distance <= 0.01).sum())} "
        f"of {n} images, above 0.5 on {int((distance > 0.5).sum())}"
    )


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=96, help="held-out images per model (default 96)")
    parser.add_argument("--repeats", type=int, default=4, help="REPEAT's repeats (default 4)")
    parser.add_argument("--masks", type=int, default=64, help="REPEAT's masks per repeat (default 64)")
    folder = ROOT / "results" / "label_free_peers"
    parser.add_argument("--results", type=Path, default=folder, help="lu.evaluate's folder (git-ignored)")
    args = parser.parse_args(argv)
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    results = evaluate_peers(args.n, args.repeats, args.masks, args.results)
    command = " ".join(["python", "benchmarks/label_free_peers.py", *(argv if argv is not None else sys.argv[1:])])
    parts = [
        f"Command: `{command}` "
        f"({started:%Y-%m-%d %H:%M} UTC, torch threads {torch.get_num_threads()})",
        *(f"\n{model} ({args.n} images):\n\n{model_table(results, model)}" for model in MODELS),
        f"\nExplainer time per image (ms, mean over the images; lu.evaluate's ``seconds``):\n\n{time_table(results)}",
        "\nDFF, torch start against pytorch-grad-cam's NumPy start:\n",
        *(f"- {dff_start_agreement(model, args.n)}" for model in MODELS),
        f"\n{time.perf_counter() - clock:.0f} s in all",
    ]
    text = "\n".join(parts) + "\n"
    print(text)
    return text


if __name__ == "__main__":
    main()
