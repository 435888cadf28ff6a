"""Display names: the one table of model titles, and pair titles for figures and tables.

A method's title is its explainer class's ``title`` (``lu.explainers.method_title``); a model's
is in ``MODEL_TITLES``. A name found in neither is shown as given.
"""

from __future__ import annotations

from ..explainers import method_title

MODEL_TITLES = {
    "resnet50": "ResNet50",
    "simclr": "SimCLR",
    "swav": "SwAV",
    "dino-resnet50": "DINO",
    "mocov2": "MoCo v2",
    "mocov3-resnet50": "MoCo v3",
    "barlowtwins": "Barlow Twins",
    "vicreg": "VICReg",
    "swav-fair": "SwAV (FAIR)",
    "vit_b_16": "ViT-B/16",
    "dino-vits16": "DINO ViT-S/16",
    "dino-vits8": "DINO ViT-S/8",
    "dino-vitb16": "DINO ViT-B/16",
    "dino-vitb8": "DINO ViT-B/8",
    "dinov2-vits14": "DINOv2 ViT-S/14",
    "dinov2-vitb14": "DINOv2 ViT-B/14",
    "dinov2-vits14-reg": "DINOv2 ViT-S/14 reg",
    "dinov2-vitb14-reg": "DINOv2 ViT-B/14 reg",
    "shapes-supervised": "Shapes supervised",
    "shapes-simclr": "Shapes SimCLR",
    "shapes-simclr-background": "Shapes SimCLR-bg",
    "shapes-vit-supervised": "Shapes ViT supervised",
    "shapes-vit-simclr": "Shapes ViT SimCLR",
}


def model_title(model: str) -> str:
    """The display name of a model ("resnet50" -> "ResNet50"); an unknown name is its own title."""
    return MODEL_TITLES.get(model, model)


def pair_title(model: str, method: str, separator: str = " ") -> str:
    r"""A column title such as "ResNet50 Grad-CAM" (``separator="\n"`` for two lines in a figure)."""
    return f"{model_title(model)}{separator}{method_title(method)}"


__all__ = ["MODEL_TITLES", "method_title", "model_title", "pair_title"]
