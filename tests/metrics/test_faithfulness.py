"""Faithfulness against Quantus 0.6.0 (ROAD, PixelFlipping, its imputation) and direct computations."""

import numpy as np
import pytest
import quantus
import torch
import torch.nn.functional as F
from model_metric_case import SmallNet, distinct_maps, images
from quantus.functions.perturb_func import noisy_linear_imputation as quantus_imputation
from scipy.ndimage import gaussian_filter

from lafam_utils.metrics import faithfulness as Fa
from lafam_utils.metrics.imputation import noisy_linear_imputation
from lafam_utils.metrics.quantus_reference import quantus_call as quiet


def removed_top(maps: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The pixels of the highest ``fraction`` of each map, and their flat indices in descending order."""
    flat = maps.flatten(1)
    order = flat.argsort(dim=1, descending=True)[:, : int(flat.shape[1] * fraction)]
    return torch.zeros_like(flat, dtype=torch.bool).scatter_(1, order, True).view(maps.shape), order


@pytest.mark.parametrize(
    "batch, channels, height, width, fraction",
    [(3, 3, 17, 23, 0.3), (2, 1, 40, 33, 0.9), (1, 3, 5, 5, 0.96), (2, 3, 64, 48, 0.5), (1, 3, 9, 7, 0.01)],
)
def test_linear_imputation_equals_quantus(batch, channels, height, width, fraction):
    x = images(batch, channels, height, width)
    removed, order = removed_top(distinct_maps(batch, height, width), fraction)
    ours = noisy_linear_imputation(x, removed, noise=0.0)
    for i in range(batch):
        expected = quantus_imputation(x[i].double().numpy(), order[i].numpy(), noise=0.0)
        np.testing.assert_allclose(ours[i].numpy(), expected, atol=2e-5, rtol=0)
    assert torch.equal(ours[~removed[:, None].expand_as(x)], x[~removed[:, None].expand_as(x)])


def test_imputation_noise_is_seeded_and_only_on_removed_pixels():
    x = images(2, 3, 32, 32)
    removed, _ = removed_top(distinct_maps(2, 32, 32), 0.5)
    clean = noisy_linear_imputation(x, removed, noise=0.0)
    noisy = noisy_linear_imputation(x, removed, noise=0.05, generator=torch.Generator().manual_seed(3))
    again = noisy_linear_imputation(x, removed, noise=0.05, generator=torch.Generator().manual_seed(3))
    assert torch.equal(noisy, again)
    difference = noisy - clean
    inside = removed[:, None].expand_as(x)
    assert torch.equal(difference[~inside], torch.zeros_like(difference[~inside]))
    assert abs(float(difference[inside].std()) - 0.05) < 0.005


def test_imputation_rejects_an_image_with_every_pixel_removed():
    with pytest.raises(ValueError, match="at least one kept pixel"):
        noisy_linear_imputation(images(1, 3, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool mask"):
        noisy_linear_imputation(images(1, 3, 4, 4), torch.ones(1, 5, 4, dtype=torch.bool))


@pytest.mark.parametrize("channels", [1, 3])
def test_road_accuracy_equals_quantus(channels):
    """Quantus 0.6.0's ROAD ranks the map broadcast to (C, H, W) and indexes an (H, W) mask with those
    indices, which fails for C = 3; it gets the map in channel 0 and lower values in the others. Its
    percentage then counts C*H*W entries: Quantus' q % removes C*q % of the pixels."""
    model = SmallNet(channels=channels, classes=5 if channels == 1 else 3, seed=0 if channels == 1 else 3)
    x = images(8, channels, 16, 18, seed=5)
    maps = distinct_maps(8, 16, 18)
    y = model(x).argmax(dim=1)
    quantus_percentages = [2, 5, 10, 20, 30] if channels == 3 else [10, 30, 50, 70, 90]
    attributions = maps[:, None].repeat(1, channels, 1, 1)
    attributions[:, 1:] -= maps.max() + 1
    reference = quiet(
        quantus.ROAD(percentages=quantus_percentages, noise=0.0, disable_warnings=True),
        model=model,
        x_batch=x.numpy(),
        y_batch=y.numpy(),
        a_batch=attributions.numpy(),
    )
    ours = Fa.road_curve(
        x, maps, Fa.ModelScore(model, x, "accuracy"), [channels * q for q in quantus_percentages], noise=0.0
    )
    np.testing.assert_allclose(ours.mean(dim=0).numpy(), list(reference.values()), atol=1e-12)
    assert 0 < float(ours.mean()) < 1  # the predictions do change along the way


@pytest.mark.parametrize("most_relevant_first", [True, False])
def test_road_probability_and_cosine_curves_equal_a_direct_computation(most_relevant_first):
    x = images(3, 3, 16, 18, seed=6)
    maps = distinct_maps(3, 16, 18, seed=7)
    percentages = [10, 45, 90]
    for model in (SmallNet(), SmallNet(classes=None, seed=3)):
        ours = Fa.road_curve(x, maps, Fa.ModelScore(model, x), percentages, most_relevant_first, noise=0.0)
        with torch.no_grad():
            reference = model(x)
            order = maps.flatten(1).argsort(dim=1, descending=most_relevant_first)
            for j, p in enumerate(percentages):
                k = int(16 * 18 * p / 100)
                imputed = torch.stack(
                    [
                        torch.from_numpy(
                            quantus_imputation(x[i].double().numpy(), order[i, :k].numpy(), noise=0.0)
                        ).float()
                        for i in range(3)
                    ]
                )
                output = model(imputed)
                if hasattr(model, "class_names"):
                    expected = output.softmax(dim=1).gather(1, reference.argmax(dim=1, keepdim=True))[:, 0]
                else:
                    expected = F.cosine_similarity(output, reference, dim=1)
                np.testing.assert_allclose(ours[:, j].numpy(), expected.numpy(), atol=1e-4, rtol=0)


def test_deletion_curves_equal_quantus_pixel_flipping():
    model = SmallNet()
    x = images(4, 3, 16, 18, seed=8)
    maps = distinct_maps(4, 16, 18, seed=9)
    y = model(x).argmax(dim=1)
    reference = quiet(
        quantus.PixelFlipping(features_in_step=3 * 16, perturb_baseline="black", disable_warnings=True),
        model=model,
        x_batch=x.numpy(),
        y_batch=y.numpy(),
        a_batch=maps[:, None].numpy(),
    )
    area, curve = Fa.deletion(x, maps, Fa.ModelScore(model, x), steps=18, baseline="black")
    np.testing.assert_allclose(curve[:, 1:].numpy(), np.array(reference), atol=1e-6, rtol=0)
    probability = model(x).softmax(dim=1).max(dim=1).values.double()
    torch.testing.assert_close(curve[:, 0], probability)
    expected_area = (curve[:, 1:].sum(dim=1) + curve[:, :-1].sum(dim=1)) / 2 / 18
    torch.testing.assert_close(area, expected_area)


def rise_kernel() -> torch.Tensor:
    """RISE's ``gkern(11, 5)``."""
    delta = np.zeros((11, 11))
    delta[5, 5] = 1
    return torch.from_numpy(gaussian_filter(delta, 5)).float()


@pytest.mark.parametrize("insert", [False, True])
def test_deletion_and_insertion_equal_a_direct_computation(insert):
    """RISE's procedure, step by step, with ties broken as the package's seeded order breaks them."""
    x = images(2, 3, 12, 10, seed=10)
    maps = torch.rand(2, 3, 2, generator=torch.Generator().manual_seed(0))
    maps = F.interpolate(maps[:, None], size=(12, 10), mode="nearest")[:, 0]  # blocks of ties
    steps = 7
    for model in (SmallNet(), SmallNet(classes=None, seed=3)):
        score = Fa.ModelScore(model, x)
        curve_of = Fa.insertion if insert else Fa.deletion
        area, curve = curve_of(x, maps, score, steps=steps, seed=4)
        blurred = F.conv2d(x, rise_kernel().expand(3, 1, 11, 11), padding=5, groups=3)
        start, end = (blurred, x) if insert else (x, torch.zeros_like(x))
        ranks = Fa.removal_ranks(maps, True, seed=4)
        per_step = -(-120 // steps)
        expected, fractions = [], []
        for s in range(steps + 1):
            n = min(s * per_step, 120)
            moved = (ranks < n).view(2, 1, 12, 10)
            expected.append(score(torch.where(moved, end, start)[None])[0])
            fractions.append(n / 120)
        expected = torch.stack(expected, dim=1)
        torch.testing.assert_close(curve, expected)
        torch.testing.assert_close(area, torch.from_numpy(np.trapezoid(expected.numpy(), fractions, axis=1)))


def test_removal_order_breaks_ties_at_random_with_the_seed():
    maps = torch.tensor([[[0.5, 0.5, 0.5, 0.5, 1.0, 0.0]]])
    ranks = {seed: Fa.removal_ranks(maps, True, seed)[0].tolist() for seed in range(6)}
    assert all(r[4] == 0 and r[5] == 5 and sorted(r[:4]) == [1, 2, 3, 4] for r in ranks.values())
    assert len({tuple(r) for r in ranks.values()}) > 1 and ranks[0] == Fa.removal_ranks(maps, True, 0)[0].tolist()
    assert Fa.removal_ranks(maps, False, 0)[0].tolist()[5] == 0


def test_targets_follow_the_model_and_bad_arguments_raise():
    classifier, encoder = SmallNet(), SmallNet(classes=None)
    assert Fa.resolve_target(classifier) == "probability" and Fa.resolve_target(encoder) == "cosine"
    with pytest.raises(ValueError, match="needs a classifier"):
        Fa.resolve_target(encoder, "accuracy")
    with pytest.raises(ValueError, match="target must be one of"):
        Fa.resolve_target(classifier, "logit")
    with pytest.raises(ValueError, match="percentages must be values in"):
        Fa.road_curve(images(1), torch.rand(1, 16, 18), Fa.ModelScore(classifier, images(1)), [0, 50])
    with pytest.raises(ValueError, match="baseline must be one of"):
        Fa.deletion(images(1), torch.rand(1, 16, 18), Fa.ModelScore(classifier, images(1)), baseline="white")


def test_an_image_scores_the_same_alone_and_in_a_batch():
    model = SmallNet()
    x = images(3, 3, 16, 18, seed=12)
    maps = F.interpolate(
        torch.rand(3, 1, 4, 3, generator=torch.Generator().manual_seed(1)), size=(16, 18), mode="nearest"
    )[:, 0]
    batch, alone = Fa.ModelScore(model, x), Fa.ModelScore(model, x[1:2])
    torch.testing.assert_close(Fa.road_curve(x[1:2], maps[1:2], alone)[0], Fa.road_curve(x, maps, batch)[1])
    for curve_of in (Fa.deletion, Fa.insertion):
        torch.testing.assert_close(
            curve_of(x[1:2], maps[1:2], alone, steps=9)[1][0], curve_of(x, maps, batch, steps=9)[1][1]
        )
