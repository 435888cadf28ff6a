"""The centred token norm: a label-free map of a ViT's residual stream that LayerNorm's blind direction cannot move."""

from __future__ import annotations

from torch import Tensor

from .lafam import LaFAM
from .registry import register


@register
class LaFAMCentredNorm(LaFAM):
    """``M = Up(N(||A - mean_k A^k||))``: each position's L2 norm over the channels after its channel mean is removed.

    A pre-LayerNorm ViT reads its residual stream (``blocks.N``) only through LayerNorms, which
    subtract each token's channel mean; adding ``c_t * 1`` to token ``t`` changes no output. This
    map is unchanged by such an edit, where LaFAM's channel mean moves by ``c_t`` and the mean of
    magnitudes (``lafam-magnitude``) moves too (docs/vision-transformers.md). It is ``sqrt(K)``
    times the channels' standard deviation at each position, the spread LayerNorm divides by.
    With ``layer="auto"`` it reads the last block's output. Arguments: as for ``Explainer``.
    """

    name = "lafam-centred-norm"
    title = "LaFAM centred norm"
    reads_residual_stream = True

    def from_activations(self, acts: Tensor) -> Tensor:
        acts = acts.float()
        return (acts - acts.mean(dim=1, keepdim=True)).norm(dim=1)
