"""The fused multi-layer LaFAM: the mean of normalised channel-mean maps at the finest layer's grid."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_vits import tiny_dino

import lafam_utils as lu
from lafam_utils.explainers import minmax_normalize
from lafam_utils.shapes.network import ShapesNet


@pytest.fixture(scope="module")
def shapes_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return ShapesNet(4, widths=(8, 8, 8, 16, 16)).eval()


def channel_mean(model, layer, x):
    with torch.no_grad():
        return lu.hooks.layer_output(model, layer, x).mean(dim=1)


def test_defaults_to_the_last_three_stages(shapes_net, resnet50):
    assert lu.explainer("lafam-fused", shapes_net).layers == ["layer2", "layer3", "layer4"]
    assert lu.explainer("LaFAM-fused", resnet50).layers == ["layer2", "layer3", "layer4"]
    assert not lu.explainers.explainer_class("lafam-fused").needs_layer


def test_is_the_mean_of_normalised_maps_upsampled_bilinearly_to_the_finest_grid(shapes_net):
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    maps = lu.explainer("lafam-fused", shapes_net, layers=["layer4", "layer2"], upsample=None)(x)
    fine = minmax_normalize(channel_mean(shapes_net, "layer2", x))
    coarse = minmax_normalize(channel_mean(shapes_net, "layer4", x))
    coarse = F.interpolate(coarse[:, None], size=fine.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    assert maps.shape == (2, 12, 16)
    torch.testing.assert_close(maps, minmax_normalize((fine + coarse) / 2), rtol=0, atol=1e-6)
    assert lu.explainer("lafam-fused", shapes_net)(x).shape == (2, 96, 128)


def test_batch_of_one_and_no_graph(shapes_net):
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    explainer = lu.explainer("lafam-fused", shapes_net)
    batch = explainer(x)
    assert not batch.requires_grad
    torch.testing.assert_close(batch, torch.cat([explainer(x[i : i + 1]) for i in range(3)]), rtol=0, atol=1e-6)


def test_bad_layers_say_what_was_expected(shapes_net):
    with pytest.raises(ValueError, match="at least two layers"):
        lu.explainer("lafam-fused", shapes_net, layers=["layer4"])
    with pytest.raises(ValueError, match="at least two layers"):
        lu.explainer("lafam-fused", shapes_net, layers="layer4")
    with pytest.raises(KeyError, match="no layer 'layer9'"):
        lu.explainer("lafam-fused", shapes_net, layers=["layer4", "layer9"])
    with pytest.raises(ValueError, match="no ResNet stages"):
        lu.explainer("lafam-fused", tiny_dino())
    assert not lu.explainers.applies_to("lafam-fused", tiny_dino())
