"""LaFAM of the activations' magnitudes, for layers whose activations are signed (a ViT's residual stream)."""

from __future__ import annotations

from torch import Tensor

from .lafam import LaFAM
from .registry import register


@register
class LaFAMMagnitude(LaFAM):
    """LaFAM of the activations' magnitudes: ``M = Up(N(mean_k |A^k|))``, for layers whose activations are signed.

    On a layer after a ReLU (LaFAM's setting: a ResNet's ``layer4``) every activation is
    non-negative, so this is LaFAM exactly. A ViT's residual stream (``blocks.N``) is signed, and
    the sign of a token's channel mean carries no meaning of its own: where the object's tokens
    average below the background's, LaFAM's map is inverted (docs/vision-transformers.md, the
    shapes ViT). The mean of magnitudes keeps LaFAM's one-forward, label-free computation. It is
    not invariant to the direction LayerNorm removes (adding ``c_t * 1`` to a token moves it), so
    on a ViT its map is not a property of the model alone; ``lafam-centred-norm`` is. With
    ``layer="auto"`` it reads the last block's output.

    The arguments are ``Explainer``'s.
    """

    name = "lafam-magnitude"
    title = "LaFAM magnitude"
    reads_residual_stream = True

    def from_activations(self, acts: Tensor) -> Tensor:
        return acts.float().abs().mean(dim=1)
