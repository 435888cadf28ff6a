import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lafam_utils as lu


def lafam_by_hand(model: nn.Module, x: torch.Tensor, mode: str | None) -> torch.Tensor:
    """The paper's formula written out: channel mean, min-max per image, upsample."""
    feats = {}
    handle = model.layer4.register_forward_hook(lambda m, i, o: feats.setdefault("a", o))
    with torch.no_grad():
        model(x)
    handle.remove()
    mean = feats["a"].mean(dim=1)
    out = []
    for m in mean:
        out.append((m - m.min()) / (m.max() - m.min()))
    maps = torch.stack(out)
    if mode is None:
        return maps
    kw = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(maps[:, None], size=x.shape[-2:], mode=mode, **kw)[:, 0]


@pytest.mark.parametrize("mode", ["nearest", "bilinear", None])
def test_equals_the_formula(resnet50, images, mode):
    maps = lu.LaFAM(resnet50, layer="layer4", upsample=mode)(images)
    expected = lafam_by_hand(resnet50, images, mode)
    assert maps.shape == expected.shape
    assert torch.allclose(maps, expected, atol=1e-6)
    assert maps.min() >= 0 and maps.max() <= 1


def test_output_shape_follows_input(resnet50, images):
    assert lu.LaFAM(resnet50)(images).shape == (3, 97, 130)
    assert lu.LaFAM(resnet50, upsample=None)(images).shape == (3, 4, 5)


def test_batch_equals_images_one_by_one(resnet50, images):
    explainer = lu.LaFAM(resnet50)
    batch = explainer(images)
    single = torch.cat([explainer(images[i : i + 1]) for i in range(len(images))])
    assert torch.allclose(batch, single, atol=1e-5)


def test_no_graph_and_no_parameter_grad(resnet50, images):
    maps = lu.LaFAM(resnet50)(images.requires_grad_(True))
    assert not maps.requires_grad
    assert all(p.grad is None for p in resnet50.parameters())


def test_constant_map_is_zero_not_nan():
    model = nn.Sequential()
    model.add_module("layer4", nn.Conv2d(3, 4, 3, stride=4, padding=1))
    nn.init.zeros_(model.layer4.weight)
    nn.init.constant_(model.layer4.bias, 0.5)
    maps = lu.LaFAM(model)(torch.randn(2, 3, 17, 23))
    assert maps.shape == (2, 17, 23)
    assert torch.equal(maps, torch.zeros_like(maps))


def test_threshold_zeroes_values_below_it(resnet50, images):
    plain = lu.LaFAM(resnet50, upsample="bilinear")(images)
    thresholded = lu.LaFAM(resnet50, upsample="bilinear", threshold=0.5)(images)
    assert torch.equal(thresholded, torch.where(plain < 0.5, 0.0, plain))


def test_tied_maxima_keep_unit_range():
    model = nn.Sequential()
    model.add_module("layer4", nn.Identity())
    x = torch.zeros(1, 3, 4, 4)
    x[0, :, :2, :2] = 1.0  # four tied maxima
    maps = lu.LaFAM(model, upsample=None)(x)
    assert maps.sum() == 4 and maps.max() == 1


def test_bad_inputs_say_what_was_expected(resnet50):
    explainer = lu.LaFAM(resnet50)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        explainer(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        explainer(torch.randn(1, 1, 32, 32))
    with pytest.raises(TypeError, match="floating-point"):
        explainer(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="feature map"):
        lu.LaFAM(resnet50, layer="fc")(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="upsample"):
        lu.LaFAM(resnet50, upsample="bicubic")
    with pytest.raises(KeyError, match="Close matches"):
        lu.LaFAM(resnet50, layer="layer5")


def test_lafam_of_magnitudes_is_lafam_after_a_relu_and_the_mean_of_absolute_tokens_on_a_vit():
    from tiny_vits import layer_output, normalise, patches, tiny_dino

    from lafam_utils.explainers.base import upsample_maps

    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4), torch.nn.ReLU()).eval()
    x = torch.rand(3, 3, 33, 41)
    magnitude = lu.explainer("lafam-magnitude", cnn, layer="1")(x)
    torch.testing.assert_close(magnitude, lu.LaFAM(cnn, layer="1")(x), rtol=0, atol=0)
    vit = tiny_dino(registers=4)
    x = torch.rand(2, 3, 32, 40)
    grid = patches(layer_output(vit, "blocks.1", x), 5, x.shape[-2:])
    expected = upsample_maps(normalise(grid.abs().mean(dim=3)), tuple(x.shape[-2:]), "nearest")
    torch.testing.assert_close(lu.explainer("lafam-magnitude", vit)(x), expected)
    assert grid.mean(dim=3).lt(0).any()  # a signed layer: the plain channel mean differs
    assert not torch.allclose(lu.explainer("lafam-magnitude", vit)(x), lu.LaFAM(vit)(x))


def test_the_centred_norm_is_the_norm_of_each_position_after_its_channel_mean_is_removed():
    from tiny_vits import normalise

    from lafam_utils.explainers.base import upsample_maps

    conv = torch.nn.Conv2d(3, 8, 3, stride=4)
    x = torch.rand(1, 3, 33, 41)  # a batch of one, odd sizes
    with torch.no_grad():
        acts = conv(x).double()
    expected = normalise((acts - acts.mean(dim=1, keepdim=True)).square().sum(dim=1).sqrt()).float()
    maps = lu.explainer("lafam-centred-norm", torch.nn.Sequential(conv), layer="0")(x)
    torch.testing.assert_close(maps, upsample_maps(expected, (33, 41), "nearest"), rtol=0, atol=1e-6)


def test_the_centred_norm_ignores_a_shift_of_every_channel_and_is_zero_where_channels_agree():
    conv = torch.nn.Conv2d(3, 6, 4, stride=4)
    shift = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 3
    x = torch.rand(2, 3, 32, 32)
    plain, shifted = Shifted(conv, torch.zeros_like(shift)), Shifted(conv, shift)
    centred = [lu.explainer("lafam-centred-norm", model, layer="out", upsample=None)(x) for model in (plain, shifted)]
    torch.testing.assert_close(centred[1], centred[0], rtol=0, atol=1e-5)
    means = [lu.LaFAM(model, layer="out", upsample=None)(x) for model in (plain, shifted)]
    assert (means[1] - means[0]).abs().amax() > 0.1  # LaFAM's channel mean moves with the shift
    agreeing = Shifted(torch.nn.Conv2d(3, 1, 4, stride=4), torch.zeros(1, 4, 1, 1))  # one channel, repeated 4 times
    assert lu.explainer("lafam-centred-norm", agreeing, layer="out", upsample=None)(x).eq(0).all()


class Shifted(torch.nn.Module):
    """``conv``'s output plus ``shift`` (broadcast over channels and positions), recorded at ``out``."""

    def __init__(self, conv: torch.nn.Module, shift: torch.Tensor) -> None:
        super().__init__()
        self.conv, self.shift, self.out = conv, shift, torch.nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(x) + self.shift)
