"""The batches ``evaluate`` explains: loaded in this process or by a pool of loading processes that
lives as long as the Python process, and decoded by the dataset or on the device.

**The pool.** ``num_workers`` processes are started the first time a call needs them and are
reused by every later ``evaluate`` call of the process (a notebook's parameter sets, a script's
datasets and pair groups); a call that asks for another number restarts them. The process that
runs ``evaluate`` never forks (forking after torch started its threads can hang): a fresh
interpreter (multiprocessing's "forkserver"; "spawn" where there is none) imports torch and the
package's datasets once and forks the workers from itself. The start is reported once in the
progress output. Each item is one task, so the reads of one batch overlap; the loader keeps the
next two batches, and at least ``ITEMS_AHEAD`` items per worker, in flight while the device
explains the current one, and loads queued items itself while it waits for a batch (so also
while the workers start). The pool is closed at exit (``atexit``) or by ``close_loading_pool()``;
a worker that dies makes the loader finish the run in this process with a warning, and the next
call starts a new pool. Workers leave when their parent is gone, also after a SIGKILL.

**Decoding.** ``decode="dataset"`` takes the dataset's items as they are (Pillow for VOC and
ImageNet-S). ``decode="device"`` takes the image files' bytes (``encoded_item``) and decodes each
batch on the evaluation device with torchvision (``datasets.transforms.decode_images``: nvJPEG on
CUDA); ``"auto"`` does so on CUDA for datasets that offer it.

The table is the same for any number of workers; error rows are those of in-process loading.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import pickle
import queue
import shutil
import signal
import tempfile
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

Decode = Literal["auto", "dataset", "device"]
MAX_WORKERS = 8  # loading processes ``num_workers=None`` starts at most
ITEMS_AHEAD = 2  # items per worker kept in flight beyond the batch being explained
POLL_SECONDS = 0.5  # how often a waiting loader checks that its workers live, and a worker its parent
START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
"""How loading processes start: forked by a fresh server interpreter that imported torch once (not
by this process), else each a fresh interpreter."""
FORKSERVER_PRELOAD = ["__main__", __name__, "lafam_utils.datasets", "lafam_utils.shapes.dataset"]
"""What the server imports once for all workers: the main script as multiprocessing does by default
(its imports: a script runs its work under ``if __name__ == "__main__":``), this module and the
package's datasets."""


@dataclass
class Item:
    """One dataset item (its image, or its file's bytes in ``encoded``), or the error raised while loading it."""

    index: int
    image: Tensor | None = None
    mask: Tensor | None = None
    labels: str = ""
    id: str = ""
    error: str = ""
    encoded: Tensor | None = None


class LoadedBatch(NamedTuple):
    """One batch as loaded: its items (without their tensors) and the loaded items' images and masks
    stacked, on the device."""

    batch: int
    items: list[Item]
    x: Tensor | None
    masks: Tensor | None


def describe_error(error: BaseException) -> str:
    """``"Type: message"``, as an error row shows it."""
    return f"{type(error).__name__}: {error}"


def shape_of(value: Any) -> Any:
    """A value's shape for an error message, else its type."""
    return getattr(value, "shape", type(value))


def offers_encoded(dataset: Any) -> bool:
    """Whether ``dataset`` (or the dataset below a ``torch.utils.data.Subset``) gives its image files' bytes."""
    while isinstance(dataset, torch.utils.data.Subset):
        dataset = dataset.dataset
    return callable(getattr(dataset, "encoded_item", None))


def encoded_item(dataset: Any, index: int) -> dict[str, Any]:
    """Item ``index`` with the image file's bytes in ``"encoded"`` (``SegmentationDataset.encoded_item``),
    also through subsets."""
    while isinstance(dataset, torch.utils.data.Subset):
        dataset, index = dataset.dataset, int(dataset.indices[index])
    return dataset.encoded_item(index)


def load_item(dataset: Any, index: int, known_id: str = "", encoded: bool = False) -> Item:
    """``dataset[index]`` (with ``encoded``: ``encoded_item``) checked for the expected keys; a
    failure is kept as the item's error (with ``known_id``, the id the dataset lists for it)."""
    try:
        item = encoded_item(dataset, index) if encoded else dataset[index]
        mask = item["mask"]
        if encoded:
            image, data = None, item["encoded"]
            if not (isinstance(data, Tensor) and data.ndim == 1 and data.dtype == torch.uint8):
                raise TypeError(f"expected item['encoded'] to be a 1-D uint8 tensor, got {shape_of(data)}")
            if not (isinstance(mask, Tensor) and mask.ndim == 2 and mask.shape[0] == mask.shape[1]):
                raise TypeError(f"expected item['mask'] to be a square (H, W) tensor, got {shape_of(mask)}")
        else:
            image, data = item["image"], None
            if not (isinstance(image, Tensor) and image.ndim == 3 and image.is_floating_point()):
                raise TypeError(f"expected item['image'] to be a float (3, H, W) tensor, got {shape_of(image)}")
            if not (isinstance(mask, Tensor) and mask.shape == image.shape[1:]):
                expected = tuple(image.shape[1:])
                raise TypeError(f"expected item['mask'] to be a tensor of shape {expected}, got {shape_of(mask)}")
        labels = item["labels"]
        labels = labels if isinstance(labels, str) else "|".join(map(str, labels))
        return Item(index, image, mask.bool(), labels, str(item["id"]), encoded=data)
    except Exception as error:  # noqa: BLE001 - any failure of one item is recorded, not raised
        return Item(index, id=known_id, error=describe_error(error))


def default_workers(device: str | torch.device = "cpu") -> int:
    """The number of loading processes for ``num_workers=None``.

    Of the CPUs this process may run on (shared by the ranks of one machine under torchrun): on
    a GPU all but one (the process that feeds the device), none below 2; on the CPU half of them,
    none below 4, where workers would compete with the explainers for the cores. At most
    ``MAX_WORKERS``.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cpus //= max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if torch.device(device).type == "cuda":
        return 0 if cpus < 2 else min(MAX_WORKERS, cpus - 1)
    return 0 if cpus < 4 else min(MAX_WORKERS, cpus // 2)


def workers_for(num_workers: int | None, dataset: Any, device: str | torch.device = "cpu") -> int:
    """The loading processes to use: ``num_workers`` as given; for None ``default_workers(device)``,
    or 0 with a warning where the dataset could not reach a worker (its class defined in
    ``__main__``, e.g. a notebook, or not picklable)."""
    if num_workers is not None:
        return num_workers
    workers = default_workers(device)
    if workers == 0:
        return 0
    try:
        if type(dataset).__module__ == "__main__":
            raise TypeError(f"{type(dataset).__name__} is defined in __main__, which a spawned worker cannot import")
        pickle.dumps(dataset)
    except Exception as error:  # noqa: BLE001 - any failure means: load in this process
        warnings.warn(
            f"evaluate loads the dataset in this process, not in {workers} workers: {describe_error(error)}; "
            "define the dataset in a module, or pass num_workers=0 to silence this",
            stacklevel=3,
        )
        return 0
    return workers


def resolve_decode(decode: str, dataset: Any, device: str | torch.device) -> str:
    """What ``decode`` means for ``dataset`` on ``device``: ``"dataset"`` or ``"device"``.

    Raises:
        ValueError: ``decode`` is not "auto", "dataset" or "device", or is "device" for a dataset
            without ``encoded_item``.
    """
    if decode not in ("auto", "dataset", "device"):
        raise ValueError(f"decode must be 'auto', 'dataset' or 'device', got {decode!r}")
    if decode == "device" and not offers_encoded(dataset):
        raise ValueError(
            f"decode='device' needs a dataset that gives its image files' bytes (encoded_item, as VOC2012 and "
            f"ImageNetS do, also inside a Subset), got {type(dataset).__name__}"
        )
    if decode == "auto":
        return "device" if torch.device(device).type == "cuda" and offers_encoded(dataset) else "dataset"
    return decode


def decode_on_device(items: list[Item], device: torch.device) -> None:
    """Set each item's ``image`` from its ``encoded`` bytes, decoded in one batch on ``device`` at
    its mask's side; a batch that fails is decoded one by one (``decode_one``).

    Raises:
        ValueError: the masks differ in shape.
    """
    from ..datasets.transforms import decode_images

    sides = {tuple(item.mask.shape) for item in items}
    if len(sides) > 1:
        raise ValueError(f"masks of one batch must share a shape, got {sorted(sides)}; resize them in the dataset")
    side = items[0].mask.shape[-1]
    try:
        images = list(decode_images([item.encoded for item in items], side, device))
    except Exception:  # noqa: BLE001 - find the failing image(s) one by one
        images = [decode_one(item, side, device) for item in items]
    for item, image in zip(items, images, strict=True):
        item.image = image


def decode_one(item: Item, side: int, device: torch.device) -> Tensor | None:
    """One item's image decoded on ``device``, else on the CPU and moved there; None, with the
    item's error set, where neither decodes it."""
    from ..datasets.transforms import decode_images

    failures = []
    for where in dict.fromkeys((device, torch.device("cpu"))):
        try:
            return decode_images([item.encoded], side, where)[0].to(device)
        except Exception as error:  # noqa: BLE001 - recorded as this item's error
            failures.append(error)
    item.error = f"cannot decode the image file: {describe_error(failures[-1])}"
    return None


def assemble(batch: int, items: list[Item], device: torch.device, decode: str) -> LoadedBatch:
    """A batch's items stacked on ``device`` (through pinned memory on CUDA), decoded there with ``decode="device"``.

    Raises:
        ValueError: the loaded images of the batch differ in shape.
    """
    loaded = [item for item in items if not item.error]
    if decode == "device" and loaded:
        decode_on_device(loaded, device)
        loaded = [item for item in loaded if not item.error]
    if not loaded:
        return LoadedBatch(batch, items, None, None)
    shapes = {tuple(item.image.shape) for item in loaded}
    if len(shapes) > 1:
        raise ValueError(f"images of one batch must share a shape, got {sorted(shapes)}; resize them in the dataset")
    x, masks = stack_to([item.image for item in loaded], device), stack_to([item.mask for item in loaded], device)
    for item in loaded:
        item.image = item.mask = item.encoded = None
    return LoadedBatch(batch, items, x, masks)


def stack_to(tensors: list[Tensor], device: torch.device) -> Tensor:
    """``torch.stack(tensors)`` on ``device``; from the CPU to CUDA through a pinned buffer, copied without blocking."""
    if device.type != "cuda" or tensors[0].device.type == "cuda":
        return torch.stack(tensors).to(device)
    pinned = torch.empty((len(tensors), *tensors[0].shape), dtype=tensors[0].dtype, pin_memory=True)
    return torch.stack(tensors, out=pinned).to(device, non_blocking=True)


def batch_indices(batch: int, batch_size: int, n_items: int) -> range:
    """The dataset indices of batch ``batch``."""
    return range(batch * batch_size, min((batch + 1) * batch_size, n_items))


def load_batches(
    dataset: Any,
    batch_size: int,
    ids: Sequence[str] | None,
    order: Iterable[int],
    workers: int,
    device: torch.device,
    decode: str = "dataset",
    progress: bool = False,
) -> Iterator[LoadedBatch]:
    """The batches of ``order`` (batch ``b``: indices ``b*batch_size`` up to the next) loaded, in order.

    With ``workers=0`` here; else by the shared pool of that many processes (started if needed),
    item by item, ahead of the batch being explained. ``order`` is read only as far as the loading
    has come (``evaluate`` claims a batch as it is read). ``decode``: ``resolve_decode``'s answer.
    """
    encoded = decode == "device"
    pool = loading_pool(workers) if workers else None
    if pool is None or pool.busy:  # no workers, or the pool serves another call of this process
        for batch in order:
            indices = batch_indices(batch, batch_size, len(dataset))
            items = [load_item(dataset, i, ids[i] if ids else "", encoded) for i in indices]
            yield assemble(batch, items, device, decode)
        return
    yield from pool.batches(
        dataset, batch_size, ids, order, encoded, lambda batch, items: assemble(batch, items, device, decode), progress
    )


def _serve(tasks: Any, results: Any, generation: Any, folder: str, number: int) -> None:
    """A loading process: load the items asked for, one task at a time, until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops the run
    results.cancel_join_thread()  # exit without waiting for a parent that no longer reads
    torch.set_num_threads(1)
    parent = multiprocessing.parent_process()  # its sentinel closes when the parent exits, however it exits
    results.put(("ready", number, os.getpid()))
    key, dataset = None, None
    while True:
        try:
            task = tasks.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return
            continue
        if task is None:
            return
        call, wanted, index, known_id, encoded = task
        if call != generation.value:  # the call that asked for it has stopped
            continue
        if wanted != key:
            try:
                dataset, key = pickle.loads((Path(folder) / f"{wanted}.pkl").read_bytes()), wanted
            except Exception as error:  # noqa: BLE001 - reported to the loader, which raises it
                results.put(("failed", call, index, describe_error(error)))
                continue
        results.put(("item", call, index, load_item(dataset, index, known_id, encoded)))


class WorkerLostError(RuntimeError):
    """A loading process exited while the loader waited for it."""


class LoadingPool:
    """``workers`` loading processes (``START_METHOD``), fed item by item through one task queue.

    Attributes:
        start_seconds: from the start until every worker had imported what it needs (None until then).
        pids: the workers' process ids.
    """

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context(START_METHOD)
        if START_METHOD == "forkserver":
            context.set_forkserver_preload(FORKSERVER_PRELOAD)
        self.folder = tempfile.mkdtemp(prefix="lafam-loading-")
        self.tasks, self.results = context.Queue(), context.Queue()
        self.generation = context.Value("q", 0)
        self.busy, self.broken, self.reported = False, False, False
        self.start_seconds: float | None = None
        self._ready: set[int] = set()
        self._datasets = 0
        self._started = time.perf_counter()
        self.processes = [
            context.Process(target=_serve, args=(self.tasks, self.results, self.generation, self.folder, number),
                            name=f"lafam-loading-{number}", daemon=True)
            for number in range(workers)
        ]
        for process in self.processes:
            process.start()
        self.pids = [process.pid for process in self.processes]

    @property
    def size(self) -> int:
        return len(self.processes)

    def batches(self, dataset: Any, batch_size: int, ids: Sequence[str] | None, order: Iterable[int], encoded: bool,
                assemble: Any, progress: bool) -> Iterator[LoadedBatch]:
        """``load_batches`` by this pool; a lost worker makes it load the rest here, with a warning."""
        n_items = len(dataset)
        self._datasets += 1
        key = f"dataset-{self._datasets}"
        (Path(self.folder) / f"{key}.pkl").write_bytes(pickle.dumps(dataset))
        with self.generation.get_lock():
            self.generation.value += 1
            call = self.generation.value
        self.busy = True
        pending: deque[tuple[int, range]] = deque()
        received: dict[int, Item] = {}
        batches = iter(order)
        in_flight = 0
        here = False  # loading in this process after a worker was lost

        def known(index: int) -> str:
            return ids[index] if ids else ""

        def load_here(index: int, known_id: str) -> Item:
            return load_item(dataset, index, known_id, encoded)

        def top_up() -> None:
            nonlocal in_flight
            while len(pending) < 2 or in_flight < ITEMS_AHEAD * self.size:
                batch = next(batches, None)
                if batch is None:
                    return
                indices = batch_indices(batch, batch_size, n_items)
                pending.append((batch, indices))
                in_flight += len(indices)
                for index in indices:
                    if here:
                        received[index] = load_here(index, known(index))
                    else:
                        self.tasks.put((call, key, index, known(index), encoded))

        try:
            top_up()
            while pending:
                batch, indices = pending[0]
                while not here and any(index not in received for index in indices):
                    try:
                        self._receive(call, received, progress, load_here)
                    except WorkerLostError as lost:
                        warnings.warn(f"{lost}; evaluate loads the rest of this run in this process", stacklevel=4)
                        here = True
                        self.close()
                for index in indices:
                    if index not in received:
                        received[index] = load_here(index, known(index))
                pending.popleft()
                in_flight -= len(indices)
                items = [received.pop(index) for index in indices]
                top_up()  # the workers load ahead while the device explains this batch
                yield assemble(batch, items)
        finally:
            with self.generation.get_lock():
                self.generation.value += 1  # tasks of this call left in the queue are skipped
            self.busy = False
            (Path(self.folder) / f"{key}.pkl").unlink(missing_ok=True)

    def wait_until_started(self, timeout: float = 300.0) -> float:
        """Wait until every worker has started (imported what it needs); return ``start_seconds``.

        Raises:
            TimeoutError: they have not started within ``timeout`` seconds.
            WorkerLostError: a worker exited.
        """
        deadline = time.monotonic() + timeout
        while self.start_seconds is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.size - len(self._ready)} loading processes not started in {timeout} s")
            self._receive(-1, {}, False, load_item)  # no call is -1: stale items and tasks are dropped
        return self.start_seconds

    def _receive(self, call: int, received: dict[int, Item], progress: bool, load: Callable[[int, str], Item]) -> None:
        """Take one message from the workers into ``received`` (items of call ``call``; others dropped).

        With no message waiting, this process loads the next queued item itself (``load(index,
        known_id)``): it helps while it waits, also while the workers start; with no item queued
        either, it waits up to ``POLL_SECONDS`` for a message.

        Raises:
            WorkerLostError: a worker exited.
            RuntimeError: a worker could not read the dataset.
        """
        try:
            message = self._message(block=False)
        except queue.Empty:
            try:
                task_call, _, index, known_id, _ = self.tasks.get_nowait()
            except queue.Empty:
                try:
                    message = self._message(block=True)
                except queue.Empty:
                    self._check_alive()
                    return
            else:
                if task_call == call:
                    received[index] = load(index, known_id)
                return
        kind, *rest = message
        if kind == "ready":
            self._ready.add(rest[0])
            if len(self._ready) == self.size:
                self.start_seconds = time.perf_counter() - self._started
                if progress and not self.reported:
                    from ..progress import report_line

                    report_line(f"started {self.size} loading processes in {self.start_seconds:.1f} s "
                                "(kept for the later evaluate calls of this Python process)")
                self.reported = self.reported or progress
        elif rest[0] == call:
            if kind == "failed":
                raise RuntimeError(f"a loading process could not read the dataset: {rest[2]}")
            received[rest[1]] = rest[2]

    def _message(self, block: bool) -> tuple:
        """The next message of the workers (waiting up to ``POLL_SECONDS`` with ``block``).

        Raises:
            queue.Empty: none came.
            WorkerLostError: a message could not be read, its sender having exited.
        """
        try:
            return self.results.get(timeout=POLL_SECONDS) if block else self.results.get_nowait()
        except (OSError, EOFError, pickle.UnpicklingError) as error:  # its sender exited before the tensors came
            self._check_alive(wait=True)
            self.broken = True
            raise WorkerLostError(f"a loading process's message could not be read ({describe_error(error)})") from None

    def _check_alive(self, wait: bool = False) -> None:
        """Raise ``WorkerLostError`` for a worker that has exited (with ``wait``, give an exiting one a second).

        Raises:
            WorkerLostError: a worker exited.
        """
        deadline = time.monotonic() + (1.0 if wait else 0.0)
        while not (dead := [p for p in self.processes if not p.is_alive()]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if dead:
            self.broken = True
            hint = "" if self.processes.index(dead[0]) in self._ready else (
                " before it started (a script that calls evaluate with workers needs `if __name__ == '__main__':`)"
            )
            raise WorkerLostError(f"loading process {dead[0].name} exited with code {dead[0].exitcode}{hint}")

    def close(self) -> None:
        """Stop the workers (terminated if they do not stop within a few seconds) and remove the pool's files."""
        if not self.processes:
            return
        with self.generation.get_lock():
            self.generation.value += 1
        for _ in self.processes:
            self.tasks.put(None)
        deadline = time.monotonic() + 5
        for process in self.processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(timeout=1)
        for channel in (self.tasks, self.results):
            channel.cancel_join_thread()
            channel.close()
        self.processes = []
        self.broken = True
        shutil.rmtree(self.folder, ignore_errors=True)


_POOL: LoadingPool | None = None
_POOL_LOCK = threading.Lock()
_AT_EXIT = False


def loading_pool(workers: int) -> LoadingPool:
    """The process's loading pool with ``workers`` processes: the running one, else a new one
    (closed at exit). Starting does not wait for the workers' imports."""
    global _POOL, _AT_EXIT
    with _POOL_LOCK:
        if _POOL is not None and (_POOL.broken or _POOL.size != workers) and not _POOL.busy:
            _POOL.close()
            _POOL = None
        if _POOL is None:
            _POOL = LoadingPool(workers)
            if not _AT_EXIT:
                atexit.register(close_loading_pool)
                _AT_EXIT = True
        return _POOL


def current_pool() -> LoadingPool | None:
    """The running loading pool, if any."""
    return _POOL


def close_loading_pool() -> None:
    """Stop the loading processes now (they also stop at exit); the next ``evaluate`` with workers starts new ones."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.close()
            _POOL = None


__all__ = [
    "Decode",
    "Item",
    "LoadedBatch",
    "LoadingPool",
    "close_loading_pool",
    "current_pool",
    "default_workers",
    "describe_error",
    "load_batches",
    "load_item",
    "loading_pool",
    "resolve_decode",
    "workers_for",
]
