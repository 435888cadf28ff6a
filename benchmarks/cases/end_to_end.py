"""Case 5: end to end per image, LaFAM + Grad-CAM maps scored by the six metrics.

Batched: both explainers from one shared forward of the batch (``shared_forward``, as
``lu.evaluate`` does), the torch metrics once per method; at fp32 and at bf16. Per-image loop
(the reference evaluation's way): each explainer on one image at a time at fp32, Quantus once
per metric per image.
"""

from __future__ import annotations

import lafam_utils as lu
from lafam_utils.explainers.shared_forward import explain_together

from . import Case, Comparison, Contenders, Settings, image_size, images, resnet50
from .metrics import maps_and_masks


def _contenders(batch: int, settings: Settings) -> Contenders:
    size = image_size(settings)
    model = resnet50(settings.device)
    x = images(batch, settings.device, size)
    _, masks = maps_and_masks(batch, size, settings.device)
    explainers = [lu.LaFAM(model, layer="layer4"), lu.GradCAM(model, layer="layer4")]
    bf16 = dict(enumerate([lu.LaFAM(model, precision="bf16"), lu.GradCAM(model, precision="bf16")]))
    k = min(1000, size * size)

    def batched(shared: dict) -> None:
        for maps in explain_together(shared, x).maps.values():
            lu.metrics.compute(maps, masks, k=k)

    def per_image() -> None:
        for i in range(batch):
            for explain in explainers:
                lu.metrics.compute(explain(x[i : i + 1]), masks[i : i + 1], backend="quantus", k=k)

    return {
        "batched, torch metrics": lambda: batched(dict(enumerate(explainers))),
        "batched bf16, torch metrics": lambda: batched(bf16),
        "per-image loop, Quantus": per_image,
    }


def cases(settings: Settings) -> list[Case]:
    batch = 2 if settings.tiny else 32 if settings.large else 8
    return [
        Case(
            id="end-to-end",
            title=f"End to end (LaFAM + Grad-CAM + 6 metrics), {batch} images",
            build=lambda: _contenders(batch, settings),
            comparisons=[
                Comparison(
                    "per-image loop, Quantus", "batched, torch metrics", "speed-up of the batched pipeline", 3, ">="
                ),
                Comparison(
                    "per-image loop, Quantus", "batched bf16, torch metrics", "speed-up of the batched pipeline, bf16",
                    3, ">=",
                ),
            ],
            items=batch,
            rounds=3,
        )
    ]
