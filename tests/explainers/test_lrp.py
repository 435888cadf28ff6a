"""LaFAM-LRP and LRP: zennit's relevance, conservation, sign handling, and a model left as it was."""

from __future__ import annotations

import pytest
import torch
import torchvision
from tiny_vits import tiny_dino
from torch import nn
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat
from zennit.torchvision import ResNetCanonizer

import lafam_utils as lu
from lafam_utils.explainers import minmax_normalize
from lafam_utils.explainers.lrp import imagenet_box
from lafam_utils.shapes.network import ShapesNet


def conv_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.ReLU())


def bias_free_cnn() -> nn.Module:
    """Convolutions without bias and ReLUs, staged like a ResNet: LRP's z-rules conserve relevance exactly here."""
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("stem", conv_relu(3, 8, stride=2))
    model.add_module("layer1", conv_relu(8, 8))
    model.add_module("layer2", conv_relu(8, 16, stride=2))
    return model.eval()


def tiny_shapes_net(classes: int | None = 4) -> nn.Module:
    """A small ShapesNet whose batch norms have non-trivial statistics (their merge changes the weights)."""
    torch.manual_seed(0)
    model = ShapesNet(classes, widths=(8, 8, 8, 16, 16))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    model.class_names = [f"class {i}" for i in range(classes)] if classes else None
    return model.eval()


def tiny_resnet() -> nn.Module:
    """torchvision's ResNet with one Bottleneck per stage, random init (batch norms at identity statistics)."""
    torch.manual_seed(0)
    return torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [1, 1, 1, 1], num_classes=5).eval()


def trunk(model: nn.Module, last: str) -> nn.Sequential:
    """The model's children up to ``last`` as one Sequential: the network that LaFAM-LRP explains."""
    children = []
    for name, child in model.named_children():
        children.append(child)
        if name == last:
            return nn.Sequential(*children)
    raise KeyError(last)


def pixels(batch: int = 2, size: int = 64, seed: int = 1) -> torch.Tensor:
    """Images in [0, 1] after ImageNet normalisation (inside ``EpsilonGammaBox``'s box)."""
    low, high = imagenet_box(torch.device("cpu"))
    uniform = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return low + uniform * (high - low)


def layer_total(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """Each image's total of LaFAM's channel mean at ``layer``: the relevance LaFAM-LRP starts from."""
    with torch.no_grad():
        return lu.hooks.layer_output(model, layer, x).mean(dim=1).sum(dim=(1, 2))


def test_registered_and_offered_where_they_apply():
    cnn, encoder, vit = tiny_shapes_net(), tiny_shapes_net(None), tiny_dino()
    built = lu.explainer("LaFAM-LRP", cnn)
    assert type(built) is lu.explainers.LaFAMLRP and built.title == "LaFAM-LRP" and built.layer == "layer4"
    assert not built.needs_labels and built.needs_layer
    assert lu.explainer("lrp", cnn).needs_labels
    assert lu.explainers.applies_to("lafam-lrp", cnn) and lu.explainers.applies_to("lafam-lrp", encoder)
    assert lu.explainers.applies_to("lrp", cnn) and not lu.explainers.applies_to("lrp", encoder)
    assert not lu.explainers.applies_to("lafam-lrp", vit) and not lu.explainers.applies_to("lrp", vit)


@pytest.mark.parametrize("composite", ["EpsilonPlusFlat", "EpsilonGammaBox"])
def test_conserves_the_layers_relevance_on_a_bias_free_network(composite):
    model, x = bias_free_cnn(), pixels()
    explainer = lu.explainer("lafam-lrp", model, layer="layer2", composite=composite, canonizer=None)
    relevance = explainer.relevance(x)
    assert relevance.shape == x.shape
    # z+, gamma, flat and ZBox are conservative: the totals agree up to zennit's stabiliser (1e-6 per denominator)
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3)), layer_total(model, "layer2", x), rtol=1e-4, atol=0)
    to_layer = lu.explainer("lafam-lrp", model, layer="layer2", composite=composite, canonizer=None, to_layer="layer1")
    at_layer1 = to_layer.relevance(x)
    assert at_layer1.shape == (2, 8, 32, 32)
    torch.testing.assert_close(at_layer1.sum(dim=(1, 2, 3)), layer_total(model, "layer2", x), rtol=1e-4, atol=0)


def test_biases_absorb_relevance_so_batch_norm_networks_do_not_conserve_it():
    model, x = tiny_shapes_net(), pixels()
    relevance = lu.explainer("lafam-lrp", model).relevance(x)
    assert not torch.allclose(relevance.sum(dim=(1, 2, 3)), layer_total(model, "layer4", x), rtol=1e-2)


@pytest.mark.parametrize(
    ("composite", "rules"), [("EpsilonPlusFlat", EpsilonPlusFlat), ("EpsilonGammaBox", EpsilonGammaBox)]
)
def test_equals_zennits_attributor_on_the_truncated_network(composite, rules):
    model, x = tiny_shapes_net(), pixels()
    explainer = lu.explainer("lafam-lrp", model, composite=composite, upsample=None, sign="signed")
    options = {"low": imagenet_box(x.device)[0], "high": imagenet_box(x.device)[1]} if rules is EpsilonGammaBox else {}
    reference = rules(canonizers=[SequentialMergeBatchNorm()], **options)
    with Gradient(trunk(model, "layer4"), reference) as attributor:
        _, expected = attributor(x, attr_output=lambda output: output / output.shape[1])
    relevance = explainer.relevance(x)
    torch.testing.assert_close(relevance, expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(explainer(x), minmax_normalize(expected.sum(dim=1)), rtol=0, atol=1e-5)


def test_resnet_bottlenecks_get_zennits_resnet_canonizer_and_pixel_maps():
    model, x = tiny_resnet(), pixels(size=48)
    explainer = lu.explainer("lafam-lrp", model)
    low, high = imagenet_box(x.device)
    with Gradient(trunk(model, "layer4"), EpsilonGammaBox(low, high, canonizers=[ResNetCanonizer()])) as attributor:
        _, expected = attributor(x, attr_output=lambda output: output / output.shape[1])
    relevance = explainer.relevance(x)
    torch.testing.assert_close(relevance, expected, rtol=1e-4, atol=1e-6)
    # random init: merged batch norms have zero biases; gamma, ZBox, residual sums and max-pooling conserve relevance
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3)), layer_total(model, "layer4", x), rtol=1e-3, atol=0)
    maps = explainer(x)
    assert maps.shape == (2, 48, 48) and maps.dtype == torch.float32
    assert len(torch.unique(maps[0])) > 48 * 2  # a pixel-level map, not layer4's 2x2 blocks
    assert not torch.equal(maps, lu.explainer("lafam-lrp", model, canonizer=None)(x))


def test_sign_handling_positive_absolute_signed():
    model, x = tiny_shapes_net(), pixels()
    options = {"composite": "EpsilonGammaBox", "upsample": None}
    summed = lu.explainer("lafam-lrp", model, **options).relevance(x).sum(dim=1)
    assert (summed < 0).any() and (summed > 0).any()  # the ZBox rule gives negative relevance here
    expected = {"positive": summed.clamp_min(0), "absolute": summed.abs(), "signed": summed}
    for sign, raw in expected.items():
        maps = lu.explainer("lafam-lrp", model, sign=sign, **options)(x)
        torch.testing.assert_close(maps, minmax_normalize(raw), rtol=0, atol=1e-6)
    positive = lu.explainer("lafam-lrp", model, **options)(x)
    assert positive.eq(0).float().mean() > 0.2  # clipped where the relevance is negative


def model_state(model: nn.Module) -> dict:
    return {
        "tensors": {key: value.clone() for key, value in model.state_dict().items()},
        "parameters": {name: id(p) for name, p in model.named_parameters()},
        "requires_grad": {name: p.requires_grad for name, p in model.named_parameters()},
        "attributes": {name: sorted(vars(module)) for name, module in model.named_modules()},
    }


def assert_untouched(model: nn.Module, before: dict) -> None:
    after = model_state(model)
    assert after["parameters"] == before["parameters"] and after["requires_grad"] == before["requires_grad"]
    assert after["tensors"].keys() == before["tensors"].keys()
    assert all(torch.equal(after["tensors"][k], v) for k, v in before["tensors"].items())
    assert after["attributes"] == before["attributes"]  # no canonizer's forward or Sum module left behind
    for module in model.modules():
        assert not (module._forward_hooks or module._forward_pre_hooks or module._backward_hooks)
        assert not getattr(module, "_backward_pre_hooks", None)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("method", ["lafam-lrp", "lrp"])
def test_no_hooks_gradients_or_merged_weights_left_also_after_an_error(method):
    model, x = tiny_resnet(), pixels(size=32)
    model.class_names = [str(i) for i in range(5)]
    before = model_state(model)
    lu.explainer(method, model)(x.requires_grad_(True))
    assert x.grad is None
    assert_untouched(model, before)
    if method == "lafam-lrp":
        with pytest.raises(RuntimeError, match="not an earlier layer"):
            lu.explainer(method, model, layer="layer2", to_layer="layer3")(x)
    else:
        with pytest.raises(ValueError, match=r"expected a \(B, C, h, w\) feature map"):
            lu.explainer(method, model, to_layer="fc")(x)
    assert_untouched(model, before)
    def broken(*_: object) -> None:
        raise RuntimeError("broken layer")

    handle = model.layer3.register_forward_hook(broken)  # a forward that fails while zennit's hooks are on
    with pytest.raises(RuntimeError, match="broken layer"):
        lu.explainer(method, model)(x)
    handle.remove()
    assert_untouched(model, before)


def test_batch_equals_single_images_and_works_under_no_grad():
    model, x = tiny_shapes_net(), pixels(batch=3)
    explainer = lu.explainer("lafam-lrp", model)
    batch = explainer(x)
    with torch.no_grad():
        single = torch.cat([explainer(x[i : i + 1]) for i in range(3)])
    assert not batch.requires_grad and batch.device == x.device
    torch.testing.assert_close(batch, single, rtol=0, atol=1e-5)


def test_to_layer_gives_a_map_at_that_layers_resolution():
    model, x = tiny_shapes_net(), pixels(size=96)
    maps = lu.explainer("lafam-lrp", model, to_layer="layer2", upsample=None)(x)
    assert maps.shape == (2, 12, 12)
    assert lu.explainer("lafam-lrp", model, to_layer="layer2")(x).shape == (2, 96, 96)


def test_lrp_of_the_class_score_equals_zennits_attributor():
    model, x = tiny_shapes_net(), pixels()
    explainer = lu.explainer("lrp", model, composite="EpsilonPlusFlat", sign="signed", upsample=None)
    targets = torch.tensor([3, 1])
    with Gradient(model, EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()])) as attributor:
        _, expected = attributor(x, attr_output=torch.eye(4)[targets])
    torch.testing.assert_close(explainer.relevance(x, target=targets), expected, rtol=1e-4, atol=1e-6)
    maps = explainer(x, target="class 1")
    assert explainer.targets.tolist() == [1, 1] and maps.shape == (2, 64, 64)
    explainer(x)
    with torch.no_grad():
        assert explainer.targets.tolist() == model(x).argmax(dim=1).tolist()


def test_bad_settings_and_models_say_what_was_expected():
    cnn = tiny_shapes_net()
    with pytest.raises(ValueError, match="EpsilonPlusFlat, EpsilonGammaBox"):
        lu.explainer("lafam-lrp", cnn, composite="nope")
    assert lu.explainer("lafam-lrp", cnn, composite="epsilon_gamma_box").composite == "epsilon_gamma_box"
    with pytest.raises(ValueError, match="canonizer must be one of"):
        lu.explainer("lafam-lrp", cnn, canonizer="batchnorm")
    with pytest.raises(ValueError, match="sign must be one of"):
        lu.explainer("lafam-lrp", cnn, sign="negative")
    with pytest.raises(KeyError, match="no layer 'layer9'"):
        lu.explainer("lafam-lrp", cnn, to_layer="layer9")
    with pytest.raises(ValueError, match="no rules for attention or LayerNorm"):
        lu.explainer("lafam-lrp", tiny_dino())
    with pytest.raises(ValueError, match="no class_names"):
        lu.explainer("lrp", tiny_shapes_net(None))
    with pytest.raises(ValueError, match="starts at the class score"):
        lu.explainer("lrp", cnn, layer="layer4")
    with pytest.raises(TypeError, match="float32"):
        lu.explainer("lafam-lrp", cnn)(pixels().double())


def test_bf16_forward_and_propagation_stay_near_fp32():
    model, x = tiny_shapes_net(), pixels()
    fp32 = lu.explainer("lafam-lrp", model)(x)
    bf16 = lu.explainer("lafam-lrp", model, precision="bf16")(x)
    assert bf16.dtype == torch.float32 and 0 < (bf16 - fp32).abs().max() < 0.1
