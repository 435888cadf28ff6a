import pytest
import torch
import torch.nn.functional as F
from skimage import filters
from torch import nn

import lafam_utils as lu
from lafam_utils.explainers import REPEAT
from lafam_utils.explainers.repeat import probability_of_importance
from lafam_utils.explainers.shared_forward import explain_together
from lafam_utils.explainers.thresholds import THRESHOLDS


def tiny_encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()).eval()


class ConstantEncoder(nn.Module):
    """Embeds every image as the same vector: masking changes nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(x), 4) + 0 * x.mean()


@pytest.fixture
def small_images() -> torch.Tensor:
    return torch.rand(3, 3, 21, 19, generator=torch.Generator().manual_seed(2)) + 0.5


def official_relax(encoder: nn.Module, image: torch.Tensor, run: lu.RELAX) -> torch.Tensor:
    """Wickstrom/RELAX's ``RELAX.forward`` for one (1, 3, H, W) image: a running mean, one mask at a
    time, the sum of weights starting at 1e-10; the masks are ``run``'s (seeded)."""
    size = tuple(image.shape[-2:])
    image_masks, weights = run.masks(*run.sample_grids(size, image.device), size)
    with torch.no_grad():
        unmasked = encoder(image).expand(len(image_masks), -1)
        scores = F.cosine_similarity(unmasked, encoder(image * image_masks[:, None]), dim=1)
    importance = torch.zeros(weights.shape[1:])
    sum_of_weights = torch.full(weights.shape[1:], 1e-10)
    for score, mask in zip(scores, weights):
        sum_of_weights += mask
        importance += mask * (score - importance) / sum_of_weights
    return importance


def official_repeat(importances: list[torch.Tensor], threshold: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """repeat_xai 0.1.0's ``REPEAT.forward`` on its repeats' RELAX maps: each repeat votes ``R / max R`` where
    ``R >= t(R)`` (skimage's threshold ``t``); probability = the votes' mean, uncertainty = its Bernoulli variance."""
    probability = 0
    for importance in importances:
        cut = float(getattr(filters, f"threshold_{threshold}")(importance.numpy()))
        weight = importance / importance.max()
        probability = probability + weight * (importance >= cut)
    probability = probability / len(importances)
    return probability, probability * (1 - probability)


def test_registered_with_its_title():
    built = lu.explainer("REPEAT", tiny_encoder(), n_repeats=3, n_masks=8)
    assert type(built) is REPEAT and built.title == "REPEAT" and (built.n_repeats, built.n_masks) == (3, 8)
    assert not built.needs_labels and not built.needs_layer
    default = lu.explainer("repeat", tiny_encoder())
    assert (default.n_repeats, default.n_masks, default.variant, default.explanation_threshold) == (
        10, 1000, "original", "mean"
    )
    with pytest.raises(ValueError, match="n_repeats"):
        lu.explainer("repeat", tiny_encoder(), n_repeats=0)
    with pytest.raises(ValueError, match="explanation_threshold must be one of"):
        lu.explainer("repeat", tiny_encoder(), explanation_threshold="yen")


def test_probability_is_the_mean_of_max_scaled_votes_at_or_above_the_mean():
    importance = torch.tensor(
        [
            [[[4.0, 2.0], [0.0, 2.0]]],  # mean 2: 4 and both 2s (ties vote, >=), with weights 1, 2/4, 2/4
            [[[1.0, 3.0], [2.5, 1.5]]],  # mean 2: 3 and 2.5 vote, with weights 1 and 2.5/3
            [[[0.0, 0.0], [0.0, 0.0]]],  # RELAX zeroed this repeat: it votes 0 (the official code gives NaN)
        ]
    )
    expected = torch.tensor([[[1.0, 1.5], [2.5 / 3, 0.5]]]) / 3
    assert torch.allclose(probability_of_importance(importance), expected)


@pytest.mark.parametrize(
    ("variant", "threshold"), [("original", "mean"), ("paper", "mean"), ("original", "otsu"), ("original", "li")]
)
def test_equals_the_official_computation_image_by_image(small_images, variant, threshold):
    encoder = tiny_encoder()
    explainer = lu.explainer(
        "repeat", encoder, n_repeats=4, n_masks=24, cells=3, seed=7, variant=variant, explanation_threshold=threshold
    )
    maps = explainer(small_images)
    runs = [lu.RELAX(encoder, n_masks=24, cells=3, seed=7 + r, variant=variant) for r in range(4)]
    for i in range(3):
        repeats = [explainer.repeat_importance[r, i] for r in range(4)]
        for run, importance in zip(runs, repeats):
            assert torch.allclose(importance, official_relax(encoder, small_images[i : i + 1], run), atol=1e-5)
        # the vote compares R with its threshold: the official computation votes on the same R, so that a
        # value within float rounding of the threshold cannot flip between two computations of R
        probability, uncertainty = official_repeat(repeats, threshold)
        assert torch.allclose(explainer.importance[i], probability, atol=1e-5)
        assert torch.allclose(explainer.uncertainty[i], uncertainty, atol=1e-5)
    assert explainer.importance.shape == ((3, 3, 3) if variant == "paper" else (3, 21, 19))
    assert maps.shape == (3, 21, 19) and explainer.u_relax is None
    assert (explainer.uncertainty <= 0.25).all() and explainer.uncertainty.amax() > 0


def test_repeat_zero_is_relax_with_the_same_seed_and_repeats_differ(small_images):
    encoder = tiny_encoder()
    explainer = lu.explainer("repeat", encoder, n_repeats=3, n_masks=16, cells=3, seed=5, variant="paper")
    explainer(small_images)
    relax = lu.RELAX(encoder, n_masks=16, cells=3, seed=5)
    relax(small_images)
    assert explainer.repeat_importance.shape == (3, 3, 3, 3)
    assert torch.equal(explainer.repeat_importance[0], relax.importance)
    assert not torch.equal(explainer.repeat_importance[0], explainer.repeat_importance[1])


def test_same_seed_bit_identical_other_seed_differs(small_images):
    encoder = tiny_encoder()
    first = lu.explainer("repeat", encoder, n_repeats=2, n_masks=16, cells=3, seed=1)(small_images)
    again = lu.explainer("repeat", encoder, n_repeats=2, n_masks=16, cells=3, seed=1)(small_images)
    other = lu.explainer("repeat", encoder, n_repeats=2, n_masks=16, cells=3, seed=2)(small_images)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_progress_counts_every_repeat(small_images):
    calls = []
    explainer = lu.explainer(
        "repeat", tiny_encoder(), n_repeats=3, n_masks=8, cells=2, batch_size=4, on_progress=lambda *a: calls.append(a)
    )
    explainer(small_images)
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1] == (3 * 3 * 8, 3 * 3 * 8)


def test_shared_forward_gives_the_same_maps(small_images):
    encoder = tiny_encoder()
    explainer = lu.explainer("repeat", encoder, n_repeats=2, n_masks=8, cells=2)
    alone = explainer(small_images)
    shared = explain_together({"repeat": explainer}, small_images).maps["repeat"]
    assert torch.equal(alone, shared)


def test_an_encoder_that_ignores_the_masking_gives_zero_maps(small_images):
    explainer = lu.explainer("repeat", ConstantEncoder(), n_repeats=2, n_masks=8, cells=2)
    with pytest.warns(UserWarning, match="did not change under masking"):
        maps = explainer(small_images[:1])
    assert torch.equal(maps, torch.zeros(1, 21, 19))


@pytest.mark.parametrize("name", list(THRESHOLDS))
def test_thresholds_equal_scikit_image(name):
    generator = torch.Generator().manual_seed(0)
    samples = [
        torch.rand(400, generator=generator),
        torch.randn(300, generator=generator) ** 2,
        torch.rand(49, generator=generator) * 0.1 + 0.5,
        torch.cat([torch.randn(200, generator=generator), torch.randn(50, generator=generator) + 4]),
    ]
    for values in samples:
        expected = float(getattr(filters, f"threshold_{name}")(values.numpy()))
        ours = float(THRESHOLDS[name](values))
        assert abs(ours - expected) <= 1e-5 * float(values.max() - values.min())  # float32 (skimage) vs float64
    constant = torch.full((9,), 0.25)
    assert float(THRESHOLDS[name](constant)) == 0.25
