"""Downloading published weights into a cache, with a clear error offline and hash checks."""

from __future__ import annotations

import hashlib
import http.client
from pathlib import Path
from urllib.parse import urlparse

import torch

from .checkpoints import CheckpointError, first_line


class DownloadError(RuntimeError):
    """Weights could not be downloaded (offline, HTTP error, hash mismatch)."""


_VERIFIED: set[tuple[str, int, int]] = set()


def check_hash(path: Path, url: str) -> None:
    """Check a cached file's SHA-256 against the hash prefix in its name (torchvision's ``<name>-<prefix>.pth``).

    A file without a prefix is not checked. Remembered per (path, size, mtime), so each file is
    hashed once per process.

    Raises:
        CheckpointError: the SHA-256 does not start with the prefix (the file is damaged or not the published one).
    """
    prefix = torch.hub.HASH_REGEX.search(path.name)
    status = path.stat()
    key = (str(path), status.st_size, status.st_mtime_ns)
    if prefix is None or key in _VERIFIED:
        return
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(prefix.group(1)):
        raise CheckpointError(
            f"{path}, the cached download of {url}, is damaged or not the published file: its SHA-256 starts "
            f"with {digest.hexdigest()[:len(prefix.group(1))]}, its name promises {prefix.group(1)}; "
            "delete it to download it again"
        )
    _VERIFIED.add(key)


def fetch(url: str, directory: str | Path | None = None, file_name: str | None = None) -> Path:
    """The cached copy of ``url``, downloaded on first use.

    A cached file whose name carries a hash prefix is checked against it (``check_hash``).

    Args:
        url: where the file is published.
        directory: the cache folder (default ``torch.hub.get_dir()/checkpoints``).
        file_name: the name to cache it under instead of the URL's file name, where releases share
            one (``resnet50.pth``).

    Returns:
        The cached file's path.

    Raises:
        DownloadError: the download fails; the message names the URL, the file it is expected as,
            and the two ways around it: place the file there, or pass ``checkpoint=`` to ``load_model``.
        CheckpointError: a cached file fails its hash check.
    """
    directory = Path(directory) if directory is not None else Path(torch.hub.get_dir()) / "checkpoints"
    path = directory / (file_name or Path(urlparse(url).path).name)
    if path.is_file():
        check_hash(path, url)
        return path
    hash_prefix = torch.hub.HASH_REGEX.search(path.name)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), hash_prefix=hash_prefix and hash_prefix.group(1))
    except (OSError, RuntimeError, http.client.HTTPException) as err:
        raise DownloadError(
            f"could not download {url} ({type(err).__name__}: {first_line(err)}). Weights are expected at "
            f"{path} (file {path.name!r} in the folder {directory}; weights_dir= or $TORCH_HOME choose it). Download "
            "it there by hand, or pass checkpoint='/path/to/" + path.name + "' to load_model."
        ) from None
    return path


def check_md5(path: Path, url: str, md5_prefix: str) -> None:
    """Check that the md5 of ``path`` (downloaded from ``url``) starts with ``md5_prefix``.

    Raises:
        DownloadError: it does not: the file is damaged or not that release.
    """
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(md5_prefix):
        raise DownloadError(
            f"{path} (from {url}) has md5 {digest.hexdigest()[:8]}..., but the release publishes "
            f"{md5_prefix}...: the file is damaged or not that release; delete it to download it again"
        )


__all__ = ["DownloadError", "check_hash", "check_md5", "fetch"]
