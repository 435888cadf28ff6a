"""Where the repository's folders are: relative paths of a parameter set start at its root."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def repo_path(path: str | Path) -> Path:
    """A path from a parameter set: relative paths start at the repository root, absolute ones stay."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


__all__ = ["NOTEBOOKS_DIR", "REPO_ROOT", "repo_path"]
