"""Cases 6-8: bf16 (autocast + channels_last) against fp32 for LaFAM, Grad-CAM and RELAX on ResNet50.

Each case records the largest per-image max |bf16 map - fp32 map| (maps in [0, 1]) with its
times; the agreement of the metrics is measured by benchmarks/agreement.py.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

import lafam_utils as lu
from lafam_utils.explainers import Explainer

from . import Case, Comparison, Contenders, Settings, image_size, images, probe_masks, resnet50
from .relax import encoder

RELAX_TARGET = 0.35  # RELAX in bf16 at most this fraction of its fp32 time


def _contenders(
    make: Callable[[str], Explainer], n_images: int, settings: Settings, notes: dict[str, object]
) -> Contenders:
    x = images(n_images, settings.device, image_size(settings))
    explainers = {precision: make(precision) for precision in ("fp32", "bf16")}
    contenders: dict[str, Callable[[], Tensor]] = {
        precision: (lambda e=explainer: e(x)) for precision, explainer in explainers.items()
    }
    if not settings.probe:
        difference = (contenders["bf16"]() - contenders["fp32"]()).abs().flatten(1).amax(dim=1).max().item()
        notes["max per-image |bf16 map - fp32 map|"] = round(difference, 4)
    return contenders


def cases(settings: Settings) -> list[Case]:
    batch = 2 if settings.tiny else 16
    relax_images, relax_masks = (1, 4) if settings.tiny else (1, settings.relax_masks)
    notes: dict[str, dict[str, object]] = {"lafam": {}, "gradcam": {}, "relax": {}}

    def lafam(precision: str) -> Explainer:
        return lu.LaFAM(resnet50(settings.device), precision=precision)

    def gradcam(precision: str) -> Explainer:
        return lu.GradCAM(resnet50(settings.device), precision=precision)

    def relax(precision: str) -> Explainer:
        return lu.RELAX(encoder(settings.device), n_masks=probe_masks(settings, relax_masks), precision=precision)

    result = [
        Case(
            id=f"bf16-{name}",
            title=f"{title} bf16 vs fp32, ResNet50, batch {batch}",
            build=lambda make=make, notes=notes[name]: _contenders(make, batch, settings, notes),
            comparisons=[Comparison("bf16", "fp32", f"{title} bf16 / fp32")],
            items=batch,
            rounds=3,
            notes=notes[name],
        )
        for name, title, make in (("lafam", "LaFAM", lafam), ("gradcam", "Grad-CAM", gradcam))
    ]
    result.append(
        Case(
            id="bf16-relax",
            title=f"RELAX bf16 vs fp32, ResNet50 encoder, {relax_masks} masks, {relax_images} image",
            build=lambda: _contenders(relax, relax_images, settings, notes["relax"]),
            comparisons=[Comparison("bf16", "fp32", "RELAX bf16 / fp32", RELAX_TARGET)],
            items=relax_images,
            rounds=1,  # the map comparison before it runs both once: the warm-up
            warmup=0,
            notes=notes["relax"],
        )
    )
    return result
