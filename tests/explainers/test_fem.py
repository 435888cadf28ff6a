import numpy as np
import pytest
import torch
from peer_helpers import identity_model, layer4_activations, normalised
from pytorch_grad_cam import FEM as ReferenceFEM  # noqa: N811 - FEM is a class, not a constant

import lafam_utils as lu
from lafam_utils.explainers import minmax_normalize


def reference_cams(model, acts: np.ndarray, k: float = 2) -> np.ndarray:
    """pytorch-grad-cam's raw FEM maps of given activations (its ``get_cam_image``); ``model`` only
    builds the reference object."""
    with ReferenceFEM(model, [model.layer4], k=k) as reference:
        return reference.get_cam_image(None, None, None, acts, None, False)


PGC = "pytorch-grad-cam"


def paper_fem(acts: np.ndarray, k: float = 2) -> np.ndarray:
    """Fuad et al.'s FEM written out in float64: sum_k mu_k 1[A^k >= mu_k + k sigma_k], population std."""
    acts = acts.astype(np.float64)
    mean = acts.mean(axis=(2, 3), keepdims=True)
    std = acts.std(axis=(2, 3), keepdims=True)
    return ((acts >= mean + k * std) * mean).sum(axis=1)


def test_registered_with_its_title(resnet50):
    built = lu.explainer("FEM", resnet50, k_sigma=1.5)
    assert type(built) is lu.explainers.FEM and built.title == "FEM" and built.k_sigma == 1.5
    assert built.variant == "paper" and not built.needs_labels and built.needs_layer
    with pytest.raises(ValueError, match="variant must be one of"):
        lu.explainer("fem", resnet50, variant="xplique")


def test_paper_variant_is_the_channel_mean_times_the_binary_mask_by_hand():
    # channel 0: 5 at one of five positions -> mean 1, std 2, threshold exactly 5: the tie counts (>=), weight 1
    # channel 1: 2 at two of five positions -> mean 0.8, std 0.98, threshold 2.76: nothing counts
    # channel 2: 10 at position 4, 0 elsewhere -> mean 2, std 4, threshold exactly 10: counts, weight 2
    x = torch.zeros(1, 3, 1, 5)
    x[0, 0, 0, 1] = 5.0
    x[0, 1, 0, 2] = x[0, 1, 0, 3] = 2.0
    x[0, 2, 0, 4] = 10.0
    raw = lu.explainer("fem", identity_model()).from_activations(x)
    assert torch.equal(raw, torch.tensor([[[0.0, 1.0, 0.0, 0.0, 2.0]]]))
    maps = lu.explainer("fem", identity_model(), upsample=None)(x)
    assert torch.equal(maps, torch.tensor([[[0.0, 0.5, 0.0, 0.0, 1.0]]]))
    strict = lu.explainer("fem", identity_model(), upsample=None, variant=PGC)(x)
    assert torch.equal(strict, torch.zeros(1, 1, 5))  # pytorch-grad-cam's ">" counts neither tie


def test_paper_variant_equals_the_definition_on_resnet50(resnet50, images):
    acts = layer4_activations(resnet50, images)
    mean, std = acts.mean(axis=(2, 3), keepdims=True), acts.std(axis=(2, 3), keepdims=True)
    varying = np.broadcast_to(std > 0, acts.shape)
    threshold = np.broadcast_to(mean + 2 * std, acts.shape)[varying]
    margin = np.abs(acts[varying] - threshold) / threshold
    assert margin.min() > 1e-6  # no value within a few float32 steps of its threshold: the same on any CPU
    raw = lu.explainer("fem", resnet50).from_activations(torch.from_numpy(acts))
    expected = paper_fem(acts)
    assert np.abs(raw.numpy() - expected).max() <= 1e-5 * np.abs(expected).max()
    maps = lu.explainer("fem", resnet50, upsample=None)(images)
    assert np.abs(maps.numpy() - minmax_normalize(torch.from_numpy(expected).float()).numpy()).max() < 1e-5


@pytest.mark.parametrize("k", [2, 1, 0.5])
def test_equals_pytorch_grad_cam_at_layer_resolution(resnet50, images, k):
    maps = lu.explainer("fem", resnet50, k_sigma=k, upsample=None, variant=PGC)(images)
    expected = normalised(reference_cams(resnet50, layer4_activations(resnet50, images), k))
    assert maps.shape == (3, 4, 5)
    assert np.abs(maps.numpy() - expected).max() < 1e-5


def test_equals_pytorch_grad_cam_after_its_resize(resnet50, images):
    maps = lu.explainer("fem", resnet50, upsample="bilinear", variant=PGC)(images)
    with ReferenceFEM(resnet50, [resnet50.layer4]) as reference:
        expected = reference(images, targets=None)
    # pytorch-grad-cam min-max normalises again after its cv2 resize; the interpolation is the same
    assert maps.shape == expected.shape == (3, 97, 130)
    assert np.abs(minmax_normalize(maps).numpy() - expected).max() < 1e-5


def test_pytorch_grad_cam_weights_are_the_share_of_positions_above_mean_plus_k_std():
    # channel 0 on six positions: one spike of 6, mean 1, std sqrt(5) -> threshold 5.47, one position counts
    # channel 1: two equal values of 3 -> mean 1, std sqrt(2) -> threshold 3.83, none counts
    x = torch.zeros(1, 3, 2, 3)
    x[0, 0, 0, 0] = 6.0
    x[0, 1, 1, 1] = x[0, 1, 1, 2] = 3.0
    maps = lu.explainer("fem", identity_model(), upsample=None, variant=PGC)(x)
    expected = minmax_normalize(x[:, 0] / 6)
    assert torch.equal(maps, expected)


def test_a_value_equal_to_the_threshold_does_not_count_in_pytorch_grad_cam(resnet50):
    # one spike of 5 on five positions: mean 1, std 2, threshold exactly 5 (all exact in float32);
    # on five positions no value can exceed mean + 2 std, so every channel weighs 0: an all-zero map
    x = torch.zeros(1, 3, 1, 5)
    x[0, 0, 0, 0], x[0, 1, 0, 3], x[0, 2, 0, 4] = 5.0, 5.0, 5.0
    maps = lu.explainer("fem", identity_model(), upsample=None, variant=PGC)(x)
    assert torch.equal(maps, torch.zeros(1, 1, 5))
    paper = lu.explainer("fem", identity_model(), upsample=None)(x)  # the paper's >= counts each tie, weight 1
    assert torch.equal(paper, torch.tensor([[[1.0, 0.0, 0.0, 1.0, 1.0]]]))
    assert np.array_equal(reference_cams(resnet50, x.numpy()), np.zeros((1, 1, 5)))


@pytest.mark.parametrize("variant", ["paper", PGC])
def test_batch_of_one_odd_sizes_and_no_graph(resnet50, images, variant):
    explainer = lu.explainer("fem", resnet50, variant=variant)
    batch = explainer(images.requires_grad_(True))
    assert batch.shape == (3, 97, 130) and not batch.requires_grad
    assert batch.amin(dim=(1, 2)).eq(0).all() and batch.amax(dim=(1, 2)).eq(1).all()
    single = torch.cat([explainer(images[i : i + 1]) for i in range(3)])
    assert torch.allclose(batch, single, atol=1e-5)


@pytest.mark.parametrize("variant", ["paper", PGC])
def test_constant_activations_give_zero_maps(variant):
    maps = lu.explainer("fem", identity_model(), upsample=None, variant=variant)(torch.full((2, 3, 5, 7), 0.3))
    assert maps.shape == (2, 5, 7)
    assert torch.equal(maps, torch.zeros_like(maps))
