"""``layer="auto"``: each model's default layer per method, and the layers the Explorer offers."""

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

import lafam_utils as lu
from lafam_utils.explainers.default_layers import default_layer, model_layers
from lafam_utils.shapes import ShapesNet
from tiny_vits import gradcam_by_hand, lafam_by_hand, tiny_dino, tiny_torchvision


def test_a_resnet_reads_layer4_for_every_method():
    model = resnet18().eval()
    assert default_layer(model) == default_layer(model, gradients=True) == "layer4"
    assert model_layers(model) == ["layer1", "layer2", "layer3", "layer4"]
    assert lu.LaFAM(model).layer == lu.GradCAM(model).layer == lu.explainer("fem", model).layer == "layer4"
    assert lu.LaFAM(ShapesNet()).layer == "layer4"


def test_a_dino_vit_reads_its_last_block_and_grad_cam_the_last_blocks_first_norm():
    model = tiny_dino()
    assert default_layer(model) == "blocks.1"
    assert default_layer(model, gradients=True) == "blocks.1.norm1"
    assert model_layers(model) == ["blocks.0", "blocks.1", "blocks.1.norm1"]
    assert lu.LaFAM(model).layer == lu.EigenCAM(model).layer == "blocks.1"


def test_a_torchvision_vit_reads_its_encoder_layers():
    model = tiny_torchvision()
    assert default_layer(model) == "encoder.layers.encoder_layer_1"
    assert default_layer(model, gradients=True) == "encoder.layers.encoder_layer_1.ln_1"
    assert lu.GradCAM(model).layer == "encoder.layers.encoder_layer_1.ln_1"


def test_the_auto_layers_give_the_hand_computations():
    """On a ViT, "auto" is not only a name: the maps equal the hand computations at those layers."""
    x = torch.rand(2, 3, 32, 40)
    dino = tiny_dino(registers=4)
    torch.testing.assert_close(lu.LaFAM(dino)(x), lafam_by_hand(dino, "blocks.1", x, prefix=5))
    classifier = tiny_torchvision()
    x = torch.rand(2, 3, 32, 32)
    expected, _ = gradcam_by_hand(classifier, "encoder.layers.encoder_layer_1.ln_1", x, prefix=1)
    torch.testing.assert_close(lu.GradCAM(classifier, upsample=None)(x), expected)


def test_grad_cam_at_the_auto_layer_of_a_vit_classifier_is_not_all_zero():
    """The reason Grad-CAM's default differs: the last block's own output has a zero patch gradient."""
    classifier = tiny_torchvision()
    maps = lu.GradCAM(classifier, upsample=None)(torch.rand(3, 3, 32, 32))
    assert maps.amax(dim=(1, 2)).gt(0).all()
    with pytest.raises(ValueError, match="gradient is exactly zero"):
        lu.GradCAM(classifier, layer="encoder.layers.encoder_layer_1")(torch.rand(1, 3, 32, 32))


def test_a_model_without_known_layers_asks_for_a_layer_name():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    assert model_layers(model) == []
    with pytest.raises(ValueError, match="Sequential has no default layer.*pass layer="):
        lu.LaFAM(model)
    assert lu.LaFAM(model, layer="0").layer == "0"


def test_layer_free_methods_take_no_layer():
    assert lu.RELAX(ShapesNet(num_classes=None)).layer is None
    assert lu.explainer("attention", tiny_dino()).layer == "blocks.1.attn"
