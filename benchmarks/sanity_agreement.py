"""Agreement of the randomisation checks and faithfulness metrics with Quantus 0.6.0 on the shapes benchmark.

    python benchmarks/sanity_agreement.py --threads 1

The shipped ``shapes-supervised`` classifier and trained-model maps of LaFAM, Grad-CAM and EigenCAM
on 224 x 224 synthetic shapes images (for the faithfulness metrics, LaFAM's map with its ties
broken at random, since Quantus' argsort orders ties its own way). NaN (a constant map's
correlation) must occur for the same images on both sides. Per metric, the largest absolute difference from Quantus over
images (and layers, percentages or steps): MPRT with Spearman and Pearson at every layer of the
cascade, eMPRT's entropy ratio, sMPRT (the package's noise handed to Quantus), the imputed pixels
of ROAD's noisy linear imputation (noise 0) and the model's probability after it, ROAD's accuracy
(Quantus' ROAD on the map in channel 0, see benchmarks/cases/sanity.py) and the deletion curves
against ``PixelFlipping`` (192 x 192 images, whole pixels per step). Writes sanity_agreement.json
and .md to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lafam_utils as lu  # noqa: E402
from benchmarks.report import command_line, write_record  # noqa: E402
from lafam_utils.metrics import faithfulness, randomisation  # noqa: E402
from lafam_utils.metrics.quantus_reference import quantus_call, smooth_mprt_draws, smooth_mprt_patched  # noqa: E402

METHODS = ("lafam", "gradcam", "eigencam")
PERCENTAGES = [10, 20, 30, 40, 50, 60, 70, 80, 90]


def inputs(n: int, size: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    model = lu.load_model("shapes-supervised").eval()
    data = lu.SyntheticShapes(n=n, split="single", seed=1, size=size)
    x = torch.stack([data[i]["image"] for i in range(n)])
    return model, x, model(x).argmax(dim=1)


def without_ties(maps: torch.Tensor) -> torch.Tensor:
    """Each map's pixel ranks in [0, 1), ties in a random order: the map's order, no two values equal."""
    noise = torch.rand(maps.shape, generator=torch.Generator().manual_seed(0)).flatten(1)
    flat = maps.flatten(1).double()
    ranks = (flat + 1e-9 * noise).argsort(dim=1).argsort(dim=1)
    return (ranks.float() / flat.shape[1]).view(maps.shape)


def largest_difference(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference|, where both hold NaN at the same places (a constant map's correlation)."""
    ours, reference = np.asarray(ours, dtype=float), np.asarray(reference, dtype=float)
    if not np.array_equal(np.isnan(ours), np.isnan(reference)):
        raise AssertionError("the package and Quantus give NaN for different images")
    return float(np.nanmax(np.abs(ours - reference), initial=0.0))


def randomisation_agreement(model, x, y, samples: int) -> dict[str, Any]:
    import quantus

    found: dict[str, Any] = {}
    for method in METHODS:
        factory = lambda m, method=method: lu.explainer(method, m)  # noqa: E731
        options = {"method": method}
        arrays = {
            "model": model,
            "x_batch": x.numpy(),
            "y_batch": y.numpy(),
            "explain_func": lu.explain_func,
            "explain_func_kwargs": options,
        }
        maps = randomisation.explain(factory(model), x, y)
        for similarity in ("spearman", "pearson"):
            ours = randomisation.mprt(model, factory, x, maps, y, similarity=similarity)
            func = getattr(quantus.similarity_func, f"correlation_{similarity}")
            reference = quantus_call(quantus.MPRT(similarity_func=func, disable_warnings=True), **arrays)
            expected = np.array([reference[layer] for layer in ours.layers]).T
            found[f"MPRT ({similarity}), {method}"] = largest_difference(ours.similarities.numpy(), expected)
        efficient = quantus.EfficientMPRT(compute_extra_scores=True, disable_warnings=True)
        quantus_call(efficient, **arrays)
        ours = randomisation.efficient_mprt(
            maps, randomisation.explain(factory(randomisation.fully_randomised(model)), x, y)
        )
        found[f"eMPRT, {method}"] = float(
            np.abs(ours.numpy() - efficient.scores_extra["scores_fraction_explanation"]).max()
        )
        with smooth_mprt_patched(options, smooth_mprt_draws(x.shape, samples, seed=42)):
            smooth = quantus.SmoothMPRT(
                nr_samples=samples, skip_layers=True, return_last_correlation=True, disable_warnings=True
            )
            reference = quantus_call(smooth, **arrays)
        ours = randomisation.smooth_mprt(model, factory, x, y, samples=samples)
        found[f"sMPRT ({samples} samples), {method}"] = largest_difference(ours.numpy(), reference)
    return found


def faithfulness_agreement(model, x, y, deletion_model_inputs) -> dict[str, Any]:
    import quantus
    from quantus.functions.perturb_func import noisy_linear_imputation

    maps = without_ties(lu.LaFAM(model)(x))
    pixels = maps.shape[1] * maps.shape[2]
    order = maps.flatten(1).argsort(dim=1, descending=True)
    ours = faithfulness.road_curve(x, maps, faithfulness.ModelScore(model, x), PERCENTAGES, noise=0.0)
    worst_pixel, worst_probability = 0.0, 0.0
    for j, p in enumerate(PERCENTAGES):
        k = int(pixels * p / 100)
        removed = torch.zeros(len(x), pixels, dtype=torch.bool).scatter_(1, order[:, :k], True).view(maps.shape)
        imputed = lu.metrics.imputation.noisy_linear_imputation(x, removed, noise=0.0)
        reference = torch.stack(
            [
                torch.from_numpy(
                    noisy_linear_imputation(x[i].double().numpy(), order[i, :k].numpy(), noise=0.0)
                ).float()
                for i in range(len(x))
            ]
        )
        worst_pixel = max(worst_pixel, float((imputed - reference).abs().max()))
        with torch.no_grad():
            probability = model(reference).softmax(dim=1).gather(1, y[:, None])[:, 0].double()
        worst_probability = max(worst_probability, float((ours[:, j] - probability).abs().max()))
    attributions = maps[:, None].repeat(1, 3, 1, 1)
    attributions[:, 1:] -= maps.max() + 1
    road = quantus.ROAD(percentages=[p / 3 for p in PERCENTAGES], noise=0.0, disable_warnings=True)
    reference = quantus_call(road, model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=attributions.numpy())
    accuracy = faithfulness.road_curve(x, maps, faithfulness.ModelScore(model, x, "accuracy"), PERCENTAGES, noise=0.0)
    small_model, small_x, small_y = deletion_model_inputs
    small_maps = without_ties(lu.LaFAM(small_model)(small_x))
    size = small_x.shape[-1]
    flipping = quantus.PixelFlipping(features_in_step=3 * size, perturb_baseline="black", disable_warnings=True)
    curves = quantus_call(
        flipping,
        model=small_model,
        x_batch=small_x.numpy(),
        y_batch=small_y.numpy(),
        a_batch=small_maps[:, None].numpy(),
    )
    _, curve = faithfulness.deletion(
        small_x, small_maps, faithfulness.ModelScore(small_model, small_x), steps=size, baseline="black"
    )
    return {
        "ROAD imputation: imputed pixel values": worst_pixel,
        "ROAD MoRF: probability after imputation": worst_probability,
        "ROAD MoRF: accuracy per percentage (mean over images)": float(
            np.abs(accuracy.mean(dim=0).numpy() - np.array(list(reference.values()))).max()
        ),
        "Deletion curve (PixelFlipping, 192 x 192)": float(np.abs(curve[:, 1:].numpy() - np.array(curves)).max()),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Command: `{result['command']}` ({result['seconds']:.0f} s, {result['images']} images, torch threads "
        f"{result['threads']})",
        "",
        "| metric, method | max abs difference from Quantus 0.6.0 |",
        "|---|---:|",
        *(f"| {name} | {value:.1e} |" for name, value in result["max_abs_difference"].items()),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--samples", type=int, default=5, help="sMPRT's noisy copies")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, x, y = inputs(args.images, 224)
    found = randomisation_agreement(model, x, y, args.samples)
    found.update(faithfulness_agreement(model, x, y, inputs(args.images, 192)))
    result = {
        "command": command_line(__file__, argv),
        "images": args.images,
        "threads": torch.get_num_threads(),
        "seconds": time.perf_counter() - start,
        "max_abs_difference": found,
    }
    print(write_record(args.out, "sanity_agreement", result, markdown(result)))
    return result


if __name__ == "__main__":
    main()
