"""Each model's layers for the layer-reading explainers, and the one ``layer="auto"`` picks.

- A CNN with ResNet's stages (torchvision's ResNets, the self-supervised ResNet50 releases, the
  shapes CNNs): ``layer1`` .. ``layer4``; ``"auto"`` is ``layer4``, the paper's layer.
- A Vision Transformer with DINO's module names (``blocks.N``: the DINO / DINOv2 releases, the
  shapes ViTs) or torchvision's (``encoder.layers.encoder_layer_N``). ``"auto"`` is, by the rule
  of docs/vision-transformers.md, the activation after the MLP's GELU (``blocks.N.mlp.act``,
  ``...encoder_layer_N.mlp.1``) of the block ``SELECTED_BLOCK`` names. The residual stream
  (``blocks.N``) is no default for the label-free activation methods: every LayerNorm that reads
  it removes each token's channel mean, so a map of that mean is not a property of the model.
  Methods defined on the residual stream (``reads_residual_stream``: LaFAM of the magnitudes, the
  centred token norm) read the last block's output. A method that reads gradients (Grad-CAM)
  gets the last block's first norm (``blocks.N.norm1``, ``...encoder_layer_N.ln_1``): after the
  last block such a model reads only its CLS token, so the class score's gradient on the last
  block's patch tokens is exactly zero (``tokens.check_patch_gradients``).
"""

from __future__ import annotations

from torch import nn

from .tokens import FIRST_BLOCK_NORMS

AUTO = "auto"
"""``layer="auto"``: the model's default layer for the method (``default_layer``)."""
SELECTED_BLOCK = (3, 4)
"""The rule's choice on the selection split (docs/vision-transformers.md): block 3 of the shapes
ViTs' 4, which ``selected_block`` transfers to other depths."""


def block_names(model: nn.Module) -> list[str]:
    """A ViT's block names, first to last (``blocks.N``, ``encoder.layers.encoder_layer_N``); [] for other models."""
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


def mlp_activation(model: nn.Module, block: str) -> str | None:
    """The name of ``block``'s MLP nonlinearity (``mlp.act``, torchvision's ``mlp.1``), None if it has none."""
    try:
        mlp = model.get_submodule(f"{block}.mlp")
    except AttributeError:
        return None
    for name, module in mlp.named_children():
        if isinstance(module, nn.GELU | nn.ReLU | nn.SiLU):
            return f"{block}.mlp.{name}"
    return None


def selected_block(blocks: list[str]) -> str:
    """The block ``SELECTED_BLOCK`` names, transferred by relative depth.

    Block ``i`` of ``L`` maps to block ``round((i + 1) * L' / L) - 1`` of ``L'`` blocks, so the
    last block maps to the last.
    """
    index, depth = SELECTED_BLOCK
    return blocks[max(0, round((index + 1) * len(blocks) / depth) - 1)]


def model_layers(model: nn.Module) -> list[str]:
    """The layers the Explorer offers, shallow to deep.

    ResNet's stages; a ViT's blocks, each followed by its MLP activation, and the last block's
    first norm. Empty for a model of neither kind.
    """
    stages = [name for name, _ in model.named_children() if name.startswith("layer")]
    if stages:
        return stages
    blocks = block_names(model)
    layers = [layer for block in blocks for layer in (block, mlp_activation(model, block)) if layer]
    norm = first_norm(model, blocks[-1]) if blocks else None
    return layers + ([norm] if norm else [])


def default_layer(model: nn.Module, gradients: bool = False, residual_stream: bool = False) -> str:
    """The layer ``layer="auto"`` reads.

    ``layer4`` on a ResNet. On a ViT: the selected block's MLP activation (``selected_block``,
    ``mlp_activation``); for a method that reads gradients, the last block's first norm; for a
    method defined on the residual stream, the last block's output.

    Args:
        model: the network to explain.
        gradients: the method reads the layer's gradient (Grad-CAM).
        residual_stream: the method is defined on a ViT's residual stream (``blocks.N``).

    Raises:
        ValueError: the model is neither a ResNet-staged CNN nor a ViT with known block names,
            or a ViT block has no MLP activation module; the message asks for a layer name.
    """
    stages = [name for name, _ in model.named_children() if name.startswith("layer")]
    if stages:
        return stages[-1]
    blocks = block_names(model)
    if blocks:
        norm = first_norm(model, blocks[-1])
        if gradients and norm:
            return norm
        if residual_stream or gradients:
            return blocks[-1]
        block = selected_block(blocks)
        activation = mlp_activation(model, block)
        if activation is None:
            raise ValueError(
                f"{type(model).__name__}: block {block!r} has no MLP activation module (an nn.GELU under "
                f"{block}.mlp), the default layer of the label-free methods on a Vision Transformer; pass layer="
            )
        return activation
    raise ValueError(
        f"{type(model).__name__} has no default layer: it has neither ResNet's stages (layer1..layer4) nor a "
        "Vision Transformer's blocks (blocks.N, encoder.layers.encoder_layer_N); pass layer= with one of the "
        "names in model.named_modules()"
    )


__all__ = [
    "AUTO",
    "SELECTED_BLOCK",
    "block_names",
    "default_layer",
    "first_norm",
    "mlp_activation",
    "model_layers",
    "selected_block",
]
