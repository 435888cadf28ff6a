"""Deep Feature Factorization (Collins et al. 2018): non-negative matrix factorisation of a layer's
activations into concepts, each with a map of where it occurs."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..hooks import LayerSpec
from .base import ActivationExplainer, check_choice, minmax_normalize, upsample_maps
from .default_layers import AUTO
from .registry import register

DFFVariant = Literal["paper", "pytorch-grad-cam"]
DFF_VARIANTS = ("paper", "pytorch-grad-cam")
EPSILON = 1e-7  # Collins et al.'s replacement for an exactly zero denominator of a multiplicative update
ERROR_EVERY = 10  # Collins et al. test the stopping rule at iterations 0, 10, 20, ...


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


def collins_start(data: Tensor, n_components: int, seed: int) -> tuple[Tensor, Tensor]:
    """Collins et al.'s start for (B, P, C) matrices ``V``: ``|N(0, 1)| sqrt(mean(V) / k)``.

    ``W`` (P, k) then ``H`` (k, C) are drawn from ``torch.Generator().manual_seed(seed)`` on the
    CPU, the draws of their ``NMF(V, k, random_seed=seed, cuda=False)``; every matrix of the batch
    gets the same draws, scaled by its own mean.

    Returns:
        ``(W, H)``, shaped (B, P, k) and (B, k, C), in ``data``'s dtype and device.
    """
    generator = torch.Generator().manual_seed(seed)
    _, positions, channels = data.shape
    w = torch.randn(positions, n_components, generator=generator).to(data)
    h = torch.randn(n_components, channels, generator=generator).to(data)
    scale = (data.mean(dim=(1, 2)) / n_components).sqrt()[:, None, None]
    return (scale * w).abs(), (scale * h).abs()


def multiplicative_nmf(
    data: Tensor, w: Tensor, h: Tensor, max_iter: int = 200, tol: float = 1e-4
) -> tuple[Tensor, Tensor, Tensor]:
    """Factorise (B, P, C) non-negative matrices as ``V ~ W H`` by Lee and Seung's multiplicative updates.

    Collins et al.'s ``nmf.NMF`` (edocollins/DFF, ``nmf.py``) batched: each iteration updates
    ``W <- W * (V H^T) / (W H H^T)``, then ``H <- H * (W^T V) / (W^T W H)``, a denominator entry
    that is exactly 0 replaced by ``EPSILON``. Deviation: an entry that has reached exactly 0 stays
    0; their code multiplies it by the ratio, which is infinite where the denominator is a
    subnormal float32 number, and the factors become NaN (10 of 96 held-out images of
    ``shapes-supervised`` at layer4, on the CPU). At iterations 0, 10, 20, ... a matrix stops when its
    Frobenius error fell by less than ``tol`` times its error at the start since the last test;
    stopped matrices keep their factors while the others go on.

    Args:
        data: (B, P, C) non-negative matrices ``V``.
        w: (B, P, k) the start of ``W``.
        h: (B, k, C) the start of ``H``.
        max_iter: the most iterations.
        tol: the stopping tolerance (0: always ``max_iter``).

    Returns:
        ``(W, H, n_iter)``: the factors and each matrix's number of iterations (B,).
    """
    def error(w: Tensor, h: Tensor) -> Tensor:
        return torch.linalg.matrix_norm(data - w @ h)

    def update(factor: Tensor, numerator: Tensor, denominator: Tensor) -> Tensor:
        ratio = numerator / denominator.masked_fill(denominator == 0, EPSILON)
        return torch.where(factor == 0, 0.0, factor * ratio)  # a zero entry stays 0, also where ratio is inf

    at_start = error(w, h)
    previous = at_start
    active = torch.ones(len(data), dtype=torch.bool, device=data.device)
    n_iter = torch.zeros(len(data), dtype=torch.long, device=data.device)
    for iteration in range(max_iter):
        new_w = update(w, data @ h.transpose(1, 2), w @ (h @ h.transpose(1, 2)))
        new_h = update(h, new_w.transpose(1, 2) @ data, new_w.transpose(1, 2) @ new_w @ h)
        w = torch.where(active[:, None, None], new_w, w)
        h = torch.where(active[:, None, None], new_h, h)
        n_iter += active
        if tol > 0 and iteration % ERROR_EVERY == 0:
            current = error(w, h)
            active &= ~((previous - current) / at_start < tol)
            previous = torch.where(active, current, previous)
            if not active.any():
                break
    return w, h, n_iter


@register
class DFF(ActivationExplainer):
    """Deep Feature Factorization (Collins et al. 2018): ``A ~ W H`` with ``W, H >= 0``; ``H``'s rows are concept maps.

    Each image's (C, h*w) activations are factorised into ``n_components`` concepts: ``W`` (C x k)
    holds the concepts' channel profiles, ``H`` (k x h*w) where each occurs. After every call
    ``concept_maps`` (B, k, h, w) holds ``H``, ``concepts`` (B, C, k) the channel profiles (plus the
    offset below: pytorch-grad-cam's "concept embeddings"), ``selected`` (B,) the concept the map
    shows, ``concept_mass`` (B, k) the activation mass each concept carries and ``n_iter`` (B,) the
    iterations the factorisation took; ``concept_images(size)`` gives the concept maps min-max
    normalised and upsampled.

    The map (for the metrics): the concept carrying the most activation mass,
    ``argmax_t sum_c W[c, t] * sum_p H[t, p]`` (in activation units, whatever the split of scale
    between W and H), i.e. the concept that contributes most to the channel sum of the factorised
    activations; ties go to the lower index.

    ``variant="paper"`` (default): Collins et al.'s own code (edocollins/DFF, ``nmf.py``): the
    raw activations, which must be non-negative (a layer after a ReLU), no offset, multiplicative
    updates (``multiplicative_nmf``) from ``collins_start`` (their draws for ``random_seed=seed``
    on the CPU), ``max_iter=200``, ``tol=1e-4`` tested every 10 iterations; their demo runs
    ``max_iter=50`` on a batch factorised jointly.

    ``variant="pytorch-grad-cam"``: pytorch-grad-cam 1.5.7's ``dff``: each channel shifted by its
    minimum over the positions (the offset), scikit-learn's ``NMF(init="random", solver="cd")``,
    ``max_iter=200``, ``tol=1e-4`` (``nmf``, batched). Equal to it when started from the same
    factors (tests/explainers/test_dff.py, ResNet50 layer4: concept maps and concepts within 1e-4
    of their largest value; the resized maps within 1e-4). Deviations: (1) the start: scikit-learn
    draws it from NumPy's ``RandomState(seed)``, here a torch generator draws from the same
    distribution (``random_factors``), so the factorisation can end at another local optimum;
    (2) the violation is summed in another order, so where its ratio lands within float32
    rounding of ``tol`` the stop can come one iteration apart; (3) reaching ``max_iter`` is silent
    here (scikit-learn warns).

    ``joint=False`` (default) factorises every image on its own, so an image's map does not depend
    on its batch; ``joint=True`` factorises the batch's activations together, as pytorch-grad-cam's
    ``DeepFeatureFactorization`` and Collins et al. (concepts shared across the images). Both
    solvers start at random: docs/label-free-peers.md measures how much the map moves with the seed.

    Args:
        model: the network to explain.
        layer: the layer whose activations are read (``"auto"``: the model's default layer).
        n_components: the number of concepts k.
        joint: factorise the batch's activations together.
        seed: the seed of the factorisation's start.
        max_iter: the factorisation's largest number of iterations.
        tol: the factorisation's tolerance.
        variant: ``"paper"`` or ``"pytorch-grad-cam"``, as above.
        **options: ``Explainer``'s other arguments (``upsample``, ``threshold``, ``precision``, ``compile``).

    Raises:
        ValueError: ``n_components`` is not a positive integer, ``variant`` is unknown, or (when
            called) ``variant="paper"`` meets negative activations.
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
        variant: DFFVariant = "paper",
        **options: Any,
    ) -> None:
        super().__init__(model, layer, **options)
        if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
            raise ValueError(f"n_components must be a positive integer, got {n_components!r}")
        check_choice("variant", variant, DFF_VARIANTS)
        self.n_components, self.joint, self.seed, self.max_iter, self.tol = n_components, joint, seed, max_iter, tol
        self.variant = variant
        self.concept_maps: Tensor | None = None
        self.concepts: Tensor | None = None
        self.selected: Tensor | None = None
        self.concept_mass: Tensor | None = None
        self.n_iter: Tensor | None = None

    def initial_factors(self, data: Tensor) -> tuple[Tensor, Tensor]:
        """The factorisation's start ``(W, H)`` for (B, C, N) shifted activations (``random_factors``)."""
        return random_factors(data, self.n_components, self.seed)

    def factorise(self, samples: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Factorise (B', C, N) activations by this variant.

        Returns:
            ``(W, H, offset, n_iter)``: (B', C, k) profiles, (B', k, N) maps, the (B', C, 1) offset
            added back to the profiles (zero for the paper) and (B',) iterations.

        Raises:
            ValueError: the paper's variant meets negative activations.
        """
        if self.variant == "pytorch-grad-cam":
            offset = samples.amin(dim=2, keepdim=True)
            data = samples - offset
            w, h, n_iter = nmf(data, *self.initial_factors(data), max_iter=self.max_iter, tol=self.tol)
            return w, h, offset, n_iter
        lowest = float(samples.min())
        if lowest < 0:
            raise ValueError(
                f"DFF variant='paper' factorises the raw activations, which must be non-negative (a layer after a "
                f"ReLU); layer {self.layer!r} gives values down to {lowest:.3g}. Choose such a layer, or "
                "variant='pytorch-grad-cam', which subtracts each channel's minimum"
            )
        data = samples.transpose(1, 2)  # Collins et al.'s orientation: positions x channels
        maps, profiles, n_iter = multiplicative_nmf(
            data, *collins_start(data, self.n_components, self.seed), max_iter=self.max_iter, tol=self.tol
        )
        return profiles.transpose(1, 2), maps.transpose(1, 2), torch.zeros_like(samples[:, :, :1]), n_iter

    def from_activations(self, acts: Tensor) -> Tensor:
        acts = acts.float()
        batch, channels, height, width = acts.shape
        samples = acts.flatten(2)
        if self.joint:
            samples = samples.transpose(0, 1).reshape(1, channels, -1)
        w, h, offset, n_iter = self.factorise(samples)
        k = self.n_components
        self.concept_maps = h.reshape(-1, k, batch if self.joint else 1, height, width).transpose(1, 2).flatten(0, 1)
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
