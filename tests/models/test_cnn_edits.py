"""``layer4_channel_scale_edit``: the logits stay, layer4's channels scale, Grad-CAM's map stays and LaFAM's
moves; the model given is not changed; bad input is refused."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import lafam_utils as lu
from lafam_utils.explainers import minmax_normalize, upsample_maps
from lafam_utils.hooks import layer_output
from lafam_utils.models.cnn_edits import layer4_channel_scale_edit


def classifiers() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    models = {"shapes-supervised": lu.load_model("shapes-supervised")}
    for name in ("resnet18", "resnet50"):  # BasicBlock and Bottleneck
        model = getattr(torchvision.models, name)(num_classes=4).eval()
        model.class_names = list("abcd")
        models[name] = model
    return models


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    data = lu.SyntheticShapes(4, split="single", seed=1, size=96)
    return torch.stack([data[i]["image"] for i in range(4)])


@pytest.mark.parametrize("name", ["shapes-supervised", "resnet18", "resnet50"])
def test_logits_stay_layer4_scales_gradcam_stays_and_lafam_moves(name, images):
    model = classifiers()[name]
    before = {key: value.clone() for key, value in model.state_dict().items()}
    layer4 = layer_output(model, "layer4", images)
    channel = int(layer4.amin(dim=(2, 3)).amin(dim=0).argmax())  # active at every position of every image
    scales = torch.ones(model.fc.in_features)
    scales[channel] = 1e4  # one channel dominates the channel mean
    edited = layer4_channel_scale_edit(model, scales)
    with torch.no_grad():
        logits, edited_logits = model(images), edited(images)
    torch.testing.assert_close(edited_logits, logits, rtol=0, atol=1e-4 * logits.abs().max().item())
    unscaled = layer_output(edited, "layer4", images) / scales.view(1, -1, 1, 1)
    torch.testing.assert_close(unscaled, layer4, rtol=0, atol=1e-5 * layer4.max().item())  # channel k: scales[k] x
    gradcam = [lu.explainer("gradcam", m)(images) for m in (model, edited)]
    torch.testing.assert_close(gradcam[1], gradcam[0], rtol=0, atol=1e-4)
    lafam = [lu.explainer("lafam", m)(images) for m in (model, edited)]
    alone = upsample_maps(minmax_normalize(layer4[:, channel]), tuple(images.shape[-2:]), "nearest")
    torch.testing.assert_close(lafam[1], alone, rtol=0, atol=0.01)  # the channel mean is now that channel's map
    assert (lafam[1] - lafam[0]).abs().max() > 0.1
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())


@pytest.mark.parametrize(
    ("scales", "message"),
    [
        (torch.ones(3), "128 positive"),
        (-torch.ones(128), "positive finite"),
        (torch.full((128,), float("inf")), "finite"),
    ],
)
def test_bad_scales_are_refused(scales, message):
    with pytest.raises(ValueError, match=message):
        layer4_channel_scale_edit(lu.load_model("shapes-supervised"), scales)


def test_a_model_without_a_linear_head_is_refused():
    encoder = lu.load_model("shapes-simclr")
    with pytest.raises(ValueError, match="linear fc head"):
        layer4_channel_scale_edit(encoder, torch.ones(128))
    with pytest.raises(ValueError, match="torchvision ResNet or a ShapesNet"):
        layer4_channel_scale_edit(nn.Linear(3, 3), torch.ones(3))
