"""Token layers of Vision Transformers read as feature maps: prefix tokens dropped, patches as a grid.

A layer whose output is (B, N, C) tokens holds the model's prefix tokens (CLS and any registers)
followed by the h x w patch tokens in row-major order. The model says how many prefix tokens it
has (``num_prefix_tokens``, timm's attribute, which the DINO / DINOv2 models of ``load_model``
carry; torchvision's ``VisionTransformer`` has one, its ``class_token``) and its patch size
(``patch_size`` or ``patch_embed.patch_size``); h and w follow from the input size as in the
patch embedding's strided convolution (``H // patch``, ``W // patch``).
"""

from __future__ import annotations

from torch import Tensor, nn

from ..hooks import LayerSpec, layer_name

FIRST_BLOCK_NORMS = (".norm1", ".ln_1")  # DINO/DINOv2/timm, torchvision: the norm before a block's attention


def prefix_token_count(model: nn.Module) -> int:
    """The number of tokens before the patch tokens (CLS and registers).

    Raises:
        ValueError: the model declares neither ``num_prefix_tokens`` nor a ``class_token``.
    """
    count = getattr(model, "num_prefix_tokens", None)
    if isinstance(count, int):
        return count
    if isinstance(getattr(model, "class_token", None), Tensor):  # torchvision's VisionTransformer
        return 1
    raise ValueError(
        f"{type(model).__name__} does not say which of its tokens are patches: it has no num_prefix_tokens "
        "attribute (the number of CLS and register tokens before the patch tokens) and no class_token; "
        "set model.num_prefix_tokens"
    )


def patch_size_of(model: nn.Module) -> tuple[int, int]:
    """The model's (height, width) patch size, from ``patch_size`` or ``patch_embed.patch_size``.

    Raises:
        ValueError: the model has neither.
    """
    size = getattr(model, "patch_size", None)
    if size is None:
        size = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if isinstance(size, int):
        return size, size
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(side, int) for side in size):
        return size[0], size[1]
    raise ValueError(
        f"{type(model).__name__} has no patch_size (nor patch_embed.patch_size): the patch grid of a token "
        "layer cannot be told from the input size; set model.patch_size"
    )


def patch_grid_size(model: nn.Module, size: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) grid of patch tokens for images of ``size`` (H, W).

    Raises:
        ValueError: the model has no patch size (``patch_size_of``).
    """
    rows, cols = patch_size_of(model)
    return size[0] // rows, size[1] // cols


def patch_grid(tokens: Tensor, model: nn.Module, layer: LayerSpec, size: tuple[int, int] | None) -> Tensor:
    """A (B, N, C) token layer's patch tokens as a (B, C, h, w) feature map (prefix tokens dropped).

    Args:
        tokens: the layer's output (or its gradient), prefix tokens first.
        model: the network, which says its prefix-token count and patch size.
        layer: the layer's name, for messages.
        size: the input images' (H, W).

    Returns:
        A view of the patch tokens as (B, C, h, w).

    Raises:
        ValueError: the input size is unknown, or N is not the prefix tokens plus h * w.
    """
    if size is None:
        raise ValueError(f"layer {layer!r} gives (B, N, C) tokens; reading them as a patch grid needs the input size")
    prefix = prefix_token_count(model)
    rows, cols = patch_grid_size(model, size)
    if tokens.shape[1] != prefix + rows * cols:
        raise ValueError(
            f"layer {layer!r} gives {tokens.shape[1]} tokens for {size[0]}x{size[1]} images; expected "
            f"{prefix} prefix tokens + a {rows}x{cols} patch grid = {prefix + rows * cols} "
            f"({type(model).__name__}: num_prefix_tokens {prefix}, patch size {patch_size_of(model)})"
        )
    patches = tokens[:, prefix:]
    return patches.transpose(1, 2).reshape(len(tokens), tokens.shape[2], rows, cols)


def check_patch_gradients(grads: Tensor, model: nn.Module, layer: LayerSpec) -> None:
    """Raise if the class score's gradient is exactly zero on every patch token but not on the prefix.

    That gradient is structurally zero: after this layer the model reads only its prefix tokens
    (a classifier's last block, whose output goes through a per-token norm to the CLS head).

    Raises:
        ValueError: naming the layer and a usable one (the last block's first norm).
    """
    prefix = prefix_token_count(model)
    if grads[:, prefix:].count_nonzero() or not grads[:, :prefix].count_nonzero():
        return
    norms = [name for name, _ in model.named_modules() if name.endswith(FIRST_BLOCK_NORMS)]
    usable = f"; for example {norms[-1]!r}, the last block's norm before its attention" if norms else ""
    raise ValueError(
        f"layer {layer_name(model, layer)!r}: the class score's gradient is exactly zero on every patch token "
        "(after this layer the model reads only the CLS token), so Grad-CAM has nothing to weigh. Choose a "
        f"layer whose patch tokens still reach the CLS token through an attention{usable}"
    )


__all__ = ["check_patch_gradients", "patch_grid", "patch_grid_size", "patch_size_of", "prefix_token_count"]
