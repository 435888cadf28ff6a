"""Case 13: LaFAM-LRP against LaFAM, Grad-CAM and LayerCAM on the same batch.

LaFAM-LRP (zennit's ``EpsilonGammaBox``, its default, and ``EpsilonPlusFlat``; relevance from ``layer4`` to
the pixels) on a random-init ResNet50 and on the shipped ``shapes-supervised`` CNN. The target: at most the
cost of Grad-CAM (one forward pass, one backward pass through the layers after ``layer4``) plus 20 %.
Grad-CAM and LayerCAM get explicit target classes, so neither pays for a forward to find the predicted
class. The floor under any relevance at the pixels is timed as a contender: a plain forward to ``layer4``
and one plain backward from there to the input (``pixel_gradient``), what LRP would cost if its rules
added nothing to the gradient's pass. Runs on the device of ``--device`` (CUDA timings are synchronised).
"""

from __future__ import annotations

import torch
from torch import nn

import lafam_utils as lu
from lafam_utils.hooks import capture

from . import Case, Comparison, Contenders, Settings, image_size, images, resnet50

TARGET = 1.2
FLOOR = "forward + backward to the pixels"
PLUS_FLAT = "LaFAM-LRP EpsilonPlusFlat"


def pixel_gradient(model: nn.Module, x: torch.Tensor, layer: str = "layer4") -> torch.Tensor:
    """The gradient at the pixels of ``layer``'s activations weighted by ``A / K``: one plain forward to ``layer``
    and one plain backward from there to the input, the least any relevance at the pixels costs."""
    bottom = x.detach().requires_grad_()
    with torch.enable_grad():
        with capture(model, layer, stop=True) as rec:
            model(bottom)
        acts = rec.outputs[layer]
        (gradient,) = torch.autograd.grad(acts, bottom, grad_outputs=acts.detach() / acts.shape[1])
    return gradient


def _contenders(model: nn.Module, batch: int, settings: Settings) -> Contenders:
    x = images(batch, settings.device, image_size(settings))
    with torch.no_grad():
        labels = model(x).argmax(dim=1)
    explainers = {name: lu.explainer(name, model) for name in ("LaFAM", "Grad-CAM", "LayerCAM", "LaFAM-LRP")}
    explainers[PLUS_FLAT] = lu.explainer("LaFAM-LRP", model, composite="EpsilonPlusFlat")
    contenders: Contenders = {
        name: (lambda e=explainer: e(x, target=labels)) if explainer.needs_labels else (lambda e=explainer: e(x))
        for name, explainer in explainers.items()
    }
    contenders[FLOOR] = lambda: pixel_gradient(model, x)
    return contenders


def _shapes(settings: Settings) -> nn.Module:
    return lu.load_model("shapes-supervised", device=settings.device)


def cases(settings: Settings) -> list[Case]:
    resnet_batch, shapes_batch = (2, 2) if settings.tiny else ((16, 64) if settings.cuda else (4, 16))
    comparisons = [
        Comparison("LaFAM-LRP", "Grad-CAM", "LaFAM-LRP / Grad-CAM", TARGET),
        Comparison(PLUS_FLAT, "Grad-CAM", f"{PLUS_FLAT} / Grad-CAM"),
        Comparison("LaFAM-LRP", FLOOR, f"LaFAM-LRP / {FLOOR}"),
        Comparison(PLUS_FLAT, FLOOR, f"{PLUS_FLAT} / {FLOOR}"),
        Comparison(FLOOR, "Grad-CAM", f"{FLOOR} / Grad-CAM"),
        Comparison("LaFAM-LRP", "LaFAM", "LaFAM-LRP / LaFAM"),
        Comparison("LayerCAM", "Grad-CAM", "LayerCAM / Grad-CAM"),
    ]
    note = (
        "LRP must propagate through every layer below layer4, where Grad-CAM back-propagates only through the "
        f"layers after it ({FLOOR} / Grad-CAM); on top of that floor zennit's rules re-run each layer's forward with "
        "modified inputs or weights inside the backward pass and take their input gradients (zennit's gamma rule: five "
        "forwards per convolution, z+: two)"
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
