"""``layer="auto"``: each model's default layer per method, and the layers the Explorer offers."""

import pytest
import torch
import torchvision
from tiny_vits import (
    activation_lafam_by_hand,
    centred_norm_by_hand,
    gradcam_by_hand,
    layer_output,
    normalise,
    patches,
    tiny_dino,
    tiny_torchvision,
)
from torch import nn
from torchvision.models import resnet18

import lafam_utils as lu
from lafam_utils.explainers.default_layers import (
    SELECTED_BLOCK,
    default_layer,
    model_layers,
    selected_block,
)
from lafam_utils.models.vit import VisionTransformer
from lafam_utils.models.vit_releases import VIT_RELEASES
from lafam_utils.shapes import ShapesNet
from lafam_utils.shapes.network import ShapesViT

ACTIVATION_METHODS = ("lafam", "eigencam", "fem", "kpca-cam", "dff")


def test_a_resnet_reads_layer4_for_every_method():
    model = resnet18().eval()
    assert default_layer(model) == default_layer(model, gradients=True) == "layer4"
    assert default_layer(model, residual_stream=True) == "layer4"
    assert model_layers(model) == ["layer1", "layer2", "layer3", "layer4"]
    assert lu.LaFAM(model).layer == lu.GradCAM(model).layer == lu.explainer("fem", model).layer == "layer4"
    assert lu.explainer("lafam-centred-norm", model).layer == "layer4"
    assert lu.LaFAM(ShapesNet()).layer == "layer4"


def test_a_dino_vit_reads_the_mlp_activation_grad_cam_the_first_norm_and_the_residual_methods_the_block():
    model = tiny_dino()
    assert default_layer(model) == "blocks.1.mlp.act"
    assert default_layer(model, gradients=True) == "blocks.1.norm1"
    assert default_layer(model, residual_stream=True) == "blocks.1"
    assert model_layers(model) == ["blocks.0", "blocks.0.mlp.act", "blocks.1", "blocks.1.mlp.act", "blocks.1.norm1"]
    assert {lu.explainer(method, model).layer for method in ACTIVATION_METHODS} == {"blocks.1.mlp.act"}
    assert lu.explainer("lafam-magnitude", model).layer == lu.explainer("lafam-centred-norm", model).layer == "blocks.1"


def test_a_torchvision_vit_reads_its_encoder_layers():
    model = tiny_torchvision()
    assert default_layer(model) == "encoder.layers.encoder_layer_1.mlp.1"
    assert default_layer(model, gradients=True) == "encoder.layers.encoder_layer_1.ln_1"
    assert default_layer(model, residual_stream=True) == "encoder.layers.encoder_layer_1"
    assert lu.GradCAM(model).layer == "encoder.layers.encoder_layer_1.ln_1"
    assert isinstance(model.get_submodule(default_layer(model)), nn.GELU)


@pytest.mark.parametrize(("depth", "expected"), [(1, 0), (2, 1), (4, 3), (12, 11), (24, 23)])
def test_the_selected_block_transfers_by_relative_depth(depth, expected):
    index, blocks = SELECTED_BLOCK
    assert 0 <= index < blocks == 4
    transferred = round((index + 1) * depth / blocks) - 1
    assert selected_block([f"blocks.{i}" for i in range(depth)]) == f"blocks.{max(0, transferred)}"
    if index == blocks - 1:
        assert transferred == expected


def test_the_releases_and_torchvision_vit_b_16_by_their_module_names():
    """The rule applied to the real architectures (built on the meta device: names only, no weights)."""
    block = selected_block([f"blocks.{i}" for i in range(12)])
    index = block.split(".")[1]
    with torch.device("meta"):
        for name, release in VIT_RELEASES.items():
            model = VisionTransformer(release.config)
            assert default_layer(model) == f"{block}.mlp.act", name
            assert isinstance(model.get_submodule(f"{block}.mlp.act"), nn.GELU)
            assert default_layer(model, gradients=True) == "blocks.11.norm1"
        torchvision_vit = torchvision.models.vit_b_16()
    assert default_layer(torchvision_vit) == f"encoder.layers.encoder_layer_{index}.mlp.1"
    assert isinstance(torchvision_vit.get_submodule(default_layer(torchvision_vit)), nn.GELU)
    assert default_layer(ShapesViT()) == f"blocks.{SELECTED_BLOCK[0]}.mlp.act"


def test_the_auto_layers_give_the_hand_computations():
    """On a ViT, "auto" is not only a name: the maps equal the hand computations at those layers."""
    x = torch.rand(2, 3, 32, 40)
    dino = tiny_dino(registers=4)
    expected = activation_lafam_by_hand(dino, "blocks.1", x, prefix=5)
    torch.testing.assert_close(lu.LaFAM(dino)(x), expected, rtol=0, atol=1e-5)
    magnitudes = normalise(patches(layer_output(dino, "blocks.1", x), 5, x.shape[-2:]).abs().mean(dim=3))
    torch.testing.assert_close(lu.explainer("lafam-magnitude", dino, upsample=None)(x), magnitudes, rtol=0, atol=1e-5)
    centred = lu.explainer("lafam-centred-norm", dino, upsample=None)(x)
    torch.testing.assert_close(centred, centred_norm_by_hand(dino, "blocks.1", x, prefix=5), rtol=0, atol=1e-5)
    classifier = tiny_torchvision()
    x = torch.rand(2, 3, 32, 32)
    expected = activation_lafam_by_hand(classifier, "encoder.layers.encoder_layer_1", x, prefix=1)
    torch.testing.assert_close(lu.LaFAM(classifier)(x), expected, rtol=0, atol=1e-5)
    expected, _ = gradcam_by_hand(classifier, "encoder.layers.encoder_layer_1.ln_1", x, prefix=1)
    torch.testing.assert_close(lu.GradCAM(classifier, upsample=None)(x), expected)


def test_grad_cam_at_the_auto_layer_of_a_vit_classifier_is_not_all_zero():
    """The reason Grad-CAM's default differs: the last block's own output has a zero patch gradient."""
    classifier = tiny_torchvision()
    maps = lu.GradCAM(classifier, upsample=None)(torch.rand(3, 3, 32, 32))
    assert maps.amax(dim=(1, 2)).gt(0).all()
    with pytest.raises(ValueError, match="gradient is exactly zero"):
        lu.GradCAM(classifier, layer="encoder.layers.encoder_layer_1")(torch.rand(1, 3, 32, 32))


def test_a_vit_block_without_an_mlp_activation_module_asks_for_a_layer_name():
    model = tiny_dino()
    for block in model.blocks:
        block.mlp.act = nn.Identity()
    with pytest.raises(ValueError, match="'blocks.1' has no MLP activation module.*pass layer="):
        lu.LaFAM(model)
    assert lu.LaFAM(model, layer="blocks.1").layer == "blocks.1"


def test_a_model_without_known_layers_asks_for_a_layer_name():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    assert model_layers(model) == []
    with pytest.raises(ValueError, match="Sequential has no default layer.*pass layer="):
        lu.LaFAM(model)
    assert lu.LaFAM(model, layer="0").layer == "0"


def test_layer_free_methods_take_no_layer():
    assert lu.RELAX(ShapesNet(num_classes=None)).layer is None
    assert lu.explainer("attention", tiny_dino()).layer == "blocks.1.attn"
