"""LaFAM under a function-preserving edit of a CNN: ``layer4``'s channels rescaled, every logit unchanged.

    OMP_NUM_THREADS=1 python benchmarks/cnn_rescaling.py

On the shipped ``shapes-supervised`` classifier, with ``models.cnn_edits.layer4_channel_scale_edit``:

1. **Selection split** (``SyntheticShapes(--selection-n, "single", seed=3)``): each ``layer4`` channel's
   object share, the share of its activation inside the object mask (the Relevance Mass Accuracy of
   the channel alone, upsampled as LaFAM's map), averaged over the images.
2. **Edits**, for each ``s`` of ``--spreads`` every factor within ``[1/s, s]``: towards the object
   (``c_k = s ** z_k``, ``z_k`` the object share mapped linearly onto [-1, 1]), towards the
   background (``c_k = s ** -z_k``), and random (``c_k = s ** u_k``, ``u_k`` uniform on [-1, 1];
   seeds 0, 1, 2).
3. **Report split** (``SyntheticShapes(--report-n, "single", seed=4)``): the largest logit change
   and the share of unchanged predictions; for LaFAM, Grad-CAM and EigenCAM the maps' change (per
   image the largest pixel difference, averaged) and the six localisation metrics (x100) on the
   original and on each edit, with the paired Wilcoxon test of each edit against the original
   (per-image scores rounded to 1e-4 points first, so that float rounding is no difference).

Writes ``cnn_rescaling.md`` and ``.json`` (the command, the weights' sha256, the scales, every
number) and ``cnn_rescaling.png`` (the first 4 report images: LaFAM and Grad-CAM before and after
the edits of the largest spread) to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lafam_utils as lu  # noqa: E402
from benchmarks.report import command_line, write_record  # noqa: E402
from lafam_utils.explainers import upsample_maps  # noqa: E402
from lafam_utils.hooks import layer_output  # noqa: E402
from lafam_utils.models.cnn_edits import layer4_channel_scale_edit  # noqa: E402
from lafam_utils.report.figures import saliency_grid, save_png  # noqa: E402
from lafam_utils.report.summary import paired_wilcoxon  # noqa: E402
from lafam_utils.shapes.shipped import read_manifest  # noqa: E402

MODEL = "shapes-supervised"
SELECTION_SEED, REPORT_SEED = 3, 4
METHODS = {"lafam": "LaFAM", "gradcam": "Grad-CAM", "eigencam": "EigenCAM"}
RANDOM_SEEDS = (0, 1, 2)
BATCH = 32


def split(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = lu.SyntheticShapes(n, split="single", seed=seed)
    return torch.stack([data[i]["image"] for i in range(n)]), torch.stack([data[i]["mask"] for i in range(n)])


def object_shares(model: torch.nn.Module, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(C,) each layer4 channel's share of activation inside the object mask, averaged over the images."""
    shares = []
    for start in range(0, len(x), BATCH):
        with torch.no_grad():
            layer4 = layer_output(model, "layer4", x[start : start + BATCH])
        up = upsample_maps(layer4.flatten(0, 1), tuple(x.shape[-2:]), "nearest").view(*layer4.shape[:2], *x.shape[-2:])
        inside = (up * masks[start : start + BATCH, None]).sum(dim=(2, 3))
        shares.append(inside / up.sum(dim=(2, 3)).clamp_min(1e-12))
    return torch.cat(shares).mean(dim=0)


def edits(shares: torch.Tensor, spreads: list[float]) -> dict[str, torch.Tensor]:
    """The scale vectors by name: towards the object, towards the background, random; per spread."""
    z = 2 * (shares - shares.min()) / (shares.max() - shares.min()) - 1
    scales = {}
    for spread in spreads:
        scales[f"towards the object, {spread:g}"] = spread**z
        scales[f"towards the background, {spread:g}"] = spread ** (-z)
        for seed in RANDOM_SEEDS:
            u = torch.rand(len(shares), generator=torch.Generator().manual_seed(seed)) * 2 - 1
            scales[f"random seed {seed}, {spread:g}"] = spread**u
    return scales


def explain(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Method -> (N, H, W) maps."""
    return {m: torch.cat([lu.explainer(m, model)(x[s : s + BATCH]) for s in range(0, len(x), BATCH)]) for m in METHODS}


def scores(maps: torch.Tensor, masks: torch.Tensor) -> pd.DataFrame:
    """(images x metrics) localisation scores x100, rounded to 1e-4 points."""
    rows = [lu.metrics.compute(maps[s : s + BATCH], masks[s : s + BATCH]) for s in range(0, len(maps), BATCH)]
    return pd.DataFrame({m: torch.cat([r[m] for r in rows]).numpy() * 100 for m in rows[0]}).round(4)


def logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[s : s + BATCH]) for s in range(0, len(x), BATCH)])


def figure(x: torch.Tensor, masks: torch.Tensor, columns: dict[str, torch.Tensor], path: Path) -> None:
    """The images with their maps before and after the edits, one row per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = saliency_grid(x, columns, masks)
    save_png(fig, path, dpi=80)
    plt.close(fig)


def markdown(result: dict[str, Any]) -> str:
    metrics = list(lu.metrics.METRIC_NAMES)
    lines = [
        "# LaFAM under a function-preserving rescaling of layer4's channels",
        "",
        f"`{result['command']}` ({result['seconds']:.0f} s, {result['threads']} thread(s)). Model `{MODEL}` "
        f"(file sha256 {result['weights_sha256'][:12]}); selection split {result['selection']}, report split "
        f"{result['report']}.",
        "",
        "Object shares of the 128 layer4 channels on the selection split: "
        f"{result['object_shares']['min']:.3f} to {result['object_shares']['max']:.3f} "
        f"(median {result['object_shares']['median']:.3f}).",
        "",
        "Edits are named by their direction and spread s (every factor within [1/s, s]).",
        "",
        "| edit | largest logit change (relative) | predictions unchanged | map change: "
        + " | ".join(METHODS.values()) + " |",
        "|---|---:|---:|" + "---:|" * len(METHODS),
    ]
    for name, check in result["function"].items():
        moved = " | ".join(f"{result['map_change'][m][name]:.2e}" for m in METHODS)
        lines.append(
            f"| {name} | {check['largest_relative_logit_change']:.1e} | {check['same_prediction']:.1%} | {moved} |"
        )
    for method, title in METHODS.items():
        lines += ["", f"## {title}: mean x100 on the report split (p: paired Wilcoxon against the original)", ""]
        lines += ["| edit | " + " | ".join(metrics) + " |", "|---" + "|---:" * len(metrics) + "|"]
        for name, row in result["means"][method].items():
            cells = []
            for metric in metrics:
                p = result["p"][method].get(name, {}).get(metric)
                cells.append(f"{row[metric]:.2f}" + ("" if p is None else f" (p={p:.1g})"))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--selection-n", type=int, default=96)
    parser.add_argument("--report-n", type=int, default=192)
    parser.add_argument("--spreads", type=float, nargs="+", default=[10.0, 100.0], help="factors within [1/s, s]")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = lu.load_model(MODEL)
    shares = object_shares(model, *split(args.selection_n, SELECTION_SEED))
    scales = edits(shares, args.spreads)
    x, masks = split(args.report_n, REPORT_SEED)
    original_logits, original_maps = logits(model, x), explain(model, x)
    original = {m: scores(maps, masks) for m, maps in original_maps.items()}
    function, means, p, change = {}, {m: {"original": original[m].mean().to_dict()} for m in METHODS}, {}, {}
    shown = 4
    columns = {"LaFAM": original_maps["lafam"][:shown], "Grad-CAM": original_maps["gradcam"][:shown]}
    for name, factors in scales.items():
        edited = layer4_channel_scale_edit(model, factors)
        changed = logits(edited, x)
        largest = (changed - original_logits).abs().max() / original_logits.abs().max()
        function[name] = {
            "largest_relative_logit_change": float(largest),
            "same_prediction": float((changed.argmax(1) == original_logits.argmax(1)).float().mean()),
        }
        for method, maps in explain(edited, x).items():
            change.setdefault(method, {})[name] = float((maps - original_maps[method]).abs().amax(dim=(1, 2)).mean())
            table = scores(maps, masks)
            means[method][name] = table.mean().to_dict()
            p.setdefault(method, {})[name] = {m: paired_wilcoxon(table[m], original[method][m]) for m in table}
            if name.startswith("towards") and name.endswith(f", {max(args.spreads):g}") and method != "eigencam":
                columns[f"{METHODS[method]},\n{name}"] = maps[:shown]
    order = sorted(columns, key=lambda title: (not title.startswith("LaFAM"), title.count(",")))
    args.out.mkdir(parents=True, exist_ok=True)
    figure(x[:shown], masks[:shown], {title: columns[title] for title in order}, args.out / "cnn_rescaling.png")
    result = {
        "command": command_line(__file__, argv),
        "seconds": time.perf_counter() - start,
        "threads": torch.get_num_threads(),
        "weights_sha256": read_manifest()[MODEL]["sha256"],  # load_model checks the file against it
        "selection": f"SyntheticShapes({args.selection_n}, 'single', seed={SELECTION_SEED})",
        "report": f"SyntheticShapes({args.report_n}, 'single', seed={REPORT_SEED})",
        "spreads": args.spreads,
        "object_shares": {"min": float(shares.min()), "max": float(shares.max()), "median": float(shares.median()),
                          "values": shares.tolist()},
        "scales": {name: s.tolist() for name, s in scales.items()},
        "function": function,
        "map_change": change,
        "means": means,
        "p": p,
    }
    print(write_record(args.out, "cnn_rescaling", result, markdown(result)))
    return result


if __name__ == "__main__":
    main()
