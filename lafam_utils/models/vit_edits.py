"""A function-preserving edit of a pre-LayerNorm Vision Transformer: what a map that explains the model must ignore.

Every reader of a pre-LayerNorm ViT's residual stream is a LayerNorm (each block's ``norm1`` and
``norm2``, the final ``norm``), and a LayerNorm subtracts each token's mean over its channels. So
adding ``c_t * 1`` to every token ``t`` after a block changes no output of the model (up to
float rounding), whatever the ``c_t``. ``mean_direction_edit`` makes that edit with
``c_t = u . x_t`` for a direction ``u``: a map that moves under it is not a property of the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn


@contextmanager
def mean_direction_edit(model: nn.Module, block: str, direction: Tensor) -> Iterator[None]:
    """Inside the context, ``block``'s output tokens ``x_t`` become ``x_t + (u . x_t) * 1`` (``u = direction``).

    Args:
        model: a pre-LayerNorm ViT (DINO / DINOv2 module names, torchvision's, the shapes ViTs).
        block: the block whose output is edited (``"blocks.1"``, ``"encoder.layers.encoder_layer_1"``);
            the blocks after it and the final norm read the edited stream.
        direction: ``u``, a (C,) vector over the block's channels.

    Raises:
        ValueError: ``block``'s output is not (B, N, C) tokens of ``direction``'s C channels (on the first forward).
    """

    def edit(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        if output.ndim != 3 or output.shape[-1] != direction.numel():
            raise ValueError(
                f"{block!r} gives output of shape {tuple(output.shape)}; the edit expects (B, N, C) tokens of "
                f"C = {direction.numel()} channels, the length of the direction"
            )
        u = direction.to(device=output.device, dtype=output.dtype)
        return output + (output @ u)[..., None]

    handle = model.get_submodule(block).register_forward_hook(edit)
    try:
        yield
    finally:
        handle.remove()


__all__ = ["mean_direction_edit"]
