"""Case 2: Grad-CAM against one plain forward pass, Captum's LayerGradCam and pytorch-grad-cam.

Every contender gets the same explicit target classes, so none pays for an extra forward pass
to find the predicted class; each returns the maps at the input size, as a user would use them.
The case records how far Grad-CAM's maps are from Captum's (the same definition). The peers are
imported when the case is built, so the other cases run without them.
"""

from __future__ import annotations

import torch

import lafam_utils as lu
from lafam_utils.explainers import minmax_normalize, upsample_maps

from . import Case, Comparison, Contenders, Settings, image_size, images, resnet50


def _contenders(batch: int, settings: Settings, notes: dict[str, object]) -> Contenders:
    from captum.attr import LayerGradCam
    from pytorch_grad_cam import GradCAM as PytorchGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = resnet50(settings.device)
    x = images(batch, settings.device, image_size(settings))
    with torch.no_grad():
        labels = model(x).argmax(dim=1)
    ours = lu.GradCAM(model, layer="layer4")
    captum = LayerGradCam(model, model.layer4)
    peer_targets = [ClassifierOutputTarget(int(c)) for c in labels]

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    def captum_maps() -> torch.Tensor:
        cams = captum.attribute(x, target=labels, relu_attributions=True)[:, 0]
        return upsample_maps(minmax_normalize(cams.detach()), tuple(x.shape[-2:]), "nearest")

    def pytorch_grad_cam_maps() -> object:
        # its hooks stay on the model until released: attach them only for its own call
        with PytorchGradCAM(model=model, target_layers=[model.layer4]) as peer:
            return peer(input_tensor=x, targets=peer_targets)

    difference = (ours(x, target=labels) - captum_maps()).abs().max().item()
    notes["max |Grad-CAM map - Captum map|"] = f"{difference:.1e}"
    return {
        "forward": forward,
        "Grad-CAM": lambda: ours(x, target=labels),
        "Captum LayerGradCam": captum_maps,
        "pytorch-grad-cam GradCAM": pytorch_grad_cam_maps,
    }


def cases(settings: Settings) -> list[Case]:
    batch = 2 if settings.tiny else 16
    notes: dict[str, object] = {}
    return [
        Case(
            id="gradcam",
            title=f"Grad-CAM, batch {batch}",
            build=lambda: _contenders(batch, settings, notes),
            comparisons=[
                Comparison("Grad-CAM", "forward", "Grad-CAM / plain forward", 1.1),
                Comparison("Grad-CAM", "Captum LayerGradCam", "Grad-CAM / Captum LayerGradCam", 1.0),
                Comparison("Grad-CAM", "pytorch-grad-cam GradCAM", "Grad-CAM / pytorch-grad-cam", 1.0),
            ],
            items=batch,
            rounds=3,
            notes=notes,
        )
    ]
