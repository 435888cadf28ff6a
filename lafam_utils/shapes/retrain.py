"""Retrain the shipped shapes models from their recipes and compare them with the shipped files.

    python -m lafam_utils.shapes.retrain                  # all models; prints the comparison (make models)
    python -m lafam_utils.shapes.retrain --ship           # also replace the shipped files and manifest
    python -m lafam_utils.shapes.retrain shapes-simclr    # one model

A retrained model whose file is bit-identical to the shipped one is reported as such; otherwise
both are measured with ``quality.model_quality`` and the differences printed.
"""

from __future__ import annotations

import argparse
import hashlib
import time

from . import shipped
from .network import ShapesNet
from .quality import model_quality
from .shipped import ShippedModelError, load_shapes_model, model_file_bytes, read_manifest, ship_model
from .training import RECIPES, train_shapes_model


def quality_table(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table: one column per model (``rows`` keys), one row per measured quantity."""
    names = list(rows)
    keys = list(dict.fromkeys(key for values in rows.values() for key in values))
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(f"{rows[n][key]:.3f}" if key in rows[n] else "" for n in names) + " |")
    return "\n".join(lines)


def retrain(name: str, ship: bool = False, progress: bool = True) -> ShapesNet:
    """Train ``name`` from its recipe, print its training time and how it compares with the shipped file.

    Args:
        name: a key of ``RECIPES``.
        ship: also replace the shipped file and its manifest entry.
        progress: show a progress bar while training.

    Returns:
        The retrained model.
    """
    objective, config = RECIPES[name]
    start = time.perf_counter()
    model = train_shapes_model(objective, config, progress=progress)
    seconds = time.perf_counter() - start
    digest = hashlib.sha256(model_file_bytes(model, objective, config)).hexdigest()
    directory = shipped.WEIGHTS_DIR
    shipped_sha = read_manifest().get(name, {}).get("sha256") if (directory / "MANIFEST.json").is_file() else None
    print(f"{name}: trained in {seconds:.0f} s (one torch thread), sha256 {digest}")
    if digest == shipped_sha:
        print(f"{name}: bit-identical to the shipped {directory / (name + '.pt')}")
    else:
        rows = {"retrained": model_quality(model)}
        try:
            shipped_model = load_shapes_model(name) if shipped_sha is not None else None
        except ShippedModelError as error:
            print(f"{name}: the shipped file cannot be compared: {error}")
            shipped_model = None
        if shipped_model is not None:
            rows["shipped"] = model_quality(shipped_model)
            rows["difference"] = {k: rows["retrained"][k] - rows["shipped"][k] for k in rows["retrained"]}
            print(f"{name}: differs from the shipped file (sha256 {shipped_sha}):")
        elif shipped_sha is None:
            print(f"{name}: no shipped file to compare with")
        print(quality_table(rows))
    if ship:
        print(f"{name}: shipped as {directory / (name + '.pt')}, sha256 {ship_model(name, model)}")
    return model


def main(argv: list[str] | None = None) -> None:
    """The command line: retrain the named models (default: all), ``--ship`` to replace the shipped files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", default=list(RECIPES), choices=list(RECIPES), help="models to retrain (default: all)"
    )
    parser.add_argument("--ship", action="store_true", help="replace the shipped files and their manifest entries")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    for name in args.names:
        retrain(name, ship=args.ship, progress=not args.no_progress)


if __name__ == "__main__":
    main()
