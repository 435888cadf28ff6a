"""EigenCAM (Muhammad & Yeasin): the activations' first principal component, a label-free peer."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import ActivationExplainer
from .registry import register

CHUNK_ELEMENTS = 1 << 19  # activations centred at a time: 2 MB in float32, read again while in cache
SHIFT = 1e-6  # inverse iteration's shift above the estimated largest eigenvalue, relative to it
STEPS = 4  # inverse iteration's solves
SQUARINGS = 20  # the estimate's matrix squarings: separates eigenvalues 3e-7 apart (relative)


@register
class EigenCAM(ActivationExplainer):
    """``M = Up(N(ReLU(±(A - mean A) v_1)))``, ``v_1`` the first right singular vector per image.

    Each image's activations are read as ``h*w`` samples of ``C`` channels, centred over the
    positions (as pytorch-grad-cam does) and projected on their first principal component. An
    SVD fixes ``v_1`` only up to its sign, so peers (pytorch-grad-cam) can return inverted maps;
    here the sign is chosen so that the projection correlates positively with the channel mean
    (the LaFAM map), keeping the object bright. The ReLU keeps the positive side, as in
    pytorch-grad-cam; a constant feature map gives a zero map: the first singular value is at most
    ``a = eps * max(h*w, C)`` times the largest absolute channel mean, the rounding noise of the
    centring. (The batched SVD version scaled this floor by the largest absolute activation
    instead, which lies between that mean and it plus the singular value: the two rules differ
    only for a singular value within a factor ``1 / (1 - a)`` of the floor, 2.4e-4 at 2048
    channels.) No labels, no gradients, no graph.

    The component comes from the small Gram matrix of the centred samples (``h*w`` x ``h*w``
    for a layer4 map; ``C`` x ``C`` where that is smaller): its top eigenpair gives the
    projection ``(A - mean A) v_1 = sqrt(lambda_1) u_1`` without the batched SVD of the whole
    (h*w, C) matrices, with the same maps (1e-4) at a tenth of the time on a CPU. The small
    eigenproblems are solved where the activations are (``top_eigenpair``: on a GPU with batched
    matrix products and one LU factorisation), also in bf16 runs (the Gram matrices are float32).

    Args:
        model, layer, upsample, threshold, precision, compile: as for ``Explainer``.
    """

    name = "eigencam"
    title = "EigenCAM"

    def from_activations(self, acts: Tensor) -> Tensor:
        samples = acts.float().flatten(2)  # (B, C, n): n = h*w positions of C channels
        channels, positions = samples.shape[1:]
        gram, scale, channel_mean = gram_statistics(samples)
        value, vector = top_eigenpair(gram)
        if positions <= channels:  # u_1 over positions: the projection is sqrt(lambda_1) u_1
            projection = vector * value.sqrt()[:, None]
        else:  # v_1 over channels
            projection = (vector[:, None] @ (samples - samples.mean(dim=2, keepdim=True)))[:, 0]
        # a constant feature map (rank 0 up to rounding) has no principal component: zero map
        noise = torch.finfo(samples.dtype).eps * max(channels, positions) * scale
        projection = torch.where(value.sqrt()[:, None] > noise[:, None], projection, 0.0)
        return follow_channel_mean(projection, channel_mean).relu().view(acts.shape[0], *acts.shape[2:])


def follow_channel_mean(projection: Tensor, channel_mean: Tensor) -> Tensor:
    """Fix the sign of a per-image principal component to correlate positively with the channel mean.

    The channel mean is the LaFAM map; an uncorrelated component (covariance exactly 0) keeps its sign.

    Args:
        projection: (B, N) scores of the N positions on a component whose sign is arbitrary.
        channel_mean: (B, N) the mean over the channels at each position.

    Returns:
        ``projection`` or ``-projection``, per image.
    """
    agreement = (projection * (channel_mean - channel_mean.mean(dim=1, keepdim=True))).sum(dim=1)
    return torch.where(agreement < 0, -1.0, 1.0)[:, None] * projection


def gram_statistics(samples: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """What EigenCAM needs from (B, C, n) samples, in one pass over them, a few images at a time.

    Args:
        samples: float32 activations, C channels at n positions per image.

    Returns:
        The Gram matrices of the samples centred over the positions, (B, n, n) when n <= C else
        (B, C, C); the largest absolute mean of a channel over the positions (B,), the scale of the
        centring's rounding; the channel mean at each position (B, n).
    """
    batch, channels, positions = samples.shape
    side = min(channels, positions)
    gram = samples.new_empty(batch, side, side)
    scale = samples.new_empty(batch)
    channel_mean = samples.new_empty(batch, positions)
    step = max(1, CHUNK_ELEMENTS // (channels * positions))
    for start in range(0, batch, step):
        chunk, part = samples[start : start + step], slice(start, start + step)
        means = chunk.mean(dim=2, keepdim=True)
        centred = chunk - means
        factors = (centred.transpose(1, 2), centred) if positions <= channels else (centred, centred.transpose(1, 2))
        torch.bmm(*factors, out=gram[part])
        torch.amax(means.abs(), dim=(1, 2), out=scale[part])
        torch.mean(chunk, dim=1, out=channel_mean[part])
    return gram, scale, channel_mean


def top_eigenpair(gram: Tensor, method: str | None = None) -> tuple[Tensor, Tensor]:
    """The largest eigenvalue and a unit eigenvector of each symmetric positive semi-definite matrix.

    On the matrices' device. The vector comes from ``STEPS`` steps of inverse iteration with one
    LU factorisation, shifted ``SHIFT`` above an estimate of the eigenvalue: each step shrinks the
    other eigenvectors' share by about ``SHIFT * l1 / (l1 - l2)``, so near-degenerate spectra
    converge too (unlike power iteration). The estimate: ``"eigvalsh"`` (the default on the CPU)
    LAPACK's eigenvalue; ``"squaring"`` (the default elsewhere, as batched small ``eigh`` calls
    loop on CUDA) batched products only: ``SQUARINGS`` trace-normalised squarings ``P <- P @ P``
    leave nearly ``v v^T`` (the other eigenvectors' share shrinks as ``(l2 / l1) ** (2 **
    SQUARINGS)``), whose strongest column starts the iteration, shifted above its Rayleigh
    quotient; the eigenvalue is then the final vector's Rayleigh quotient.

    Args:
        gram: (B, m, m) symmetric positive semi-definite matrices.
        method: ``"eigvalsh"`` or ``"squaring"`` (None: by the device, as above).

    Returns:
        (B,) eigenvalues (clamped at 0) and (B, m) unit eigenvectors (sign arbitrary).
    """
    method = method or ("eigvalsh" if gram.device.type == "cpu" else "squaring")
    tiny = torch.finfo(gram.dtype).tiny
    if method == "eigvalsh":
        value = torch.linalg.eigvalsh(gram)[:, -1]
        vector = 1 + gram.abs().sum(dim=2, keepdim=True)  # a start with a share of the top eigenvector
    else:
        vector = dominant_column(gram)
        value = rayleigh_quotient(gram, vector)
    shift = value + SHIFT * value.abs() + tiny
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    lu, pivots = torch.linalg.lu_factor(gram - shift[:, None, None] * eye)
    for _ in range(STEPS):
        vector = torch.linalg.lu_solve(lu, pivots, vector)
        vector = vector / vector.abs().amax(dim=1, keepdim=True)  # no overflow when squared below
    vector = vector / vector.norm(dim=1, keepdim=True)
    if method != "eigvalsh":
        value = rayleigh_quotient(gram, vector)
    return value.clamp_min(0), vector[..., 0]


def dominant_column(gram: Tensor) -> Tensor:
    """(B, m, 1): the strongest column of each matrix's ``2 ** SQUARINGS``-th power, scaled to a largest entry of 1;
    for a zero matrix, ones."""
    power = gram
    for _ in range(SQUARINGS):
        power = power / power.diagonal(dim1=1, dim2=2).sum(dim=1).clamp_min(torch.finfo(gram.dtype).tiny)[:, None, None]
        power = power @ power
    strongest = power.diagonal(dim1=1, dim2=2).argmax(dim=1)
    column = power.gather(2, strongest[:, None, None].expand(-1, gram.shape[1], 1))
    largest = column.abs().amax(dim=1, keepdim=True)
    return torch.where(largest > 0, column / largest.clamp_min(torch.finfo(gram.dtype).tiny), 1.0)


def rayleigh_quotient(matrix: Tensor, vector: Tensor) -> Tensor:
    """(B,) ``v^T M v / v^T v`` of (B, m, m) matrices and (B, m, 1) vectors."""
    return (vector.transpose(1, 2) @ matrix @ vector)[:, 0, 0] / (vector * vector).sum(dim=(1, 2))
