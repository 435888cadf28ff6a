"""The shipped shapes models: weights in ``weights/`` (package data), checked against ``MANIFEST.json``.

``load_shapes_model("shapes-supervised")`` loads the classifier, ``"shapes-simclr"`` the same
backbone trained with SimCLR (no labels) and ``"shapes-simclr-background"`` the background-biased
negative control; ``"shapes-vit-supervised"`` and ``"shapes-vit-simclr"`` are the ViT pair, trained
from the same recipes. Each file's sha256 and recipe are recorded in the manifest and checked on
load; ``python -m lafam_utils.shapes.retrain`` (``make models``) retrains them from ``RECIPES``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from .network import Objective, ShapesNet, ShapesViT, new_shapes_model
from .training import RECIPES, SHAPES_MODELS, TrainConfig, train_shapes_model

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def cache_dir() -> Path:
    """Where weights trained from a custom recipe are kept: ``$LAFAM_CACHE``, else ``~/.cache/lafam_utils``."""
    return Path(os.environ.get("LAFAM_CACHE") or Path.home() / ".cache" / "lafam_utils")


class ShippedModelError(RuntimeError):
    """A shipped model file is missing, altered, or was trained from another recipe than the code's."""


def model_file_bytes(model: ShapesNet | ShapesViT, objective: Objective, config: TrainConfig) -> bytes:
    """The bytes of a model file: tensors and plain values only (``torch.load(weights_only=True)``).

    The same weights and recipe give the same bytes whatever the file is called. The recipe is
    stored as freshly decoded JSON values: pickle writes one object once, so equal strings that
    happen to be one object (interned literals) would otherwise change the bytes.
    """
    buffer = io.BytesIO()
    recipe = json.loads(json.dumps(asdict(config)))
    torch.save({"state_dict": model.state_dict(), "objective": objective, "config": recipe}, buffer)
    return buffer.getvalue()


def read_manifest(directory: Path | None = None) -> dict[str, dict]:
    """``MANIFEST.json`` of ``directory`` (default ``WEIGHTS_DIR``): model name -> file, sha256, objective, recipe.

    Raises:
        ShippedModelError: the manifest does not exist.
    """
    path = (directory or WEIGHTS_DIR) / "MANIFEST.json"
    if not path.is_file():
        raise ShippedModelError(
            f"{path} does not exist; the shipped shapes models are expected there"
            " (retrain and record them: make models MODELS_ARGS=--ship)"
        )
    return json.loads(path.read_text())


def ship_model(name: str, model: ShapesNet | ShapesViT, directory: Path | None = None) -> str:
    """Write ``name``'s file (``<name>.pt``) into ``directory`` (default ``WEIGHTS_DIR``) and record it in its manifest.

    Returns:
        The file's sha256.
    """
    objective, config = RECIPES[name]
    directory = directory or WEIGHTS_DIR
    data = model_file_bytes(model, objective, config)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.pt").write_bytes(data)
    manifest_path = directory / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    digest = hashlib.sha256(data).hexdigest()
    manifest[name] = {"file": f"{name}.pt", "sha256": digest, "objective": objective, "recipe": asdict(config)}
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
    return digest


def load_shipped_state(name: str, directory: Path | None = None) -> dict[str, Tensor]:
    """The state dict of ``name``'s shipped file in ``directory`` (default ``WEIGHTS_DIR``), checked first.

    The file's sha256 must match the manifest's, and the recipe (objective and ``TrainConfig``) of
    the manifest, of the file and of ``RECIPES`` must all agree.

    Raises:
        ShippedModelError: the manifest, its entry or the file is missing, or the sha256 or a recipe
            differs (the message says which).
    """
    objective, config = RECIPES[name]
    directory = directory or WEIGHTS_DIR
    entry = read_manifest(directory).get(name)
    if entry is None:
        raise ShippedModelError(
            f"{directory / 'MANIFEST.json'} has no entry for {name!r}"
            " (retrain and record them: make models MODELS_ARGS=--ship)"
        )
    path = directory / entry["file"]
    if not path.is_file():
        raise ShippedModelError(
            f"{path}, the shipped weights of {name!r}, does not exist"
            " (retrain and record them: make models MODELS_ARGS=--ship)"
        )
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise ShippedModelError(
            f"{path} has sha256 {digest}, but the manifest records {entry['sha256']}: the file was altered "
            "or replaced (restore it from git, or retrain and record it: make models MODELS_ARGS=--ship)"
        )
    expected = {"objective": objective, "recipe": asdict(config)}
    recorded = {"objective": entry["objective"], "recipe": entry["recipe"]}
    if recorded != expected:
        raise ShippedModelError(
            f"{name!r} was shipped trained with {recorded}, but the code's recipe is {expected} "
            "(retrain and record it: make models MODELS_ARGS=--ship)"
        )
    stored = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if {"objective": stored.get("objective"), "recipe": stored.get("config")} != expected:
        raise ShippedModelError(f"{path} holds a model of another recipe than its manifest entry records")
    return stored["state_dict"]


def load_shapes_model(
    name: str,
    weights: Literal["default"] | None = "default",
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    *,
    config: TrainConfig | None = None,
    progress: bool = True,
) -> ShapesNet | ShapesViT:
    """A shapes model in eval mode, by default with the weights shipped in ``weights/``.

    Args:
        name: ``"shapes-supervised"`` (logits over ``SHAPE_CLASSES``, see ``model.class_names``),
            ``"shapes-simclr"`` or ``"shapes-simclr-background"`` ((B, 128) embeddings), or the
            ViTs ``"shapes-vit-supervised"`` (logits) and ``"shapes-vit-simclr"`` ((B, 96) embeddings).
        weights: "default" loads the shipped weights (checked against their recorded sha256 and
            recipe; nothing is trained); None gives a random init.
        checkpoint: a file holding a state dict or a model file's ``{"state_dict": ...}``; takes precedence.
        device: where to put the model (None: the CPU).
        config: a recipe other than the shipped one: trains on first use and caches the weights in ``cache_dir()``.
        progress: show a progress bar while training.

    Raises:
        ValueError: ``name`` or ``weights`` is unknown.
        ShippedModelError: a shipped file is missing, altered or of another recipe than the code's.
    """
    if name not in SHAPES_MODELS:
        raise ValueError(f"unknown shapes model {name!r}; expected one of {SHAPES_MODELS}")
    if weights not in ("default", None):
        raise ValueError(f"weights must be 'default' or None, got {weights!r}")
    objective = RECIPES[name][0]
    model = new_shapes_model(objective, (config or RECIPES[name][1]).architecture)
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state))
    elif weights == "default" and (config is None or config == RECIPES[name][1]):
        model.load_state_dict(load_shipped_state(name))
    elif weights == "default":
        path = cache_dir() / f"{name}-{config.digest()}.pt"
        if not path.exists():
            trained = train_shapes_model(objective, config, progress)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(model_file_bytes(trained, objective, config))
            os.replace(partial, path)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
    return model.eval().to(device)


__all__ = [
    "SHAPES_MODELS",
    "ShippedModelError",
    "WEIGHTS_DIR",
    "cache_dir",
    "load_shapes_model",
    "load_shipped_state",
    "model_file_bytes",
    "read_manifest",
    "ship_model",
]
