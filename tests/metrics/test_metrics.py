import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

import lafam_utils as lu
from lafam_utils.metrics import HIGHER_IS_BETTER, METRICS, compute

NAMES = [
    "Pointing-Game",
    "Top-K Intersection",
    "Sparseness",
    "AUC",
    "Relevance Rank Accuracy",
    "Relevance Mass Accuracy",
]
MASK_METRICS = [name for name in NAMES if name != "Sparseness"]


def distinct_maps(b: int, h: int, w: int, seed: int, signed: bool = False) -> torch.Tensor:
    """Maps without ties: each a random permutation of distinct values, skewed like a saliency map."""
    g = torch.Generator().manual_seed(seed)
    ranks = torch.stack([torch.randperm(h * w, generator=g) for _ in range(b)]).float()
    maps = ((ranks + 1) / (h * w)) ** 3
    return (maps - 0.2 if signed else maps).view(b, h, w)


def blob_masks(b: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Realistic object masks: one random ellipse per image, covering roughly 5-40 % of it."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    centre = torch.rand(b, 2, generator=g) * torch.tensor([h, w])
    radii = (0.15 + 0.25 * torch.rand(b, 2, generator=g)) * torch.tensor([h, w])
    dy = (yy - centre[:, :1, None]) / radii[:, :1, None]
    dx = (xx - centre[:, 1:, None]) / radii[:, 1:, None]
    return dy**2 + dx**2 <= 1


def blocky_maps(b: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Nearest-upsampled 7x7 maps in [0, 1]: the explainers' output, full of ties."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(b, 1, 7, 7, generator=g)
    low, high = small.amin((2, 3), keepdim=True), small.amax((2, 3), keepdim=True)
    small = (small - low) / (high - low)
    return F.interpolate(small, size=(h, w), mode="nearest")[:, 0]


def assert_close(ours: dict, reference: dict, names=NAMES) -> None:
    for name in names:
        tol = 1e-5 if name == "Relevance Mass Accuracy" else 1e-6
        torch.testing.assert_close(ours[name], reference[name], atol=tol, rtol=0, equal_nan=True, msg=name)


@pytest.mark.parametrize(
    "b, h, w, k, signed",
    [(1, 37, 53, 1000, False), (7, 64, 45, 1000, True), (7, 31, 29, 250, False), (64, 33, 35, 1000, False)],
)
def test_equals_quantus_without_ties(b, h, w, k, signed):
    maps, masks = distinct_maps(b, h, w, seed=b + h, signed=signed), blob_masks(b, h, w, seed=w)
    assert masks.flatten(1).any(1).all()
    assert_close(compute(maps, masks, k=k), compute(maps, masks, backend="quantus", k=k))


def test_equals_quantus_on_tied_maps_where_quantus_is_tie_free():
    """Pointing-Game, AUC, mass and Gini do not depend on tie order, so Quantus must agree exactly."""
    maps, masks = blocky_maps(9, 56, 61, seed=3), blob_masks(9, 56, 61, seed=4)
    names = ["Pointing-Game", "Sparseness", "AUC", "Relevance Mass Accuracy"]
    assert_close(compute(maps, masks, metrics=names), compute(maps, masks, backend="quantus", metrics=names), names)


def test_ties_by_hand():
    maps = torch.tensor([[[0.9, 0.5, 0.5], [0.5, 0.1, 0.0]]])
    masks = torch.tensor([[[False, True, False], [False, True, True]]])
    scores = compute(maps, masks, k=2)
    # top 2: 0.9 (outside) and one of three 0.5 (one of them inside): 1/3 hit expected
    assert scores["Top-K Intersection"].item() == pytest.approx((1 / 3) / 2, abs=1e-12)
    # top |mask| = 3: 0.9 and two of the three 0.5: 2/3 hit expected
    assert scores["Relevance Rank Accuracy"].item() == pytest.approx((2 / 3) / 3, abs=1e-12)
    assert scores["Pointing-Game"].item() == 0.0
    # 9 (inside, outside) pairs; only 0.5 vs the two outside 0.5 tie (1/2 each), none is won
    assert scores["AUC"].item() == pytest.approx(1 / 9, abs=1e-12)
    assert scores["Relevance Mass Accuracy"].item() == pytest.approx(0.6 / 2.5, abs=1e-7)
    # Gini of a / 0.9 + 1e-7 with ascending weights -5, -3, -1, 1, 3, 5
    gini = (5.7 / 0.9) / (6 * (2.5 / 0.9 + 6e-7))
    assert scores["Sparseness"].item() == pytest.approx(gini, abs=1e-7)


def test_pointing_game_counts_a_tied_maximum_inside_the_mask():
    maps = torch.tensor([[[1.0, 0.2], [0.3, 1.0]], [[1.0, 0.2], [0.3, 1.0]]])
    masks = torch.tensor([[[False, False], [False, True]], [[False, True], [True, False]]])
    assert compute(maps, masks, k=1, metrics=["Pointing-Game"])["Pointing-Game"].tolist() == [1.0, 0.0]


def mean_over_tie_orders(values: list[float], inside: list[bool], top: int) -> float:
    """Mask share of the ``top`` highest, averaged over every ordering of the tied values."""
    shares = []
    for order in itertools.permutations(range(len(values))):
        ranked = sorted(order, key=lambda i: -values[i])  # stable: ties keep the permuted order
        shares.append(sum(inside[i] for i in ranked[:top]) / top)
    return sum(shares) / len(shares)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 6])
def test_top_k_is_the_mean_over_all_tie_breaks(k):
    values = [0.2, 0.7, 0.7, 0.1, 0.7, 0.2]
    inside = [True, False, True, False, True, False]
    maps = torch.tensor(values).view(1, 2, 3)
    masks = torch.tensor(inside).view(1, 2, 3)
    scores = compute(maps, masks, k=k)
    assert scores["Top-K Intersection"].item() == pytest.approx(mean_over_tie_orders(values, inside, k), abs=1e-12)
    assert scores["Relevance Rank Accuracy"].item() == pytest.approx(mean_over_tie_orders(values, inside, 3), abs=1e-12)


def test_auc_with_ties_equals_sklearn():
    maps, masks = blocky_maps(6, 45, 38, seed=5), blob_masks(6, 45, 38, seed=6)
    ours = compute(maps, masks, metrics=["AUC"])["AUC"]
    expected = [roc_auc_score(s.flatten().numpy(), a.flatten().numpy()) for a, s in zip(maps, masks)]
    torch.testing.assert_close(ours, torch.tensor(expected, dtype=torch.float64), atol=1e-12, rtol=0)


def test_empty_mask_is_nan_for_mask_metrics_only():
    maps, masks = distinct_maps(3, 40, 30, seed=1), blob_masks(3, 40, 30, seed=2)
    masks[1] = False
    scores = compute(maps, masks)
    for name in MASK_METRICS:
        assert math.isnan(scores[name][1].item()), name
        assert not scores[name][[0, 2]].isnan().any(), name
    assert not scores["Sparseness"].isnan().any()
    # the reference reports a hit for an empty mask; the torch backend does not
    assert compute(maps, masks, backend="quantus", metrics=["Pointing-Game"])["Pointing-Game"][1].item() == 1.0


@pytest.mark.parametrize("value", [0.0, 0.7])
def test_constant_maps(value):
    masks = blob_masks(2, 32, 33, seed=7)
    maps = torch.full(masks.shape, value)
    share = masks.flatten(1).double().mean(1)
    scores = compute(maps, masks, k=100)
    assert scores["Pointing-Game"].tolist() == [1.0, 1.0]
    torch.testing.assert_close(scores["Top-K Intersection"], share)
    torch.testing.assert_close(scores["Relevance Rank Accuracy"], share)
    torch.testing.assert_close(scores["AUC"], torch.full((2,), 0.5, dtype=torch.float64))
    torch.testing.assert_close(scores["Sparseness"], torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    if value == 0.0:
        assert scores["Relevance Mass Accuracy"].isnan().all()
    else:
        torch.testing.assert_close(scores["Relevance Mass Accuracy"], share)


def test_full_mask():
    maps = distinct_maps(1, 20, 21, seed=8)
    scores = compute(maps, torch.ones(1, 20, 21, dtype=torch.bool), k=50)
    assert math.isnan(scores["AUC"].item())
    for name in ["Pointing-Game", "Top-K Intersection", "Relevance Rank Accuracy", "Relevance Mass Accuracy"]:
        assert scores[name].item() == pytest.approx(1.0), name


def test_scores_do_not_depend_on_the_rest_of_the_batch():
    maps, masks = distinct_maps(4, 36, 36, seed=9), blob_masks(4, 36, 36, seed=10)
    maps = maps * torch.tensor([1.0, 0.01, 3.0, 0.5])[:, None, None]
    batch = compute(maps, masks)
    for i in range(4):
        single = compute(maps[i : i + 1], masks[i : i + 1])
        for name in NAMES:
            assert single[name].item() == pytest.approx(batch[name][i].item(), abs=1e-12), name


def test_cpu_chunks_give_the_same_scores(monkeypatch):
    maps, masks = blocky_maps(5, 30, 31, seed=19), blob_masks(5, 30, 31, seed=20)
    whole = compute(maps, masks, k=100)
    monkeypatch.setattr(lu.metrics.localisation, "CPU_CHUNK_PIXELS", 2 * 30 * 31)
    for name, scores in compute(maps, masks, k=100).items():
        assert torch.equal(scores, whole[name]), name


def test_non_finite_map_gives_nan_for_that_image_only():
    maps, masks = distinct_maps(3, 36, 36, seed=11), blob_masks(3, 36, 36, seed=12)
    clean = compute(maps, masks)
    maps[1, 5, 5] = torch.nan
    maps[2, 0, 0] = torch.inf
    scores = compute(maps, masks)
    for name in NAMES:
        assert scores[name][1:].isnan().all(), name
        assert scores[name][0].item() == clean[name][0].item(), name


def test_output_contract():
    maps, masks = distinct_maps(5, 34, 35, seed=13), blob_masks(5, 34, 35, seed=14)
    scores = compute(maps, masks)
    assert list(scores) == NAMES == list(METRICS) == list(HIGHER_IS_BETTER)
    assert all(v.shape == (5,) and v.dtype == torch.float64 and v.device == maps.device for v in scores.values())
    assert all(HIGHER_IS_BETTER.values())
    subset = compute(maps, masks, metrics=["AUC", "Sparseness"])
    assert list(subset) == ["AUC", "Sparseness"]
    assert torch.equal(subset["AUC"], scores["AUC"])
    assert lu.metrics.compute is compute


def test_half_precision_maps_are_scored_like_float32():
    maps, masks = distinct_maps(2, 30, 30, seed=15).half(), blob_masks(2, 30, 30, seed=16)
    assert_close(compute(maps, masks, k=100), compute(maps.float(), masks, k=100))
    assert_close(compute(maps, masks, k=100, backend="quantus"), compute(maps.float(), masks, k=100))


@pytest.mark.parametrize(
    "maps, masks, kwargs, error, match",
    [
        (torch.rand(2, 8, 8), torch.ones(2, 8, 8, dtype=torch.uint8), {}, TypeError, "boolean masks"),
        (torch.randint(0, 5, (2, 8, 8)), torch.ones(2, 8, 8, dtype=torch.bool), {}, TypeError, "floating-point"),
        (torch.rand(2, 8, 8), torch.ones(2, 8, 9, dtype=torch.bool), {}, ValueError, "same shape"),
        (torch.rand(8, 8), torch.ones(8, 8, dtype=torch.bool), {}, ValueError, r"\(B, H, W\)"),
        (np.random.rand(2, 8, 8), torch.ones(2, 8, 8, dtype=torch.bool), {}, TypeError, "torch.Tensor"),
        (torch.empty(2, 8, 8, device="meta"), torch.ones(2, 8, 8, dtype=torch.bool), {}, ValueError, "same device"),
        (torch.rand(2, 8, 8), torch.ones(2, 8, 8, dtype=torch.bool), {"k": 65}, ValueError, r"k must be .* \[1, 64\]"),
        (torch.rand(2, 8, 8), torch.ones(2, 8, 8, dtype=torch.bool), {"k": 0}, ValueError, "k must be"),
        (torch.rand(2, 8, 8), torch.ones(2, 8, 8, dtype=torch.bool), {"k": 4, "metrics": ["IoU"]}, ValueError, "IoU"),
        (
            torch.rand(2, 8, 8),
            torch.ones(2, 8, 8, dtype=torch.bool),
            {"k": 4, "backend": "numpy"},
            ValueError,
            "backend",
        ),
    ],
)
def test_bad_input_is_rejected(maps, masks, kwargs, error, match):
    with pytest.raises(error, match=match):
        compute(maps, masks, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_cpu():
    maps, masks = blocky_maps(8, 224, 224, seed=17), blob_masks(8, 224, 224, seed=18)
    on_gpu = compute(maps.cuda(), masks.cuda())
    assert all(v.is_cuda for v in on_gpu.values())
    assert_close({n: v.cpu() for n, v in on_gpu.items()}, compute(maps, masks))
