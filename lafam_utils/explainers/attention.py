"""DINO's attention map: the last block's attention from the CLS token to the patch tokens."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..hooks import LayerSpec, capture, find_layer, layer_name
from .base import Explainer
from .registry import register
from .tokens import patch_grid

READABLE = (
    "a Vision Transformer whose blocks.N.attn computes its attention probabilities explicitly and passes "
    "them through an attn_drop module, as the DINO / DINOv2 models of load_model and DINO's official code do"
)


def last_attention(model: nn.Module) -> str:
    """The name of the last block's attention module, ``blocks.N.attn``.

    Raises:
        ValueError: the model has no ``blocks`` whose last one has an ``attn`` module.
    """
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList | nn.Sequential) or not len(blocks):
        raise ValueError(f"the attention map cannot be read from {type(model).__name__}: it needs {READABLE}")
    if not isinstance(getattr(blocks[-1], "attn", None), nn.Module):
        raise ValueError(
            f"the last block of {type(model).__name__} has no attn module; the attention map needs {READABLE}"
        )
    return f"blocks.{len(blocks) - 1}.attn"


def probabilities_probe(model: nn.Module, layer: LayerSpec) -> str:
    """The name of the module whose output is ``layer``'s attention probabilities (its ``attn_drop``).

    Raises:
        ValueError: the attention module has no ``attn_drop`` module.
    """
    if not isinstance(getattr(find_layer(model, layer), "attn_drop", None), nn.Module):
        raise ValueError(
            f"{layer_name(model, layer)!r} of {type(model).__name__} has no attn_drop module, so its attention "
            f"probabilities cannot be read; the attention map needs {READABLE}"
        )
    return f"{layer_name(model, layer)}.attn_drop"


@register
class CLSAttention(Explainer):
    """``M = Up(N(mean_heads A[CLS -> patches]))``: the last block's attention from CLS to the patches.

    DINO's label-free picture of a ViT (its ``visualize_attention.py``): the attention
    probabilities of the CLS token's query over the patch tokens (registers and CLS itself left
    out), mean over the heads, or one head with ``head=k``. One forward, stopped once the
    probabilities are computed; no labels, no gradients. After each call ``head_maps`` holds
    every head's raw (B, heads, h, w) map. ``layer`` names another attention module
    (``"blocks.5.attn"``); None is the last block's. A model whose attention cannot be read
    (torchvision's ViT keeps it inside ``nn.MultiheadAttention``; fused attention never forms the
    probabilities) is a clear error.

    Args:
        model: a Vision Transformer whose attention probabilities can be read (see ``READABLE``).
        layer: the attention module (None: ``last_attention(model)``).
        head: one head's index (None: the mean over the heads).
        **options: ``Explainer``'s other arguments (``upsample``, ``threshold``, ``precision``, ``compile``).

    Raises:
        ValueError: ``head`` is not None or a non-negative int, or the attention cannot be read
            (``last_attention``, ``probabilities_probe``).
    """

    name = "attention"
    title = "Attention"
    needs_layer = False

    head_maps: Tensor | None = None

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | None = None,
        head: int | None = None,
        **options: Any,
    ) -> None:
        layer = last_attention(model) if layer is None else layer
        super().__init__(model, layer, **options)
        if head is not None and (isinstance(head, bool) or not isinstance(head, int) or head < 0):
            raise ValueError(f"head must be None (the mean over heads) or a head's index, got {head!r}")
        self.probe = probabilities_probe(model, layer)
        self.head = head

    def layer_maps(self, x: Tensor) -> Tensor:
        """Raw (B, h, w) attention maps of ``x``; ``head_maps`` is set.

        Raises:
            RuntimeError: the forward pass did not call the ``attn_drop`` probe (fused attention).
            ValueError: the probe's output is not (B, heads, N, N), or ``head`` does not exist.
        """
        with torch.no_grad(), self.forward_context(x), capture(self.model, self.probe, stop=True) as rec:
            self.model(x)
        probabilities = rec.outputs.get(self.probe)
        if probabilities is None:
            raise RuntimeError(
                f"{self.probe!r} was not called by the forward pass of {type(self.model).__name__}: its attention "
                "does not form the probabilities explicitly (fused attention?); the attention map needs them"
            )
        if probabilities.ndim != 4 or probabilities.shape[-1] != probabilities.shape[-2]:
            raise ValueError(
                f"{self.probe!r} gives shape {tuple(probabilities.shape)}; "
                "expected (B, heads, N, N) attention probabilities"
            )
        cls_query = probabilities[:, :, 0].transpose(1, 2)  # (B, N, heads): the CLS token's attention to each token
        self.head_maps = patch_grid(cls_query, self.model, self.layer, tuple(x.shape[-2:])).float()
        if self.head is None:
            return self.head_maps.mean(dim=1)
        if self.head >= self.head_maps.shape[1]:
            raise ValueError(f"head {self.head} does not exist: {self.layer!r} has {self.head_maps.shape[1]} heads")
        return self.head_maps[:, self.head]

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, head={self.head})"


__all__ = ["CLSAttention", "last_attention", "probabilities_probe"]
