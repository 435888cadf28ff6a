"""Quantus 0.6.0's own numbers for the metrics that query the model: the references of the tests and
of ``benchmarks/sanity_agreement.py``.

``quantus_call`` runs a Quantus metric with its warnings silenced. ``smooth_mprt_patched`` lets
Quantus' ``SmoothMPRT`` explain with a package explainer and draw the noise the package draws:
``SmoothMPRT`` calls ``quantus.explain`` (not the metric's ``explain_func``) and draws its noise
from NumPy's global generator, so both are replaced while the block runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import count
from typing import Any

import numpy as np
import torch


def quantus_call(metric: Callable[..., Any], **kwargs: Any) -> Any:
    """``metric(channel_first=True, **kwargs)`` with Quantus' warnings and NumPy's float warnings silenced."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return metric(channel_first=True, **kwargs)


def smooth_mprt_draws(shape: Sequence[int], samples: int, seed: int) -> list[np.ndarray]:
    """The noise ``randomisation.smooth_maps`` draws for a batch of ``shape``, as Quantus asks for it:
    one (B, 3, H, W) float64 array per noisy copy, every image with the same draw."""
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(tuple(shape[1:]), generator=generator).expand(tuple(shape)).double().numpy()
        for _ in range(samples - 1)
    ]


@contextmanager
def smooth_mprt_patched(method_options: Mapping[str, Any], draws: Sequence[np.ndarray]) -> Iterator[None]:
    """Within the block, Quantus' ``SmoothMPRT`` explains with ``lu.explain_func(**method_options)`` and
    takes its noise from ``draws``, in turn."""
    import quantus

    from ..explainers import explain_func

    calls = count()

    def randn(*shape: int) -> np.ndarray:
        draw = draws[next(calls) % len(draws)]
        if draw.shape != shape:
            raise ValueError(f"SmoothMPRT asked for noise of shape {shape}; the draws have {draw.shape}")
        return draw.copy()

    saved = quantus.explain, np.random.randn
    quantus.explain = lambda model, inputs, targets, **kwargs: explain_func(model, inputs, targets, **method_options)
    np.random.randn = randn
    try:
        yield
    finally:
        quantus.explain, np.random.randn = saved


__all__ = ["quantus_call", "smooth_mprt_draws", "smooth_mprt_patched"]
