"""Datasets x models x methods -> one results row per (image, model, method), resumable and shardable.

``evaluate`` walks the dataset in fixed batches (batch ``b`` holds indices ``b*batch_size`` up to
the next batch) and, for every (model, method) pair, commits that batch's rows as one chunk file.
The run lives in ``results_dir/<identity hash>/`` (``run_store``): the identity covers
the data, the weights, the explainers' settings and the metrics, so a changed setting starts a new
folder and old rows are never returned. Chunks are written to a temporary name and moved into
place, and verify themselves on resume, so a run killed at any instant (even with SIGKILL) and
started again computes exactly the missing or damaged chunks. Processes sharing a folder claim
(pair, batch) units; under ``torchrun`` rank ``r`` of ``n`` starts with the batches ``b % n == r``.
The merged table is the same for any number of processes.

A failing image never stops the run: an exception in ``dataset[i]``, in the explainer or in the
metrics, or a map with NaN/inf values, becomes a row whose ``error`` says what happened and whose
metric columns are NaN. Batches are loaded ahead by a pool of loading processes (``num_workers``,
``loading``) while the device explains the current one; the table is the same with any number of workers.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from ..metrics import (
    MODEL_METRIC_COLUMNS,
    compute,
    compute_model_metrics,
    metric_columns,
    metric_settings,
    split_metric_names,
)
from ..paper import PAPER_PAIRS, Pair
from ..precision import Precision, check_precision, resolve_precision
from . import loading, run_store
from .loading import Decode, Item, LoadedBatch, describe_error
from .run_store import CHUNKS, MANIFEST, RunStore, write_table_atomic

MapFn = Callable[[Tensor], Tensor]

ID_COLUMNS = ("dataset", "index", "id", "labels", "model", "method", "prediction", "seconds")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
NOT_SETTINGS = frozenset(
    {"dataset", "pairs", "results_dir", "metrics", "device", "models", "explainers", "explainer_kwargs", "csv", "progress"}
    | {"num_workers", "decode"}
)
"""``evaluate``'s arguments that enter the identity in their own form (or not at all: where results
go, the device, progress output, the loading processes, the decoding as resolved); every other
argument, present or future, enters it as given."""
WAIT_SECONDS = 0.2


def _dist_info(device: torch.device) -> tuple[int, int, bool]:
    """(rank, world size, whether this call started the process group) from torch.distributed or torchrun's env."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return dist.get_rank(), world, True
    return 0, 1, False


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def load_results(results_dir: str | Path) -> pd.DataFrame:
    """Merge the committed chunks of one run into one table, in pair order then dataset order.

    Use it to look at a partial run; ``evaluate`` verifies each chunk.

    Args:
        results_dir: a run's folder (holding ``run.json``), or the folder given to ``evaluate``
            if it holds exactly one run.

    Returns:
        The results table, one row per (image, model, method), as ``evaluate`` returns it.

    Raises:
        FileNotFoundError: ``results_dir`` is not a run folder and holds no single run, or the run
            has no result chunks.
    """
    run_dir = Path(results_dir)
    if not run_store.is_run_folder(run_dir):
        runs = run_store.run_folders(run_dir)
        if len(runs) != 1:
            found = ", ".join(p.name for p in runs) or "none"
            older = " (its run.json has no run identity: written by an older version; run evaluate again)"
            raise FileNotFoundError(
                f"{run_dir} is not a run folder{older if (run_dir / MANIFEST).exists() else ''}; "
                f"expected one run below it, found: {found}"
            )
        run_dir = runs[0]
    files = sorted((run_dir / CHUNKS).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no result chunks under {run_dir / CHUNKS}")
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    pairs = [tuple(p) for p in json.loads((run_dir / MANIFEST).read_text())["identity"]["pairs"]]
    order = {pair: i for i, pair in enumerate(pairs)}
    rank = [order.get(pair, len(order)) for pair in zip(frame["model"], frame["method"])]
    frame = frame.assign(_pair=rank).sort_values(["_pair", "model", "method", "index"], kind="stable")
    return frame.drop(columns="_pair").reset_index(drop=True)


@dataclass
class _Batch:
    """The items of one batch; the loaded ones stacked on the device, predictions cached per model."""

    items: list[Item]
    loaded: list[Item]
    x: Tensor | None
    masks: Tensor | None
    pairs: tuple[Pair, ...] = ()
    predictions: dict[str, list[str]] = field(default_factory=dict)
    explained: dict[Pair, tuple[list[Tensor | None], list[float], list[str]]] = field(default_factory=dict)
    shared: set[str] = field(default_factory=set)  # models whose shared forward ran (or failed) on this batch


class _Runner:
    """Models, explainers and metrics of one run; turns one batch into the rows of one pair.

    The pairs of one model that a batch needs share one forward pass of that model
    (``shared_forward.explain_together``), which also gives the classifier's predictions; the
    maps are those of separate calls. Pairs that cannot share (explainers from ``explainers``
    factories, a batch whose shared forward raised) run their explainer on their own.
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

    def stack(self, loaded: LoadedBatch, pairs: Sequence[Pair] = ()) -> _Batch:
        """A loaded batch with its images and masks on the device; ``pairs``: the pairs that will explain them."""
        items = [item for item in loaded.items if not item.error]
        if loaded.x is None:
            return _Batch(loaded.items, items, None, None, tuple(pairs))
        x, masks = (t.to(self.device, non_blocking=True) for t in (loaded.x, loaded.masks))
        return _Batch(loaded.items, items, x, masks, tuple(pairs))

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _explain_shared(self, model_name: str, batch: _Batch) -> None:
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
                {p: self.explainers[p] for p in pairs}, batch.x, need_output=names is not None, synchronize=self._synchronize
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

    def _predictions(self, model_name: str, batch: _Batch) -> list[str]:
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

    def rows(self, pair: Pair, batch: _Batch, dataset_name: str) -> pd.DataFrame:
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


def evaluate(
    dataset: Any,
    pairs: Sequence[Pair] = PAPER_PAIRS,
    *,
    results_dir: str | Path,
    metrics: Sequence[str] | None = None,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    models: Mapping[str, nn.Module] | None = None,
    explainers: Mapping[str, Callable[..., MapFn]] | None = None,
    explainer_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    metric_fn: Callable[..., dict[str, Tensor]] | None = None,
    k: int = 1000,
    backend: str = "torch",
    dataset_name: str | None = None,
    csv: bool = False,
    progress: bool = True,
    precision: Precision = "fp32",
    compile: bool = False,  # noqa: A002 - the name torch uses
    num_workers: int | None = None,
    decode: Decode = "dataset",
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Explain and score every image of ``dataset`` with every (model, method) pair; return the table.

    One row per (image, model, method): ``dataset``, ``index``, ``id``, ``labels`` (joined by
    ``"|"``), ``model``, ``method``, ``prediction`` (the classifier's class name; empty for models
    without ``class_names``), ``seconds`` (explainer time per image, CUDA synchronised; pairs
    sharing a model's forward are each charged that forward up to what they read plus their own
    work, see ``shared_forward.explain_together``), one column per metric and ``error`` (empty when the row is fine). Rows are committed per batch in the
    run's folder ``results_dir/<identity hash[:12]>/`` (with ``run.json``; ``table.attrs["run_dir"]``
    names it); calling again with the same identity resumes where a previous run stopped, another
    identity gets its own folder. Models, explainers and metrics are all built (and so checked)
    before anything is written. The merged table is written to ``results.parquet`` in the run's
    folder (and ``results.csv`` with ``csv``).

    ``models`` maps model names to modules (else ``lu.load_model(name)``); ``explainers`` maps
    method names to factories ``f(model, **kwargs) -> callable`` (else ``lu.explainer``), with
    ``explainer_kwargs[method]`` as keyword arguments; ``metric_fn`` replaces
    ``lu.metrics.compute`` and receives ``k``, ``backend`` and ``metrics``. Under ``torchrun`` each
    rank computes its share of the batches and every rank returns the merged table.

    ``precision`` (``"fp32"``, ``"tf32"``, ``"bf16"``, ``"auto"``; see ``lafam_utils.precision``)
    and ``compile`` (``torch.compile`` for the forwards that run without hooks: RELAX's masked
    images; see ``explainers.Explainer``) are given to the package's explainers (an
    ``explainer_kwargs`` entry overrides them; ``explainers`` factories do not receive them) and
    enter the run's identity, the precision as decided on ``device`` (what ran). With progress
    output, each compiled model prints its compile time once. The pairs of one model share one
    forward pass per batch.

    ``num_workers`` loading processes read the items ahead, one task per item, while the device
    explains (``lafam_utils.evaluation.loading``). They are started once, by a fresh interpreter
    (never forked from this process), and reused by every later call of this Python process
    (closed at exit or by ``close_loading_pool()``);
    the dataset must be picklable and importable in a fresh interpreter (defined in a module, not
    in a notebook cell). 0 loads here; None (default) takes ``default_workers(device)``: on a GPU
    all CPUs but one, on the CPU half of them and none below 4, at most 8, and falls back to 0 with
    a warning for a dataset that cannot be pickled. On CUDA batches reach the device through
    pinned memory. ``decode="device"`` decodes the image files of datasets that offer their bytes
    (``encoded_item``: VOC2012, ImageNetS) in batches on ``device`` with torchvision (nvJPEG on
    CUDA); ``"dataset"`` (default) takes the dataset's items (Pillow); ``"auto"`` is ``"device"`` on
    CUDA where the dataset offers it (not the default until nvJPEG's agreement with Pillow is measured
    on a GPU: docs/performance.md). Device decoding enters the identity (``"device-cuda"``,
    ``"device-cpu"``); the table is the same for any ``num_workers``, which does not.

    ``metrics`` may also name the metrics that query the model (``lu.metrics.MODEL_METRICS``):
    the randomisation checks "MPRT", "eMPRT", "sMPRT" and the faithfulness metrics "ROAD",
    "Deletion", "Insertion". Each adds its scalar columns (MPRT, eMPRT, sMPRT, ROAD, ROAD MoRF,
    ROAD LeRF, Deletion, Insertion) and its list columns (MPRT layers and MPRT curve: the
    similarity after each randomised layer; the faithfulness curves); ``metric_options`` sets
    their options by metric name (``{"Deletion": {"steps": 50}}``). Their settings as used, the
    faithfulness target resolved per model ("probability" of the predicted class for a
    classifier, "cosine" similarity of the embeddings for an encoder), enter the run's identity.

    Args:
        dataset: items with ``image`` (3, H, W) float tensors and ``mask`` (H, W) tensors.
        pairs: the (model name, method name) pairs (default: the paper's).
        results_dir: the folder the runs' folders are kept in.
        metrics: the metrics' names (None: all of ``lu.metrics``).
        batch_size: images per batch.
        device: where the models run.
        models: modules by model name (else ``lu.load_model(name)``).
        explainers: explainer factories by method name (else ``lu.explainer``).
        explainer_kwargs: keyword arguments of each method's explainer.
        metric_fn: replaces ``lu.metrics.compute``.
        k: the Top-K Intersection's k, given to the metrics.
        backend: the metrics' backend (``"torch"`` or ``"quantus"``), given to the metrics.
        dataset_name: the ``dataset`` column (None: ``dataset.name``, else its class name).
        csv: also write ``results.csv``.
        progress: show progress bars.
        precision: the explainers' precision, as above.
        compile: ``torch.compile`` for the forwards without hooks, as above.
        num_workers: loading processes, as above.
        decode: ``"auto"``, ``"dataset"`` or ``"device"``, as above.
        metric_options: options of the model metrics by metric name, as above.

    Returns:
        The merged results table (a pandas DataFrame), ``attrs["run_dir"]`` its run's folder.

    Raises:
        ValueError: ``batch_size`` is below 1, ``pairs`` are empty, repeat or hold invalid names,
            ``precision``, ``num_workers`` or ``decode`` is invalid, the dataset is empty, or the
            number of ids it lists differs from its number of items.
    """
    arguments = dict(locals())
    settings = {name: run_store.plain(value) for name, value in arguments.items() if name not in NOT_SETTINGS}
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    pairs = [tuple(pair) for pair in pairs]
    if not pairs or any(len(pair) != 2 or not all(isinstance(s, str) and NAME.fullmatch(s) for s in pair) for pair in pairs):
        raise ValueError(
            f"pairs must be a non-empty list of (model_name, method_name) pairs of names made of letters, "
            f"digits, '.', '-' and '_' (they name the chunk files), got {pairs!r}"
        )
    if len(set(pairs)) != len(pairs):
        raise ValueError(f"pairs must not repeat, got {pairs!r}")
    metric_names, model_metrics = split_metric_names(metrics)
    check_precision(precision)
    if num_workers is not None and (type(num_workers) is not int or num_workers < 0):
        raise ValueError(f"num_workers must be a non-negative integer or None, got {num_workers!r}")
    device = torch.device(device)
    settings["precision"] = resolve_precision(precision, device)  # "auto" as decided on this device
    n_items = len(dataset)
    if n_items == 0:
        raise ValueError("expected a dataset with at least one item, got an empty one")
    dataset_name = settings["dataset_name"] = dataset_name or getattr(dataset, "name", type(dataset).__name__)
    decode = loading.resolve_decode(decode, dataset, device)
    if decode == "device":  # the dataset's own decoding, as in runs before this option, adds nothing
        settings["decode"] = f"device-{device.type}"

    rank, world, started_group = _dist_info(device)
    try:
        if world > 1 and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
            torch.cuda.set_device(device)
        workers = loading.workers_for(num_workers, dataset, device)
        if workers:
            loading.loading_pool(workers)  # its processes start while the models load
        metric_kwargs = {"k": k, "backend": backend, "metrics": list(metric_names)}
        runner = _Runner(
            pairs, device, models, explainers, explainer_kwargs, metric_fn, metric_names, metric_kwargs, precision,
            compile, progress, model_metrics, metric_options,
        )
        ids = run_store.dataset_ids(dataset)
        if ids is not None and len(ids) != n_items:
            raise ValueError(f"the dataset lists {len(ids)} ids for {n_items} items")
        identity = _identity(
            dataset, ids, pairs, runner, explainers, explainer_kwargs, [*metric_names, *model_metrics], settings
        )
        store = RunStore(results_dir, identity)
        store.open()
        n_batches = -(-n_items // batch_size)
        order = [*range(rank, n_batches, world), *(b for b in range(n_batches) if b % world != rank)]
        frames = _run_batches(
            store, runner, dataset, dataset_name, ids, pairs, order, batch_size, rank, progress, workers, decode
        )
        table = pd.concat([frames[(pair, b)] for pair in pairs for b in range(n_batches)], ignore_index=True)
        if rank == 0:
            write_table_atomic(table, store.folder / "results.parquet")
            if csv:
                write_table_atomic(table, store.folder / "results.csv")
        _barrier(world)
        table.attrs["run_dir"] = str(store.folder)
        return table
    finally:
        if started_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _identity(
    dataset: Any,
    ids: list[str] | None,
    pairs: Sequence[Pair],
    runner: _Runner,
    explainers: Mapping[str, Callable[..., MapFn]] | None,
    explainer_kwargs: Mapping[str, Mapping[str, Any]] | None,
    metric_names: Sequence[str],
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """Everything that changes a run's numbers (``lafam_utils.evaluation.run_store`` describes each part)."""
    methods = {}
    for model, method in pairs:  # per pair: a method's default layer depends on the model
        built = runner.explainers[(model, method)]
        factory = (explainers or {}).get(method) or type(built)
        methods[f"{model}/{method}"] = run_store.factory_settings(factory, (explainer_kwargs or {}).get(method, {}), built)
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


def _run_batches(
    store: RunStore,
    runner: _Runner,
    dataset: Any,
    dataset_name: str,
    ids: list[str] | None,
    pairs: Sequence[Pair],
    order: Sequence[int],
    batch_size: int,
    rank: int,
    progress: bool,
    workers: int,
    decode: str,
) -> dict[tuple[Pair, int], pd.DataFrame]:
    """Every chunk of the run, read where a valid one exists, else computed under a claim by this
    process or waited for while another live process holds its claim.

    A batch's pairs are claimed just before it is loaded (with ``workers``, up to two batches ahead
    of the one being explained, ``loading.load_batches``), and released once its chunks are written
    or the run stops."""
    from ..progress import progress_bar

    n_items = len(dataset)

    def indices(batch: int) -> range:
        return loading.batch_indices(batch, batch_size, n_items)

    def read(pair: Pair, batch: int) -> pd.DataFrame | None:
        batch_ids = None if ids is None else ids[batch * batch_size : (batch + 1) * batch_size]
        return store.read_chunk(pair, batch, indices(batch), batch_ids)

    frames: dict[tuple[Pair, int], pd.DataFrame] = {}
    bar = None
    while True:
        missing: dict[int, list[Pair]] = {}
        for batch in order:
            for pair in pairs:
                if (pair, batch) not in frames:
                    frame = read(pair, batch)
                    if frame is None:
                        missing.setdefault(batch, []).append(pair)
                    else:
                        frames[(pair, batch)] = frame
        if not missing:
            break
        if bar is None:
            total = sum(len(indices(b)) * len(ps) for b, ps in missing.items())
            bar = progress_bar(total=total, unit="img", desc=f"evaluate, rank {rank}", position=rank, disable=not progress)
        claims: dict[int, tuple[list[Pair], list[Pair]]] = {}  # batch -> (claimed, to compute), before loading

        def claimed_batches() -> Iterator[int]:
            for batch, batch_pairs in missing.items():
                claimed, todo = claims[batch] = ([pair for pair in batch_pairs if store.claim(pair, batch)], [])
                for pair in claimed:  # another process may have finished it since the read above
                    frame = read(pair, batch)
                    if frame is None:
                        todo.append(pair)
                    else:
                        frames[(pair, batch)] = frame
                if todo:
                    yield batch
                else:
                    release(claims.pop(batch)[0], batch)

        def release(claimed: list[Pair], batch: int) -> None:
            for pair in claimed:
                store.release(pair, batch)

        worked = False
        batches = loading.load_batches(
            dataset, batch_size, ids, claimed_batches(), workers, runner.device, decode, progress
        )
        try:
            for loaded in batches:
                claimed, todo = claims.pop(loaded.batch)
                try:
                    explained = runner.stack(loaded, todo)
                    for pair in todo:
                        frames[(pair, loaded.batch)] = rows = runner.rows(pair, explained, dataset_name)
                        store.write_chunk(rows, pair, loaded.batch)
                        bar.update(len(rows))
                    worked = True
                finally:
                    release(claimed, loaded.batch)
        finally:
            batches.close()  # the loading processes skip what was asked ahead
            for batch, (claimed, _) in claims.items():  # loaded ahead but not computed: the run stopped
                release(claimed, batch)
        if not worked:
            time.sleep(WAIT_SECONDS)
    if bar is not None:
        bar.close()
    return frames
