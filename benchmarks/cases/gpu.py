"""GPU only: images/s of LaFAM and Grad-CAM at batch 128 in fp32, channels_last and bf16.

A faster variant only counts if its maps stay within ``TOLERANCE`` of the fp32 maps (max
absolute difference, maps in [0, 1]); the measured differences are stored with the result.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import Tensor, nn

import lafam_utils as lu
from lafam_utils.explainers import Explainer

from . import Case, Comparison, Contenders, Settings, image_size, images, resnet50

TOLERANCE = 1e-2
VARIANTS = {  # name -> (channels_last, autocast dtype)
    "fp32": (False, None),
    "fp32 channels_last": (True, None),
    "bf16 channels_last": (True, torch.bfloat16),
}


def variant_call(explainer: Explainer, x: Tensor, dtype: torch.dtype | None) -> Callable[[], Tensor]:
    """``explainer(x)``, under bf16 autocast when ``dtype`` is given."""

    def call() -> Tensor:
        with torch.autocast(x.device.type, dtype=dtype) if dtype is not None else nullcontext():
            return explainer(x)

    return call


def _contenders(method: type[Explainer], batch: int, settings: Settings, notes: dict[str, object]) -> Contenders:
    model = resnet50(settings.device)
    x = images(batch, settings.device, image_size(settings))
    contenders = {}
    for name, (channels_last, dtype) in VARIANTS.items():
        variant_model: nn.Module = model
        variant_x = x
        if channels_last:
            variant_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
            variant_x = x.contiguous(memory_format=torch.channels_last)
        contenders[f"{method.__name__} {name}"] = variant_call(method(variant_model, layer="layer4"), variant_x, dtype)
    reference = contenders[f"{method.__name__} fp32"]()
    for name, call in contenders.items():
        difference = (call() - reference).abs().max().item()
        notes[f"{name}: max |map - fp32 map|"] = round(difference, 5)
        notes[f"{name}: within {TOLERANCE}"] = difference <= TOLERANCE
    return contenders


def cases(settings: Settings) -> list[Case]:
    if not settings.cuda:
        return []
    batch = 128
    result = []
    for method in (lu.LaFAM, lu.GradCAM):
        notes: dict[str, object] = {}
        name = method.__name__
        result.append(
            Case(
                id=f"gpu-{name.lower()}",
                title=f"{name} throughput, batch {batch}",
                build=lambda method=method, notes=notes: _contenders(method, batch, settings, notes),
                comparisons=[
                    Comparison(f"{name} fp32", f"{name} {variant}", f"speed-up of {variant} over fp32", op=">=")
                    for variant in list(VARIANTS)[1:]
                ],
                items=batch,
                notes=notes,
            )
        )
    return result
