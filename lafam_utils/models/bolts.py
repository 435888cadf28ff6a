"""The Lightning Bolts SimCLR and SwAV ImageNet ResNet50 encoders of the paper, as torchvision ResNet50s."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torchvision
from torch import Tensor, nn

from ..paper import PAPER_EMBEDDINGS
from .checkpoints import CheckpointError, load_weights, read_checkpoint, torchvision_names
from .downloads import fetch
from .heads import EMBEDDINGS, NormalizedProjection

BOLTS_URLS = {
    "simclr": "https://pl-bolts-weights.s3.us-east-2.amazonaws.com/simclr/bolts_simclr_imagenet/simclr_imagenet.ckpt",
    "swav": "https://pl-bolts-weights.s3.us-east-2.amazonaws.com/swav/bolts_swav_imagenet/swav_imagenet.ckpt",
}

# Where a Bolts checkpoint keeps the ResNet50 and the projection head, and its parts no embedding
# uses: Bolts' unused 1000-way ``fc``, SwAV's prototypes, the online linear probe.
BOLTS_BACKBONE = {"simclr": "encoder.", "swav": "model."}
BOLTS_HEAD = {"simclr": "projection.model.", "swav": "model.projection_head."}
BOLTS_UNUSED = {
    "simclr": ("encoder.fc.", "non_linear_evaluator."),
    "swav": ("model.prototypes.", "non_linear_evaluator."),
}
BOLTS_IMAGENET_CONFIG = {"arch": "resnet50", "first_conv": True, "maxpool1": True}


def bolts_encoder(
    name: str,
    weights: str | None,
    checkpoint: str | Path | None,
    embedding: str | None,
    trust: bool,
    weights_dir: str | Path | None,
) -> nn.Module:
    """A torchvision ResNet50 whose ``fc`` gives the chosen SimCLR or SwAV embedding.

    Args:
        name: "simclr" or "swav".
        weights: "default" (the Bolts ImageNet weights) or None (random init when no ``checkpoint`` is given).
        checkpoint: a local file instead of the download.
        embedding: "backbone" or "projection"; None: the paper's (``PAPER_EMBEDDINGS``).
        trust: unpickle the file fully (it can run code; see ``read_checkpoint``).
        weights_dir: the folder the download is cached in (see ``fetch``).

    Raises:
        ValueError: ``weights`` or ``embedding`` is not one of its choices.
        CheckpointError: the file cannot be read safely or does not fit the model.
        DownloadError: the weights cannot be downloaded.
    """
    if weights not in ("default", None):
        raise ValueError(f"weights for {name!r} must be 'default' or None, got {weights!r}")
    embedding = embedding or PAPER_EMBEDDINGS[name]
    if embedding not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}")
    model = torchvision.models.resnet50(weights=None)
    model.fc = nn.Identity() if embedding == "backbone" else NormalizedProjection(out_bias=name == "swav")
    if checkpoint is None and weights is None:
        return model
    source = checkpoint if checkpoint is not None else fetch(BOLTS_URLS[name], weights_dir)
    state = bolts_state_dict(name, read_checkpoint(source, trust), source)
    if embedding == "backbone":
        state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    load_weights(model, state, source, f"{name} ({embedding} embedding)")
    return model


def bolts_state_dict(name: str, checkpoint: dict[str, Any], source: str | Path) -> dict[str, Tensor]:
    """A Bolts SimCLR/SwAV checkpoint's weights under torchvision's ResNet50 names, head as ``fc``.

    SwAV's extra 1-pixel pad before a padding-2 ``conv1`` equals torchvision's padding 3, so the
    weights carry over unchanged. A state dict already in torchvision's names passes through.

    Args:
        name: "simclr" or "swav".
        checkpoint: the file's contents (``read_checkpoint``).
        source: the file, named in errors.

    Raises:
        CheckpointError: the checkpoint's hyper-parameters are not the ImageNet configuration
            (``BOLTS_IMAGENET_CONFIG``).
    """
    config = checkpoint.get("hyper_parameters")
    config = vars(config) if isinstance(config, argparse.Namespace) else config
    if isinstance(config, Mapping):
        wrong = {k: config[k] for k, v in BOLTS_IMAGENET_CONFIG.items() if k in config and config[k] != v}
        if wrong:
            raise CheckpointError(
                f"{source} is a {name} checkpoint with {wrong}; "
                f"expected the ImageNet configuration {BOLTS_IMAGENET_CONFIG}"
            )
    state = checkpoint.get("state_dict", checkpoint)
    if not any(key.startswith(BOLTS_BACKBONE[name]) for key in state):
        return state
    return torchvision_names(state, BOLTS_BACKBONE[name], BOLTS_HEAD[name], BOLTS_UNUSED[name], keep_head=True)


__all__ = ["BOLTS_URLS", "bolts_encoder", "bolts_state_dict"]
