import pytest
import torch
from peer_helpers import identity_model
from scipy.stats import kstest

import lafam_utils as lu
from lafam_utils.explainers import RandomCAM
from lafam_utils.explainers.random_cam import PRIME, image_keys


def raw_maps(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The raw (before min-max) maps of the identity model: one value per pixel of ``x``."""
    return lu.explainer("random", identity_model(), seed=seed).layer_maps(x)


@pytest.fixture
def many_images() -> torch.Tensor:
    return torch.randn(512, 3, 8, 8, generator=torch.Generator().manual_seed(6))


def test_registered_with_its_title():
    built = lu.explainer("Random", identity_model(), seed=3)
    assert type(built) is RandomCAM and built.title == "Random" and built.seed == 3
    assert not built.needs_labels and built.needs_layer


def test_values_are_uniform_and_independent(many_images):
    values = raw_maps(many_images)
    flat = values.flatten(1).double()
    assert values.shape == (512, 8, 8) and values.dtype == torch.float32
    assert kstest(flat.flatten().numpy(), "uniform").pvalue > 0.01
    assert abs(flat.mean() - 0.5) < 0.01 and abs(flat.var() - 1 / 12) < 0.005
    # correlations of independent samples of n: mean 0, standard deviation 1/sqrt(n - 1)
    across_positions = torch.corrcoef(flat.T)  # 64 positions x 64 positions over n = 512 images
    across_images = torch.corrcoef(flat[:64])  # 64 images x 64 images over n = 64 positions
    for correlations, n in ((across_positions, 512), (across_images, 64)):
        off_diagonal = correlations[~torch.eye(64, dtype=torch.bool)]
        assert abs(off_diagonal.mean()) < 0.02 and abs(off_diagonal.std() * (n - 1) ** 0.5 - 1) < 0.1


def test_over_seeds_one_position_is_uniform():
    image = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(7))
    values = torch.stack([raw_maps(image, seed)[0, 1, 2] for seed in range(400)])
    assert kstest(values.double().numpy(), "uniform").pvalue > 0.01


def test_an_image_keeps_its_map_in_any_batch_and_position(many_images):
    batch = raw_maps(many_images[:6])
    shuffled = raw_maps(many_images[[5, 3, 0]])
    alone = raw_maps(many_images[3:4])
    assert torch.equal(shuffled, batch[[5, 3, 0]]) and torch.equal(alone[0], batch[3])


def test_seed_and_pixels_pick_the_map(many_images):
    x = many_images[:4]
    assert torch.equal(raw_maps(x, seed=1), raw_maps(x, seed=1))
    assert not torch.equal(raw_maps(x, seed=1), raw_maps(x, seed=2))
    changed = x.clone()
    changed[0, 2, 7, 7] = torch.nextafter(changed[0, 2, 7, 7], torch.tensor(10.0))  # one float32 step
    assert not torch.equal(raw_maps(changed)[0], raw_maps(x)[0]) and torch.equal(raw_maps(changed)[1:], raw_maps(x)[1:])
    keys = image_keys(many_images, torch.Generator().manual_seed(0))
    assert keys.unique().numel() == 512 and keys.min() >= 0 and keys.max() < PRIME


def test_layer_resolution_upsampled_and_normalised(resnet50, images):
    explainer = lu.explainer("random", resnet50)
    maps = explainer(images)
    assert maps.shape == (3, 97, 130)
    assert maps.amin(dim=(1, 2)).eq(0).all() and maps.amax(dim=(1, 2)).eq(1).all()
    coarse = lu.explainer("random", resnet50, upsample=None)(images)
    assert coarse.shape == (3, 4, 5)
    assert torch.equal(lu.explainers.upsample_maps(coarse, (97, 130), "nearest"), maps)
    assert torch.equal(explainer(images[1:2]), maps[1:2])
