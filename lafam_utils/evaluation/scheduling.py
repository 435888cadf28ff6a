"""The batches of an ``evaluate`` run: resume, claims, waiting for other processes, progress.

Batch ``b`` holds the items ``b*batch_size`` up to the next batch; each (pair, batch) unit is one
chunk of the run's folder (``run_store``). ``run_batches`` reads every valid chunk, claims the
missing units, computes them with the ``Runner`` (batches loaded ahead by ``loading``) and waits
for the units another live process has claimed. Rank ``r`` of ``n`` starts with the batches
``b % n == r`` and then helps with the others', so the table is the same for any number of
processes, and a run stopped at any instant resumes with exactly the missing chunks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd

from ..paper import Pair
from ..progress import progress_bar
from . import loading
from .run_store import RunStore
from .runner import Runner

WAIT_SECONDS = 0.2
"""How long a process whose units are all claimed by others waits before reading the chunks again."""
Claims = dict[int, tuple[list[Pair], list[Pair]]]
"""Batch -> (the pairs this process claimed, those of them it still has to compute)."""


def batch_order(n_batches: int, rank: int, world: int) -> list[int]:
    """The order in which rank ``rank`` of ``world`` visits the batches: its own share first, then the others'."""
    return [*range(rank, n_batches, world), *(b for b in range(n_batches) if b % world != rank)]


def run_batches(
    store: RunStore,
    runner: Runner,
    dataset: Any,
    *,
    dataset_name: str,
    ids: list[str] | None,
    pairs: Sequence[Pair],
    batch_size: int,
    rank: int,
    world: int,
    progress: bool,
    workers: int,
    decode: str,
) -> pd.DataFrame:
    """The run's table: every chunk read where a valid one exists, else computed under a claim by
    this process or waited for while another live process holds its claim.

    A batch's pairs are claimed just before it is loaded (with ``workers``, up to two batches ahead
    of the one being explained, ``loading.load_batches``), and released once its chunks are written
    or the run stops.

    Args:
        store: the run's folder, opened.
        runner: the run's models, explainers and metrics.
        dataset: the evaluated dataset.
        dataset_name: the ``dataset`` column.
        ids: the dataset's item ids, or None where it cannot list them.
        pairs: the (model name, method name) pairs, in the table's order.
        batch_size: images per batch.
        rank: this process's rank.
        world: the number of processes.
        progress: show a progress bar.
        workers: loading processes (0: load here).
        decode: ``"dataset"`` or ``"device"``, as resolved.

    Returns:
        The rows of every pair, in pair order, then batch order.
    """
    n_items = len(dataset)
    n_batches = -(-n_items // batch_size)
    order = batch_order(n_batches, rank, world)

    def indices(batch: int) -> range:
        return loading.batch_indices(batch, batch_size, n_items)

    def read(pair: Pair, batch: int) -> pd.DataFrame | None:
        batch_ids = None if ids is None else ids[batch * batch_size : (batch + 1) * batch_size]
        return store.read_chunk(pair, batch, indices(batch), batch_ids)

    frames: dict[tuple[Pair, int], pd.DataFrame] = {}

    def release(claimed: list[Pair], batch: int) -> None:
        for pair in claimed:
            store.release(pair, batch)

    def claimed_batches(missing: dict[int, list[Pair]], claims: Claims) -> Iterator[int]:
        """The batches of ``missing`` with a pair this process claimed and still has to compute.

        Records each yielded batch's claims in ``claims`` before it is loaded; a batch with nothing
        left to compute is released at once.
        """
        for batch, batch_pairs in missing.items():
            claimed, todo = claims[batch] = ([pair for pair in batch_pairs if store.claim(pair, batch)], [])
            for pair in claimed:  # another process may have finished it since the first read
                frame = read(pair, batch)
                if frame is None:
                    todo.append(pair)
                else:
                    frames[(pair, batch)] = frame
            if todo:
                yield batch
            else:
                release(claims.pop(batch)[0], batch)

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
            bar = progress_bar(
                total=total, unit="img", desc=f"evaluate, rank {rank}", position=rank, disable=not progress
            )
        claims: Claims = {}
        worked = False
        to_compute = claimed_batches(missing, claims)
        batches = loading.load_batches(dataset, batch_size, ids, to_compute, workers, runner.device, decode, progress)
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
    return pd.concat([frames[(pair, b)] for pair in pairs for b in range(n_batches)], ignore_index=True)
