"""Randomisation checks against Quantus 0.6.0's MPRT, EfficientMPRT and SmoothMPRT on a small classifier."""

import numpy as np
import pytest
import quantus
import torch
from model_metric_case import SmallNet, factory, images
from scipy.stats import entropy, spearmanr

import lafam_utils as lu
from lafam_utils.metrics import randomisation as R
from lafam_utils.metrics.quantus_reference import quantus_call as quiet
from lafam_utils.metrics.quantus_reference import smooth_mprt_draws, smooth_mprt_patched

LAYERS = ["layer1.0", "layer1.1", "layer4.0", "layer4.1", "head"]


@pytest.fixture(scope="module")
def case():
    model = SmallNet()
    x = images()
    return model, x, model(x).argmax(dim=1)


def quantus_kwargs(method, model, x, y, maps=None, **options):
    return dict(
        model=model,
        x_batch=x.numpy(),
        y_batch=y.numpy(),
        a_batch=None if maps is None else maps[:, None].numpy(),
        explain_func=lu.explain_func,
        explain_func_kwargs={"method": method, "layer": "layer4", **options},
    )


def test_layers_order_and_the_fully_randomised_model_follow_quantus(case):
    model, _, _ = case
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng_state = torch.random.get_rng_state()
    assert [name for name, _ in R.randomisable_layers(model)] == LAYERS
    top_down = [name for name, _ in R.cascade(model, "top_down", seed=3)]
    assert top_down == LAYERS[::-1] and [n for n, _ in R.cascade(model, "bottom_up", seed=3)] == LAYERS
    assert [n for n, _ in R.cascade(model, "top_down", seed=3, depth=1)] == ["head", "layer4", "layer1"]
    last = {order: list(R.cascade(model, order, seed=3))[-1][1].state_dict() for order in R.ORDERS}
    full = R.fully_randomised(model, seed=3).state_dict()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the model is not modified
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # nor torch's global generator (Quantus seeds it)
    interface = quantus.helpers.model.pytorch_model.PyTorchModel(model)
    *_, (_, quantus_last) = interface.get_random_layer_generator(order="top_down", seed=3)
    for key, value in full.items():
        assert torch.equal(value, last["top_down"][key]) and torch.equal(value, last["bottom_up"][key]), key
        assert torch.equal(value, quantus_last.state_dict()[key]), key
    assert not torch.equal(full["layer4.0.weight"], model.state_dict()["layer4.0.weight"])


@pytest.mark.parametrize("method", ["lafam", "gradcam", "eigencam"])
@pytest.mark.parametrize("similarity", ["spearman", "pearson"])
def test_mprt_equals_quantus_at_every_layer(case, method, similarity):
    model, x, y = case
    make = factory(method, layer="layer4")
    maps = R.explain(make(model), x, y)
    ours = R.mprt(model, make, x, maps, y, seed=7, similarity=similarity)
    reference = quiet(
        quantus.MPRT(
            seed=7, similarity_func=getattr(quantus.similarity_func, f"correlation_{similarity}"), disable_warnings=True
        ),
        **quantus_kwargs(method, model, x, y, maps),
    )
    assert ours.layers == LAYERS[::-1] == [k for k in reference if k != "original"]
    expected = np.array([reference[layer] for layer in ours.layers]).T
    np.testing.assert_allclose(ours.similarities.numpy(), expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours.score.numpy(), expected[:, -1], atol=1e-4, rtol=0)
    assert (ours.score < 0.99).all()  # the trained-looking map does change


def test_mprt_ssim_equals_quantus_ssim(case):
    """Quantus 0.6.0's MPRT cannot call its own ``ssim`` (a list has no ``tolist``): compared with the function."""
    model, x, y = case
    make = factory("lafam", layer="layer4")
    maps = R.explain(make(model), x, y)
    ours = R.mprt(model, make, x, maps, y, similarity="ssim")
    steps = [m for _, _, m in R.cascade_maps(model, make, x, y)]
    expected = np.array(
        [quantus.similarity_func.ssim(maps.flatten(1).numpy(), m.flatten(1).numpy(), batched=True) for m in steps]
    ).T
    np.testing.assert_allclose(ours.similarities.numpy(), expected, atol=1e-4, rtol=0)


def test_similarities_equal_scipy_with_ties_and_nan_for_a_constant_map():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (3, 40), generator=g).float()  # many ties
    b = torch.randint(0, 7, (3, 40), generator=g).float()
    expected = [spearmanr(a[i], b[i])[0] for i in range(3)]
    np.testing.assert_allclose(R.spearman(a, b).numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(R.average_ranks(a)[0].numpy(), __import__("scipy").stats.rankdata(a[0]))
    np.testing.assert_allclose(R.pearson(a, b).numpy(), [np.corrcoef(a[i], b[i])[0, 1] for i in range(3)], atol=1e-12)
    assert R.spearman(torch.ones(1, 9), torch.rand(1, 9, generator=g)).isnan().all()
    rows = torch.rand(2, 50, generator=g), torch.rand(2, 50, generator=g)
    np.testing.assert_allclose(
        R.ssim(*rows).numpy(),
        quantus.similarity_func.ssim(*(r.double().numpy() for r in rows), batched=True),
        atol=1e-10,
    )


@pytest.mark.parametrize("method", ["lafam", "gradcam"])
def test_emprt_is_quantus_complexity_ratio(case, method):
    model, x, y = case
    make = factory(method, layer="layer4")
    maps = R.explain(make(model), x, y)
    metric = quantus.EfficientMPRT(seed=5, compute_extra_scores=True, disable_warnings=True)
    scores = quiet(metric, **quantus_kwargs(method, model, x, y, maps))
    ours = R.efficient_mprt(maps, R.explain(make(R.fully_randomised(model, 5)), x, y))
    np.testing.assert_allclose(ours.numpy(), np.array(metric.scores_extra["scores_fraction_explanation"]), atol=1e-10)
    np.testing.assert_allclose(ours.numpy() - 1, np.array(scores), atol=1e-10)


def test_discrete_entropy_equals_numpy_histogram_and_scipy():
    g = torch.Generator().manual_seed(0)
    maps = torch.cat(
        [
            torch.rand(3, 11, 13, generator=g),
            torch.randint(0, 4, (1, 11, 13), generator=g).float() / 3,  # ties on the bin edges
            torch.full((1, 11, 13), 0.25),  # constant: entropy 0
            torch.linspace(0, 1, 143).view(1, 11, 13),  # values on every edge
        ]
    )
    expected = [entropy(np.histogram(m.numpy(), bins=100)[0]) for m in maps]
    np.testing.assert_allclose(R.discrete_entropy(maps).numpy(), expected, atol=1e-12)
    assert R.efficient_mprt(maps[4:5], maps[:1]).isnan().all()  # a constant original map: no ratio


@pytest.mark.parametrize("method", ["lafam", "gradcam"])
def test_smprt_equals_quantus_with_the_same_noise(case, method):
    model, x, y = case
    samples = 4
    options = {"method": method, "layer": "layer4"}
    with smooth_mprt_patched(options, smooth_mprt_draws(x.shape, samples, seed=11)):
        reference = quiet(
            quantus.SmoothMPRT(
                seed=11, nr_samples=samples, skip_layers=True, return_last_correlation=True, disable_warnings=True
            ),
            **quantus_kwargs(method, model, x, y),
        )
    ours = R.smooth_mprt(model, factory(method, layer="layer4"), x, y, samples=samples, seed=11)
    np.testing.assert_allclose(ours.numpy(), np.array(reference), atol=1e-4, rtol=0)


def test_a_map_that_ignores_the_model_scores_one(case):
    model, x, y = case
    make = factory("random")
    maps = R.explain(make(model), x, y)
    assert torch.equal(R.mprt(model, make, x, maps, y).score, torch.ones(len(x), dtype=torch.float64))
    assert torch.allclose(R.smooth_mprt(model, make, x, y, samples=3), torch.ones(len(x), dtype=torch.float64))
    assert torch.equal(
        R.efficient_mprt(maps, R.explain(make(R.fully_randomised(model)), x, y)),
        torch.ones(len(x), dtype=torch.float64),
    )


def test_one_image_equals_its_row_of_the_batch(case):
    model, x, y = case
    make = factory("lafam", layer="layer4")
    maps = R.explain(make(model), x, y)
    batch = R.mprt(model, make, x, maps, y, depth=1).similarities
    single = R.mprt(model, make, x[2:3], maps[2:3], y[2:3], depth=1).similarities
    torch.testing.assert_close(single[0], batch[2], atol=1e-12, rtol=0)
    smooth = R.smooth_mprt(model, make, x, y, samples=3)
    torch.testing.assert_close(R.smooth_mprt(model, make, x[2:3], y[2:3], samples=3)[0], smooth[2], atol=1e-12, rtol=0)


def test_bad_options_raise_clear_errors(case):
    model, x, y = case
    maps = torch.rand(len(x), 16, 18)
    with pytest.raises(ValueError, match="order must be one of"):
        R.mprt(model, factory("lafam", layer="layer4"), x, maps, y, order="independent")
    with pytest.raises(ValueError, match="similarity must be one of"):
        R.mprt(model, factory("lafam", layer="layer4"), x, maps, y, similarity="kendall")
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        list(R.cascade(model, depth=0))
    with pytest.raises(ValueError, match="nothing to randomise"):
        list(R.cascade(torch.nn.ReLU()))
    with pytest.raises(ValueError, match="samples must be at least 1"):
        R.smooth_mprt(model, factory("lafam", layer="layer4"), x, y, samples=0)
