"""Explaining and scoring for ``evaluate``: one run's models, explainers and metrics; a batch in, a pair's rows out.

``Runner`` builds every model and explainer of the run (so a bad name or option fails before
anything is written), puts a loaded batch on the device (``DeviceBatch``) and turns it into the
rows of one (model, method) pair: the map of each image, its prediction and time, the localisation
metrics against its mask and the metrics that query the model (``lu.metrics.MODEL_METRICS``).
The pairs of one model share one forward pass per batch (``shared_forward.explain_together``).
A failure (an explainer or a metric raising, a map with NaN or infinite values) is isolated to
the images it concerns: a batch that raises is retried image by image, and the row of a failed
image keeps its ``error`` and NaN metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from ..metrics import MODEL_METRIC_COLUMNS, compute, compute_model_metrics, metric_columns, metric_settings
from ..paper import Pair
from ..precision import Precision
from .loading import Item, LoadedBatch, describe_error

MapFn = Callable[[Tensor], Tensor]
"""An explainer as ``evaluate`` calls it: images (B, 3, H, W) -> maps (B, H, W)."""

ID_COLUMNS = ("dataset", "index", "id", "labels", "model", "method", "prediction", "seconds")
"""The columns of a results row before the metrics' columns and ``error``."""


@dataclass
class DeviceBatch:
    """One batch on the device, with what its pairs have computed so far.

    Attributes:
        items: every item of the batch, failed loads included.
        loaded: the items that loaded.
        x: the loaded items' images stacked on the device (None when none loaded).
        masks: their masks, likewise.
        pairs: the pairs that will explain the batch.
        predictions: per model, the predicted class name of each loaded image.
        explained: per pair, maps, seconds per image and errors from a shared forward.
        shared: the models whose shared forward ran (or failed) on this batch.
    """

    items: list[Item]
    loaded: list[Item]
    x: Tensor | None
    masks: Tensor | None
    pairs: tuple[Pair, ...] = ()
    predictions: dict[str, list[str]] = field(default_factory=dict)
    explained: dict[Pair, tuple[list[Tensor | None], list[float], list[str]]] = field(default_factory=dict)
    shared: set[str] = field(default_factory=set)


class Runner:
    """Models, explainers and metrics of one run; turns one batch into the rows of one pair.

    The pairs of one model that a batch needs share one forward pass of that model
    (``shared_forward.explain_together``), which also gives the classifier's predictions; the
    maps are those of separate calls. Pairs that cannot share (explainers from ``explainers``
    factories, a batch whose shared forward raised) run their explainer on their own.

    Args:
        pairs: the (model name, method name) pairs of the run.
        device: where the models run.
        models: modules by model name (else ``lu.load_model(name)``).
        explainers: explainer factories by method name (else ``lu.explainer``).
        explainer_kwargs: keyword arguments of each method's explainer.
        metric_fn: the localisation metrics (None: ``lu.metrics.compute``).
        metric_names: the localisation metrics' names, one column each.
        metric_kwargs: keyword arguments of ``metric_fn``.
        precision: the package explainers' precision.
        compile: ``torch.compile`` for the package explainers' forwards without hooks.
        progress: whether a compiled explainer reports its compile time beside the progress bar.
        model_metrics: the names of the metrics that query the model.
        metric_options: the model metrics' options by metric name.

    Attributes:
        device: where the models run.
        models: the run's models by name, in eval mode on ``device``.
        explainers: the built explainer of each pair.
        factories: per pair, the method's explainer for another model (the model metrics'
            randomised models).
        metric_settings: per model, the model metrics' settings as used (empty without them).

    Raises:
        ValueError: a method cannot explain its model, or ``metric_options`` does not fit.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        device: torch.device,
        models: Mapping[str, nn.Module] | None,
        explainers: Mapping[str, Callable[..., MapFn]] | None,
        explainer_kwargs: Mapping[str, Mapping[str, Any]] | None,
        metric_fn: Callable[..., dict[str, Tensor]] | None,
        metric_names: Sequence[str],
        metric_kwargs: Mapping[str, Any],
        precision: Precision = "fp32",
        compile: bool = False,  # noqa: A002 - the name torch uses
        progress: bool = False,
        model_metrics: Sequence[str] = (),
        metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.device = device
        self.metric_names = tuple(metric_names)
        self.metric_kwargs = dict(metric_kwargs)
        self.metric_fn = metric_fn or compute
        self.models = {name: self._model(name, models) for name in dict.fromkeys(model for model, _ in pairs)}
        self.model_metrics = tuple(model_metrics)
        self.model_columns = tuple(metric_columns(self.model_metrics))
        self.metric_settings = {  # checked here, before anything is written
            name: metric_settings(self.model_metrics, metric_options, model) for name, model in self.models.items()
        } if self.model_metrics else {}
        self.explainers: dict[Pair, MapFn] = {}
        self.factories: dict[Pair, Callable[[nn.Module], MapFn]] = {}  # the method on another model (randomised)
        for model, method in pairs:
            kwargs = dict((explainer_kwargs or {}).get(method, {}))
            factory = (explainers or {}).get(method)
            if factory is None:
                from ..explainers import explainer

                settings = {"precision": precision, "compile": compile, **kwargs}
                try:
                    built = explainer(method, self.models[model], **settings)
                except ValueError as error:
                    raise ValueError(f"cannot explain model {model!r} with method {method!r}: {error}") from error
                if built.compile and progress:
                    built.report_compile = True  # "compiled <model> in X s" beside the bar
                self.explainers[(model, method)] = built
                self.factories[(model, method)] = partial(explainer, method, **{"precision": precision, **kwargs})
            else:
                self.explainers[(model, method)] = factory(self.models[model], **kwargs)
                self.factories[(model, method)] = partial(factory, **kwargs)

    def _model(self, name: str, models: Mapping[str, nn.Module] | None) -> nn.Module:
        if models is not None and name in models:
            return models[name].to(self.device).eval()
        from ..models import load_model

        return load_model(name).to(self.device).eval()

    def stack(self, loaded: LoadedBatch, pairs: Sequence[Pair] = ()) -> DeviceBatch:
        """A loaded batch with its images and masks on the device; ``pairs``: the pairs that will explain them."""
        items = [item for item in loaded.items if not item.error]
        if loaded.x is None:
            return DeviceBatch(loaded.items, items, None, None, tuple(pairs))
        x, masks = (t.to(self.device, non_blocking=True) for t in (loaded.x, loaded.masks))
        return DeviceBatch(loaded.items, items, x, masks, tuple(pairs))

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _explain_shared(self, model_name: str, batch: DeviceBatch) -> None:
        """Explain ``batch`` with all its shareable pairs of ``model_name`` in one forward pass.

        Fills ``batch.explained`` and, for classifiers, ``batch.predictions``; a failure leaves
        both alone, and the pairs then run separately (image by image where needed).
        """
        from ..explainers.shared_forward import explain_together, shareable

        batch.shared.add(model_name)
        pairs = [p for p in batch.pairs if p[0] == model_name and shareable(self.explainers.get(p))]
        names = getattr(self.models[model_name], "class_names", None)
        if not pairs or (len(pairs) == 1 and names is None):
            return
        try:
            shared = explain_together(
                {p: self.explainers[p] for p in pairs},
                batch.x,
                need_output=names is not None,
                synchronize=self._synchronize,
            )
            predictions = None if names is None else [str(names[i]) for i in shared.output.argmax(dim=1).tolist()]
        except Exception:  # noqa: BLE001 - the pairs run separately, where errors are recorded per image
            return
        n = len(batch.x)
        for pair in pairs:
            batch.explained[pair] = (list(shared.maps[pair]), [shared.seconds[pair] / n] * n, [""] * n)
        if predictions is not None:
            batch.predictions[model_name] = predictions

    def _explain(self, pair: Pair, x: Tensor) -> tuple[list[Tensor | None], list[float], list[str]]:
        """Maps, seconds per image and errors; a batch that raises is retried image by image."""
        try:
            self._synchronize()
            start = time.perf_counter()
            maps = self.explainers[pair](x)
            self._synchronize()
            seconds = (time.perf_counter() - start) / len(x)
            return list(maps), [seconds] * len(x), [""] * len(x)
        except Exception as error:  # noqa: BLE001 - isolate the failing image(s) below
            if len(x) == 1:
                return [None], [float("nan")], [describe_error(error)]
        maps, seconds, errors = zip(*(self._explain(pair, x[i : i + 1]) for i in range(len(x))))
        return [m[0] for m in maps], [s[0] for s in seconds], [e[0] for e in errors]

    def _predictions(self, model_name: str, batch: DeviceBatch) -> list[str]:
        """The classifier's predicted class name per loaded image, "" for models without ``class_names``."""
        if model_name not in batch.predictions:
            model = self.models[model_name]
            names = getattr(model, "class_names", None)
            if names is None:
                batch.predictions[model_name] = [""] * len(batch.loaded)
            else:
                with torch.no_grad():
                    top = model(batch.x).argmax(dim=1).tolist()
                batch.predictions[model_name] = [str(names[i]) for i in top]
        return batch.predictions[model_name]

    def _metrics(self, maps: Tensor, masks: Tensor) -> tuple[list[dict[str, float]], list[str]]:
        """Metric values and errors per image; metrics that raise on the batch are retried image by image."""
        try:
            scores = self.metric_fn(maps, masks, **self.metric_kwargs)
            columns = {name: scores[name].double().cpu().tolist() for name in self.metric_names}
            return [dict(zip(columns, values)) for values in zip(*columns.values())], [""] * len(maps)
        except Exception as error:  # noqa: BLE001 - isolate the failing image(s) below
            if len(maps) == 1:
                return [{}], [describe_error(error)]
        values, errors = zip(*(self._metrics(maps[i : i + 1], masks[i : i + 1]) for i in range(len(maps))))
        return [v[0] for v in values], [e[0] for e in errors]

    def _model_metrics(self, pair: Pair, x: Tensor, maps: Tensor) -> tuple[list[dict[str, Any]], list[str]]:
        """The model metrics' values and errors per image; a batch that raises is retried image by image."""
        try:
            columns = compute_model_metrics(
                self.model_metrics, self.models[pair[0]], self.factories[pair], x, maps, self.metric_settings[pair[0]]
            )
            per_image = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
            return per_image, [""] * len(x)
        except Exception as error:  # noqa: BLE001 - isolate the failing image(s) below
            if len(x) == 1:
                return [{}], [describe_error(error)]
        singles = [self._model_metrics(pair, x[i : i + 1], maps[i : i + 1]) for i in range(len(x))]
        values, errors = zip(*singles, strict=True)
        return [v[0] for v in values], [e[0] for e in errors]

    def rows(self, pair: Pair, batch: DeviceBatch, dataset_name: str) -> pd.DataFrame:
        """The rows of one pair for one batch; failed images keep their error and NaN metrics."""
        nan = float("nan")
        empty = {column: nan if column in MODEL_METRIC_COLUMNS else None for column in self.model_columns}
        rows = {
            item.index: {"dataset": dataset_name, "index": item.index, "id": item.id, "labels": item.labels,
                         "model": pair[0], "method": pair[1], "prediction": "", "seconds": nan,
                         **dict.fromkeys(self.metric_names, nan), **empty, "error": item.error}
            for item in batch.items
        }
        if batch.loaded:
            if pair in batch.pairs and pair[0] not in batch.shared:
                self._explain_shared(pair[0], batch)
            maps, seconds, errors = batch.explained.pop(pair, None) or self._explain(pair, batch.x)
            for item, s, e, p in zip(batch.loaded, seconds, errors, self._predictions(pair[0], batch)):
                rows[item.index].update(seconds=s, error=e, prediction=p)
            explained = [i for i, m in enumerate(maps) if m is not None]
            if explained:
                stacked = torch.stack([maps[i] for i in explained])
                if stacked.shape[-2:] != batch.masks.shape[-2:]:
                    raise ValueError(
                        f"{pair[1]} gives maps of size {tuple(stacked.shape[-2:])} but masks are "
                        f"{tuple(batch.masks.shape[-2:])}; upsample the maps to the image size"
                    )
                finite = stacked.flatten(1).isfinite().all(dim=1).tolist()
                for i, ok in zip(explained, finite):
                    if not ok:
                        rows[batch.loaded[i].index]["error"] = "explainer returned a map with NaN or infinite values"
                scored = [j for j, ok in enumerate(finite) if ok]
                if scored and self.metric_names:
                    values, errors = self._metrics(stacked[scored], batch.masks[[explained[j] for j in scored]])
                    for j, v, e in zip(scored, values, errors):
                        rows[batch.loaded[explained[j]].index].update(v, error=e)
                if scored and self.model_metrics:
                    x = batch.x[[explained[j] for j in scored]]
                    values, errors = self._model_metrics(pair, x, stacked[scored])
                    for j, v, e in zip(scored, values, errors, strict=True):
                        row = rows[batch.loaded[explained[j]].index]
                        row.update(v, error=row["error"] or e)
        columns = [*ID_COLUMNS, *self.metric_names, *self.model_columns, "error"]
        return pd.DataFrame(list(rows.values()), columns=columns)
