"""EigenCAM (Muhammad & Yeasin): the activations' first principal component, a label-free peer."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import ActivationExplainer
from .registry import register


@register
class EigenCAM(ActivationExplainer):
    """``M = Up(N(ReLU(±(A - mean A) v_1)))``, ``v_1`` the first right singular vector per image.

    Each image's activations are read as ``h*w`` samples of ``C`` channels, centred over the
    positions (as pytorch-grad-cam does) and projected on their first principal component. An
    SVD fixes ``v_1`` only up to its sign, so peers (pytorch-grad-cam) can return inverted maps;
    here the sign is chosen so that the projection correlates positively with the channel mean
    (the LaFAM map), keeping the object bright. The ReLU keeps the positive side, as in
    pytorch-grad-cam; a constant feature map gives a zero map. No labels, no gradients, no graph.
    """

    name = "eigencam"
    title = "EigenCAM"

    def from_activations(self, acts: Tensor) -> Tensor:
        acts = acts.float()
        samples = acts.flatten(2).transpose(1, 2)  # (B, h*w, C)
        centred = samples - samples.mean(dim=1, keepdim=True)
        u, s, _ = torch.linalg.svd(centred, full_matrices=False)
        projection = u[:, :, 0] * s[:, :1]  # = centred @ v_1
        # a constant feature map (rank 0 up to rounding) has no principal component: zero map
        noise = torch.finfo(s.dtype).eps * max(centred.shape[1:]) * samples.abs().amax(dim=(1, 2))
        projection = torch.where(s[:, :1] > noise[:, None], projection, 0.0)
        return follow_channel_mean(projection, samples).relu().view(acts.shape[0], *acts.shape[2:])


def follow_channel_mean(projection: Tensor, samples: Tensor) -> Tensor:
    """Fix the sign of a per-image principal component so that it correlates positively with the
    channel mean (the LaFAM map); an uncorrelated one (covariance exactly 0) keeps its sign.

    Args:
        projection: (B, N) scores of the N positions on a component whose sign is arbitrary.
        samples: (B, N, C) the activations the component was computed from.

    Returns:
        ``projection`` or ``-projection``, per image.
    """
    channel_mean = samples.mean(dim=2)
    agreement = (projection * (channel_mean - channel_mean.mean(dim=1, keepdim=True))).sum(dim=1)
    return torch.where(agreement < 0, -1.0, 1.0)[:, None] * projection
