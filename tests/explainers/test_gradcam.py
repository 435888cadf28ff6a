import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam
from pytorch_grad_cam import GradCAM as ReferenceGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import lafam_utils as lu
from lafam_utils.explainers import minmax_normalize


def captum_gradcam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    attributions = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
    model.zero_grad(set_to_none=True)
    return minmax_normalize(attributions[:, 0].detach())


@pytest.mark.parametrize("target", [None, 7, "tensor"])
def test_equals_captum_at_layer_resolution(resnet50, images, target):
    if target == "tensor":
        target = torch.tensor([3, 500, 999])
    explainer = lu.GradCAM(resnet50, layer="layer4", upsample=None)
    maps = explainer(images, target=target)
    expected = captum_gradcam(resnet50, resnet50.layer4, images, explainer.targets)
    assert maps.shape == (3, 4, 5)
    assert torch.allclose(maps, expected, atol=1e-5)
    if target is None:
        assert torch.equal(explainer.targets, explainer.logits.argmax(dim=1))
    else:
        assert torch.equal(explainer.targets, torch.as_tensor(target).expand(3))


def test_in_place_ops_after_the_layer_are_allowed(resnet50, images):
    # bn3's output is followed by ``out += identity`` inside the bottleneck
    explainer = lu.GradCAM(resnet50, layer="layer4.2.bn3", upsample=None)
    maps = explainer(images)
    expected = captum_gradcam(resnet50, resnet50.layer4[2].bn3, images, explainer.targets)
    assert torch.allclose(maps, expected, atol=1e-5)


def test_agrees_with_pytorch_grad_cam_at_input_resolution(resnet50, images):
    explainer = lu.GradCAM(resnet50, upsample="bilinear")
    maps = explainer(images)
    reference = ReferenceGradCAM(resnet50, [resnet50.layer4])
    expected = reference(images, targets=[ClassifierOutputTarget(int(t)) for t in explainer.targets])
    resnet50.zero_grad(set_to_none=True)
    # pytorch-grad-cam min-max normalises again after its cv2 resize; the interpolation is the same
    assert np.allclose(minmax_normalize(maps).numpy(), expected, atol=1e-5)
    assert np.abs(maps.numpy() - expected).max() < 5e-3


def test_logits_are_the_models_output(resnet50, images):
    explainer = lu.GradCAM(resnet50)
    explainer(images)
    with torch.no_grad():
        assert torch.allclose(explainer.logits, resnet50(images), atol=1e-5)


def test_only_layers_after_the_layer_build_a_graph(resnet50, images):
    records = {}

    def record(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            records[name] = output.requires_grad

        return hook

    hooks = [
        resnet50.layer3.register_forward_hook(record("before")),
        resnet50.fc.register_forward_hook(record("after")),
    ]
    try:
        lu.GradCAM(resnet50)(images)
    finally:
        for hook in hooks:
            hook.remove()
    assert records == {"before": False, "after": True}


def test_no_parameter_grad_flags_kept_and_works_under_no_grad(resnet50, images):
    resnet50.conv1.weight.requires_grad_(False)
    try:
        flags = [p.requires_grad for p in resnet50.parameters()]
        explainer = lu.GradCAM(resnet50)
        plain = explainer(images)
        with torch.no_grad():
            inside = explainer(images)
            assert not torch.is_grad_enabled()
        assert torch.is_grad_enabled()
        assert [p.requires_grad for p in resnet50.parameters()] == flags
    finally:
        resnet50.conv1.weight.requires_grad_(True)
    assert torch.equal(plain, inside) and not plain.requires_grad
    assert all(p.grad is None for p in resnet50.parameters())


def test_batch_of_one_equals_the_batch(resnet50, images):
    explainer = lu.GradCAM(resnet50)
    batch = explainer(images, target=torch.tensor([1, 2, 3]))
    single = torch.cat([explainer(images[i : i + 1], target=i + 1) for i in range(3)])
    assert torch.allclose(batch, single, atol=1e-5)


def test_zero_gradient_gives_a_zero_map_not_nan():
    model = nn.Sequential()
    model.add_module("layer4", nn.Conv2d(3, 4, 3, padding=1))
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flat", nn.Flatten())
    model.add_module("fc", nn.Linear(4, 5))
    nn.init.zeros_(model.fc.weight)
    maps = lu.GradCAM(model)(torch.randn(2, 3, 9, 11))
    assert maps.shape == (2, 9, 11)
    assert torch.equal(maps, torch.zeros_like(maps))


def test_bad_targets_and_models_say_what_was_expected(resnet50, images):
    explainer = lu.GradCAM(resnet50)
    with pytest.raises(ValueError, match=r"outside the class range \[0, 1000\)"):
        explainer(images, target=1000)
    with pytest.raises(ValueError, match=r"outside the class range"):
        explainer(images, target=torch.tensor([0, -1, 2]))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        explainer(images, target=[1, 2])
    with pytest.raises(TypeError, match="integer"):
        explainer(images, target=torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        explainer(images[0])
    encoder = nn.Sequential()
    encoder.add_module("layer4", nn.Conv2d(3, 4, 3))
    with pytest.raises(ValueError, match=r"\(B, n_classes\)"):
        lu.GradCAM(encoder)(torch.randn(1, 3, 8, 8))
