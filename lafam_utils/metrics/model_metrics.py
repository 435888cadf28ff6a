"""The metrics that query the model, by name: randomisation sanity checks and faithfulness.

``compute_model_metrics(names, model, factory, x, maps)`` gives, per image, the columns of the
chosen metrics (``MODEL_METRICS``): one number per scalar column, and a list per detail column
(MPRT's similarity after each randomised layer, the faithfulness curves). ``lu.evaluate`` calls it
for ``metrics=[..., "MPRT", "ROAD", ...]``; ``options`` per metric override the defaults
(``metric_settings``), and the settings as used, the faithfulness target resolved for the model,
enter the run's identity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..explainers import has_class_logits
from . import faithfulness, randomisation
from .localisation import METRICS


@dataclass(frozen=True)
class ModelMetric:
    """A metric that queries the model: its name, its columns and their directions, its defaults.

    Attributes:
        name: the name in ``metrics=[...]``.
        reference: what it equals (Quantus 0.6.0's class, or the paper's definition).
        columns: the scalar columns it adds -> whether higher is better.
        details: the list-valued columns it adds (per image: a curve, or per-layer values).
        defaults: its options and their defaults.
    """

    name: str
    reference: str
    columns: Mapping[str, bool]
    details: tuple[str, ...]
    defaults: Mapping[str, Any]


_SIMILARITY = {"similarity": "spearman", "abs": True, "normalise": True}
MODEL_METRICS: dict[str, ModelMetric] = {
    m.name: m
    for m in (
        ModelMetric("MPRT", "quantus.MPRT (return_last_correlation)", {"MPRT": False}, ("MPRT layers", "MPRT curve"),
                    {"order": "top_down", "seed": 42, "depth": None, **_SIMILARITY}),
        ModelMetric("eMPRT", "quantus.EfficientMPRT (scores_fraction_explanation)", {"eMPRT": True}, (),
                    {"seed": 42, "bins": randomisation.ENTROPY_BINS}),
        ModelMetric("sMPRT", "quantus.SmoothMPRT (skip_layers, return_last_correlation)", {"sMPRT": False}, (),
                    {"seed": 42, "samples": 50, "magnitude": 0.1, **_SIMILARITY}),
        ModelMetric("ROAD", "quantus.ROAD (MoRF; LeRF added)", {"ROAD": True, "ROAD MoRF": False, "ROAD LeRF": True},
                    ("ROAD MoRF curve", "ROAD LeRF curve"),
                    {"percentages": list(faithfulness.ROAD_PERCENTAGES), "noise": 0.01, "seed": 0, "target": "auto"}),
        ModelMetric("Deletion", "quantus.PixelFlipping; Petsiuk et al. 2018", {"Deletion": False}, ("Deletion curve",),
                    {"steps": 224, "baseline": "zero", "seed": 0, "target": "auto"}),
        ModelMetric("Insertion", "Petsiuk et al. 2018", {"Insertion": True}, ("Insertion curve",),
                    {"steps": 224, "baseline": "blur", "seed": 0, "target": "auto"}),
    )
}
MODEL_METRIC_COLUMNS: dict[str, bool] = {c: up for m in MODEL_METRICS.values() for c, up in m.columns.items()}
"""Every scalar column of the model metrics -> whether higher is better."""
FAITHFULNESS = ("ROAD", "Deletion", "Insertion")


def split_metric_names(metrics: Iterable[str] | str | None) -> tuple[list[str], list[str]]:
    """(localisation metric names, model metric names) of ``metrics``; None: the six localisation ones.

    Raises:
        ValueError: a name is unknown or repeated, or none is given (the message lists the known ones).
    """
    if metrics is None:
        return list(METRICS), []
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [name for name in names if name not in METRICS and name not in MODEL_METRICS]
    if unknown or not names or len(set(names)) != len(names):
        known = [*METRICS, *MODEL_METRICS]
        raise ValueError(f"unknown or no metrics in {names} (each at most once); choose from {known}")
    return [n for n in names if n in METRICS], [n for n in names if n in MODEL_METRICS]


def metric_settings(
    names: Iterable[str], options: Mapping[str, Mapping[str, Any]] | None = None, model: nn.Module | None = None
) -> dict[str, dict[str, Any]]:
    """Each model metric's settings: its defaults, ``options[name]`` over them, and, given ``model``,
    the faithfulness target resolved for it ("probability", "accuracy" or "cosine").

    Raises:
        ValueError: ``options`` names a metric not in ``names`` or an option the metric lacks, or
            a target does not fit the model.
    """
    names = list(names)
    options = dict(options or {})
    stray = sorted(set(options) - set(names))
    if stray:
        raise ValueError(f"metric_options name metrics that are not computed: {stray}; computed: {names}")
    settings = {}
    for name in names:
        defaults = MODEL_METRICS[name].defaults
        given = dict(options.get(name, {}))
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ValueError(f"{name} has no option(s) {unknown}; its options: {sorted(defaults)}")
        chosen = {**defaults, **given}
        if model is not None and name in FAITHFULNESS:
            chosen["target"] = faithfulness.resolve_target(model, chosen["target"])
        settings[name] = chosen
    return settings


def metric_columns(names: Iterable[str]) -> list[str]:
    """The scalar columns, then the detail columns, of the model metrics ``names``."""
    chosen = [MODEL_METRICS[name] for name in names]
    return [c for m in chosen for c in m.columns] + [c for m in chosen for c in m.details]


def compute_model_metrics(
    names: Iterable[str],
    model: nn.Module,
    factory: randomisation.ExplainerFactory,
    x: Tensor,
    maps: Tensor,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, list[Any]]:
    """The model metrics ``names`` of one batch: column -> one value per image.

    Randomisation checks share their fully randomised model (and its maps) where their seeds agree.
    Methods that explain a class score explain, on every randomised or noisy model, the class the
    original model predicts.

    Args:
        names: model metric names (``MODEL_METRICS``).
        model: the network the maps explain, in eval mode, on the images' device.
        factory: builds the method's explainer for a model (``factory(model)(x)`` gave ``maps``).
        x: (B, 3, H, W) images.
        maps: (B, H, W) maps of ``x``.
        options: per metric, options over its defaults (``metric_settings``).

    Returns:
        Scalar columns -> B floats; detail columns -> B lists (``metric_columns``).
    """
    names = list(names)
    settings = metric_settings(names, options, model)
    target = None
    if has_class_logits(model):
        with torch.no_grad():
            target = model(x).argmax(dim=1)
    columns: dict[str, list[Any]] = {}
    randomised: dict[int, tuple[nn.Module, Tensor]] = {}

    def fully_randomised(seed: int) -> tuple[nn.Module, Tensor]:
        if seed not in randomised:
            copy = randomisation.fully_randomised(model, seed)
            randomised[seed] = copy, randomisation.explain(factory(copy), x, target)
        return randomised[seed]

    if "MPRT" in settings:
        result = randomisation.mprt(model, factory, x, maps, target, **settings["MPRT"])
        randomised[settings["MPRT"]["seed"]] = result.randomised, result.randomised_maps
        columns["MPRT"] = result.score.tolist()
        columns["MPRT layers"] = [list(result.layers)] * len(x)
        columns["MPRT curve"] = result.similarities.tolist()
    if "eMPRT" in settings:
        s = settings["eMPRT"]
        columns["eMPRT"] = randomisation.efficient_mprt(maps, fully_randomised(s["seed"])[1], s["bins"]).tolist()
    if "sMPRT" in settings:
        s = dict(settings["sMPRT"])
        copy = fully_randomised(s["seed"])[0]
        columns["sMPRT"] = randomisation.smooth_mprt(model, factory, x, target, randomised=copy, **s).tolist()
    for name in FAITHFULNESS:
        if name in settings:
            columns.update(_faithfulness(name, settings[name], model, x, maps))
    return {column: columns[column] for column in metric_columns(names)}


def _faithfulness(name: str, s: Mapping[str, Any], model: nn.Module, x: Tensor, maps: Tensor) -> dict[str, list[Any]]:
    score = faithfulness.ModelScore(model, x, s["target"])
    if name == "ROAD":
        curves = {
            order: faithfulness.road_curve(x, maps, score, s["percentages"], first, s["noise"], s["seed"])
            for order, first in (("MoRF", True), ("LeRF", False))
        }
        means = {order: curve.mean(dim=1) for order, curve in curves.items()}
        return {
            "ROAD": (means["LeRF"] - means["MoRF"]).tolist(),
            "ROAD MoRF": means["MoRF"].tolist(),
            "ROAD LeRF": means["LeRF"].tolist(),
            "ROAD MoRF curve": curves["MoRF"].tolist(),
            "ROAD LeRF curve": curves["LeRF"].tolist(),
        }
    curve_of = faithfulness.deletion if name == "Deletion" else faithfulness.insertion
    area, curve = curve_of(x, maps, score, s["steps"], s["baseline"], s["seed"])
    return {name: area.tolist(), f"{name} curve": curve.tolist()}


__all__ = [
    "FAITHFULNESS",
    "MODEL_METRICS",
    "MODEL_METRIC_COLUMNS",
    "ModelMetric",
    "compute_model_metrics",
    "metric_columns",
    "metric_settings",
    "split_metric_names",
]
