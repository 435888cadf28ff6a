"""LaFAM on the shapes ViTs: every block's maps, the default-layer rule, and the table over training seeds.

    OMP_NUM_THREADS=1 python benchmarks/shapes_vit.py                # seeds 0 1 2, selection 96, report 192 images

For ``shapes-vit-supervised`` and ``shapes-vit-simclr`` at each training seed (``--seeds``; 0 is the
shipped model, the others are trained from the same recipe with ``TrainConfig.seed`` on first use
and cached in ``$LAFAM_CACHE``, about 13 min and 32 min per seed on one thread):

1. **Per block** ``i``: LaFAM of the residual stream (``blocks.i``) and of the MLP activation
   (``blocks.i.mlp.act``), the centred token norm (``lafam-centred-norm``), LaFAM of the magnitudes
   (``lafam-magnitude``) and block ``i``'s CLS attention; the random map as the floor.
2. **The rule** of docs/vision-transformers.md, on the selection split
   (``SyntheticShapes(--selection-n, "single", seed=3)``): the MLP activation of the deepest block
   whose score (mean of Pointing-Game, AUC and Relevance Mass Accuracy over both models and every
   seed) is within 1 point of the best. The script stops if the code's default
   (``default_layers.SELECTED_BLOCK``) is not the rule's choice.
3. **The report split** (``SyntheticShapes(--report-n, "single", seed=4)``): the per-block table, and
   every method at its default layer (plus LaFAM of the last block's residual stream), as mean and
   range over the seeds, with paired Wilcoxon tests (``report.summary.paired_wilcoxon``) per seed.
4. **The function-preserving edit** (``models.vit_edits.mean_direction_edit`` after ``blocks.0``):
   the outputs' change and how far each map moves, on the report split's first ``--edit-n`` images.

Writes ``shapes_vit.md`` and ``shapes_vit.json`` (seeds, splits, the weights' sha256, the runs'
identities, the command, every number) to ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lafam_utils as lu  # noqa: E402
from benchmarks.report import command_line, write_record  # noqa: E402
from lafam_utils.explainers import CLSAttention, LaFAM, LaFAMCentredNorm, LaFAMMagnitude, has_class_logits  # noqa: E402
from lafam_utils.explainers.default_layers import SELECTED_BLOCK, block_names, mlp_activation  # noqa: E402
from lafam_utils.models.vit_edits import mean_direction_edit  # noqa: E402
from lafam_utils.report.summary import paired_wilcoxon  # noqa: E402
from lafam_utils.shapes.quality import classification_accuracy, linear_probe_accuracy  # noqa: E402
from lafam_utils.shapes.shipped import load_shapes_model, model_file_bytes  # noqa: E402
from lafam_utils.shapes.training import RECIPES  # noqa: E402

VITS = ("shapes-vit-supervised", "shapes-vit-simclr")
SELECTION_SEED, REPORT_SEED = 3, 4
RULE_METRICS = ("Pointing-Game", "AUC", "Relevance Mass Accuracy")
RULE_MARGIN = 1.0  # points x100: the deepest block within this of the best score is chosen
ALPHA = 0.05
QUANTITIES = {  # per-block quantity -> (factory, the layer it reads in block b)
    "LaFAM residual stream": (LaFAM, lambda model, block: block),
    "LaFAM MLP activation": (LaFAM, mlp_activation),
    "centred token norm": (LaFAMCentredNorm, lambda model, block: block),
    "LaFAM magnitude": (LaFAMMagnitude, lambda model, block: block),
    "attention": (CLSAttention, lambda model, block: f"{block}.attn"),
}
DEFAULT_METHODS = {  # method -> (title, explainer options); every method at its default layer
    "lafam": ("LaFAM (default: MLP activation)", {}),
    "lafam-residual": ("LaFAM residual stream, last block", {}),
    "lafam-centred-norm": ("centred token norm", {}),
    "lafam-magnitude": ("LaFAM magnitude", {}),
    "attention": ("attention", {}),
    "eigencam": ("EigenCAM", {}),
    "gradcam": ("Grad-CAM", {}),
    "relax": ("RELAX", {}),
    "random": ("random", {}),
}
TESTED_AGAINST = ("lafam", "attention")  # the paired tests: each of these against every other default method


def block_method(quantity: str, block: str) -> str:
    """The method name of ``quantity`` at ``block`` in the results table (``lafam-mlp.blocks.2``)."""
    short = {
        "LaFAM residual stream": "lafam",
        "LaFAM MLP activation": "lafam-mlp",
        "centred token norm": "centred-norm",
        "LaFAM magnitude": "magnitude",
        "attention": "attention",
    }[quantity]
    return f"{short}.{block}"


def seed_model(name: str, seed: int) -> tuple[nn.Module, dict[str, Any]]:
    """``name`` trained at ``seed`` (0: the shipped file; else trained on first use, cached) and its record."""
    objective, recipe = RECIPES[name]
    config = replace(recipe, seed=seed)
    start = time.perf_counter()
    model = load_shapes_model(name, config=config, progress=False)
    seconds = time.perf_counter() - start
    record = {
        "name": name,
        "seed": seed,
        "objective": objective,
        "recipe": asdict(config),
        "weights": "shipped" if config == recipe else f"$LAFAM_CACHE/{name}-{config.digest()}.pt",
        "sha256": hashlib.sha256(model_file_bytes(model, objective, config)).hexdigest(),
        "load_or_train_seconds": round(seconds, 1),
    }
    return model, record


def evaluate(
    model_label: str, model: nn.Module, split_seed: int, n: int, with_defaults: bool, masks: int, results_dir: Path
) -> pd.DataFrame:
    """Every per-block method (and, ``with_defaults``, every default method that applies) on one split."""
    dataset = lu.SyntheticShapes(n=n, split="single", seed=split_seed)
    factories, kwargs = (
        {},
        {"relax": {"n_masks": masks, "seed": 0}, "lafam-residual": {"layer": block_names(model)[-1]}},
    )
    for block in block_names(model):
        for quantity, (factory, layer) in QUANTITIES.items():
            method = block_method(quantity, block)
            factories[method], kwargs[method] = factory, {"layer": layer(model, block)}
    methods = [*factories, "random"]
    if with_defaults:
        factories["lafam-residual"] = LaFAM
        methods += [m for m in DEFAULT_METHODS if m not in methods and applies(m, model, factories)]
    return lu.evaluate(
        dataset,
        [(model_label, method) for method in methods],
        results_dir=results_dir,
        models={model_label: model},
        explainers=factories,
        explainer_kwargs=kwargs,
        progress=False,
        num_workers=0,
    )


def applies(method: str, model: nn.Module, factories: dict[str, Any]) -> bool:
    """Whether ``method`` joins ``model``'s default table (the paper's pairs: RELAX explains an encoder)."""
    if method == "relax":
        return not has_class_logits(model)
    return method in factories or lu.applies_to(method, model)


def pair_means(results: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Rows (model, method): each metric's mean over the images, x100."""
    return results.groupby(["model", "method"], sort=False)[metrics].mean() * 100


def apply_rule(selection: dict[tuple[str, int], pd.DataFrame], blocks: list[str]) -> dict[str, Any]:
    """The rule of docs/vision-transformers.md on the selection split's results: scores per block and the choice."""
    scores = {}
    for block in blocks:
        method = block_method("LaFAM MLP activation", block)
        per_model_seed = [
            pair_means(frame[frame["method"] == method], list(RULE_METRICS)).to_numpy().mean()
            for frame in selection.values()
        ]
        scores[block] = float(np.mean(per_model_seed))
    best = max(scores.values())
    chosen = max((i for i, block in enumerate(blocks) if scores[block] >= best - RULE_MARGIN))
    return {
        "scores": scores,
        "best": best,
        "chosen_index": chosen,
        "chosen_block": blocks[chosen],
        "depth": len(blocks),
    }


def paired_tests(results: dict[int, pd.DataFrame], model: str, methods: list[str], metrics: list[str]) -> list[dict]:
    """Each method of ``TESTED_AGAINST`` against every other method, per seed and metric (Bonferroni over the pairs)."""
    pairs: list[tuple[str, str]] = []
    for a in (method for method in TESTED_AGAINST if method in methods):
        pairs += [(a, b) for b in methods if b != a and (b, a) not in pairs]
    alpha = ALPHA / len(pairs)
    rows = []
    for a, b in pairs:
        for metric in metrics:
            per_seed = {}
            for seed, frame in results.items():
                values = {m: frame[frame["method"] == m].set_index("id")[metric].astype(float) for m in (a, b)}
                difference = float((values[a] - values[b]).mean() * 100)
                p = paired_wilcoxon(values[a], values[b])
                per_seed[seed] = {
                    "difference_x100": difference,
                    "p_value": p,
                    "verdict": ">" if p < alpha and difference > 0 else "<" if p < alpha and difference < 0 else "=",
                }
            verdicts = {entry["verdict"] for entry in per_seed.values()}
            rows.append(
                {
                    "model": model,
                    "a": a,
                    "b": b,
                    "metric": metric,
                    "alpha": alpha,
                    "per_seed": per_seed,
                    "every_seed": verdicts.pop() if len(verdicts) == 1 else "mixed",
                }
            )
    return rows


@torch.no_grad()
def edit_effect(model: nn.Module, n: int, seed: int = 0) -> dict[str, Any]:
    """How far each per-block map moves under ``mean_direction_edit`` after ``blocks.0`` (u ~ N(0, 1/C), seeded).

    Returns the outputs' largest change relative to their largest magnitude and, per method, the
    median over the images of the largest change of the [0, 1] map.
    """
    data = lu.SyntheticShapes(n=n, split="single", seed=REPORT_SEED)
    x = torch.stack([data[i]["image"] for i in range(n)])
    width = model.embed_dim
    direction = torch.randn(width, generator=torch.Generator().manual_seed(seed)) / width**0.5
    edited_block = block_names(model)[0]
    plain = model(x)
    with mean_direction_edit(model, edited_block, direction):
        edited = model(x)
    moved = {}
    for block in block_names(model):
        for quantity, (factory, layer) in QUANTITIES.items():
            explainer = factory(model, layer=layer(model, block), upsample=None)
            before = explainer(x)
            with mean_direction_edit(model, edited_block, direction):
                after = explainer(x)
            moved[block_method(quantity, block)] = float((after - before).abs().flatten(1).amax(1).median())
    return {
        "edited_block": edited_block,
        "images": n,
        "output_change": float((edited - plain).abs().amax() / plain.abs().amax()),
        "map_change": moved,
    }


def quality(model: nn.Module) -> dict[str, float]:
    """Held-out accuracy (classifiers, 300 images of seed 0) and linear-probe accuracy (``shapes.quality``)."""
    values = {"linear probe": linear_probe_accuracy(model)}
    if getattr(model, "class_names", None):
        values["accuracy"] = classification_accuracy(model, lu.SyntheticShapes(n=300, split="single", seed=0))
    return values


def cell(values: list[float]) -> str:
    """Mean and range over seeds: ``86.5 [80.2, 93.8]``."""
    return f"{np.mean(values):.1f} [{min(values):.1f}, {max(values):.1f}]"


def split_text(split: dict[str, Any]) -> str:
    """A split as the code that makes it: ``SyntheticShapes(n=96, split="single", seed=3)``."""
    return f'SyntheticShapes(n={split["n"]}, split="{split["split"]}", seed={split["seed"]})'


def every_seed(tests: list[dict], names: dict[str, str]) -> list[str]:
    """The paired tests' conclusions that hold at every seed: per (A, B), the metrics where A is higher or lower."""
    lines = []
    for a, b in dict.fromkeys((row["a"], row["b"]) for row in tests):
        rows = [row for row in tests if (row["a"], row["b"]) == (a, b)]
        higher = [row["metric"] for row in rows if row["every_seed"] == ">"]
        lower = [row["metric"] for row in rows if row["every_seed"] == "<"]
        parts = [f"higher on {', '.join(higher)}" if higher else "", f"lower on {', '.join(lower)}" if lower else ""]
        if higher or lower:
            lines.append(f"- {names[a]} vs {names[b]}: " + "; ".join(part for part in parts if part) + ".")
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The study's Markdown report."""
    seeds, metrics = result["seeds"], result["table_metrics"]
    rule = result["rule"]
    lines = [
        "# LaFAM on the shapes ViTs: layers, the default-layer rule, seeds",
        "",
        f"Command: `{result['command']}` ({result['started']}, torch {result['torch']}, {result['threads']} thread(s), "
        f"{result['seconds']:.0f} s). Generated by `benchmarks/shapes_vit.py`; every number and its provenance is in "
        "[`shapes_vit.json`](shapes_vit.json).",
        "",
        f"Selection split: `{split_text(result['splits']['selection'])}`. "
        f"Report split: `{split_text(result['splits']['report'])}`. "
        f"Training seeds: {', '.join(map(str, seeds))} (0 is the shipped model). Means x100; a cell is the mean over "
        "the seeds and, in brackets, the lowest and highest seed.",
        "",
        "## The rule on the selection split",
        "",
        f"Score of LaFAM at each block's MLP activation: the mean of {', '.join(RULE_METRICS)} over both ViTs and all "
        f"seeds (x100). The rule takes the deepest block within {RULE_MARGIN:g} point of the best.",
        "",
        "| block | " + " | ".join(rule["scores"]) + " |",
        "|---|" + "---:|" * len(rule["scores"]),
        "| score | " + " | ".join(f"{v:.1f}" for v in rule["scores"].values()) + " |",
        "",
        f"Chosen: `{rule['chosen_block']}.mlp.act` (block {rule['chosen_index']} of {rule['depth']}); the code's "
        f"`SELECTED_BLOCK` is {tuple(result['selected_block'])}.",
    ]
    names = {method: title for method, (title, _) in DEFAULT_METHODS.items()}
    for model in VITS:
        report = result["report"][model]
        lines += [
            "",
            f"## {model}: every method at its default layer (report split)",
            "",
            "| method | " + " | ".join(metrics) + " |",
            "|---|" + "---:|" * len(metrics),
        ]
        for method, by_metric in report["defaults"].items():
            lines.append(f"| {names[method]} | " + " | ".join(cell(by_metric[m]) for m in metrics) + " |")
        lines += [
            "",
            f"Per seed ({', '.join(RULE_METRICS)}):",
            "",
            "| method | " + " | ".join(f"seed {s}" for s in seeds) + " |",
            "|---|" + "---:|" * len(seeds),
        ]
        for method, by_metric in report["defaults"].items():
            row = [" / ".join(f"{by_metric[m][i]:.1f}" for m in RULE_METRICS) for i in range(len(seeds))]
            lines.append(f"| {names[method]} | " + " | ".join(row) + " |")
        tests = [row for row in result["paired_tests"] if row["model"] == model]
        lines += [
            "",
            f"Paired Wilcoxon tests per seed (Bonferroni: p < {tests[0]['alpha']:.4f}); a cell is the mean "
            "difference A - B (x100) and one mark per seed: `>` A higher, `<` A lower, `=` not significant.",
            "",
            "| A vs B | " + " | ".join(RULE_METRICS) + " |",
            "|---|" + "---|" * len(RULE_METRICS),
        ]
        for a, b in dict.fromkeys((row["a"], row["b"]) for row in tests):
            cells = []
            for metric in RULE_METRICS:
                row = next(r for r in tests if (r["a"], r["b"], r["metric"]) == (a, b, metric))
                mean = np.mean([entry["difference_x100"] for entry in row["per_seed"].values()])
                cells.append(f"{mean:+.1f} " + "".join(entry["verdict"] for entry in row["per_seed"].values()))
            lines.append(f"| {names[a]} vs {names[b]} | " + " | ".join(cells) + " |")
        held = every_seed(tests, names)
        lines += ["", "Conclusions that hold at every seed (the rest depend on the seed):", "", *(held or ["- none"])]
        edit = result["edit"][model]
        change = max(entry["output_change"] for entry in edit.values())
        lines += [
            "",
            f"## {model}: every block (report split)",
            "",
            f"`moved` is how far the map moves under the function-preserving edit after `blocks.0` (the median "
            f"over {next(iter(edit.values()))['images']} images of the largest change of the [0, 1] map, the "
            f"largest over seeds); the outputs changed by at most {change:.1e} of their largest value. Block 0's MLP "
            "activation and attention come before the edit; the later blocks' rows test it.",
            "",
            "| block | quantity | " + " | ".join(RULE_METRICS) + " | moved |",
            "|---|---|" + "---:|" * (len(RULE_METRICS) + 1),
        ]
        for method, by_metric in report["blocks"].items():
            block, quantity = by_metric["block"], by_metric["quantity"]
            moved = "" if quantity == "random" else f"{max(e['map_change'][method] for e in edit.values()):.2f}"
            lines.append(
                f"| {block} | {quantity} | " + " | ".join(cell(by_metric[m]) for m in RULE_METRICS) + f" | {moved} |"
            )
    lines += [
        "",
        "## Model quality (held-out)",
        "",
        "| model | seed | accuracy | linear probe |",
        "|---|---:|---:|---:|",
    ]
    for record in result["models"]:
        q = record["quality"]
        accuracy = f"{q['accuracy']:.3f}" if "accuracy" in q else ""
        lines.append(f"| {record['name']} | {record['seed']} | {accuracy} | {q['linear probe']:.3f} |")
    return "\n".join(lines) + "\n"


def code_version() -> dict[str, Any]:
    """The commit the run's code came from, whether the tree had changes, and this script's sha256."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "changed_files": git("status", "--porcelain", "--untracked-files=no").splitlines(),
        "script_sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    parser.add_argument("--selection-n", type=int, default=96, help="images of the selection split (default 96)")
    parser.add_argument("--report-n", type=int, default=192, help="images of the report split (default 192)")
    parser.add_argument("--edit-n", type=int, default=16, help="images for the function-preserving edit (default 16)")
    parser.add_argument("--masks", type=int, default=256, help="RELAX masks per image (default 256)")
    parser.add_argument(
        "--results", type=Path, default=ROOT / "results" / "shapes_vit", help="lu.evaluate's folder (git-ignored)"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results", help="where shapes_vit.md/.json go"
    )
    args = parser.parse_args(argv)
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    command = command_line(__file__, argv)
    stages: dict[str, float] = {}

    models, records = {}, []
    for name in VITS:
        for seed in args.seeds:
            model, record = seed_model(name, seed)
            models[name, seed] = model
            records.append(record)
            print(
                f"{name} seed {seed}: sha256 {record['sha256'][:12]} ({record['load_or_train_seconds']} s)", flush=True
            )
    stages["models"] = time.perf_counter() - clock

    def label(name: str, seed: int) -> str:
        return f"{name}.seed{seed}"

    start = time.perf_counter()
    selection = {
        key: evaluate(label(*key), model, SELECTION_SEED, args.selection_n, False, args.masks, args.results)
        for key, model in models.items()
    }
    stages["selection"] = time.perf_counter() - start
    blocks = block_names(next(iter(models.values())))
    rule = apply_rule(selection, blocks)
    print(f"rule: scores {rule['scores']}, chosen {rule['chosen_block']}.mlp.act", flush=True)
    if (rule["chosen_index"], rule["depth"]) != tuple(SELECTED_BLOCK):
        raise SystemExit(
            f"the rule chose block {rule['chosen_index']} of {rule['depth']}, but the code's default is "
            f"SELECTED_BLOCK = {SELECTED_BLOCK}: set it in lafam_utils/explainers/default_layers.py and rerun"
        )

    start = time.perf_counter()
    report = {
        key: evaluate(label(*key), model, REPORT_SEED, args.report_n, True, args.masks, args.results)
        for key, model in models.items()
    }
    stages["report"] = time.perf_counter() - start
    metrics = [m for m in lu.metrics.METRIC_NAMES if m in next(iter(report.values())).columns]
    tables, tests = {}, []
    for name in VITS:
        means = {seed: pair_means(report[name, seed], metrics).droplevel("model") for seed in args.seeds}
        methods = [m for m in DEFAULT_METHODS if m in means[args.seeds[0]].index]
        defaults = {
            m: {metric: [float(means[s].loc[m, metric]) for s in args.seeds] for metric in metrics} for m in methods
        }
        per_block = {}
        for block in blocks:
            for quantity in QUANTITIES:
                method = block_method(quantity, block)
                per_block[method] = {
                    "block": block,
                    "quantity": quantity,
                    **{metric: [float(means[s].loc[method, metric]) for s in args.seeds] for metric in metrics},
                }
        per_block["random"] = {"block": "", "quantity": "random", **defaults["random"]}
        tables[name] = {"defaults": defaults, "blocks": per_block}
        tests += paired_tests({seed: report[name, seed] for seed in args.seeds}, name, methods, list(RULE_METRICS))

    start = time.perf_counter()
    edit = {name: {str(seed): edit_effect(models[name, seed], args.edit_n) for seed in args.seeds} for name in VITS}
    stages["edit"] = time.perf_counter() - start
    start = time.perf_counter()
    for record in records:
        record["quality"] = quality(models[record["name"], record["seed"]])
    stages["quality"] = time.perf_counter() - start

    result = {
        "command": command,
        "code": code_version(),
        "started": f"{started:%Y-%m-%d %H:%M} UTC",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seconds": time.perf_counter() - clock,
        "stage_seconds": stages,
        "seeds": args.seeds,
        "selected_block": list(SELECTED_BLOCK),
        "splits": {
            "selection": {"n": args.selection_n, "split": "single", "seed": SELECTION_SEED},
            "report": {"n": args.report_n, "split": "single", "seed": REPORT_SEED},
        },
        "relax_masks": args.masks,
        "rule": rule,
        "models": records,
        "table_metrics": metrics,
        "runs": {
            f"{split}/{label(*key)}": Path(frame.attrs["run_dir"]).name
            for split, frames in (("selection", selection), ("report", report))
            for key, frame in frames.items()
        },
        "report": tables,
        "paired_tests": tests,
        "edit": edit,
    }
    print(write_record(args.out, "shapes_vit", result, markdown(result)))
    return result


if __name__ == "__main__":
    main()
