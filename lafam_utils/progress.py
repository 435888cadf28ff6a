"""Progress bars for long work: a widget in JupyterLab, text in a terminal or a headless run's log.

``progress_bar`` is ``tqdm.auto.tqdm`` unless ``$LAFAM_PROGRESS`` is ``"text"``: then it is the
plain-text bar, also inside a Jupyter kernel. The notebook runner sets it, so the notebooks it
executes write text bars that reach the terminal (a widget's updates would reach no one), and
sets ``$TQDM_MININTERVAL`` so a log gets a line every few seconds rather than thousands.
``report_line`` writes one line of progress news (such as a compile time) beside the bars.
"""

from __future__ import annotations

import os
import sys
from typing import Any

PROGRESS_ENV = "LAFAM_PROGRESS"


def tqdm_class() -> type:
    """tqdm's plain-text class when ``$LAFAM_PROGRESS=text``, else tqdm.auto's."""
    if os.environ.get(PROGRESS_ENV) == "text":
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm


def progress_bar(*args: Any, **kwargs: Any) -> Any:
    """A tqdm bar (same arguments as ``tqdm``): text when ``$LAFAM_PROGRESS=text``, else tqdm.auto's."""
    return tqdm_class()(*args, **kwargs)


def report_line(message: str) -> None:
    """Write ``message`` as one line to stderr, where the bars are, without breaking a bar being drawn."""
    tqdm_class().write(message, file=sys.stderr)


__all__ = ["PROGRESS_ENV", "progress_bar", "report_line"]
