"""torchvision's classification models by name, with the paper's weights for ResNet50."""

from __future__ import annotations

import pickle
from pathlib import Path

import torchvision
from torch import nn

from ..paper import PAPER_WEIGHTS
from .checkpoints import CheckpointError, first_line, load_weights, read_checkpoint
from .downloads import fetch

TORCHVISION_MODELS = tuple(torchvision.models.list_models(module=torchvision.models))


def torchvision_classifier(
    name: str, weights: str | None, checkpoint: str | Path | None, trust: bool, weights_dir: str | Path | None
) -> nn.Module:
    """A torchvision classifier with its named weights, random init, or a local state dict.

    Args:
        name: a torchvision classification model.
        weights: "default" (the paper's for ResNet50, else torchvision's default), an enum name of
            the model's weights, or None (random init).
        checkpoint: a local state dict instead of the download.
        trust: unpickle the file fully (it can run code; see ``read_checkpoint``).
        weights_dir: a folder the download is cached in, instead of the torch hub cache.

    Returns:
        The model, with ``class_names`` (the categories of the chosen weights, else of the default ones).

    Raises:
        ValueError: ``weights`` is not one of its choices.
        CheckpointError: the file cannot be read safely or does not fit the model, or the cached
            download cannot be loaded.
        DownloadError: the weights cannot be downloaded.
    """
    available = torchvision.models.get_model_weights(name)
    if weights is not None and weights != "default" and weights not in available.__members__:
        raise ValueError(
            f"weights for {name!r} must be 'default', None or one of "
            f"{', '.join(available.__members__)}; got {weights!r}"
        )
    if weights == "default":
        weights = PAPER_WEIGHTS.get(name, "DEFAULT")
    chosen = available[weights] if weights is not None else available.DEFAULT
    if checkpoint is None and weights is not None and weights_dir is not None:
        checkpoint = fetch(chosen.url, weights_dir)
    if checkpoint is None and weights is not None:
        path = fetch(chosen.url)
        try:
            model = torchvision.models.get_model(name, weights=chosen)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
            raise CheckpointError(
                f"{path}, the cached download of {chosen.url}, cannot be loaded ({first_line(err)}); "
                "delete it to download it again"
            ) from None
    else:
        model = torchvision.models.get_model(name, weights=None)
        if checkpoint is not None:
            state = read_checkpoint(checkpoint, trust)
            load_weights(model, state.get("state_dict", state), checkpoint, name)
    model.class_names = list(chosen.meta["categories"])
    return model


__all__ = ["TORCHVISION_MODELS", "torchvision_classifier"]
