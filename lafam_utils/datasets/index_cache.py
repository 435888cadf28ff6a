"""The index cache: one row per mask with its label values, pixel counts and size.

The index reads every mask once and is cached next to the data (or, if that folder is read-only,
in the user cache dir); a file is read again only when its size or modification time changed, so
a second run rereads nothing and a changed dataset is noticed.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from .files import DataFileError, file_stat

CACHE_VERSION = 2


def cache_locations(data_dir: Path, name: str, cache_dir: str | Path | None) -> list[Path]:
    """Where the index may be cached: ``cache_dir`` if given, else next to the data, else the user cache dir.

    The first writable place wins.
    """
    file_name = f".lafam_index_v{CACHE_VERSION}_{name}.parquet"
    if cache_dir is not None:
        return [Path(cache_dir) / file_name]
    key = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:16]
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lafam_utils" / f"{key}{file_name}"
    return [data_dir / file_name, user]


STAT_COLUMNS = ["mask_path", "mask_size", "mask_mtime", "image_path", "image_size", "image_mtime"]
FILE_STATS = ["mask_size", "mask_mtime", "image_size", "image_mtime"]
FACT_COLUMNS = ["values", "pixels", "height", "width", "error"]
NO_FACTS = {"values": [], "pixels": [], "height": 0, "width": 0}


def _read_cache(cache_files: Sequence[Path]) -> dict[tuple, dict[str, Any]]:
    """Cached rows keyed by the files' paths, sizes and mtimes; empty if there is no usable cache."""
    for path in cache_files:
        if path.is_file():
            try:
                cached = pd.read_parquet(path)
            except Exception as error:  # noqa: BLE001 - a broken cache is rebuilt, never fatal
                warnings.warn(f"ignoring the unreadable index cache {path} ({error}); rebuilding it", stacklevel=4)
                continue
            return {tuple(row[c] for c in STAT_COLUMNS): row for row in cached.to_dict("records")}
    return {}


def _write_cache(rows: pd.DataFrame, cache_files: Sequence[Path]) -> None:
    """Write the index atomically to the first writable place; if none is, keep it in memory only."""
    for path in cache_files:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            rows.to_parquet(temporary, index=False)
            os.replace(temporary, path)
            return
        except OSError:
            continue
    warnings.warn(
        f"cannot write the index cache to {[str(p) for p in cache_files]}; it is rebuilt next time", stacklevel=4
    )


def build_index(
    entries: pd.DataFrame, read_facts: Callable[[Path, Path], dict], cache_files: Sequence[Path]
) -> pd.DataFrame:
    """Facts of every entry, from the cache where the files are unchanged, else read from the files.

    Args:
        entries: one row per image: ``id``, ``mask_path``, ``image_path`` and extra columns (an
            entry whose ``error`` is already set is not read).
        read_facts: (mask, image) -> the mask's label ``values``, their ``pixels``, its ``height``
            and ``width``; a ``DataFileError`` it raises becomes the row's ``error``.
        cache_files: where the index may be cached (``cache_locations``).

    Returns:
        The index table: ``dataset_idx`` (position among all entries), the entries' columns, the
        facts and ``error`` ("" for a usable row; a missing file or the reader's error otherwise).
    """
    cached = _read_cache(cache_files)
    rows, to_read = [], []
    for entry in entries.to_dict("records"):
        mask, image = entry["mask_path"], entry["image_path"]
        mask_stat, image_stat = file_stat(mask), file_stat(image) if image else None
        if entry.get("error"):
            row = {**entry, **NO_FACTS}
        elif mask_stat is None:
            row = {
                **entry,
                **NO_FACTS,
                "error": f"{mask}: mask missing; expected it for the image {image or entry['id']}",
            }
        elif image_stat is None:
            expected = image or entry.get("expected_image", "its image")
            row = {**entry, **NO_FACTS, "error": f"{expected}: image missing; expected it for the mask {mask}"}
        else:
            key = (mask, *mask_stat, image, *image_stat)
            row = {**entry, **dict(zip(STAT_COLUMNS, key))}
            if key in cached:
                row |= {k: cached[key][k] for k in FACT_COLUMNS}
            else:
                to_read.append(row)
        rows.append(row)

    def read(row: dict) -> None:
        try:
            row |= read_facts(Path(row["mask_path"]), Path(row["image_path"])) | {"error": ""}
        except DataFileError as error:
            row |= NO_FACTS | {"error": str(error)}

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(read, to_read))
    table = pd.DataFrame(rows)
    table = table.reindex(columns=[*table.columns, *(c for c in STAT_COLUMNS if c not in table)])
    cacheable = table[table["mask_size"].notna()]
    if to_read or len(cacheable) != len(cached):
        _write_cache(cacheable[STAT_COLUMNS + FACT_COLUMNS].astype(dict.fromkeys(FILE_STATS, "int64")), cache_files)
    table = table.drop(columns=[c for c in (*FILE_STATS, "expected_image") if c in table])
    table.insert(0, "dataset_idx", range(len(table)))
    return table


__all__ = ["CACHE_VERSION", "build_index", "cache_locations"]
