"""Each model's layers for the layer-reading explainers, and the one ``layer="auto"`` picks.

- A CNN with ResNet's stages (torchvision's ResNets, the self-supervised ResNet50 releases, the
  shapes CNNs): ``layer1`` .. ``layer4``; ``"auto"`` is ``layer4``, the paper's layer.
- A Vision Transformer with DINO's module names (``blocks.N``: the DINO / DINOv2 releases, the
  shapes ViTs) or torchvision's (``encoder.layers.encoder_layer_N``): its blocks' outputs, the
  residual stream; ``"auto"`` is the last block's. A method that reads gradients (Grad-CAM)
  gets the last block's first norm instead (``blocks.N.norm1``, ``...encoder_layer_N.ln_1``):
  after the last block such a model reads only its CLS token, so the class score's gradient on
  the last block's patch tokens is exactly zero (``tokens.check_patch_gradients``).
"""

from __future__ import annotations

from torch import nn

from .tokens import FIRST_BLOCK_NORMS

AUTO = "auto"
"""``layer="auto"``: the model's default layer for the method (``default_layer``)."""


def block_names(model: nn.Module) -> list[str]:
    """The names of a ViT's blocks, first to last (``blocks.N`` or ``encoder.layers.encoder_layer_N``); [] for other models."""
    for container in ("blocks", "encoder.layers"):
        try:
            blocks = model.get_submodule(container)
        except AttributeError:
            continue
        if isinstance(blocks, nn.ModuleList | nn.Sequential) and len(blocks):
            return [f"{container}.{name}" for name, _ in blocks.named_children()]
    return []


def first_norm(model: nn.Module, block: str) -> str | None:
    """The name of ``block``'s norm before its attention (``norm1`` or ``ln_1``), None if it has none."""
    for name, _ in model.get_submodule(block).named_children():
        if f".{name}" in FIRST_BLOCK_NORMS:
            return f"{block}.{name}"
    return None


def model_layers(model: nn.Module) -> list[str]:
    """The layers the Explorer offers, shallow to deep: ResNet's stages, a ViT's blocks (+ the last one's first norm).

    Empty for a model of neither kind.
    """
    stages = [name for name, _ in model.named_children() if name.startswith("layer")]
    if stages:
        return stages
    blocks = block_names(model)
    norm = first_norm(model, blocks[-1]) if blocks else None
    return blocks + ([norm] if norm else [])


def default_layer(model: nn.Module, gradients: bool = False) -> str:
    """The layer ``layer="auto"`` reads: ``layer4`` on a ResNet; a ViT's last block, or its first norm for gradients.

    Args:
        model: the network to explain.
        gradients: the method reads the layer's gradient (Grad-CAM).

    Raises:
        ValueError: the model is neither a ResNet-staged CNN nor a ViT with known block names;
            the message asks for a layer name.
    """
    stages = [name for name, _ in model.named_children() if name.startswith("layer")]
    if stages:
        return stages[-1]
    blocks = block_names(model)
    if blocks:
        norm = first_norm(model, blocks[-1])
        return norm if gradients and norm else blocks[-1]
    raise ValueError(
        f"{type(model).__name__} has no default layer: it has neither ResNet's stages (layer1..layer4) nor a "
        "Vision Transformer's blocks (blocks.N, encoder.layers.encoder_layer_N); pass layer= with one of the "
        "names in model.named_modules()"
    )


__all__ = ["AUTO", "block_names", "default_layer", "first_norm", "model_layers"]
