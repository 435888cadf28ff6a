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
    """Raise unless the SHA-256 of a cached file starts with the hash prefix in its name (torchvision's
    ``<name>-<prefix>.pth`` convention); a file without a prefix is not checked. Remembered per
    (path, size, mtime), so each file is hashed once per process."""
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
    """The cached copy of ``url`` in ``directory`` (default ``torch.hub.get_dir()/checkpoints``),
    downloaded on first use; a cached file whose name carries a hash prefix is checked against it
    (``check_hash``).

    It is cached under the URL's file name, or ``file_name`` where releases share one (``resnet50.pth``).

    A failed download raises ``DownloadError`` naming the URL, the file it is expected as, and the
    two ways around it: place the file there, or pass ``checkpoint=`` to ``load_model``.
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
    """Raise ``DownloadError`` unless the md5 of ``path`` (downloaded from ``url``) starts with ``md5_prefix``."""
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
