"""Which parts of the shapes SimCLR recipe make its LaFAM maps find the object: an ablation.

    OMP_NUM_THREADS=1 python benchmarks/shapes_ablation.py            # prints a markdown table
    OMP_NUM_THREADS=1 python benchmarks/shapes_ablation.py --out benchmarks/results/shapes_ablation.md
    OMP_NUM_THREADS=1 python benchmarks/shapes_ablation.py --rows 2 3      # some rows only (0-based)

Each row trains ``shapes-simclr`` with one variant of its recipe (one torch thread; the shipped
recipe's row loads the shipped file, which ``make models`` reproduces bit for bit) and measures it
with ``lafam_utils.shapes.quality.model_quality``: LaFAM on 300 held-out ``"single"`` images
(seed 0), RELAX (256 masks) on the first 40, the linear probe of the frozen embedding. Two
reference rows: a random-init encoder, and a random map (uniform noise on a 7x7 grid).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lafam_utils.shapes.dataset import SyntheticShapes  # noqa: E402
from lafam_utils.shapes.quality import EVAL_SEED, localisation, model_quality  # noqa: E402
from lafam_utils.shapes.shipped import load_shapes_model  # noqa: E402
from lafam_utils.shapes.training import RECIPES, train_shapes_model  # noqa: E402

COLUMNS = (
    "LaFAM Pointing-Game", "LaFAM AUC", "LaFAM Relevance Rank Accuracy", "LaFAM Sparseness",
    "RELAX Pointing-Game", "RELAX AUC", "RELAX Relevance Rank Accuracy", "linear probe",
)


def variants() -> dict[str, object]:
    """Row label -> recipe (a ``TrainConfig``), or a callable giving the model directly."""
    shipped = RECIPES["shapes-simclr"][1]
    control = RECIPES["shapes-simclr-background"][1]
    both = replace(shipped, colours="shared", second_window="same")
    return {
        f"object-centred crops, one background per image ({control.steps} steps; shapes-simclr-background)": control,
        f"as above, {4 * control.steps} steps": replace(control, steps=4 * control.steps),
        f"random windows of the whole image, {control.steps} steps": replace(control, window="random"),
        f"two independent backgrounds per image, {control.steps} steps": replace(control, backgrounds="independent"),
        "both, 300 steps": replace(both, steps=300),
        "both, 1000 steps": replace(both, steps=1000),
        "both, whole-image windows (crop 224), 600 steps": replace(both, crop=224, steps=600),
        "both, whole-image windows, batch 64, 300 steps": replace(both, crop=224, batch_size=64, steps=300),
        "both, temperature 0.5, 300 steps": replace(both, temperature=0.5, steps=300),
        "both, temperature 0.5, batch 64, 300 steps": replace(both, temperature=0.5, batch_size=64, steps=300),
        "both, temperature 0.5, batch 128, 150 steps": replace(both, temperature=0.5, batch_size=128, steps=150),
        "both + independent object colours, 300 steps": replace(both, colours="independent", steps=300),
        "both + a window of its own per view, 300 steps": replace(both, second_window="own", steps=300),
        "all four, 300 steps": replace(shipped, steps=300),
        "all four, 1000 steps": replace(shipped, steps=1000),
        f"all four, {shipped.steps} steps (shapes-simclr, shipped)": lambda: load_shapes_model("shapes-simclr"),
        "random-init encoder (torch seed 0)": random_init_encoder,
    }


def random_init_encoder() -> torch.nn.Module:
    """``shapes-simclr``'s architecture at the init of torch seed 0, whatever ran before."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return load_shapes_model("shapes-simclr", weights=None)


def random_map_row(n_images: int = 300, size: int = 224) -> dict[str, float]:
    """The metrics of uniform random 7x7 maps (nearest-upsampled), a localisation floor."""
    generator = torch.Generator().manual_seed(0)

    def random_maps(x: torch.Tensor) -> torch.Tensor:
        cells = torch.rand(len(x), 1, 7, 7, generator=generator)
        return torch.nn.functional.interpolate(cells, size=x.shape[-2:], mode="nearest")[:, 0]

    return {
        f"LaFAM {k}": v
        for k, v in localisation(random_maps, SyntheticShapes(n_images, "single", EVAL_SEED, size)).items()
    }


def table(rows: dict[str, dict[str, float]], seconds: dict[str, float]) -> str:
    head = ["SimCLR variant", *(c.replace("Relevance Rank Accuracy", "RRA") for c in COLUMNS), "training s"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for label, values in rows.items():
        cells = [f"{values[c]:.2f}" if c in values else "" for c in COLUMNS]
        cells.append(f"{seconds[label]:.0f}" if label in seconds else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument("--rows", type=int, nargs="*", help="measure only these rows (0-based; default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, seconds = {}, {}
    for index, (label, recipe) in enumerate(variants().items()):
        if args.rows is not None and index not in args.rows:
            continue
        start = time.perf_counter()
        model = recipe() if callable(recipe) else train_shapes_model("simclr", recipe, progress=False)
        if not callable(recipe):
            seconds[label] = time.perf_counter() - start
        rows[label] = model_quality(model)
        print(label, {k: round(v, 3) for k, v in rows[label].items()}, flush=True)
    rows["random 7x7 map (LaFAM columns)"] = random_map_row()
    text = table(rows, seconds)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
