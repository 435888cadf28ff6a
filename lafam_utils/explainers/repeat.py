"""REPEAT (Wickstrøm, Brüsch, Kampffmeyer, Jenssen, AAAI 2025): RELAX repeated, each pixel read as a
Bernoulli variable "important or not", whose probability is the map and whose variance the uncertainty."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .registry import register
from .relax import RELAX, check_positive_int

OFFICIAL_MASKS = 1000  # the official notebook's RELAX per repeat: 10 batches of 100 masks


def probability_of_importance(importance: Tensor) -> Tensor:
    """REPEAT's map from (R, B, h, w) RELAX importances of R repeats: the (B, h, w) probability ``p``.

    Each repeat's ``R_r`` votes ``R_r / max R_r`` where it exceeds its mean (skimage's
    ``threshold_mean``, the official default) and 0 elsewhere; ``p`` is the votes' mean over the
    repeats. A repeat whose ``R_r`` has maximum 0 (RELAX zeroed it: the encoder ignored the
    masking) votes 0 everywhere, where the official code divides by zero.

    Args:
        importance: (R, B, h, w) the repeats' RELAX importance maps.

    Returns:
        The (B, h, w) probability of importance.
    """
    flat = importance.flatten(2)
    top = flat.amax(dim=2, keepdim=True)
    weight = flat / torch.where(top == 0, 1.0, top)
    votes = weight * (flat > flat.mean(dim=2, keepdim=True))
    return votes.mean(dim=0).view(importance.shape[1:])


@register
class REPEAT(RELAX):
    """``p = mean_r (R_r / max R_r) * [R_r > mean R_r]`` over ``n_repeats`` RELAX runs; map ``Up(N(p))``.

    Repeat r is a RELAX run (this class's ``variant``, ``n_masks``, ``cells``, ``p``) with seed
    ``seed + r``, so repeat 0 equals ``RELAX(seed=seed)``; the repeats share the unmasked
    images' embeddings (one forward, or a shared forward of ``lu.evaluate``). After each call
    ``importance`` holds ``p`` (REPEAT's "probability of importance"), ``uncertainty`` the
    Bernoulli variance ``p (1 - p)`` and ``repeat_importance`` the (n_repeats, B, h, w) RELAX
    maps; ``u_relax`` is None (RELAX's per-run uncertainty is not REPEAT's).

    As the official code (Wickstrom/REPEAT, ``getting-started-with-REPEAT.ipynb``): 10 repeats,
    the mean threshold, the max-scaled vote. Deviations: each repeat is this package's RELAX (for
    ``variant="original"``, Wickström et al.'s smooth shifted masks on a cropped grid rather than
    the reference's reflect-padded one; ``"paper"``, the default, keeps the LaFAM paper's 7x7
    Bernoulli grid, where ``R`` and ``p`` live on the grid); ``n_masks=1000`` per repeat by
    default, as the official 10 x 100; only the "mean" threshold (the official names "otsu" and
    "triangle" are swapped there); a repeat with an all-zero ``R`` votes 0 (official: NaN).
    ``on_progress(done, total)`` counts the masked images of all repeats.

    Args:
        encoder: the network to explain, as for ``RELAX``.
        n_repeats: the number of RELAX runs.
        n_masks: masks per repeat.
        **options: ``RELAX``'s other arguments (``cells``, ``p``, ``batch_size``, ``seed``, ``progress``,
            ``variant``, ``upsample``, ``threshold``, ``precision``, ``on_progress``, ``compile``).

    Raises:
        ValueError: an argument is invalid for ``RELAX``, or ``n_repeats`` is not a positive integer.
    """

    name = "repeat"
    title = "REPEAT"

    def __init__(
        self,
        encoder: nn.Module,
        n_repeats: int = 10,
        n_masks: int = OFFICIAL_MASKS,
        **options: Any,
    ) -> None:
        super().__init__(encoder, n_masks=n_masks, **options)
        check_positive_int("n_repeats", n_repeats)
        self.n_repeats = n_repeats
        self.repeat_importance: Tensor | None = None

    def repeat_run(self, index: int) -> RELAX:
        """The RELAX explainer of repeat ``index``: these settings, seed ``seed + index``."""

        def report(done: int, total: int) -> None:
            if self.on_progress is not None:
                self.on_progress(index * total + done, self.n_repeats * total)

        return RELAX(
            self.model, n_masks=self.n_masks, cells=self.cells, p=self.p, batch_size=self.batch_size,
            seed=self.seed + index, progress=self.progress, variant=self.variant, precision=self.precision,
            on_progress=report, compile=self.compile,
        )

    def from_reference(self, x: Tensor, reference: Tensor) -> Tensor:
        runs = [self.repeat_run(index).from_reference(x, reference) for index in range(self.n_repeats)]
        self.repeat_importance = torch.stack(runs)
        self.importance = probability_of_importance(self.repeat_importance)
        self.uncertainty = self.importance * (1 - self.importance)
        self.u_relax = None
        return self.importance
