"""KPCA-CAM (Karmani et al. 2024): EigenCAM with kernel PCA, a label-free peer."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..hooks import LayerSpec
from .base import ActivationExplainer, check_choice
from .default_layers import AUTO
from .eigencam import orient
from .registry import register

KERNELS = ("sigmoid", "rbf", "poly", "linear", "cosine")
KPCA_SIGNS = ("channel-mean", "pytorch-grad-cam")


def kernel_matrix(samples: Tensor, kernel: str, gamma: float, coef0: float, degree: int) -> Tensor:
    """The (B, N, N) Gram matrices of (B, N, C) samples under one of scikit-learn's kernels.

    Args:
        samples: (B, N, C) N samples of C features per image.
        kernel: "sigmoid" (``tanh(gamma x.y + coef0)``), "rbf" (``exp(-gamma |x - y|^2)``), "poly"
            (``(gamma x.y + coef0)^degree``), "linear" (``x.y``) or "cosine" (``x.y / |x| |y|``).
        gamma, coef0, degree: the kernel's parameters, as scikit-learn names them.

    Returns:
        The Gram matrices, in the samples' dtype.
    """
    if kernel == "rbf":
        return torch.exp(-gamma * squared_distances(samples))
    if kernel == "cosine":
        samples = F.normalize(samples, dim=2)
    dot = samples @ samples.transpose(1, 2)
    if kernel == "sigmoid":
        return torch.tanh(gamma * dot + coef0)
    if kernel == "poly":
        return (gamma * dot + coef0) ** degree
    return dot


def squared_distances(samples: Tensor) -> Tensor:
    """(B, N, N) squared Euclidean distances of (B, N, C) samples, as scikit-learn computes them.

    ``|x|^2 + |y|^2 - 2 x.y``, clipped at 0, with an exact zero diagonal.
    """
    norms = samples.square().sum(dim=2)
    distances = (norms[:, :, None] + norms[:, None, :] - 2 * samples @ samples.transpose(1, 2)).clamp_min(0)
    return distances * (1 - torch.eye(samples.shape[1], dtype=samples.dtype, device=samples.device))


def center_kernel(gram: Tensor) -> Tensor:
    """Double-centre (B, N, N) Gram matrices (scikit-learn's ``KernelCenterer``)."""
    columns = gram.mean(dim=1, keepdim=True)
    rows = gram.mean(dim=2, keepdim=True)
    return gram - columns - rows + columns.mean(dim=2, keepdim=True)


@register
class KPCACAM(ActivationExplainer):
    """``M = Up(N(ReLU(±sqrt(lambda_1) v_1)))``, ``v_1`` the first eigenvector of the centred kernel matrix.

    Each image's activations are read as ``h*w`` samples of ``C`` channels, centred over the
    positions (as pytorch-grad-cam does), and compared pairwise by ``kernel`` (default
    ``"sigmoid"``, ``tanh(gamma x.y + coef0)`` with ``gamma = 1/C``, ``coef0 = 1``, scikit-learn's
    defaults). The map is the positions' scores on the first kernel principal component,
    ``sqrt(lambda_1) v_1`` (scikit-learn's ``KernelPCA(n_components=1).fit_transform``), all images
    at once with one batched ``eigh``.

    Sign: an eigenvector is fixed only up to its sign, and the ReLU keeps one side. ``sign``:

    - ``"channel-mean"`` (default): EigenCAM's rule (``eigencam.orient``): the scores correlate
      positively with the channel mean at each position, i.e. with LaFAM's map, so the
      orientation is taken from LaFAM (KPCA-CAM is not independent of LaFAM in its sign).
    - ``"pytorch-grad-cam"``: scikit-learn's ``svd_flip`` as pytorch-grad-cam 1.5.7's
      ``KPCA_CAM`` gets it from ``KernelPCA``: the position with the largest absolute score is
      positive (the first such position on ties).

    With ``sign="pytorch-grad-cam"`` equal to pytorch-grad-cam 1.5.7's ``KPCA_CAM``
    (tests/explainers/test_kpca_cam.py on ResNet50 layer4: within 1e-4 for every kernel; float32
    ``eigh`` on both sides).
    Deviations: a feature map whose largest centred-kernel eigenvalue is within float noise of 0
    (``lambda_1 <= eps * N * max|K|``, e.g. constant activations) gives a zero map, where
    scikit-learn returns the noise's eigenvector; when ``lambda_1`` is (nearly) repeated the
    eigenvector is not unique and the two libraries may return different ones (e.g. ``"rbf"`` at
    the default ``gamma = 1/C`` on a random-init ResNet50's layer4, whose squared distances are
    ~1e6: ``K`` is the identity); above 200 positions scikit-learn switches to ARPACK (a random
    start, converged to its tolerance), not compared here.

    Args:
        model: the network to explain.
        layer: the layer whose activations are read (``"auto"``: the model's default layer).
        kernel: one of ``KERNELS`` (see ``kernel_matrix``).
        gamma: the kernel's gamma (None: ``1/C``).
        coef0: the kernel's ``coef0``, as scikit-learn names it.
        degree: the polynomial kernel's degree, as scikit-learn names it.
        sign: ``"channel-mean"`` or ``"pytorch-grad-cam"``, as above.
        **options: ``Explainer``'s other arguments (``upsample``, ``threshold``, ``precision``, ``compile``).

    Raises:
        ValueError: ``kernel`` is not one of ``KERNELS``, or ``sign`` not one of ``KPCA_SIGNS``.
    """

    name = "kpca-cam"
    title = "KPCA-CAM"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | None = AUTO,
        kernel: str = "sigmoid",
        gamma: float | None = None,
        coef0: float = 1.0,
        degree: int = 3,
        sign: str = "channel-mean",
        **options: Any,
    ) -> None:
        super().__init__(model, layer, **options)
        check_choice("kernel", kernel, KERNELS)
        check_choice("sign", sign, KPCA_SIGNS)
        self.kernel, self.gamma, self.coef0, self.degree, self.sign = kernel, gamma, coef0, degree, sign

    def from_activations(self, acts: Tensor) -> Tensor:
        acts = acts.float()
        samples = acts.flatten(2).transpose(1, 2)  # (B, h*w, C)
        centred = samples - samples.mean(dim=1, keepdim=True)
        gamma = 1.0 / samples.shape[2] if self.gamma is None else self.gamma
        gram = kernel_matrix(centred, self.kernel, gamma, self.coef0, self.degree)
        values, vectors = torch.linalg.eigh(center_kernel(gram))
        top = values[:, -1]
        noise = torch.finfo(gram.dtype).eps * gram.shape[1] * gram.abs().amax(dim=(1, 2))
        scores = vectors[:, :, -1] * torch.where(top > noise, top, 0.0).sqrt()[:, None]
        rule = "max-abs" if self.sign == "pytorch-grad-cam" else self.sign
        return orient(scores, rule, samples.mean(dim=2)).relu().view(acts.shape[0], *acts.shape[2:])
