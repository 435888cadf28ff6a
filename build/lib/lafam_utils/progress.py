"""Progress bars for long work: a widget in JupyterLab, text in a terminal or a headless run's log.

``progress_bar`` is ``tqdm.auto.tqdm`` unless ``$LAFAM_PROGRESS`` is ``"text"``: then it is the
plain-text bar, also inside a Jupyter kernel. The notebook runner sets it, so the notebooks it
executes write text bars that reach the terminal (a widget's updates would reach no one), and
sets ``$TQDM_MININTERVAL`` so a log gets a line every few seconds rather than thousands.
"""

from __future__ import annotations

import os
from typing import Any

PROGRESS_ENV = "LAFAM_PROGRESS"


def progress_bar(*args: Any, **kwargs: Any) -> Any:
    """A tqdm bar (same arguments as ``tqdm``): text when ``$LAFAM_PROGRESS=text``, else tqdm.auto's."""
    if os.environ.get(PROGRESS_ENV) == "text":
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(*args, **kwargs)


__all__ = ["PROGRESS_ENV", "progress_bar"]
