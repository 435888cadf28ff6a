"""The identity of an ``evaluate`` run: its data, models, explainers, metrics and settings as one plain dict.

Its hash names the run's folder, so a stored run resumes only when every part is the same
(``run_store`` describes the parts and fingerprints them). ``run_settings`` picks the arguments
of ``evaluate`` that enter the identity as given; ``run_identity`` adds the fingerprints of the
dataset, of the models' weights and of each pair's explainer settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..datasets.pillow_resize import RESIZE
from ..paper import Pair
from . import run_store
from .runner import MapFn, Runner

NOT_SETTINGS = frozenset(
    {"dataset", "pairs", "results_dir", "metrics", "device", "models", "explainers", "explainer_kwargs"}
    | {"csv", "progress", "num_workers", "decode"}
)
"""``evaluate``'s arguments that enter the identity in their own form (or not at all: where results
go, the device, progress output, the loading processes, the decoding as resolved); every other
argument, present or future, enters it as given."""


def run_settings(
    arguments: Mapping[str, Any], *, precision: str, dataset_name: str, decode: str, device: torch.device
) -> dict[str, Any]:
    """The ``settings`` part of the identity: ``evaluate``'s arguments but ``NOT_SETTINGS``, as ``plain`` data.

    Args:
        arguments: ``evaluate``'s arguments by name, as given.
        precision: the precision as resolved on the device (what ran, also for ``"auto"``).
        dataset_name: the ``dataset`` column as resolved.
        decode: the decoding as resolved; ``"device"`` enters as ``"device-<device type>, resized as
            Pillow <version> bilinear"`` (the resize follows the installed Pillow), the dataset's own
            decoding not at all.
        device: where the models run.
    """
    settings = {name: run_store.plain(value) for name, value in arguments.items() if name not in NOT_SETTINGS}
    settings.update(precision=precision, dataset_name=dataset_name)
    if decode == "device":
        settings["decode"] = f"device-{device.type}, resized as {RESIZE}"
    return settings


def run_identity(
    dataset: Any,
    ids: list[str] | None,
    pairs: Sequence[Pair],
    runner: Runner,
    explainers: Mapping[str, Callable[..., MapFn]] | None,
    explainer_kwargs: Mapping[str, Mapping[str, Any]] | None,
    metric_names: Sequence[str],
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """Everything that changes a run's numbers, as ``plain`` data.

    Args:
        dataset: the evaluated dataset.
        ids: its item ids (``run_store.dataset_ids``), or None where it cannot list them.
        pairs: the (model name, method name) pairs.
        runner: the run's built models and explainers.
        explainers: ``evaluate``'s explainer factories by method name.
        explainer_kwargs: keyword arguments of each method's explainer.
        metric_names: every metric's name, localisation metrics first.
        settings: ``run_settings``.
    """
    methods = {}
    for model, method in pairs:  # per pair: a method's default layer depends on the model
        built = runner.explainers[(model, method)]
        factory = (explainers or {}).get(method) or type(built)
        kwargs = (explainer_kwargs or {}).get(method, {})
        methods[f"{model}/{method}"] = run_store.factory_settings(factory, kwargs, built)
    return {
        "metrics_version": run_store.METRICS_VERSION,
        "dataset": {
            "length": len(dataset),
            "ids_sha256": None if ids is None else run_store.identity_hash({"ids": ids}),
            "content": run_store.dataset_fingerprint(dataset),
        },
        "pairs": [list(pair) for pair in pairs],
        "models": {
            name: {"class": run_store.plain(type(model)), "weights_sha256": run_store.weights_fingerprint(model)}
            for name, model in runner.models.items()
        },
        "explainers": methods,
        "metrics": list(metric_names),
        "settings": dict(settings),
        **({"model_metrics": run_store.plain(runner.metric_settings)} if runner.metric_settings else {}),
    }
