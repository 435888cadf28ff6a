"""Every explainer on token layers of Vision Transformers: prefix tokens (CLS, registers) dropped,
patch tokens read as their grid, each map equal to its hand computation (``tiny_vits``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM as ReferenceGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from tiny_vits import (
    PATCH,
    eigencam_by_hand,
    gradcam_by_hand,
    lafam_by_hand,
    layer_output,
    normalise,
    tiny_dino,
    tiny_torchvision,
)
from torch import nn

import lafam_utils as lu
from lafam_utils.explainers import minmax_normalize
from lafam_utils.explainers.shared_forward import explain_together

SIZES = [(1, 32, 32), (2, 37, 45), (3, 8, 56)]  # batch of one, odd sizes (DINO drops the remainder), one row


@pytest.fixture(scope="module")
def vit() -> nn.Module:
    return tiny_dino(registers=4)


@pytest.fixture(scope="module")
def torchvision_vit() -> nn.Module:
    return tiny_torchvision()


def batch(size: tuple[int, int, int], seed: int = 1) -> torch.Tensor:
    return torch.randn(size[0], 3, *size[1:], generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("layer", ["blocks.0", "blocks.1", "blocks.1.norm1", "blocks.0.mlp.fc2"])
def test_lafam_is_the_channel_mean_of_the_patch_tokens(vit, layer, size):
    x = batch(size)
    maps = lu.LaFAM(vit, layer=layer)(x)
    assert maps.shape == x.shape[:1] + x.shape[2:] and maps.amax() > 0.99
    torch.testing.assert_close(maps, lafam_by_hand(vit, layer, x, prefix=5), rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("layer", ["blocks.0", "blocks.0.attn", "blocks.1.norm1"])
@pytest.mark.parametrize("target", [None, 5])
def test_gradcam_weights_the_patch_tokens_by_their_mean_gradient(vit, layer, size, target):
    x = batch(size)
    explainer = lu.GradCAM(vit, layer=layer, upsample=None)  # the CLS embedding's dimensions as "classes"
    maps = explainer(x, target=target)
    expected, targets = gradcam_by_hand(vit, layer, x, prefix=5, target=target)
    assert torch.equal(explainer.targets, targets)
    assert maps.shape == (size[0], size[1] // PATCH, size[2] // PATCH)
    assert target is None or maps.amax() > 0.99  # not all zero (the predicted dimension can give a zero map)
    torch.testing.assert_close(maps, expected, rtol=0, atol=1e-5)


def test_gradcam_equals_pytorch_grad_cam_with_its_vit_reshape_transform(torchvision_vit):
    x = batch((3, 32, 32))
    layer = torchvision_vit.encoder.layers[-1].ln_1
    maps = lu.GradCAM(torchvision_vit, layer=layer, upsample="bilinear")(x, target=[1, 4, 7])

    def reshape_transform(tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 1:].reshape(len(tokens), 4, 4, tokens.shape[2]).permute(0, 3, 1, 2)

    reference = ReferenceGradCAM(torchvision_vit, [layer], reshape_transform=reshape_transform)
    expected = reference(x, targets=[ClassifierOutputTarget(t) for t in (1, 4, 7)])
    torchvision_vit.zero_grad(set_to_none=True)
    # pytorch-grad-cam min-max normalises again after its cv2 resize; the interpolation is the same
    assert np.allclose(minmax_normalize(maps).numpy(), expected, atol=1e-5)


def test_gradcam_on_torchvision_vit_equals_the_hand_computation(torchvision_vit):
    x = batch((2, 32, 32))
    maps = lu.GradCAM(torchvision_vit, layer="encoder.layers.encoder_layer_1.ln_1", upsample=None)(x)
    expected, _ = gradcam_by_hand(torchvision_vit, "encoder.layers.encoder_layer_1.ln_1", x, prefix=1)
    torch.testing.assert_close(maps, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("layer", ["blocks.0", "blocks.1.norm1"])
def test_eigencam_is_the_first_principal_component_of_the_patch_tokens(vit, layer, size):
    x = batch(size)
    maps = lu.EigenCAM(vit, layer=layer, upsample=None)(x)
    assert maps.amax() > 0.99
    torch.testing.assert_close(maps, eigencam_by_hand(vit, layer, x, prefix=5), rtol=0, atol=1e-4)


def test_torchvision_vit_layers_by_name(torchvision_vit):
    x = batch((2, 32, 32))
    maps = lu.LaFAM(torchvision_vit, layer="encoder.layers.encoder_layer_1")(x)
    torch.testing.assert_close(
        maps, lafam_by_hand(torchvision_vit, "encoder.layers.encoder_layer_1", x, prefix=1), rtol=0, atol=1e-5
    )


@pytest.mark.slow
def test_vit_b_16_by_name():
    vit = lu.load_model("vit_b_16", weights=None)
    nn.init.normal_(vit.heads.head.weight, std=0.05)  # torchvision initialises the head to zero
    x = batch((1, 224, 224))
    gradcam = lu.GradCAM(vit, layer="encoder.layers.encoder_layer_11.ln_1", upsample=None)(x)
    expected, _ = gradcam_by_hand(vit, "encoder.layers.encoder_layer_11.ln_1", x, prefix=1, patch=16)
    torch.testing.assert_close(gradcam, expected, rtol=0, atol=1e-4)
    lafam = lu.LaFAM(vit, layer="encoder.layers.encoder_layer_11", upsample=None)(x)
    tokens = layer_output(vit, "encoder.layers.encoder_layer_11", x)
    torch.testing.assert_close(lafam, normalise(tokens[:, 1:].mean(dim=2).view(1, 14, 14)), rtol=0, atol=1e-5)


def test_the_last_blocks_output_of_a_cls_classifier_is_an_error_naming_a_usable_layer(vit, torchvision_vit):
    with pytest.raises(
        ValueError, match=r"'encoder\.layers\.encoder_layer_1'.*exactly zero.*'encoder\.layers\.encoder_layer_1\.ln_1'"
    ):
        lu.GradCAM(torchvision_vit, layer="encoder.layers.encoder_layer_1")(batch((2, 32, 32)))
    for layer in ("blocks.1", "blocks.1.attn", "blocks.1.mlp"):
        with pytest.raises(ValueError, match=rf"'{layer}'.*exactly zero on every patch token.*'blocks\.1\.norm1'"):
            lu.GradCAM(vit, layer=layer)(batch((1, 37, 45)))
    with pytest.raises(ValueError, match="'blocks.1.norm1'"):
        explain_together({"gradcam": lu.GradCAM(vit, layer="blocks.1")}, batch((1, 32, 32)))


def test_a_shared_forward_gives_the_separate_calls_maps(vit):
    x = batch((2, 37, 45))
    explainers = {
        "lafam": lu.LaFAM(vit, layer="blocks.0"),
        "eigencam": lu.EigenCAM(vit, layer="blocks.1.norm1"),
        "gradcam": lu.GradCAM(vit, layer="blocks.1.norm1"),
        "relax": lu.RELAX(vit, n_masks=8, cells=2),
    }
    shared = explain_together(explainers, x)
    for key, explainer in explainers.items():
        assert torch.equal(shared.maps[key], explainer(x)), key


def test_bf16_on_token_layers(vit):
    x = batch((2, 37, 45))
    fp32 = lu.LaFAM(vit, layer="blocks.1", upsample=None)(x)
    bf16 = lu.LaFAM(vit, layer="blocks.1", upsample=None, precision="bf16")(x)
    assert bf16.shape == fp32.shape and bf16.dtype == torch.float32
    assert (bf16 - fp32).abs().max() < 0.1


class Tokens(nn.Module):
    """A model whose layer gives (B, N, C) tokens but which does not say which are patches."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 4, kernel_size=PATCH, stride=PATCH)
        self.mix = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        return self.mix(torch.cat((tokens.mean(dim=1, keepdim=True), tokens), dim=1)).mean(dim=1)


def test_a_token_layer_needs_the_models_prefix_tokens_and_patch_size():
    model = Tokens()
    with pytest.raises(ValueError, match="does not say which of its tokens are patches.*num_prefix_tokens"):
        lu.LaFAM(model, layer="mix")(batch((1, 32, 32)))
    model.num_prefix_tokens = 1
    with pytest.raises(ValueError, match="has no patch_size"):
        lu.LaFAM(model, layer="mix")(batch((1, 32, 32)))
    model.patch_size = PATCH
    assert lu.LaFAM(model, layer="mix", upsample=None)(batch((1, 32, 40))).shape == (1, 4, 5)
    model.num_prefix_tokens = 2
    with pytest.raises(
        ValueError, match=r"gives 21 tokens for 32x40 images; expected 2 prefix tokens \+ a 4x5 patch grid = 22"
    ):
        lu.LaFAM(model, layer="mix")(batch((1, 32, 40)))
