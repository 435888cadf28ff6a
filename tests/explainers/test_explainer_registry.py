import numpy as np
import pytest
import quantus
import torch
from torch import nn

import lafam_utils as lu


def tiny_classifier() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("stem", nn.Conv2d(3, 8, 3, padding=1))
    model.add_module("layer4", nn.Conv2d(8, 8, 3, stride=2, padding=1))
    model.add_module("relu", nn.ReLU())
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flat", nn.Flatten())
    model.add_module("fc", nn.Linear(8, 5))
    return model.eval()


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("lafam", lu.LaFAM),
        ("Grad-CAM", lu.GradCAM),
        ("grad_cam", lu.GradCAM),
        ("RELAX", lu.RELAX),
        ("eigencam", lu.EigenCAM),
    ],
)
def test_builds_by_name_and_passes_keywords(name, cls):
    built = lu.explainer(name, tiny_classifier(), upsample=None)
    assert type(built) is cls and built.upsample is None


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="known: attention, dff, eigencam, fem, gradcam, kpca-cam, lafam, "):
        lu.explainer("scorecam", tiny_classifier())


@pytest.mark.parametrize("method", ["lafam", "gradcam", "eigencam", "relax"])
def test_explain_func_returns_quantus_shaped_numpy(method):
    model = tiny_classifier()
    x = torch.randn(2, 3, 16, 12)
    targets = np.array([1, 4])
    kwargs = {"n_masks": 8, "cells": 2} if method == "relax" else {}
    attributions = lu.explain_func(model, x.numpy(), targets, method=method, **kwargs)
    assert isinstance(attributions, np.ndarray) and attributions.dtype == np.float32
    assert attributions.shape == (2, 1, 16, 12)
    built = lu.explainer(method, model, **kwargs)
    expected = built(x, target=torch.tensor([1, 4])) if method == "gradcam" else built(x)
    assert np.allclose(attributions[:, 0], expected.numpy(), atol=1e-6)


def test_quantus_random_logit_separates_label_free_from_class_maps():
    model = tiny_classifier()
    x = np.random.default_rng(0).normal(size=(3, 3, 16, 16)).astype(np.float32)
    y = np.array([0, 1, 2])

    def random_logit(method: str) -> np.ndarray:
        metric = quantus.RandomLogit(num_classes=5, disable_warnings=True, display_progressbar=False)
        return np.asarray(
            metric(
                model=model,
                x_batch=x,
                y_batch=y,
                a_batch=None,
                explain_func=lu.explain_func,
                explain_func_kwargs={"method": method, "upsample": "bilinear"},
                device="cpu",
            )
        )

    label_free, class_specific = random_logit("lafam"), random_logit("gradcam")
    assert label_free.shape == class_specific.shape == (3,)
    assert np.allclose(label_free, 1.0)  # another class, the same map
    assert (class_specific < 1.0 - 1e-3).any()


def test_every_registered_explainer_takes_the_shared_settings():
    """``lu.evaluate`` and the notebooks pass these to every method: each constructor must take them."""
    import inspect

    from lafam_utils.explainers import EXPLAINERS

    for cls in EXPLAINERS.values():
        parameters = inspect.signature(cls).parameters
        assert {"upsample", "threshold", "precision", "compile"} <= set(parameters), cls.__name__


def test_accepted_options_keeps_what_a_constructor_takes():
    from lafam_utils.explainers import accepted_options

    settings = {"n_masks": 8, "seed": 3, "progress": True}
    assert accepted_options("relax", settings) == settings
    assert accepted_options("lafam", settings) == {}
    with pytest.raises(ValueError, match="unknown explainer"):
        accepted_options("nope", settings)


def test_options_passed_through_appear_in_the_signature_and_the_identity():
    import inspect

    from lafam_utils.evaluation.run_store import factory_settings

    parameters = inspect.signature(lu.explainers.REPEAT).parameters
    assert list(parameters)[:3] == ["encoder", "n_repeats", "n_masks"]
    assert {"cells", "seed", "variant", "upsample", "precision", "compile"} <= set(parameters)
    accepted = accepted_options_of("fem", {"k_sigma": 1.0, "upsample": None, "seed": 1})
    assert accepted == {"k_sigma": 1.0, "upsample": None}
    model = tiny_classifier()
    built = lu.explainer("fem", model, layer="layer4", upsample="bilinear")
    assert built.upsample == "bilinear" and built.k_sigma == 2.0
    settings = factory_settings(type(built), {"upsample": "bilinear"}, built)["kwargs"]
    assert settings["upsample"] == "bilinear" and settings["k_sigma"] == 2.0 and settings["precision"] == "fp32"
    with pytest.raises(TypeError, match="unexpected keyword"):
        lu.explainer("fem", model, layer="layer4", n_masks=3)


def accepted_options_of(name, options):
    from lafam_utils.explainers import accepted_options

    return accepted_options(name, options)


def test_minmax_is_exact_at_both_ends_and_keeps_nan():
    from lafam_utils.explainers import minmax_normalize

    generator = torch.Generator().manual_seed(0)
    maps = (torch.rand(64, 7, 9, generator=generator) - 3.7) * torch.logspace(-30, 30, 64)[:, None, None]
    normalised = minmax_normalize(maps).flatten(1)
    assert (normalised.amax(dim=1) == 1).all() and (normalised.amin(dim=1) == 0).all()
    constant_and_nan = torch.stack([torch.full((3, 3), 2.5), torch.full((3, 3), float("nan"))])
    result = minmax_normalize(constant_and_nan)
    assert (result[0] == 0).all() and result[1].isnan().all()


def test_a_method_that_needs_labels_refuses_a_model_without_classes():
    encoder = tiny_classifier()
    encoder.class_names = None  # as the package's encoders declare
    with pytest.raises(ValueError, match="Grad-CAM explains a class score.*has no classes"):
        lu.explainer("gradcam", encoder)
    assert not lu.applies_to("gradcam", encoder) and lu.applies_to("lafam", encoder)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert lu.explainer("lafam", encoder)(x).shape == (2, 16, 16)
    # a plain module says nothing about classes: its output is read as class scores
    assert lu.explainer("gradcam", tiny_classifier())(x).shape == (2, 16, 16)


def test_the_packages_encoders_declare_no_classes_and_its_classifiers_their_names():
    assert lu.load_model("simclr", weights=None).class_names is None
    assert lu.load_model("shapes-simclr").class_names is None
    assert len(lu.load_model("resnet50", weights=None).class_names) == 1000
