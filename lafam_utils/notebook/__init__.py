"""The notebook layer: one-call setup (``setup``), typed parameters (``Params``), the Explorer, the headless runner."""

from .params import Params
from .session import Session, setup

__all__ = ["Explorer", "Params", "Session", "setup"]


def __getattr__(name: str):
    if name == "Explorer":  # ipywidgets is imported only when the explorer is used
        from .explorer import Explorer

        return Explorer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
