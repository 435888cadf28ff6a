"""EigenCAM (Muhammad & Yeasin): the activations' first principal component, a label-free peer."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..hooks import LayerSpec
from .base import ActivationExplainer, check_choice
from .default_layers import AUTO
from .registry import register

CHUNK_ELEMENTS = 1 << 19  # activations centred at a time: 2 MB in float32, read again while in cache
SHIFT = 1e-6  # inverse iteration's shift above the estimated largest eigenvalue, relative to it
STEPS = 4  # inverse iteration's solves
SQUARINGS = 20  # the estimate's matrix squarings: separates eigenvalues 3e-7 apart (relative)
Sign = Literal["channel-mean", "max-abs", "pytorch-grad-cam"]
EIGENCAM_SIGNS = ("channel-mean", "max-abs", "pytorch-grad-cam")


@register
class EigenCAM(ActivationExplainer):
    """``M = Up(N(ReLU(±(A - mean A) v_1)))``, ``v_1`` the first right singular vector per image.

    Each image's activations are read as ``h*w`` samples of ``C`` channels, centred over the
    positions (as pytorch-grad-cam does) and projected on their first principal component. The
    ReLU keeps the positive side, as in pytorch-grad-cam. An SVD fixes ``v_1`` only up to its sign,
    and the ReLU keeps one side, so the orientation decides the map. ``sign`` chooses it:

    - ``"channel-mean"`` (default): the projection correlates positively with the channel mean at
      each position, i.e. with LaFAM's map (an uncorrelated one, covariance exactly 0, keeps the
      eigensolver's sign). The orientation is therefore taken from LaFAM: EigenCAM is not
      independent of LaFAM in its sign.
    - ``"max-abs"``: the position with the largest absolute score is positive (the first such
      position on ties), scikit-learn's ``svd_flip`` rule and pytorch-grad-cam's sign correction
      for Seg-Eigen-CAM (``get_2d_projection_with_sign_correction``, up to ties).
    - ``"pytorch-grad-cam"``: the sign of ``VT[0]`` that NumPy's ``np.linalg.svd`` returns for the
      centred (h*w, C) samples in float32 (``full_matrices=True``), as pytorch-grad-cam 1.5.7's
      ``EigenCAM`` (``get_2d_projection``) takes it: no rule, whatever the LAPACK build returns.
      Runs that SVD on the CPU, image by image (the cost of pytorch-grad-cam's EigenCAM).

    A constant feature map gives a zero map: the first singular value is at most
    ``a = eps * max(h*w, C)`` times the largest absolute channel mean, the rounding noise of the
    centring. No labels, no gradients, no graph.

    The component comes from the small Gram matrix of the centred samples (``h*w`` x ``h*w``
    for a layer4 map; ``C`` x ``C`` where that is smaller): its top eigenpair gives the
    projection ``(A - mean A) v_1 = sqrt(lambda_1) u_1`` without the batched SVD of the whole
    (h*w, C) matrices, with the same maps (1e-4) at a tenth of the time on a CPU. The small
    eigenproblems are solved where the activations are (``top_eigenpair``: on a GPU with batched
    matrix products and one LU factorisation), also in bf16 runs (the Gram matrices are float32).

    Args:
        model: the network to explain.
        layer: the layer whose activations are read (``"auto"``: the model's default layer).
        sign: ``"channel-mean"``, ``"max-abs"`` or ``"pytorch-grad-cam"``, as above.
        **options: ``Explainer``'s other arguments (``upsample``, ``threshold``, ``precision``, ``compile``).

    Raises:
        ValueError: ``sign`` is not one of ``EIGENCAM_SIGNS``.
    """

    name = "eigencam"
    title = "EigenCAM"

    def __init__(
        self, model: nn.Module, layer: LayerSpec | None = AUTO, sign: Sign = "channel-mean", **options: Any
    ) -> None:
        super().__init__(model, layer, **options)
        check_choice("sign", sign, EIGENCAM_SIGNS)
        self.sign = sign

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
        if self.sign == "pytorch-grad-cam":
            projection = agree_with(projection, numpy_svd_projection(samples).to(projection.device))
        else:
            projection = orient(projection, self.sign, channel_mean)
        return projection.relu().view(acts.shape[0], *acts.shape[2:])


def agree_with(projection: Tensor, reference: Tensor) -> Tensor:
    """``projection`` or ``-projection`` per image, whichever has a non-negative dot product with ``reference``.

    Args:
        projection: (B, N) scores of N positions on a component whose sign is arbitrary.
        reference: (B, N) the direction to agree with.
    """
    return torch.where((projection * reference).sum(dim=1) < 0, -1.0, 1.0)[:, None] * projection


def orient(projection: Tensor, sign: str, channel_mean: Tensor) -> Tensor:
    """Fix the sign of per-image component scores by a rule that needs no other decomposition.

    Args:
        projection: (B, N) scores of N positions on a component whose sign is arbitrary.
        sign: ``"channel-mean"`` (the scores correlate positively with the channel mean, LaFAM's
            map; covariance exactly 0 keeps the sign) or ``"max-abs"`` (the first position of the
            largest absolute score is positive; an all-zero row stays).
        channel_mean: (B, N) the mean over the channels at each position.

    Returns:
        ``projection`` or ``-projection``, per image.
    """
    if sign == "channel-mean":
        return agree_with(projection, channel_mean - channel_mean.mean(dim=1, keepdim=True))
    largest = projection.gather(1, projection.abs().argmax(dim=1, keepdim=True))
    return torch.where(largest < 0, -1.0, 1.0) * projection


def numpy_svd_projection(samples: Tensor) -> Tensor:
    """(B, N) pytorch-grad-cam's EigenCAM projection of (B, C, N) samples, from NumPy's SVD in float32.

    Each image's (N, C) samples, centred over the positions, projected on ``VT[0]`` of
    ``np.linalg.svd(..., full_matrices=True)``: the orientation LAPACK returns.
    """
    projections = []
    for image in samples.detach().cpu().numpy():
        centred = image.T - image.T.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=True)
        projections.append(centred @ vt[0])
    return torch.from_numpy(np.stack(projections)).float()


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
