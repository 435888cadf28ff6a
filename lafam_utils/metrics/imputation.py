"""ROAD's noisy linear imputation (Rong et al. 2022), batched in torch on the images' device.

Each removed pixel takes the weighted mean of its 8 neighbours (weight 1/6 for the 4 direct ones,
1/12 for the diagonal ones; neighbours outside the image are left out), known neighbours entering
with their value: one sparse linear system per image, the same for its channels. This is the
system of Quantus 0.6.0's ``noisy_linear_imputation`` (from the ROAD authors' code), which solves
it with SciPy's sparse direct solver, one image at a time. Here all systems of a batch are solved
together by conjugate gradients preconditioned with a geometric multigrid V-cycle in float32,
refined against the float64 residual, every operation a convolution, an interpolation or an
elementwise op over the whole batch. Gaussian noise of standard deviation ``noise`` is then added
to the imputed pixels.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from .localisation import CPU_CHUNK_PIXELS

NEIGHBOUR_WEIGHTS = ((1 / 12, 1 / 6, 1 / 12), (1 / 6, 0.0, 1 / 6), (1 / 12, 1 / 6, 1 / 12))
"""The imputation's stencil: each removed pixel is this weighted mean of its neighbours."""
JACOBI_DAMPING = 0.8
COARSEST_SIZE = 4
COARSEST_SWEEPS = 10
INNER_TOL = 1e-4
"""Each float32 correction's relative residual; the float64 refinement around it reaches ``tol``."""
REFINEMENTS = 3


class _Level:
    """One grid of the multigrid hierarchy: which pixels are unknown, the stencil and its diagonal.

    The systems of a batch are the channels of one (1, S, H, W) channels_last tensor, where a
    depthwise 3x3 convolution is fast on the CPU.
    """

    def __init__(self, unknown: Tensor) -> None:
        self.unknown = unknown
        systems = unknown.shape[1]
        stencil = torch.tensor(NEIGHBOUR_WEIGHTS, dtype=unknown.dtype, device=unknown.device)
        self.stencil = stencil.expand(systems, 1, 3, 3).contiguous()
        self.diagonal = self.neighbours(torch.ones_like(unknown))  # the weights of the in-image neighbours
        self.smoothing = JACOBI_DAMPING * unknown / self.diagonal

    def neighbours(self, v: Tensor) -> Tensor:
        """The weighted sum of each pixel's in-image neighbours."""
        return F.conv2d(v, self.stencil, padding=1, groups=v.shape[1])

    def apply(self, v: Tensor) -> Tensor:
        """The system's matrix times ``v`` (zero outside the unknown pixels), in a new tensor."""
        return self.neighbours(v).mul_(self.unknown).neg_().addcmul_(self.diagonal, v)

    def smooth(self, e: Tensor, r: Tensor) -> Tensor:
        """One damped Jacobi sweep on ``A e = r``, in place of ``e``."""
        total = self.neighbours(e).add_(r)
        return e.mul_(1 - JACOBI_DAMPING).addcmul_(self.smoothing, total)


def _even(v: Tensor) -> Tensor:
    """``v`` padded with zeros to even height and width."""
    height, width = v.shape[-2:]
    return F.pad(v, (0, width % 2, 0, height % 2)) if height % 2 or width % 2 else v


def _hierarchy(unknown: Tensor) -> list[_Level]:
    """The grids down to ``COARSEST_SIZE``: a coarse pixel is unknown where its four fine pixels all are."""
    levels = [_Level(unknown)]
    while min(levels[-1].unknown.shape[-2:]) > COARSEST_SIZE:
        coarse = -F.max_pool2d(-_even(levels[-1].unknown), 2)
        levels.append(_Level(coarse.contiguous(memory_format=torch.channels_last)))
    return levels


def _v_cycle(levels: list[_Level], r: Tensor, depth: int = 0) -> Tensor:
    """A symmetric V(1, 1)-cycle for ``A e = r`` from ``e = 0``: the conjugate gradients' preconditioner.

    The coarse correction is prolongated bilinearly (onto the unknown pixels) and the residual
    restricted by the exact transpose of that, which also scales it to the coarse grid's stencil
    (the stencil approximates h^2 / 3 times the negative Laplacian, so a grid twice as coarse
    needs 4 times the right-hand side; the transpose sums 4 weights per coarse pixel).
    """
    level = levels[depth]
    e = level.smoothing * r
    if depth == len(levels) - 1:
        for _ in range(COARSEST_SWEEPS):
            level.smooth(e, r)
        return e
    fine = _even(level.apply(e).neg_().add_(r))
    coarse_unknown = levels[depth + 1].unknown
    residual = torch.ops.aten.upsample_bilinear2d_backward(
        fine, list(fine.shape[-2:]), list(coarse_unknown.shape), False, None, None
    ).contiguous(memory_format=torch.channels_last)
    coarse = _v_cycle(levels, residual.mul_(coarse_unknown), depth + 1)
    height, width = r.shape[-2:]
    up = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
    e.addcmul_(level.unknown, up[..., :height, :width])
    return level.smooth(e, r)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(dim=(0, 2, 3), keepdim=True)


def _exact_neighbours(v: Tensor) -> Tensor:
    """The stencil's neighbour sum in ``v``'s dtype (float64 here) by shifted sums: the stencil is
    ``[1, 2, 1]`` x ``[1, 2, 1]`` / 12 without its centre (4 / 12)."""
    wide = F.pad(v, (1, 1, 0, 0))
    rows = wide[..., :-2] + wide[..., 2:] + 2 * v
    tall = F.pad(rows, (0, 0, 1, 1))
    return (tall[..., :-2, :] + tall[..., 2:, :] + 2 * rows) / 12 - v / 3


def _conjugate_gradients(levels: list[_Level], b: Tensor, tol: float, max_iterations: int) -> tuple[Tensor, bool]:
    """``A v = b`` by multigrid-preconditioned conjugate gradients in ``b``'s dtype, per system to a
    recurrence residual below ``tol * |b|``; also whether every system got there."""
    top = levels[0]
    tiny = torch.finfo(b.dtype).tiny
    solution = torch.zeros_like(b)
    r = b.clone()
    z = _v_cycle(levels, r)
    p = z.clone()
    rz = _dot(r, z)
    target = tol * tol * _dot(b, b)
    residual = _dot(r, r)
    for _ in range(max_iterations):
        active = residual > target
        if not bool(active.any()):
            return solution, True
        ap = top.apply(p)
        alpha = torch.where(active, rz / _dot(p, ap).clamp_min(tiny), 0.0)
        solution.addcmul_(alpha, p)
        r.addcmul_(alpha, ap, value=-1)
        residual = _dot(r, r)
        z = _v_cycle(levels, r)
        rz_next = _dot(r, z)
        p.mul_(torch.where(active, rz_next / rz.clamp_min(tiny), 0.0)).add_(z)
        rz = rz_next
    return solution, False


def solve_linear_imputation(x: Tensor, removed: Tensor, tol: float = 1e-6, max_iterations: int = 500) -> Tensor:
    """The removed pixels of ``x`` replaced by the solution of the imputation system, without noise.

    Mixed-precision iterative refinement: the true residual is computed in float64, each
    correction solved in float32 (``INNER_TOL``), until every system's relative residual
    ``|b - A v| / |b|`` is below ``tol`` (at most ``REFINEMENTS`` corrections).

    Args:
        x: (S, H, W) float images, one system each (channels of one image share its mask).
        removed: (S, H, W) bool, the pixels to impute.
        tol: the relative residual at which a system counts as solved.
        max_iterations: conjugate-gradient iterations per correction at most; a system still above
            ``tol`` at the end gives a warning with its residual.

    Returns:
        (S, H, W) images: ``x`` where kept, the imputed values where removed.
    """
    layout = torch.channels_last
    unknown = removed[None].to(torch.float32).contiguous(memory_format=layout)
    levels = _hierarchy(unknown)
    exact_unknown = unknown.double()
    values = x[None].double().contiguous(memory_format=layout)
    b = exact_unknown * _exact_neighbours(values - exact_unknown * values)
    target = tol * tol * _dot(b, b)
    solution = torch.zeros_like(b)
    diagonal = _exact_neighbours(torch.ones_like(values))
    for _ in range(REFINEMENTS + 1):
        residual = b - (diagonal * solution - exact_unknown * _exact_neighbours(solution))
        norm = _dot(residual, residual)
        if not bool((norm > target).any()):
            break
        correction, _ = _conjugate_gradients(levels, residual.float(), max(tol, INNER_TOL), max_iterations)
        solution += correction.double()
    else:
        worst = float((norm / _dot(b, b).clamp_min(torch.finfo(b.dtype).tiny)).max().sqrt())
        warnings.warn(f"linear imputation stopped at relative residual {worst:.1e} (asked: {tol:.0e})", stacklevel=2)
    return torch.where(exact_unknown > 0, solution, values)[0].to(x.dtype).contiguous()


def noisy_linear_imputation(
    x: Tensor,
    removed: Tensor,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
    tol: float = 1e-6,
) -> Tensor:
    """ROAD's imputation: removed pixels linearly imputed from their neighbours, plus Gaussian noise.

    Args:
        x: (B, C, H, W) float images.
        removed: (B, H, W) bool, the pixels to remove in every channel; each image keeps at least one.
        noise: the standard deviation of the noise added to each imputed value (Quantus: 0.01).
        generator: the CPU generator the noise is drawn from, one image's shape at a time: the same
            draws on every device and for every image, so that an image's result does not depend
            on the batch it is in.
        tol: the solver's relative residual (``solve_linear_imputation``).

    Returns:
        (B, C, H, W) imputed images on ``x``'s device.

    Raises:
        ValueError: shapes do not match, or an image has every pixel removed (nothing to impute from).
    """
    if x.ndim != 4 or removed.shape != (x.shape[0], *x.shape[2:]) or removed.dtype != torch.bool:
        raise ValueError(
            f"expected images (B, C, H, W) and a bool mask (B, H, W) of removed pixels, got {tuple(x.shape)} "
            f"and {tuple(removed.shape)} {removed.dtype}"
        )
    if bool(removed.flatten(1).all(dim=1).any()):
        raise ValueError("every pixel of an image is removed: linear imputation needs at least one kept pixel")
    batch, channels, height, width = x.shape
    systems = x.reshape(batch * channels, height, width).float()
    masks = removed[:, None].expand(batch, channels, height, width).reshape(batch * channels, height, width)
    rows = max(1, CPU_CHUNK_PIXELS // (height * width)) if x.device.type == "cpu" else len(systems)
    chunks = zip(systems.split(rows), masks.split(rows), strict=True)
    imputed = torch.cat([solve_linear_imputation(s, m, tol) for s, m in chunks])
    imputed = imputed.view(batch, channels, height, width).to(x.dtype)
    if noise:
        draws = torch.randn(x.shape[1:], generator=generator, dtype=torch.float32).to(x.device, x.dtype)
        imputed = imputed + noise * draws * removed[:, None]
    return imputed


__all__ = ["NEIGHBOUR_WEIGHTS", "noisy_linear_imputation", "solve_linear_imputation"]
