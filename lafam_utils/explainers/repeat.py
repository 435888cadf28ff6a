"""REPEAT (Wickstrøm, Brüsch, Kampffmeyer, Jenssen, AAAI 2025): RELAX repeated, each pixel read as a
Bernoulli variable "important or not", whose probability is the map and whose variance the uncertainty."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .base import check_choice
from .registry import register
from .relax import RELAX, Variant, check_positive_int
from .thresholds import THRESHOLDS

OFFICIAL_MASKS = 1000  # the official package's RELAX per repeat: 10 batches of 100 masks


def probability_of_importance(importance: Tensor, explanation_threshold: str = "mean") -> Tensor:
    """REPEAT's map from (R, B, h, w) RELAX importances of R repeats: the (B, h, w) probability ``p``.

    Each repeat's ``R_r`` votes ``R_r / max R_r`` where it is at least its threshold
    (``explanation_threshold``, a name of ``thresholds.THRESHOLDS``, computed per map) and 0
    elsewhere; ``p`` is the votes' mean over the repeats. A repeat whose ``R_r`` has maximum 0
    (RELAX zeroed it: the encoder ignored the masking) votes 0 everywhere, where the official code
    divides by zero.

    Args:
        importance: (R, B, h, w) the repeats' RELAX importance maps.
        explanation_threshold: ``"mean"``, ``"otsu"``, ``"triangle"`` or ``"li"``.

    Returns:
        The (B, h, w) probability of importance.
    """
    flat = importance.flatten(2)
    top = flat.amax(dim=2, keepdim=True)
    weight = flat / torch.where(top == 0, 1.0, top)
    threshold = THRESHOLDS[explanation_threshold]
    cut = torch.stack([threshold(values) for values in flat.flatten(0, 1)]).view(*flat.shape[:2], 1)
    votes = weight * (flat >= cut)
    return votes.mean(dim=0).view(importance.shape[1:])


@register
class REPEAT(RELAX):
    """``p = mean_r (R_r / max R_r) [R_r >= t(R_r)]`` over ``n_repeats`` RELAX runs; map ``Up(N(p))``.

    Follows the official package ``repeat_xai`` 0.1.0 (Wickstrom/REPEAT, commit 3e3acce,
    ``src/repeat_xai/repeat.py`` and ``thresholds.py``): 10 repeats, each a RELAX run of 1,000
    masks (its 10 batches of 100) with relax-xai's smooth masks (``variant="original"``, the
    default here), the vote ``>=`` the threshold ``t`` (``explanation_threshold``: ``"mean"``,
    the default and the paper's choice, ``"otsu"``, ``"triangle"`` or ``"li"``, skimage's
    definitions), weighted by ``R_r / max R_r``. Repeat r is this package's RELAX with seed
    ``seed + r``, so repeat 0 equals ``RELAX(seed=seed)`` with the same settings; the repeats
    share the unmasked images' embeddings (one forward, or a shared forward of ``lu.evaluate``).
    After each call ``importance`` holds ``p`` (the "probability of importance"), ``uncertainty``
    the Bernoulli variance ``p (1 - p)`` and ``repeat_importance`` the (n_repeats, B, h, w) RELAX
    maps; ``u_relax`` is None (RELAX's per-run uncertainty is not REPEAT's).

    Deviations: the masks come from ``seed`` (the package: the global torch generator); the
    histogram thresholds bin as NumPy does for skimage (the package bins with ``torch.histc`` in
    float32, so a value on a bin edge can land in the neighbouring bin there); Li's threshold
    iterates in float64 as the package (skimage: in the map's dtype); a repeat whose ``R`` is all
    zero votes 0 (the package: NaN). ``variant="paper"`` runs each repeat on the LaFAM paper's
    7x7 Bernoulli grid instead, where ``R`` and ``p`` live on the grid. ``on_progress(done,
    total)`` counts the masked images of all repeats.

    Args:
        encoder: the network to explain, as for ``RELAX``.
        n_repeats: the number of RELAX runs.
        n_masks: masks per repeat.
        variant: each repeat's RELAX masks, ``"original"`` (default) or ``"paper"``.
        explanation_threshold: the vote's threshold, one of ``thresholds.THRESHOLDS``.
        **options: ``RELAX``'s other arguments (``cells``, ``p``, ``batch_size``, ``seed``, ``progress``,
            ``upsample``, ``threshold``, ``precision``, ``on_progress``, ``compile``).

    Raises:
        ValueError: an argument is invalid for ``RELAX``, ``n_repeats`` is not a positive integer,
            or ``explanation_threshold`` is not one of ``THRESHOLDS``.
    """

    name = "repeat"
    title = "REPEAT"

    def __init__(
        self,
        encoder: nn.Module,
        n_repeats: int = 10,
        n_masks: int = OFFICIAL_MASKS,
        variant: Variant = "original",
        explanation_threshold: str = "mean",
        **options: Any,
    ) -> None:
        super().__init__(encoder, n_masks=n_masks, variant=variant, **options)
        check_positive_int("n_repeats", n_repeats)
        check_choice("explanation_threshold", explanation_threshold, tuple(THRESHOLDS))
        self.n_repeats, self.explanation_threshold = n_repeats, explanation_threshold
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
        self.importance = probability_of_importance(self.repeat_importance, self.explanation_threshold)
        self.uncertainty = self.importance * (1 - self.importance)
        self.u_relax = None
        return self.importance
