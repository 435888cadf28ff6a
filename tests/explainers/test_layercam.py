"""LayerCAM against pytorch-grad-cam 1.5.7, and in a forward shared with Grad-CAM and LaFAM."""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import LayerCAM as ReferenceLayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import lafam_utils as lu
from lafam_utils.explainers import minmax_normalize
from lafam_utils.explainers.shared_forward import explain_together, shareable


def reference_maps(model, layer, images, targets) -> np.ndarray:
    with ReferenceLayerCAM(model, [layer]) as reference:
        maps = reference(images, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    model.zero_grad(set_to_none=True)
    return maps


def test_registered_as_a_grad_cam_that_needs_labels(resnet50):
    built = lu.explainer("LayerCAM", resnet50)
    assert type(built) is lu.explainers.LayerCAM and built.title == "LayerCAM"
    assert built.needs_labels and built.layer == "layer4" and shareable(built)


def test_equals_pytorch_grad_cam(resnet50, images):
    explainer = lu.explainer("layercam", resnet50, layer="layer3", upsample="bilinear")
    maps = explainer(images)
    expected = reference_maps(resnet50, resnet50.layer3, images, explainer.targets)
    # pytorch-grad-cam min-max normalises again after its cv2 resize; the interpolation is the same
    assert maps.shape == expected.shape == (3, 97, 130)
    assert np.abs(minmax_normalize(maps).numpy() - expected).max() < 1e-5
    assert all(p.grad is None for p in resnet50.parameters())


def test_per_position_positive_gradients_weigh_the_activations(resnet50, images):
    explainer = lu.explainer("layercam", resnet50, upsample=None)
    with lu.capture(resnet50, "layer4", gradients=True) as rec:
        logits = resnet50(images)
        logits.gather(1, logits.argmax(dim=1, keepdim=True)).sum().backward()
    resnet50.zero_grad(set_to_none=True)
    acts, grads = rec.outputs["layer4"].detach(), rec.gradients["layer4"]
    expected = minmax_normalize((grads.relu() * acts).sum(dim=1).relu())
    torch.testing.assert_close(explainer(images), expected, rtol=0, atol=1e-5)
    gradcam = lu.explainer("gradcam", resnet50, upsample=None)(images)
    assert not torch.allclose(gradcam, expected, atol=1e-2)


def test_shared_forward_with_grad_cam_and_lafam_gives_the_same_maps(resnet50, images):
    explainers = {name: lu.explainer(name, resnet50) for name in ("gradcam", "layercam", "lafam")}
    shared = explain_together(explainers, images)
    for name, explainer in explainers.items():
        torch.testing.assert_close(shared.maps[name], explainer(images), rtol=0, atol=1e-6)
