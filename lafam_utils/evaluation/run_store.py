"""Where ``lu.evaluate`` keeps a run: one folder per run identity, self-verifying chunks, claims.

**Identity.** A run's identity is a plain dict of everything that changes its numbers: the
dataset (name, length, item ids where the dataset can list them without loading images, and a
fingerprint of its content), each model (name and a SHA-256 of its weights), each explainer's
full settings (the constructor's signature bound to the given keyword arguments, defaults
filled in, so a new constructor argument joins the identity by itself), the metrics, ``k``,
``backend``, ``batch_size``, every other setting of ``evaluate`` and ``METRICS_VERSION``. Its
SHA-256 names the run's folder, ``results_dir/<hash[:12]>/``, which holds a readable
``run.json``; a different identity never sees another run's rows.

Dataset fingerprints: a dataset with an index table of files (VOC, ImageNet-S) contributes its
ids and each image's and mask's size and modification time; ``torch.utils.data.Subset`` its
base's fingerprint and the chosen indices; a dataset with its own ``__repr__`` (e.g.
``SyntheticShapes``, whose repr holds all its constructor parameters) that repr; any other
dataset a SHA-256 of its first, middle and last item (tensors' bytes, other values' repr).

**Chunks.** Each chunk (the rows of one (model, method) pair for one batch) stores in its
Parquet metadata the identity hash, the pair, the batch index and the image ids. On resume a
chunk that cannot be read or does not match is recomputed with a warning that names it; it is
never counted. Temporary files carry the process id and a random suffix.

**Claims.** Processes sharing a folder claim each (pair, batch) with a file created by ``O_CREAT |
O_EXCL`` that records host, pid and the process's start time; a claim whose process is gone (same
host) is taken over, as is a claim from another host older than ``FOREIGN_CLAIM_SECONDS``
(takeovers hold an ``flock`` so that two never race). So any number of processes cooperate on one
folder: none crashes, none repeats another's work, and the table equals a single process's.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import os
import secrets
import socket
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor, nn

from ..paper import Pair

METRICS_VERSION = 1
"""Raise when a change of the package changes the numbers of an unchanged identity (metrics,
explainers, preprocessing): runs made before then are not resumed."""
MANIFEST = "run.json"
CHUNKS = "chunks"
CLAIMS = "claims"
HASH_LENGTH = 12
CHUNK_KEY = b"lafam_chunk"
FOREIGN_CLAIM_SECONDS = 6 * 3600
HASH_THREADS = 8  # threads that hash a model's tensors for its fingerprint


def plain(value: Any) -> Any:
    """``value`` as JSON-able data: containers kept, tensors and arrays hashed, other objects by repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [plain(item) for item in items]
    if isinstance(value, Tensor):
        return {"tensor": list(value.shape), "dtype": str(value.dtype), "sha256": tensor_hash(value)}
    if isinstance(value, np.ndarray):
        return plain(torch.from_numpy(np.ascontiguousarray(value)))
    if isinstance(value, torch.dtype | torch.device | Path):
        return str(value)
    if callable(value) and hasattr(value, "__qualname__"):
        return value.__qualname__  # not the module: a script's classes are the same run when imported
    return repr(value)


def tensor_hash(tensor: Tensor) -> str:
    """SHA-256 of a tensor's bytes (any dtype, any device), read in place on the CPU."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return hashlib.sha256(flat.view(torch.uint8).numpy()).hexdigest()


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 over a model's state dict: every key, dtype, shape and value.

    The tensors are hashed in threads (hashlib releases the GIL), so the run identity of large
    models costs a fraction of a second per ``evaluate`` call on a machine with several cores.
    """
    state = model.state_dict()
    with ThreadPoolExecutor(max_workers=min(HASH_THREADS, os.cpu_count() or 1)) as pool:
        hashes = pool.map(tensor_hash, state.values())
        digest = hashlib.sha256()
        for (key, value), value_hash in zip(state.items(), hashes, strict=True):
            digest.update(f"{key}:{value.dtype}:{tuple(value.shape)}:".encode())
            digest.update(value_hash.encode())
    return digest.hexdigest()


def factory_settings(factory: Callable[..., Any], kwargs: Mapping[str, Any], built: Any = None) -> dict[str, Any]:
    """An explainer factory's name and its full settings: the signature bound to ``kwargs``, defaults filled.

    The first parameter (the model) is left out. Where the ``built`` explainer keeps a setting
    as an attribute of the same name, that value counts (a default the constructor resolved, or
    a setting given to it by ``evaluate`` itself). A factory whose signature cannot be read
    contributes its name and ``kwargs`` as given.

    Returns:
        ``{"factory": name, "kwargs": settings}``, as ``plain`` data.
    """
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return {"factory": plain(factory), "kwargs": plain(dict(kwargs))}
    bound = signature.bind(None, **kwargs)
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    arguments.pop(next(iter(signature.parameters)))
    for name, parameter in signature.parameters.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            arguments.update(arguments.pop(name, {}))
    used = {name: getattr(built, name, value) for name, value in arguments.items()}
    return {"factory": plain(factory), "kwargs": plain(used)}


def dataset_ids(dataset: Any) -> list[str] | None:
    """Every item's id without loading an image, where the dataset can tell; else None."""
    if isinstance(dataset, torch.utils.data.Subset):
        base = dataset_ids(dataset.dataset)
        return None if base is None else [base[int(i)] for i in dataset.indices]
    table = getattr(dataset, "table", None)
    if isinstance(table, pd.DataFrame) and "id" in table:
        return [str(i) for i in table["id"]]
    if callable(getattr(dataset, "item_id", None)):
        return [str(dataset.item_id(i)) for i in range(len(dataset))]
    return None


def _file_stats(paths: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        try:
            status = os.stat(path)
            digest.update(f"{path}:{status.st_size}:{status.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}:missing\n".encode())
    return digest.hexdigest()


def _item_digest(dataset: Any, index: int) -> str:
    try:
        item = dataset[index]
    except Exception as error:  # noqa: BLE001 - a failing item is part of the content
        return f"{type(error).__name__}: {error}"
    if isinstance(item, Mapping):
        values = item.items()
    else:
        values = enumerate(item if isinstance(item, (list, tuple)) else [item])
    return json.dumps({str(k): plain(v) for k, v in values}, sort_keys=True)


def dataset_fingerprint(dataset: Any) -> dict[str, Any]:
    """What identifies a dataset's content (see the module docstring)."""
    kind = type(dataset).__qualname__
    if isinstance(dataset, torch.utils.data.Subset):
        indices = [int(i) for i in dataset.indices]
        return {"type": kind, "base": dataset_fingerprint(dataset.dataset), "indices": indices}
    table = getattr(dataset, "table", None)
    if isinstance(table, pd.DataFrame) and {"image_path", "mask_path"} <= set(table.columns):
        paths = [p for pair in zip(table["image_path"], table["mask_path"]) for p in pair]
        return {"type": kind, "size": plain(getattr(dataset, "size", None)),
                "class_names": plain(getattr(dataset, "class_names", None)), "files": _file_stats(paths)}
    if type(dataset).__repr__ is not object.__repr__:
        return {"type": kind, "repr": repr(dataset)}
    n = len(dataset)
    sample = sorted({0, n // 2, n - 1})
    digest = hashlib.sha256("\n".join(_item_digest(dataset, i) for i in sample).encode()).hexdigest()
    return {"type": kind, "items": sample, "sha256": digest}


def identity_hash(identity: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a run identity's JSON with sorted keys; its first 12 digits name the run's folder."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _write_bytes_atomic(data: bytes, path: Path) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_table_atomic(frame: pd.DataFrame, path: Path, metadata: Mapping[bytes, bytes] | None = None) -> None:
    """Write ``frame`` to ``path`` (Parquet, or CSV by suffix) so that readers see all of it or nothing."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        if path.suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if metadata:
                table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
            pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def chunk_path(run_dir: str | Path, pair: Pair, batch: int) -> Path:
    """The file holding the rows of one (model, method) pair for one batch of the run in ``run_dir``."""
    model, method = pair
    return Path(run_dir) / CHUNKS / f"{model}__{method}__{batch:06d}.parquet"


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), "" where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not start or _process_start(pid) in ("", start)


class RunStore:
    """One run's folder: ``run.json``, ``chunks/`` and ``claims/`` under ``root/<hash[:12]>``.

    Args:
        root: the results folder that holds the run folders.
        identity: the run's identity (see the module docstring), ``plain`` data.
    """

    def __init__(self, root: str | Path, identity: Mapping[str, Any]) -> None:
        self.identity = dict(identity)
        self.hash = identity_hash(self.identity)
        self.folder = Path(root) / self.hash[:HASH_LENGTH]
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}
        self._warned: set[Path] = set()

    def open(self) -> None:
        """Create the folder and its ``run.json``, or check that an existing one holds this identity.

        An unreadable ``run.json`` is rewritten, with a warning.

        Raises:
            ValueError: the folder's ``run.json`` records another run.
        """
        (self.folder / CHUNKS).mkdir(parents=True, exist_ok=True)
        (self.folder / CLAIMS).mkdir(exist_ok=True)
        path = self.folder / MANIFEST
        record = {"identity_sha256": self.hash, "identity": self.identity}
        if path.exists():
            try:
                stored = json.loads(path.read_text()).get("identity_sha256")
            except (OSError, ValueError, AttributeError):
                stored = None
            if stored == self.hash:
                return
            if stored is not None:
                raise ValueError(f"{path} records another run (identity {stored}, this run {self.hash})")
            warnings.warn(f"rewriting the unreadable {path}", stacklevel=3)
        _write_bytes_atomic(json.dumps(record, indent=1).encode(), path)

    def chunk_path(self, pair: Pair, batch: int) -> Path:
        """The file holding the rows of ``pair`` for ``batch`` in this run's folder."""
        return chunk_path(self.folder, pair, batch)

    def _claim_path(self, pair: Pair, batch: int) -> Path:
        return self.folder / CLAIMS / (self.chunk_path(pair, batch).stem + ".claim")

    def write_chunk(self, frame: pd.DataFrame, pair: Pair, batch: int) -> None:
        """Write the rows of ``pair`` for ``batch`` atomically; their metadata: run hash, pair, batch, indices, ids."""
        record = {"identity_sha256": self.hash, "pair": list(pair), "batch": batch,
                  "index": [int(i) for i in frame["index"]], "ids": [str(i) for i in frame["id"]]}
        write_table_atomic(frame, self.chunk_path(pair, batch), {CHUNK_KEY: json.dumps(record).encode()})

    def read_chunk(
        self, pair: Pair, batch: int, indices: Sequence[int], ids: Sequence[str] | None
    ) -> pd.DataFrame | None:
        """The chunk's rows if it exists, is readable and matches this run, pair, batch and ids; else None.

        A chunk that exists but fails a check is reported once with a warning naming it and why.
        """
        path = self.chunk_path(pair, batch)
        if not path.exists():
            return None
        try:
            table = pq.read_table(path)
            record = json.loads((table.schema.metadata or {})[CHUNK_KEY])
            frame = table.to_pandas()
        except Exception as error:  # noqa: BLE001 - any damage means: compute again
            return self._reject(path, f"unreadable ({type(error).__name__}: {str(error)[:200]})")
        expected = {"identity_sha256": self.hash, "pair": list(pair), "batch": batch, "index": list(indices)}
        wrong = [key for key, value in expected.items() if record.get(key) != value]
        if ids is not None and record.get("ids") != list(ids):
            wrong.append("ids")
        rows_match = (frame["index"].tolist() == list(indices) and frame["id"].astype(str).tolist() == record.get("ids")
                      and (frame["model"] == pair[0]).all() and (frame["method"] == pair[1]).all())
        if not rows_match:
            wrong.append("rows")
        if wrong:
            return self._reject(path, f"does not match this run ({', '.join(wrong)} differ)")
        return frame

    def _reject(self, path: Path, why: str) -> None:
        if path not in self._warned:
            self._warned.add(path)
            warnings.warn(f"chunk {path} is {why}; computing it again", stacklevel=3)
        return None

    def claim(self, pair: Pair, batch: int) -> bool:
        """Claim (pair, batch) for this process; False while another live process holds it."""
        path = self._claim_path(pair, batch)
        if self._create(path):
            return True
        with open(self.folder / CLAIMS / ".takeover.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one takeover at a time, so none removes a fresh claim
            if not self._stale(path):
                return False
            path.unlink(missing_ok=True)
            return self._create(path)

    def _create(self, path: Path) -> bool:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as file:
            json.dump(self.me, file)
        return True

    def _stale(self, path: Path) -> bool:
        """Whether a claim's process is gone (or, from another host, the claim is old)."""
        try:
            holder = json.loads(path.read_text())
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True
        except (OSError, ValueError):  # a claim being written, or a damaged one
            try:
                return time.time() - path.stat().st_mtime > 10
            except FileNotFoundError:
                return True
        if holder.get("host") != self.me["host"]:
            return age > FOREIGN_CLAIM_SECONDS
        if holder.get("pid") == self.me["pid"]:
            return True  # this process holds no claim it asks for: an earlier process had its pid
        return not _alive(int(holder.get("pid", 0)), holder.get("start", ""))

    def release(self, pair: Pair, batch: int) -> None:
        """Remove this process's claim on (pair, batch), if it is there."""
        self._claim_path(pair, batch).unlink(missing_ok=True)


def is_run_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds a ``run.json`` with a run identity (older versions wrote none)."""
    try:
        return "identity_sha256" in json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError, TypeError):
        return False


def run_folders(results_dir: str | Path) -> list[Path]:
    """The run folders (a ``run.json`` with a run identity) directly under ``results_dir``."""
    return sorted(path.parent for path in Path(results_dir).glob(f"*/{MANIFEST}") if is_run_folder(path.parent))


__all__ = [
    "METRICS_VERSION",
    "RunStore",
    "chunk_path",
    "dataset_fingerprint",
    "dataset_ids",
    "factory_settings",
    "identity_hash",
    "is_run_folder",
    "plain",
    "run_folders",
    "weights_fingerprint",
    "write_table_atomic",
]
