"""The label-free peers on the shipped shapes CNNs: how each agrees with its reference code, how much
its variant, its start and its orientation move it, and the metric tables (docs/label-free-peers.md).

    OMP_NUM_THREADS=1 python benchmarks/label_free_peers.py

writes ``benchmarks/results/label_free_peers.md`` and ``.json`` (``--out``). Images: ``--n`` held-out
``SyntheticShapes(split="single", seed=1)`` images (224 px; the demo's 64 images are seed 0), and for
the orientation the demo's own 64 images. Everything reads layer4 of ``shapes-supervised`` and
``shapes-simclr``:

- agreement: the largest |difference| of the min-max-normalised layer-resolution maps against
  pytorch-grad-cam 1.5.7 (FEM, EigenCAM and KPCA-CAM with its variant / sign), and RELAX
  ``variant="original"`` against relax-xai 0.0.5 on the same masks (``--relax-images`` images);
- FEM: the per-image Pearson correlation of the paper's map with pytorch-grad-cam's;
- DFF: for each variant, ``--starts`` seeds per image, the median over the seed pairs of the
  per-image map correlation (the map's stability across starts);
- EigenCAM / KPCA-CAM: on how many images the orientation rules disagree;
- metric tables: ``lu.evaluate`` (default metrics, k=1000, nearest upsampling), means x100 with 95 %
  bootstrap intervals and paired Wilcoxon p-values against LaFAM (``lu.summarize``); REPEAT cut to
  ``--repeats`` x ``--masks``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lafam_utils as lu  # noqa: E402
from benchmarks.report import command_line, write_record  # noqa: E402
from lafam_utils.explainers import method_title, minmax_normalize  # noqa: E402
from lafam_utils.report.summary import to_markdown  # noqa: E402

MODELS = ("shapes-supervised", "shapes-simclr")
METHODS = ("lafam", "eigencam", "fem", "kpca-cam", "dff", "repeat", "random")
VARIANTS = {"FEM (pytorch-grad-cam)": ("fem", {"variant": "pytorch-grad-cam"}),
            "DFF (pytorch-grad-cam)": ("dff", {"variant": "pytorch-grad-cam"})}
HELD_OUT_SEED = 1
DEMO_SEED, DEMO_IMAGES = 0, 64  # notebooks/params/demo.yaml: seed 0, n_eval 64


def images(n: int, seed: int) -> torch.Tensor:
    """``n`` single-object shapes images of ``seed``, (n, 3, 224, 224)."""
    data = lu.SyntheticShapes(n=n, split="single", seed=seed)
    return torch.stack([data[i]["image"] for i in range(n)])


def layer4(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return lu.hooks.layer_output(model, "layer4", x)


def correlation(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Per-image Pearson correlation of (B, h, w) maps; NaN where a map is constant."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    return ((a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1))).numpy()


def spread(values: np.ndarray) -> dict[str, float]:
    """Median, quartiles and minimum of the finite values, and how many were not finite."""
    finite = values[np.isfinite(values)]
    q1, median, q3 = np.percentile(finite, [25, 50, 75])
    return {"median": median, "q1": q1, "q3": q3, "min": finite.min(), "not_finite": int((~np.isfinite(values)).sum())}


def raw(name: str, model: torch.nn.Module, acts: torch.Tensor, **options: Any) -> torch.Tensor:
    return lu.explainer(name, model, **options).from_activations(acts)


def reference_agreement(model: torch.nn.Module, acts: torch.Tensor) -> dict[str, float]:
    """Largest |ours - pytorch-grad-cam| of the min-max-normalised layer-resolution maps (ReLU'd as it does)."""
    from pytorch_grad_cam import FEM as ReferenceFEM  # noqa: N811 - FEM is a class, not a constant
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection, get_2d_projection_kernel

    def normalised(cams: np.ndarray) -> torch.Tensor:
        return minmax_normalize(torch.from_numpy(np.maximum(cams, 0)).float())

    numpy_acts = acts.numpy()
    with ReferenceFEM(model, [model.layer4]) as fem:
        references = {"FEM (variant pytorch-grad-cam)": fem.get_cam_image(None, None, None, numpy_acts, None, False)}
    references["EigenCAM (sign pytorch-grad-cam)"] = get_2d_projection(numpy_acts)
    references["KPCA-CAM (sign pytorch-grad-cam)"] = get_2d_projection_kernel(numpy_acts)
    ours = {
        "FEM (variant pytorch-grad-cam)": raw("fem", model, acts, variant="pytorch-grad-cam"),
        "EigenCAM (sign pytorch-grad-cam)": raw("eigencam", model, acts, sign="pytorch-grad-cam"),
        "KPCA-CAM (sign pytorch-grad-cam)": raw("kpca-cam", model, acts, sign="pytorch-grad-cam"),
    }
    return {name: float((minmax_normalize(ours[name]) - normalised(references[name])).abs().max()) for name in ours}


@contextmanager
def injected_masks(module: Any, masks: torch.Tensor, batch: int) -> Any:
    """relax-xai's ``mask_generator`` replaced by ``masks`` in batches of ``batch``, for one RELAX run."""
    original, batches = module.mask_generator, iter(masks.split(batch))
    module.mask_generator = lambda *args, **kwargs: iter([next(batches)[:, None]])
    try:
        yield
    finally:
        module.mask_generator = original


def relax_agreement(encoder: torch.nn.Module, x: torch.Tensor, n_masks: int) -> dict[str, float]:
    """RELAX ``variant="original"`` against relax-xai 0.0.5 on the same masks: largest |difference| of the
    importance, and of the uncertainty times relax-xai's sum of weights (its unnormalised uncertainty)."""
    from relax_xai import relax as relax_xai

    relax = lu.RELAX(encoder, n_masks=n_masks, variant="original")
    relax(x)
    masks, _ = relax.masks(*relax.sample_grids(tuple(x.shape[-2:]), x.device), tuple(x.shape[-2:]))
    importance, uncertainty = 0.0, 0.0
    for i, image in enumerate(x):
        with injected_masks(relax_xai, masks, 100), torch.no_grad():
            reference = relax_xai.RELAX(image[None], encoder, batch_size=100, num_batches=n_masks // 100)
            reference.forward()
        importance = max(importance, float((relax.importance[i] - reference.importance).abs().max()))
        scaled = relax.uncertainty[i] * reference.sum_of_weights
        relative = (scaled - reference.uncertainty).abs() / reference.uncertainty.max()
        uncertainty = max(uncertainty, float(relative.max()))
    return {"importance": importance, "uncertainty (relative to its maximum)": uncertainty}


def dff_stability(model: torch.nn.Module, acts: torch.Tensor, variant: str, starts: int) -> dict[str, Any]:
    """Per image, the median over the pairs of ``starts`` seeds of the DFF map correlation."""
    maps = [raw("dff", model, acts, variant=variant, seed=seed) for seed in range(starts)]
    pairs = np.stack([correlation(a, b) for a, b in itertools.combinations(maps, 2)])
    per_image = np.nanmedian(pairs, axis=0)
    return {**spread(per_image), "share of images above 0.9": float((per_image > 0.9).mean()),
            "share of image pairs above 0.99": float((pairs[np.isfinite(pairs)] > 0.99).mean())}


def orientation_disagreement(model: torch.nn.Module, acts: torch.Tensor) -> dict[str, int]:
    """On how many images two orientation rules give different raw maps (exactly: the rules only flip signs)."""
    signs = ("channel-mean", "pytorch-grad-cam", "max-abs")
    eigencam = {sign: raw("eigencam", model, acts, sign=sign) for sign in signs}
    kpca = {sign: raw("kpca-cam", model, acts, sign=sign) for sign in ("channel-mean", "pytorch-grad-cam")}

    def differ(a: torch.Tensor, b: torch.Tensor) -> int:
        return int(sum(not torch.equal(x, y) for x, y in zip(a, b, strict=True)))

    return {
        "EigenCAM channel-mean vs pytorch-grad-cam": differ(eigencam["channel-mean"], eigencam["pytorch-grad-cam"]),
        "EigenCAM channel-mean vs max-abs": differ(eigencam["channel-mean"], eigencam["max-abs"]),
        "KPCA-CAM channel-mean vs pytorch-grad-cam": differ(kpca["channel-mean"], kpca["pytorch-grad-cam"]),
    }


def evaluate_peers(n: int, n_repeats: int, n_masks: int, results_dir: Path) -> pd.DataFrame:
    """The per-image results of every (model, method) pair and of the library variants, on held-out images."""
    dataset = lu.SyntheticShapes(n=n, split="single", seed=HELD_OUT_SEED)
    options = {"results_dir": results_dir, "progress": False}
    pairs = [(model, method) for model in MODELS for method in METHODS]
    kwargs = {"repeat": {"n_repeats": n_repeats, "n_masks": n_masks}}
    tables = [lu.evaluate(dataset, pairs, explainer_kwargs=kwargs, **options)]
    for label, (method, variant) in VARIANTS.items():
        table = lu.evaluate(dataset, [(m, method) for m in MODELS], explainer_kwargs={method: variant}, **options)
        tables.append(table.assign(method=label))
    return pd.concat(tables, ignore_index=True)


def time_table(results: pd.DataFrame) -> str:
    """Mean explainer milliseconds per image, one row per model, one column per method."""
    methods = list(dict.fromkeys(results["method"]))
    means = results.groupby(["model", "method"])["seconds"].mean() * 1e3
    lines = ["| model | " + " | ".join(method_title(m) for m in methods) + " |", "|---|" + "---:|" * len(methods)]
    lines += [f"| {model} | " + " | ".join(f"{means[(model, m)]:.1f}" for m in methods) + " |" for model in MODELS]
    return "\n".join(lines)


def spread_line(name: str, values: dict[str, float]) -> str:
    return (f"| {name} | {values['median']:.3f} | {values['q1']:.3f} | {values['q3']:.3f} | {values['min']:.3f} "
            f"| {values['not_finite']} |")


def markdown(result: dict[str, Any], tables: dict[str, str], times: str) -> str:
    n, demo = result["n"], DEMO_IMAGES
    parts = [f"Command: `{result['command']}` ({result['started']} UTC, torch threads {result['threads']}, "
             f"{result['seconds']:.0f} s). Held-out images: SyntheticShapes(n={n}, split='single', "
             f"seed={HELD_OUT_SEED}); layer4.", "", "## Agreement with the reference code", "",
             "Largest |difference| of the min-max-normalised 7x7 maps (pytorch-grad-cam 1.5.7, same activations):", "",
             "| model | " + " | ".join(result["reference"][MODELS[0]]) + " |", "|---|" + "---:|" * 3]
    parts += [f"| {m} | " + " | ".join(f"{v:.1e}" for v in result["reference"][m].values()) + " |" for m in MODELS]
    relax = result["relax_xai"]
    parts += ["", f"RELAX variant='original' against relax-xai 0.0.5 on the same {relax['masks']} masks "
              f"(shapes-simclr, {relax['images']} images): importance {relax['importance']:.1e}, uncertainty x sum of "
              f"weights {relax['uncertainty (relative to its maximum)']:.1e} (relative to its maximum).", "",
              "## FEM: the paper's map against pytorch-grad-cam's", "",
              f"Per-image Pearson correlation of the two variants' maps ({n} held-out images):", "",
              "| model | median | 25 % | 75 % | min | constant maps |", "|---|---:|---:|---:|---:|---:|"]
    parts += [spread_line(m, result["fem_correlation"][m]) for m in MODELS]
    parts += ["", f"## DFF: the map across {result['starts']} starts", "",
              f"Per image, the median over the {result['starts'] * (result['starts'] - 1) // 2} seed pairs of the "
              "selected concept map's correlation; then over the images:", "",
              "| model | variant | median | 25 % | 75 % | min | images above 0.9 | pairs above 0.99 |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for m in MODELS:
        for variant, v in result["dff_stability"][m].items():
            parts.append(f"| {m} | {variant} | {v['median']:.3f} | {v['q1']:.3f} | {v['q3']:.3f} | {v['min']:.3f} "
                         f"| {v['share of images above 0.9']:.0%} | {v['share of image pairs above 0.99']:.0%} |")
    parts += ["", "## EigenCAM / KPCA-CAM: images whose orientation differs between two rules", "",
              "| images | model | " + " | ".join(result["orientation"]["demo"][MODELS[0]]) + " |",
              "|---|---|---:|---:|---:|"]
    for split, label in (("demo", f"demo ({demo}, seed {DEMO_SEED})"), ("held-out", f"held-out ({n})")):
        parts += [f"| {label} | {m} | " + " | ".join(str(v) for v in result["orientation"][split][m].values()) + " |"
                  for m in MODELS]
    if tables:
        parts += ["", f"## Metrics on the {n} held-out images (x100, 95 % CI, p vs LaFAM)", "",
                  f"REPEAT at {result['repeats']} repeats x {result['masks']} masks per image.", ""]
        for m in MODELS:
            parts += [f"`{m}`:", "", tables[m], ""]
        parts += ["Explainer time per image (ms, lu.evaluate's `seconds`, shared forward included):", "", times, ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=96, help="held-out images (default 96)")
    parser.add_argument("--starts", type=int, default=5, help="DFF seeds per image (default 5)")
    parser.add_argument("--repeats", type=int, default=4, help="REPEAT's repeats in the metric tables (default 4)")
    parser.add_argument("--masks", type=int, default=64, help="REPEAT's masks per repeat (default 64)")
    parser.add_argument("--relax-images", type=int, default=4, help="images for the relax-xai agreement (default 4)")
    parser.add_argument("--relax-masks", type=int, default=300, help="masks for it, a multiple of 100 (default 300)")
    parser.add_argument("--no-metrics", action="store_true", help="skip the metric tables")
    parser.add_argument("--evaluate-dir", type=Path, default=ROOT / "results" / "label_free_peers",
                        help="lu.evaluate's folder (git-ignored)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="where the .md and .json go")
    args = parser.parse_args(argv)
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    command = command_line(__file__, argv)
    held_out, demo = images(args.n, HELD_OUT_SEED), images(DEMO_IMAGES, DEMO_SEED)
    result: dict[str, Any] = {"command": command, "started": f"{started:%Y-%m-%d %H:%M}", "n": args.n,
                              "threads": torch.get_num_threads(), "starts": args.starts, "repeats": args.repeats,
                              "masks": args.masks, "reference": {}, "fem_correlation": {}, "dff_stability": {},
                              "orientation": {"demo": {}, "held-out": {}}}
    for name in MODELS:
        model = lu.load_model(name)
        acts = layer4(model, held_out)
        result["reference"][name] = reference_agreement(model, acts)
        paper, library = raw("fem", model, acts), raw("fem", model, acts, variant="pytorch-grad-cam")
        result["fem_correlation"][name] = spread(correlation(paper, library))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result["dff_stability"][name] = {v: dff_stability(model, acts, v, args.starts)
                                             for v in ("paper", "pytorch-grad-cam")}
        result["orientation"]["held-out"][name] = orientation_disagreement(model, acts)
        result["orientation"]["demo"][name] = orientation_disagreement(model, layer4(model, demo))
    relax_x = held_out[: args.relax_images]
    result["relax_xai"] = {"images": len(relax_x), "masks": args.relax_masks,
                           **relax_agreement(lu.load_model("shapes-simclr"), relax_x, args.relax_masks)}
    tables, times = {}, ""
    if not args.no_metrics:
        results = evaluate_peers(args.n, args.repeats, args.masks, args.evaluate_dir)
        tables = {m: to_markdown(lu.summarize(results[results["model"] == m])) for m in MODELS}
        times = time_table(results)
    result["seconds"] = time.perf_counter() - clock
    args.out.mkdir(parents=True, exist_ok=True)
    print(write_record(args.out, "label_free_peers", result, markdown(result, tables, times)))
    return result


if __name__ == "__main__":
    main()
