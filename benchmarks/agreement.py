"""Agreement of bf16 with fp32: per-image map differences and the six metrics' means, per pair.

    python benchmarks/agreement.py --threads 1                      # both settings, 64 images each
    python benchmarks/agreement.py --setting resnet50 --images 8    # a quick look

Settings: ``resnet50``: the paper's six pairs on random-init ResNet50 / SimCLR / SwAV (nothing is
downloaded) over 224x224 synthetic single-object images; ``shapes``: the synthetic benchmark's
pairs on the shapes models cached in ``$LAFAM_CACHE`` (the script never trains; it fails when
they are missing). Each batch is explained once per precision (maps as the explainers give them),
scored by ``lu.metrics.compute``, and per pair it reports the largest per-image max |map
difference|, each metric's mean x100 at both precisions, and how many Pointing-Game hits flip.
Writes agreement.json and agreement.md to ``--out``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lafam_utils as lu  # noqa: E402
from benchmarks.report import command_line, write_record  # noqa: E402
from lafam_utils.explainers.shared_forward import explain_together  # noqa: E402
from lafam_utils.metrics import METRIC_NAMES  # noqa: E402
from lafam_utils.paper import PAPER_PAIRS  # noqa: E402

Pair = tuple[str, str]
BOUND_POINTS = 0.5  # |mean bf16 - mean fp32| x100 allowed per metric and pair
SHAPES_PAIRS: tuple[Pair, ...] = (
    ("shapes-supervised", "gradcam"),
    ("shapes-supervised", "lafam"),
    ("shapes-simclr", "relax"),
    ("shapes-simclr", "lafam"),
)


def measure(
    dataset: Any,
    models: Mapping[str, nn.Module],
    pairs: Sequence[Pair],
    relax_masks: int,
    batch_size: int = 16,
    device: str = "cpu",
) -> dict[str, Any]:
    """Per pair: per-image max |bf16 map - fp32 map|, per-image metric values at both precisions."""
    raw: dict[Pair, dict[str, Any]] = {
        pair: {"max_diff": [], "fp32": {m: [] for m in METRIC_NAMES}, "bf16": {m: [] for m in METRIC_NAMES}}
        for pair in pairs
    }
    by_model: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_model.setdefault(pair[0], []).append(pair)
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        x = torch.stack([item["image"] for item in items]).to(device)
        masks = torch.stack([item["mask"] for item in items]).bool().to(device)
        for model_name, model_pairs in by_model.items():
            maps = {}
            for precision in ("fp32", "bf16"):
                explainers = {
                    pair: lu.explainer(pair[1], models[model_name], precision=precision,
                                       **({"n_masks": relax_masks} if pair[1] == "relax" else {}))
                    for pair in model_pairs
                }
                maps[precision] = explain_together(explainers, x).maps
            for pair in model_pairs:
                difference = (maps["bf16"][pair] - maps["fp32"][pair]).abs().flatten(1).amax(dim=1)
                raw[pair]["max_diff"] += difference.tolist()
                for precision in ("fp32", "bf16"):
                    scores = lu.metrics.compute(maps[precision][pair], masks)
                    for metric in METRIC_NAMES:
                        raw[pair][precision][metric] += scores[metric].double().tolist()
    return {f"{model}/{method}": summarize(values) for (model, method), values in raw.items()}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def summarize(values: dict[str, Any]) -> dict[str, Any]:
    """Largest and median per-image map difference, means x100 and their differences, Pointing-Game flips."""
    diffs = sorted(values["max_diff"])
    metrics = {}
    for metric in METRIC_NAMES:
        fp32, bf16 = _mean(values["fp32"][metric]) * 100, _mean(values["bf16"][metric]) * 100
        metrics[metric] = {"fp32": fp32, "bf16": bf16, "difference": bf16 - fp32}
    flips = sum(a != b for a, b in zip(values["fp32"]["Pointing-Game"], values["bf16"]["Pointing-Game"]))
    worst = max(abs(m["difference"]) for m in metrics.values())
    return {
        "images": len(diffs),
        "max_map_difference": diffs[-1],
        "median_map_difference": diffs[len(diffs) // 2],
        "metrics_x100": metrics,
        "largest_mean_difference_points": worst,
        "pointing_game_flips": flips,
        "within_bound": worst <= BOUND_POINTS,
    }


def resnet50_setting(n_images: int) -> tuple[Any, dict[str, nn.Module], tuple[Pair, ...]]:
    """The paper's pairs on random-init ResNet50 / SimCLR / SwAV, 224x224 synthetic images."""
    torch.manual_seed(0)
    models = {name: lu.load_model(name, weights=None).eval() for name in ("resnet50", "simclr", "swav")}
    return lu.SyntheticShapes(n=n_images, split="single", seed=0, size=224), models, PAPER_PAIRS


def shapes_setting(n_images: int) -> tuple[Any, dict[str, nn.Module], tuple[Pair, ...]]:
    """The synthetic benchmark's pairs on the shipped shapes models."""
    models = {name: lu.load_model(name) for name in ("shapes-supervised", "shapes-simclr")}
    return lu.SyntheticShapes(n=n_images, split="single", seed=0, size=224), models, SHAPES_PAIRS


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Command: `{result['command']}` ({result['started']}, {result['seconds']:.0f} s); "
        f"bound: every metric's mean within {BOUND_POINTS} points (x100).",
        "",
        "| setting | pair | images | max / median per-image max map diff | largest mean diff (points) "
        "| Pointing-Game flips | within bound | " + " | ".join(f"{m} fp32 → bf16" for m in METRIC_NAMES) + " |",
        "|---" * (7 + len(METRIC_NAMES)) + "|",
    ]
    for setting, block in result["settings"].items():
        for pair, r in block["pairs"].items():
            cells = " | ".join(f"{v['fp32']:.2f} → {v['bf16']:.2f}" for v in r["metrics_x100"].values())
            lines.append(
                f"| {setting} | {pair} | {r['images']} | "
                f"{r['max_map_difference']:.3f} / {r['median_map_difference']:.3f} "
                f"| {r['largest_mean_difference_points']:.2f} | {r['pointing_game_flips']} | "
                f"{'yes' if r['within_bound'] else '**no**'} | {cells} |"
            )
    lines += ["", *[f"- {setting}: {block['models']}" for setting, block in result["settings"].items()]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=("resnet50", "shapes", "both"), default="both")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--relax-masks", type=int, default=32, help="RELAX masks per image (the paper: 2048)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter()
    result: dict[str, Any] = {
        "command": command_line(__file__, argv),
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": "cpu",
        "native_bf16": lu.precision.native_bf16("cpu"),
        "relax_masks": args.relax_masks,
        "settings": {},
    }
    chosen = ("resnet50", "shapes") if args.setting == "both" else (args.setting,)
    for setting in chosen:
        dataset, models, pairs = (resnet50_setting if setting == "resnet50" else shapes_setting)(args.images)
        described = "random-init resnet50, simclr, swav" if setting == "resnet50" else "cached shapes models"
        result["settings"][setting] = {
            "models": f"{described}; {dataset!r}; RELAX {args.relax_masks} masks",
            "pairs": measure(dataset, models, pairs, args.relax_masks),
        }
        print(f"[{time.perf_counter() - clock:.0f} s] {setting} done", flush=True)
    result["seconds"] = time.perf_counter() - clock
    print(write_record(args.out, "agreement", result, markdown(result)))
    return result


if __name__ == "__main__":
    main()
