"""Inputs that used to give torch's internal errors or silently meaningless maps now get clear errors."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import Tensor, nn

import lafam_utils as lu

METHODS = ["lafam", "gradcam", "eigencam", "relax"]


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    model.class_names = ["cat", "dog", "bird"]
    return model


def build(method: str, model: nn.Module, **kwargs) -> lu.Explainer:
    return lu.explainer(method, model, **({"n_masks": 4} if method == "relax" else {}), **kwargs)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_images_of_another_float_type_get_a_clear_error(resnet18, method, dtype):
    x = torch.rand(1, 3, 64, 64, dtype=dtype)
    with pytest.raises(
        TypeError,
        match=rf"expected float32 images \(32-bit floating-point\), got dtype {dtype}; convert them with x.float\(\)",
    ):
        build(method, resnet18)(x)


@pytest.mark.parametrize("method", ["lafam", "gradcam", "eigencam"])
def test_a_1x1_layer_or_too_small_images_raise_instead_of_an_all_zero_map(resnet18, method):
    with pytest.raises(ValueError, match="layer 'avgpool' gives a 1x1 map"):
        build(method, resnet18, layer="avgpool")(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match=r"layer 'layer4' gives a 1x1 map.*smaller than the network's stride"):
        build(method, resnet18)(torch.rand(2, 3, 24, 24))  # layer4's stride is 32
    assert build(method, resnet18)(torch.rand(2, 3, 64, 64)).flatten(1).amax(dim=1).gt(0).all()  # 2x2 is fine


class IgnoresMasking(nn.Module):
    """An encoder whose embedding moves by float noise only when the image is masked."""

    def __init__(self) -> None:
        super().__init__()
        self.direction = nn.Parameter(torch.randn(16, generator=torch.Generator().manual_seed(0)))

    def forward(self, x: Tensor) -> Tensor:
        return self.direction.expand(len(x), -1) + 1e-3 * x.mean(dim=(1, 2, 3))[:, None]


class Pools(nn.Module):
    """A tiny encoder whose embedding depends on where the image is bright."""

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.adaptive_avg_pool2d(x, 4).flatten(1) + 1.0


def test_relax_on_an_encoder_that_ignores_masking_gives_an_all_zero_map_with_a_warning():
    x = torch.rand(2, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    with pytest.warns(UserWarning, match=r"RELAX: the encoder's embedding of image\(s\) \[0, 1\] did not change"):
        maps = lu.RELAX(IgnoresMasking(), n_masks=32)(x)
    assert maps.eq(0).all()  # without the tolerance: 1-float-step differences stretched to a full-contrast map
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        maps = lu.RELAX(Pools(), n_masks=32)(x)
    assert maps.flatten(1).amax(dim=1).eq(1).all()


def test_gradcam_target_by_class_name(resnet18):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    gradcam = lu.GradCAM(resnet18)
    torch.testing.assert_close(gradcam(x, target="dog"), gradcam(x, target=1))
    torch.testing.assert_close(gradcam(x, target=["bird", "cat"]), gradcam(x, target=torch.tensor([2, 0])))
    with pytest.raises(ValueError, match=r"target class\(es\) \['cats'\] not in the model's class_names \(close: cat"):
        gradcam(x, target="cats")
    with pytest.raises(TypeError, match="target must be None, a class index, one per image, or class names"):
        gradcam(x, target=["cat", 1])
    plain = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    with pytest.raises(TypeError, match="target 'cat' names classes, but the model has no class_names"):
        lu.GradCAM(plain)(x, target="cat")
