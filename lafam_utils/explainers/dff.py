"""Deep Feature Factorization (Collins et al. 2018): non-negative matrix factorisation of a layer's
activations into concepts, each with a map of where it occurs."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..hooks import LayerSpec
from .base import ActivationExplainer, minmax_normalize, upsample_maps
from .default_layers import AUTO
from .registry import register


def random_factors(data: Tensor, n_components: int, seed: int) -> tuple[Tensor, Tensor]:
    """scikit-learn's ``init="random"`` start for (B, n, m) matrices, drawn from a torch generator.

    ``H`` (k, m) then ``W`` (n, k) are ``|N(0, 1)|`` draws from ``torch.Generator().manual_seed(seed)``
    (on the CPU, so every device starts alike), scaled per matrix by ``sqrt(mean(X) / k)``; every
    matrix of the batch gets the same draws.

    Args:
        data: (B, n, m) non-negative matrices ``X``.
        n_components: the rank k.
        seed: the generator's seed.

    Returns:
        ``(W, H)``, shaped (B, n, k) and (B, k, m), in ``data``'s dtype and device.
    """
    generator = torch.Generator().manual_seed(seed)
    _, n, m = data.shape
    h = torch.randn(n_components, m, generator=generator).abs().to(data)
    w = torch.randn(n, n_components, generator=generator).abs().to(data)
    scale = (data.mean(dim=(1, 2)) / n_components).sqrt()[:, None, None]
    return scale * w, scale * h


def coordinate_sweep(factor: Tensor, other: Tensor, data: Tensor) -> tuple[Tensor, Tensor]:
    """One pass of coordinate descent over the k components of ``factor``, all matrices at once.

    Minimises ``|data - other^T factor|^2``: component t of every entry moves to
    ``max(f_t - grad_t / hess_t, 0)`` in turn (scikit-learn's ``_update_cdnmf_fast`` with
    ``shuffle=False``; its entries are independent, so a component is updated for all together).

    Args:
        factor: (B, k, a) the factor being updated, one row per component.
        other: (B, k, b) the other factor, one row per component.
        data: (B, b, a) the matrices, oriented so that ``data ~ other^T factor``.

    Returns:
        The updated factor and each matrix's violation, the summed absolute projected gradient (B,).
    """
    gram = other @ other.transpose(1, 2)
    target = other @ data
    factor = factor.clone()
    violation = torch.zeros(len(factor), dtype=factor.dtype, device=factor.device)
    tiny = torch.finfo(factor.dtype).tiny
    for t in range(factor.shape[1]):
        row = factor[:, t]
        grad = torch.baddbmm(target[:, t, None], gram[:, t, None], factor, beta=-1)[:, 0]
        violation += torch.where(row == 0, grad.clamp_max(0), grad).abs().sum(dim=1)
        # hess = |other_t|^2 is 0 only for an all-zero other_t, whose grad is exactly 0: the row stays
        factor[:, t] = (row - grad / gram[:, t, t, None].clamp_min(tiny)).clamp_min(0)
    return factor, violation


def nmf(data: Tensor, w: Tensor, h: Tensor, max_iter: int = 200, tol: float = 1e-4) -> tuple[Tensor, Tensor, Tensor]:
    """Factorise (B, n, m) non-negative matrices as ``X ~ W H`` by alternating coordinate descent.

    scikit-learn's ``NMF(solver="cd", beta_loss="frobenius")`` batched: each iteration updates W,
    then H; a matrix stops after the first iteration whose violation is at most ``tol`` times its
    first iteration's (or when that is 0), and keeps its factors while the others go on.

    Args:
        data: (B, n, m) matrices ``X``.
        w: (B, n, k) the start of ``W``.
        h: (B, k, m) the start of ``H``.
        max_iter: the most iterations.
        tol: the stopping tolerance on the violation.

    Returns:
        ``(W, H, n_iter)``: the factors and each matrix's number of iterations (B,).
    """
    data_t = data.transpose(1, 2).contiguous()
    wt, h = w.transpose(1, 2).contiguous(), h.contiguous()
    active = torch.ones(len(data), dtype=torch.bool, device=data.device)
    n_iter = torch.zeros(len(data), dtype=torch.long, device=data.device)
    first = torch.zeros(len(data), dtype=data.dtype, device=data.device)
    for iteration in range(1, max_iter + 1):
        new_wt, violation_w = coordinate_sweep(wt, h, data_t)
        new_h, violation_h = coordinate_sweep(h, new_wt, data)
        violation = violation_w + violation_h
        wt = torch.where(active[:, None, None], new_wt, wt)
        h = torch.where(active[:, None, None], new_h, h)
        n_iter += active
        if iteration == 1:
            first = violation
        active &= (first != 0) & (violation > tol * first)
        if not active.any():
            break
    return wt.transpose(1, 2), h, n_iter


@register
class DFF(ActivationExplainer):
    """Deep Feature Factorization: ``A - offset ~ W H`` with ``W, H >= 0``; ``H``'s rows are concept maps.

    Each image's (C, h*w) activations, shifted by each channel's minimum, are factorised into
    ``n_components`` concepts: ``W`` (C x k) holds the concepts' channel profiles, ``H`` (k x h*w)
    where each occurs. After every call ``concept_maps`` (B, k, h, w) holds ``H``, ``concepts``
    (B, C, k) ``W + offset`` (pytorch-grad-cam's "concept embeddings"), ``selected`` (B,) the
    concept the map shows, ``concept_mass`` (B, k) the activation mass each concept carries and ``n_iter`` (B,) the iterations the factorisation took;
    ``concept_images(size)`` gives the concept maps min-max normalised and upsampled.

    The map (for the metrics): the concept carrying the most activation mass,
    ``argmax_t sum_c W[c, t] * sum_p H[t, p]`` (in activation units, whatever the split of scale
    between W and H), i.e. the concept that contributes most to the channel sum of the factorised
    activations; ties go to the lower index.

    ``joint=False`` (default) factorises every image on its own, so an image's map does not depend
    on its batch; ``joint=True`` factorises the batch's activations together, as pytorch-grad-cam's
    ``DeepFeatureFactorization`` and Collins et al. (concepts shared across the images).

    Equal to pytorch-grad-cam 1.5.7's ``dff`` (scikit-learn ``NMF(init="random", random_state=0)``,
    solver "cd", ``max_iter=200``, ``tol=1e-4``) when started from the same factors
    (tests/test_dff.py, ResNet50 layer4: concept maps and concepts within 1e-4 of their largest
    value, measured 2.5e-6 after the 200 iterations both sides run; the resized maps within 1e-4).
    Deviations: (1) the start. scikit-learn draws it from NumPy's ``RandomState(seed)``; here a torch
    generator draws from the same distribution (``random_factors``), so the factorisation starts
    elsewhere and reaches the same factors where the NMF is unique and possibly another local
    optimum where it is not (docs/label-free-peers.md measures how often on the shapes models);
    (2) the violation is summed in another order, so where its ratio lands within float32 rounding
    of ``tol`` the stop can come one iteration apart (planted rank-3 matrices at ``tol=1e-4``: 3 of
    4 stop at the same iteration, one at 115 against 116); (3) reaching ``max_iter`` is silent
    here (scikit-learn warns).

    Args:
        model: the network to explain.
        layer: the layer whose activations are read (``"auto"``: the model's default layer).
        n_components: the number of concepts k.
        joint: factorise the batch's activations together.
        seed: the seed of the factorisation's start (``random_factors``).
        max_iter: the factorisation's largest number of iterations (``nmf``).
        tol: the factorisation's tolerance (``nmf``).
        **options: ``Explainer``'s other arguments (``upsample``, ``threshold``, ``precision``, ``compile``).

    Raises:
        ValueError: ``n_components`` is not a positive integer.
    """

    name = "dff"
    title = "DFF"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | None = AUTO,
        n_components: int = 5,
        joint: bool = False,
        seed: int = 0,
        max_iter: int = 200,
        tol: float = 1e-4,
        **options: Any,
    ) -> None:
        super().__init__(model, layer, **options)
        if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
            raise ValueError(f"n_components must be a positive integer, got {n_components!r}")
        self.n_components, self.joint, self.seed, self.max_iter, self.tol = n_components, joint, seed, max_iter, tol
        self.concept_maps: Tensor | None = None
        self.concepts: Tensor | None = None
        self.selected: Tensor | None = None
        self.concept_mass: Tensor | None = None
        self.n_iter: Tensor | None = None

    def initial_factors(self, data: Tensor) -> tuple[Tensor, Tensor]:
        """The factorisation's start ``(W, H)`` for (B, C, N) shifted activations (``random_factors``)."""
        return random_factors(data, self.n_components, self.seed)

    def from_activations(self, acts: Tensor) -> Tensor:
        acts = acts.float()
        batch, channels, height, width = acts.shape
        samples = acts.flatten(2)
        if self.joint:
            samples = samples.transpose(0, 1).reshape(1, channels, -1)
        offset = samples.amin(dim=2, keepdim=True)
        data = samples - offset
        w, h, n_iter = nmf(data, *self.initial_factors(data), max_iter=self.max_iter, tol=self.tol)
        k = self.n_components
        self.concept_maps = h.view(-1, k, batch if self.joint else 1, height, width).transpose(1, 2).flatten(0, 1)
        self.concepts = (w + offset).expand(batch, -1, -1)
        self.n_iter = n_iter.expand(batch)
        self.concept_mass = w.sum(dim=1) * self.concept_maps.sum(dim=(2, 3))
        self.selected = self.concept_mass.argmax(dim=1)
        return self.concept_maps[torch.arange(batch, device=acts.device), self.selected]

    def explain_concepts(self, x: Tensor) -> Tensor:
        """Every concept's map of ``x``, strongest concept first.

        Concepts are ordered per image by the activation mass they carry (the rule that picks
        ``selected``), so column 0 is the explainer's own map.

        Args:
            x: (B, 3, H, W) float32 images.

        Returns:
            (B, k, H, W) maps, as ``concept_images``.
        """
        self(x)
        images = self.concept_images(tuple(x.shape[-2:]))
        order = self.concept_mass.argsort(dim=1, descending=True, stable=True)
        return images.gather(1, order[:, :, None, None].expand_as(images))

    def concept_images(self, size: tuple[int, int]) -> Tensor:
        """The last call's concept maps, each min-max normalised and upsampled as the explainer's maps are.

        Args:
            size: the images' (H, W).

        Returns:
            (B, k, H, W) maps (kept at the layer's resolution for ``upsample=None``).

        Raises:
            RuntimeError: the explainer has not been called yet.
        """
        if self.concept_maps is None:
            raise RuntimeError("DFF has no concept maps yet: call the explainer on a batch first")
        maps = upsample_maps(minmax_normalize(self.concept_maps.flatten(0, 1)), size, self.upsample)
        return maps.view(*self.concept_maps.shape[:2], *maps.shape[-2:])
