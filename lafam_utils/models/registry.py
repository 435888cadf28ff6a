"""Models by name: the paper's supervised ResNet50, the Lightning Bolts SimCLR and SwAV encoders,
six official self-supervised ResNet50 releases, the official DINO / DINOv2 ViTs, any torchvision
classifier and the shapes CNNs.

The ImageNet CNNs are torchvision ResNet50s, so a layer name ("layer4", "layer3.5.conv3") means
the same in each; the self-supervised encoders replace ``fc`` by their embedding. The ViTs keep
their official module names ("blocks.11", "blocks.11.norm1"). Weights come from
the web (cached in ``torch.hub.get_dir()/checkpoints``) or from a local file (``checkpoint=``).
Inputs are preprocessed with ``lafam_utils.datasets.transforms.preprocess_image`` (ImageNet
normalisation) for all.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .bolts import BOLTS_URLS, bolts_encoder
from .releases import RELEASES, load_release
from .torchvision_models import TORCHVISION_MODELS, torchvision_classifier
from .vit_releases import VIT_RELEASES, load_vit_release


def load_model(
    name: str,
    weights: str | None = "default",
    checkpoint: str | Path | None = None,
    device: torch.device | str | None = None,
    embedding: str | None = None,
    trust_checkpoint: bool = False,
    weights_dir: str | Path | None = None,
) -> nn.Module:
    """A model by name, in eval mode, on ``device``.

    - ``"resnet50"``: torchvision ResNet50 with the paper's IMAGENET1K_V1 weights; 1000 logits.
      Any other torchvision classification model (``"resnet18"``, ``"vgg16"``, ...) by its name,
      with torchvision's default weights or ``weights="<enum name>"`` (e.g. ``"IMAGENET1K_V2"``).
      Classifiers carry ``model.class_names`` (the 1000 ImageNet categories); every other model
      (the encoders) has ``class_names = None``, so methods that need labels refuse it.
    - ``"dino-resnet50"``, ``"mocov2"``, ``"mocov3-resnet50"``, ``"barlowtwins"``, ``"vicreg"``,
      ``"swav-fair"``: the official ResNet50 releases of these self-supervised methods
      (``lafam_utils.models.releases``); ``embedding="backbone"`` (default) or ``"projection"``.
    - ``"dino-vits16"``, ``"dino-vits8"``, ``"dino-vitb16"``, ``"dino-vitb8"``, ``"dinov2-vits14"``,
      ``"dinov2-vitb14"``, ``"dinov2-vits14-reg"``, ``"dinov2-vitb14-reg"``: the official DINO and
      DINOv2 ViT backbones (``lafam_utils.models.vit_releases``), official module names
      (``blocks.N``, ``blocks.N.norm1``, ``blocks.N.attn``, ``norm``); forward -> (B, D) CLS embedding.
    - ``"simclr"``, ``"swav"``: the Bolts ImageNet ResNet50 encoders, forward -> (B, D) embedding.
      ``embedding="backbone"``: pooled 2048-d layer4 features; ``"projection"``: the 128-d
      L2-normalised projection-head output. Defaults are the embeddings the paper's RELAX used:
      SimCLR -> backbone (its ``encoder(x)[0]``), SwAV -> projection (its ``model(x)[0]``).
    - ``"shapes-supervised"``, ``"shapes-simclr"``, ``"shapes-simclr-background"``: the CNNs of the
      synthetic shapes benchmark, shipped in ``lafam_utils/shapes/weights`` (the last a background-biased
      negative control).

    Downloads are cached (see ``fetch``); torchvision's are hash-checked and loaded by torchvision.

    Args:
        name: one of the names above.
        weights: "default"; None: random init, no download; for torchvision models also an enum name.
        checkpoint: a local file instead of the download (a Bolts/Lightning ``.ckpt``, a plain state
            dict or a torchvision ``.pth``), read with ``read_checkpoint`` (no code from the file runs).
        device: where to put the model (None: the CPU).
        embedding: for the self-supervised encoders: "backbone" or "projection" (None: the default above).
        trust_checkpoint: unpickle ``checkpoint`` fully (it can run code: only for files you made).
        weights_dir: a folder holding the published files under their download names (e.g.
            ``resnet50-0676ba61.pth``, ``simclr_imagenet.ckpt``), used instead of the torch hub cache
            (hash-checked where the name has a hash; a missing file is downloaded there). The shapes
            models load their shipped files and ignore it.

    Raises:
        TypeError: ``name`` is not a str.
        ValueError: the name is unknown (the message lists close matches and the known names),
            ``embedding`` is given for a model without one, or ``weights`` is not one of its choices.
        CheckpointError: a weights file cannot be read safely or does not fit the model.
        DownloadError: the weights cannot be downloaded.
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    if embedding is not None and name not in (*BOLTS_URLS, *RELEASES):
        raise ValueError(f"embedding= applies to {', '.join((*BOLTS_URLS, *RELEASES))} only, not {name!r}")
    from ..shapes.training import SHAPES_MODELS  # here, not at the top: the shapes ViT imports models.vit

    if name in SHAPES_MODELS:
        from ..shapes.shipped import load_shapes_model

        return load_shapes_model(name, weights=weights, checkpoint=checkpoint, device=device)
    if name in BOLTS_URLS:
        model = bolts_encoder(name, weights, checkpoint, embedding, trust_checkpoint, weights_dir)
    elif name in RELEASES:
        model = load_release(name, weights, checkpoint, embedding, trust_checkpoint, weights_dir)
    elif name in VIT_RELEASES:
        model = load_vit_release(name, weights, checkpoint, trust_checkpoint, weights_dir)
    elif name in TORCHVISION_MODELS:
        model = torchvision_classifier(name, weights, checkpoint, trust_checkpoint, weights_dir)
    else:
        named = (*BOLTS_URLS, *RELEASES, *VIT_RELEASES, *SHAPES_MODELS)
        close = difflib.get_close_matches(name, (*named, *TORCHVISION_MODELS), n=5)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise ValueError(
            f"unknown model {name!r}.{hint} Known: {', '.join(named)} "
            "and torchvision's classification models (torchvision.models.list_models())."
        )
    model.class_names = getattr(model, "class_names", None)  # encoders: None, refused by methods that need labels
    model.eval()
    return model if device is None else model.to(device)


def check_weight_settings(
    names: Sequence[str],
    random_init: bool,
    checkpoints: Mapping[str, str | Path],
    weights_dir: str | Path | None,
) -> None:
    """Check a run's weight settings for the models ``names``.

    Raises:
        ValueError: ``checkpoints`` names a model not in ``names``, or ``random_init`` is combined
            with ``checkpoints`` / ``weights_dir``.
    """
    unknown = sorted(set(checkpoints) - set(names))
    if unknown:
        raise ValueError(
            f"checkpoints name models that are not used: {unknown}; the models are {list(dict.fromkeys(names))}"
        )
    if random_init and (checkpoints or weights_dir):
        raise ValueError("random_init=True loads no weights; leave checkpoints and weights_dir empty with it")


def model_options(
    name: str, random_init: bool, checkpoints: Mapping[str, str | Path], weights_dir: str | Path | None
) -> dict[str, Any]:
    """``load_model``'s keyword arguments for ``name`` under a notebook's weight settings.

    ``random_init`` wins over a checkpoint of ``name``, and a checkpoint over ``weights_dir``.
    """
    if random_init:
        return {"weights": None}
    if name in checkpoints:
        return {"checkpoint": checkpoints[name]}
    return {"weights_dir": weights_dir} if weights_dir is not None else {}


__all__ = ["check_weight_settings", "load_model", "model_options"]
