"""Does LaFAM carry over to a ViT? The shipped shapes ViTs on held-out images (docs/vision-transformers.md).

    OMP_NUM_THREADS=1 python benchmarks/shapes_vit.py --n 96 --masks 256

Evaluates, with ``lu.evaluate`` on ``--n`` held-out ``SyntheticShapes(split="single", seed=0)``
images, every method at its default layer (``layer="auto"``):

- ``shapes-vit-supervised``: Grad-CAM (``blocks.3.norm1``), LaFAM and LaFAM of the magnitudes
  (``blocks.3``), the attention map (``blocks.3.attn``) and the random baseline;
- ``shapes-vit-simclr``: RELAX (``--masks`` masks), both LaFAMs, the attention map and the random baseline;
- the shapes CNNs' LaFAM beside them (``shapes-supervised``, ``shapes-simclr``, at ``layer4``).

It prints one Markdown table per ViT (metric means x100, 95 % bootstrap intervals, the paired
Wilcoxon p-value against LaFAM), the models' quality (``shapes.quality``: accuracy, linear
probe) and what the residual stream that LaFAM averages looks like (``token_statistics``).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lafam_utils as lu  # noqa: E402
from lafam_utils.explainers.default_layers import default_layer  # noqa: E402
from lafam_utils.explainers.tokens import patch_grid  # noqa: E402
from lafam_utils.report.summary import to_markdown  # noqa: E402
from lafam_utils.shapes.quality import classification_accuracy, linear_probe_accuracy  # noqa: E402
from lafam_utils.shapes.retrain import quality_table  # noqa: E402

PAIRS = {
    "shapes-vit-supervised": ("gradcam", "lafam", "lafam-magnitude", "attention", "random"),
    "shapes-vit-simclr": ("relax", "lafam", "lafam-magnitude", "attention", "random"),
}
CNN_PAIRS = [("shapes-supervised", "lafam"), ("shapes-simclr", "lafam")]


def evaluate_vits(n: int, n_masks: int, results_dir: Path) -> pd.DataFrame:
    """The per-image results of every pair of ``PAIRS`` and ``CNN_PAIRS`` on ``n`` held-out images."""
    dataset = lu.SyntheticShapes(n=n, split="single", seed=0)
    pairs = [(model, method) for model, methods in PAIRS.items() for method in methods] + CNN_PAIRS
    kwargs = {"relax": {"n_masks": n_masks, "seed": 0}}
    return lu.evaluate(dataset, pairs, results_dir=results_dir, explainer_kwargs=kwargs, progress=False)


@torch.no_grad()
def token_statistics(model_name: str, n: int) -> dict[str, float]:
    """The default layer's patch tokens on ``n`` held-out images: sign, norms, and where LaFAM's map peaks.

    - ``negative channel mean``: the share of patch tokens whose channel mean (LaFAM's raw value) is below 0;
    - ``max / median token norm``: the largest patch-token L2 norm over the median one, per image
      (mean over images); Darcet et al.'s artefact tokens are an order of magnitude above the rest;
    - ``LaFAM peak on the object``: the share of images whose LaFAM maximum lies on a patch mostly
      covered by the object (the Pointing-Game on the layer's grid); ``LaFAM minimum on the
      object``: the same for its minimum;
    - ``magnitude peak on the object``: the same for the maximum of LaFAM of the magnitudes;
    - ``norm peak on the object``: the same for the token-norm map.
    """
    model = lu.load_model(model_name)
    data = lu.SyntheticShapes(n=n, split="single", seed=0)
    x = torch.stack([data[i]["image"] for i in range(n)])
    masks = torch.stack([data[i]["mask"] for i in range(n)]).float()
    layer = default_layer(model)
    grid = patch_grid(lu.hooks.layer_output(model, layer, x), model, layer, tuple(x.shape[-2:]))
    means, magnitudes, norms = grid.mean(dim=1), grid.abs().mean(dim=1), grid.norm(dim=1)
    cover = torch.nn.functional.adaptive_avg_pool2d(masks[:, None], means.shape[-2:])[:, 0] > 0.5

    def peak_on_object(maps: torch.Tensor) -> float:
        peaks = maps.flatten(1).argmax(dim=1)
        return cover.flatten(1).gather(1, peaks[:, None]).float().mean().item()

    flat_norms = norms.flatten(1)
    return {
        "negative channel mean": (means < 0).float().mean().item(),
        "max / median token norm": (flat_norms.amax(1) / flat_norms.median(1).values).mean().item(),
        "LaFAM peak on the object": peak_on_object(means),
        "LaFAM minimum on the object": peak_on_object(-means),
        "magnitude peak on the object": peak_on_object(magnitudes),
        "norm peak on the object": peak_on_object(norms),
    }


def quality(model_name: str) -> dict[str, float]:
    """Held-out accuracy (classifiers, 300 images) and linear-probe accuracy (``shapes.quality``)."""
    model = lu.load_model(model_name)
    values = {"linear probe": linear_probe_accuracy(model)}
    if getattr(model, "class_names", None):
        values["accuracy"] = classification_accuracy(model, lu.SyntheticShapes(n=300, split="single", seed=0))
    return values


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=96, help="held-out images (default 96)")
    parser.add_argument("--masks", type=int, default=256, help="RELAX masks per image (default 256)")
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "shapes_vit", help="lu.evaluate's folder (git-ignored)")
    args = parser.parse_args(argv)
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    results = evaluate_vits(args.n, args.masks, args.results)
    command = " ".join(["python", "benchmarks/shapes_vit.py", *(argv if argv is not None else sys.argv[1:])])
    models = [*PAIRS, *(model for model, _ in CNN_PAIRS)]
    parts = [f"Command: `{command}` ({started:%Y-%m-%d %H:%M} UTC, torch threads {torch.get_num_threads()})"]
    for model in PAIRS:
        table = results[(results["model"] == model) | results["model"].isin([m for m, _ in CNN_PAIRS])]
        parts.append(f"\n{model} ({args.n} images), with the CNNs' LaFAM:\n\n{to_markdown(lu.summarize(table))}")
    parts.append("\nModel quality (held-out):\n\n" + quality_table({model: quality(model) for model in models}))
    tokens = {model: token_statistics(model, args.n) for model in PAIRS}
    parts.append("\nThe patch tokens at LaFAM's default layer (blocks.3):\n\n" + quality_table(tokens))
    parts.append(f"\n{time.perf_counter() - clock:.0f} s in all")
    text = "\n".join(parts) + "\n"
    print(text)
    return text


if __name__ == "__main__":
    main()
