"""``evaluate``: datasets x models x methods -> one results row per (image, model, method), resumable and shardable.

``evaluate`` checks its arguments, then runs the jobs of the modules beside it: ``distributed``
(this process's rank under ``torchrun``), ``loading`` (the items, read ahead by a pool of loading
processes), ``runner`` (models, explainers and metrics: a batch in, a pair's rows out),
``identity`` (what enters the run's hash), ``run_store`` (the run's folder, chunks and claims) and
``scheduling`` (resume, claims, waiting for other processes, progress). ``load_results`` reads a
run's committed chunks.

The dataset is walked in fixed batches (batch ``b`` holds indices ``b*batch_size`` up to the next
batch) and, for every (model, method) pair, each batch's rows are committed as one chunk file.
The run lives in ``results_dir/<identity hash>/``: the identity covers the data, the weights, the
explainers' settings and the metrics, so a changed setting starts a new folder and old rows are
never returned. Chunks are written to a temporary name and moved into place, and verify
themselves on resume, so a run killed at any instant (even with SIGKILL) and started again
computes exactly the missing or damaged chunks. Processes sharing a folder claim (pair, batch)
units; under ``torchrun`` rank ``r`` of ``n`` starts with the batches ``b % n == r``. The merged
table is the same for any number of processes.

A failing image never stops the run: an exception in ``dataset[i]``, in the explainer or in the
metrics, or a map with NaN/inf values, becomes a row whose ``error`` says what happened and whose
metric columns are NaN. The table is the same with any number of loading processes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from ..metrics import split_metric_names
from ..paper import PAPER_PAIRS, Pair
from ..precision import Precision, check_precision, resolve_precision
from . import loading, run_store
from .distributed import process_rank
from .identity import run_identity, run_settings
from .loading import Decode
from .run_store import CHUNKS, MANIFEST, RunStore, write_table_atomic
from .runner import MapFn, Runner
from .scheduling import run_batches

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""A model or method name: it names the chunk files."""


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
    work, see ``shared_forward.explain_together``), one column per metric and ``error`` (empty
    when the row is fine). Rows are committed per batch in the run's folder
    ``results_dir/<identity hash[:12]>/`` (with ``run.json``; ``table.attrs["run_dir"]`` names
    it); calling again with the same identity resumes where a previous run stopped, another
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
    on a GPU: docs/performance.md). Device decoding enters the identity (``"device-cuda"`` or
    ``"device-cpu"``, with the Pillow version whose resize it follows); the table is the same for
    any ``num_workers``, which does not.

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
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    pairs = [tuple(pair) for pair in pairs]
    named = all(len(pair) == 2 and all(isinstance(s, str) and NAME.fullmatch(s) for s in pair) for pair in pairs)
    if not pairs or not named:
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
    ran_precision = resolve_precision(precision, device)  # "auto" as decided on this device
    n_items = len(dataset)
    if n_items == 0:
        raise ValueError("expected a dataset with at least one item, got an empty one")
    dataset_name = dataset_name or getattr(dataset, "name", type(dataset).__name__)
    decode = loading.resolve_decode(decode, dataset, device)
    settings = run_settings(arguments, precision=ran_precision, dataset_name=dataset_name, decode=decode, device=device)

    with process_rank(device) as rank:
        workers = loading.workers_for(num_workers, dataset, rank.device)
        if workers:
            loading.loading_pool(workers)  # its processes start while the models load
        metric_kwargs = {"k": k, "backend": backend, "metrics": list(metric_names)}
        runner = Runner(
            pairs, rank.device, models, explainers, explainer_kwargs, metric_fn, metric_names, metric_kwargs,
            precision=precision, compile=compile, progress=progress, model_metrics=model_metrics,
            metric_options=metric_options,
        )
        ids = run_store.dataset_ids(dataset)
        if ids is not None and len(ids) != n_items:
            raise ValueError(f"the dataset lists {len(ids)} ids for {n_items} items")
        identity = run_identity(
            dataset, ids, pairs, runner, explainers, explainer_kwargs, [*metric_names, *model_metrics], settings
        )
        store = RunStore(results_dir, identity)
        store.open()
        table = run_batches(
            store, runner, dataset, dataset_name=dataset_name, ids=ids, pairs=pairs, batch_size=batch_size,
            rank=rank.rank, world=rank.world, progress=progress, workers=workers, decode=decode,
        )
        if rank.rank == 0:
            write_table_atomic(table, store.folder / "results.parquet")
            if csv:
                write_table_atomic(table, store.folder / "results.csv")
        rank.barrier()
    table.attrs["run_dir"] = str(store.folder)
    return table
