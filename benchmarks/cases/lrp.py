"""Case 13: LaFAM-LRP against LaFAM, Grad-CAM and LayerCAM on the same batch.

LaFAM-LRP (zennit's ``EpsilonGammaBox``, its default; relevance from ``layer4`` to the pixels) on a random-init
ResNet50 and on the shipped ``shapes-supervised`` CNN. The target: at most the cost of Grad-CAM
(one forward pass, one backward pass through the layers after ``layer4``) plus 20 %. Grad-CAM and
LayerCAM get explicit target classes, so neither pays for a forward to find the predicted class.
Runs on the device of ``--device`` (CUDA timings are synchronised).
"""

from __future__ import annotations

import torch
from torch import nn

import lafam_utils as lu

from . import Case, Comparison, Contenders, Settings, image_size, images, resnet50

TARGET = 1.2


def _contenders(model: nn.Module, batch: int, settings: Settings) -> Contenders:
    x = images(batch, settings.device, image_size(settings))
    with torch.no_grad():
        labels = model(x).argmax(dim=1)
    explainers = {name: lu.explainer(name, model) for name in ("LaFAM", "Grad-CAM", "LayerCAM", "LaFAM-LRP")}
    return {
        name: (lambda e=explainer: e(x, target=labels)) if explainer.needs_labels else (lambda e=explainer: e(x))
        for name, explainer in explainers.items()
    }


def _shapes(settings: Settings) -> nn.Module:
    return lu.load_model("shapes-supervised", device=settings.device)


def cases(settings: Settings) -> list[Case]:
    resnet_batch, shapes_batch = (2, 2) if settings.tiny else ((16, 64) if settings.cuda else (4, 16))
    comparisons = [
        Comparison("LaFAM-LRP", "Grad-CAM", "LaFAM-LRP / Grad-CAM", TARGET),
        Comparison("LaFAM-LRP", "LaFAM", "LaFAM-LRP / LaFAM"),
        Comparison("LayerCAM", "Grad-CAM", "LayerCAM / Grad-CAM"),
    ]
    note = (
        "zennit's rules re-run each layer's forward with modified weights inside the backward pass (gamma and z+: "
        "two forwards and two input gradients per convolution, on top of the ordinary forward and backward), and "
        "Grad-CAM back-propagates only through the layers after layer4"
    )
    return [
        Case(
            id="lrp-resnet50",
            title=f"LaFAM-LRP on ResNet50 (random init), batch {resnet_batch}",
            build=lambda: _contenders(resnet50(settings.device), resnet_batch, settings),
            comparisons=comparisons,
            items=resnet_batch,
            rounds=3,
            targets_note=note,
        ),
        Case(
            id="lrp-shapes",
            title=f"LaFAM-LRP on shapes-supervised, batch {shapes_batch}",
            build=lambda: _contenders(_shapes(settings), shapes_batch, settings),
            comparisons=comparisons,
            items=shapes_batch,
            rounds=3,
            targets_note=note,
        ),
    ]
