"""Run the numbered notebooks headlessly with papermill, with one YAML parameter set.

    python -m lafam_utils.notebook.runner --params notebooks/params/demo.yaml
    python -m lafam_utils.notebook.runner --strip      # clear outputs before committing

Each notebook ``notebooks/NN_*.ipynb`` is executed in order with the parameters injected after
its ``parameters`` cell; the executed copies (with outputs) go to ``runs/<parameter set>/``.
The terminal shows one line per notebook, a bar over its cells, and the cells' own output as it
comes: their progress bars (evaluation images/s and ETA, RELAX masks, training steps) are plain
text there (``$LAFAM_PROGRESS=text``), redrawn at most every ``$TQDM_MININTERVAL`` seconds
(default 5), so a log holds a few lines per minute.

A failing notebook stops the series with its name and the failing cell's error; the notebooks
already executed keep their outputs. Relative paths in a parameter set (data roots, output
folders) are taken from the repository root (``repo_path``), whatever the working directory.

A parameter that ``Params`` (``params.py``) does not define, or a value of the wrong type, stops
the series before any notebook starts, with the list of valid names.

The kernels talk to the runner over IPC sockets (``kernel_manager_config``), not TCP ports.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .paths import NOTEBOOKS_DIR, REPO_ROOT

if TYPE_CHECKING:
    from traitlets.config import Config

HEADLESS_ENV = {"LAFAM_PROGRESS": "text", "TQDM_MININTERVAL": "5"}
"""Environment of the kernels the runner starts (a variable already set keeps its value)."""


@contextmanager
def kernel_manager_config() -> Iterator[Config]:
    """The kernel manager's settings for the runner's kernels: IPC sockets where ZeroMQ has them.

    A kernel on TCP ports without CurveZMQ keys sends code and outputs in plain text, and ipykernel
    warns so ("Kernel is running over TCP without encryption") at every start. The runner's kernels
    run on its own machine, so they use IPC sockets instead, in a temporary folder that only the
    user can open, removed after the block. Where ZeroMQ has no IPC transport (Windows), the manager
    provisions CurveZMQ keys for the kernels whose kernelspec declares support.
    """
    import zmq
    from traitlets.config import Config

    if not zmq.has("ipc"):
        yield Config({"KernelManager": {"transport_encryption": "auto"}})
        return
    with tempfile.TemporaryDirectory(prefix="lafam-kernels-") as folder:
        yield Config({"KernelManager": {"transport": "ipc", "ip": str(Path(folder) / "kernel")}})


class NotebookFailed(RuntimeError):  # noqa: N818 - public name, raised by run_series and caught by its callers
    """A notebook of the series raised; the message names it and the failing cell."""


def lab_metadata() -> dict[str, Any]:
    """The notebook metadata JupyterLab writes once this environment's Python kernel has started:
    the kernelspec and ipykernel's ``language_info`` (this Python's version included).

    ``language_info`` is spelled out rather than read from ``ipykernel.ipkernel``: importing that
    module makes ``tqdm.auto`` pick its notebook bar in the importing process.
    """
    from ipykernel.kernelspec import KERNEL_NAME, get_kernel_dict

    spec = get_kernel_dict()
    return {
        "kernelspec": {"display_name": spec["display_name"], "language": spec["language"], "name": KERNEL_NAME},
        "language_info": {
            "codemirror_mode": {"name": "ipython", "version": 3},
            "file_extension": ".py",
            "mimetype": "text/x-python",
            "name": "python",
            "nbconvert_exporter": "python",
            "pygments_lexer": "ipython3",
            "version": platform.python_version(),
        },
    }


def strip_outputs(notebooks: list[Path]) -> list[Path]:
    """Clear outputs, execution counts and run metadata of ``notebooks`` in place; return those changed.

    The files are written in the form JupyterLab 4 saves (nbformat 4.5 with cell ids, indent 1,
    sorted keys, a final newline, ``lab_metadata``), so opening one in Lab leaves it unmodified.
    """
    import nbformat

    metadata = lab_metadata()
    changed = []
    for path in notebooks:
        original = path.read_text()
        notebook = nbformat.reads(original, as_version=4)
        for cell in notebook.cells:
            cell.metadata.pop("papermill", None)
            cell.metadata.pop("execution", None)
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
        notebook.metadata.pop("papermill", None)
        notebook.metadata.update(metadata)
        stripped = nbformat.writes(notebook) + "\n"
        if stripped != original:
            path.write_text(stripped)
            changed.append(path)
    return changed


def load_params(path: str | Path) -> dict[str, Any]:
    """Read a YAML parameter set (a mapping of notebook parameter names to values).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file does not hold a YAML mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"parameter set {path} not found; expected a YAML file such as notebooks/params/demo.yaml"
        )
    params = yaml.safe_load(path.read_text()) or {}
    if not isinstance(params, dict):
        raise ValueError(f"parameter set {path} must be a YAML mapping of parameter names to values")
    return params


def check_params(params: dict[str, Any], source: str | Path) -> None:
    """Raise ``ValueError`` naming any parameter that ``Params`` lacks, ``TypeError`` for a wrong type."""
    from .params import Params

    Params.from_mapping(params, f"parameter set {source}")


def numbered_notebooks(folder: Path = NOTEBOOKS_DIR, only: list[str] | None = None) -> list[Path]:
    """The series ``NN_*.ipynb`` in order; ``only`` keeps those whose name starts with one of its items."""
    notebooks = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        notebooks = [nb for nb in notebooks if any(nb.name.startswith(prefix) for prefix in only)]
    return notebooks


def _known_parameter_notice(record: logging.LogRecord) -> bool:
    """Drop papermill's "Passed unknown parameter" notices: the parameters cells assign nothing (the
    defaults live in ``Params``), and ``check_params`` has checked every name before the series starts."""
    return not record.getMessage().startswith("Passed unknown parameter")


@contextmanager
def headless_environment() -> Iterator[None]:
    """``HEADLESS_ENV`` for the kernels started inside the block; the caller's environment comes back after."""
    saved = {name: os.environ.get(name) for name in HEADLESS_ENV}
    for name, value in HEADLESS_ENV.items():
        os.environ.setdefault(name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_series(
    params_file: str | Path,
    output_dir: str | Path | None = None,
    only: list[str] | None = None,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    stream_output: bool = True,
) -> list[Path]:
    """Execute the numbered notebooks with one parameter set; return the executed copies.

    Args:
        params_file: the YAML parameter set.
        output_dir: the folder for the executed notebooks.
        only: run only the notebooks whose name starts with one of these.
        notebooks_dir: the folder of the series.
        stream_output: write the cells' output (and their text progress bars) to this process's
            stdout and stderr while they run.

    Returns:
        The paths of the executed notebooks.

    Raises:
        NotebookFailed: a notebook raised (the message names it and the failing cell).
    """
    import papermill
    import tqdm  # noqa: F401  tqdm reads $TQDM_* once, at import: this process keeps its own settings
    from papermill.exceptions import PapermillExecutionError

    params = load_params(params_file)
    check_params(params, params_file)
    out = Path(output_dir) if output_dir else REPO_ROOT / "runs" / Path(params_file).stem
    out.mkdir(parents=True, exist_ok=True)
    notebooks = numbered_notebooks(notebooks_dir, only)
    executed = []
    logging.getLogger("papermill").addFilter(_known_parameter_notice)  # once: adding the same filter again is a no-op
    with headless_environment(), kernel_manager_config() as kernel_config:
        for number, notebook in enumerate(notebooks, start=1):
            target = out / notebook.name
            print(f"[{number}/{len(notebooks)}] running {notebook.name} -> {target}", flush=True)
            start = time.perf_counter()
            try:
                papermill.execute_notebook(
                    str(notebook),
                    str(target),
                    parameters=params,
                    cwd=str(notebook.parent),
                    kernel_name="python3",
                    progress_bar={"desc": f"{notebook.stem} cells", "leave": True},
                    stdout_file=sys.stdout if stream_output else None,
                    stderr_file=sys.stderr if stream_output else None,
                    config=kernel_config,
                )
            except PapermillExecutionError as err:
                raise NotebookFailed(
                    f"{notebook.name} failed in cell [{err.exec_count}]: {err.ename}: {err.evalue}\n"
                    f"executed copy with the traceback: {target}"
                ) from None
            print(
                f"[{number}/{len(notebooks)}] {notebook.name} done in {time.perf_counter() - start:.0f} s", flush=True
            )
            executed.append(target)
    if not executed:
        print(f"no numbered notebooks found in {notebooks_dir}", flush=True)
    return executed


def main(argv: list[str] | None = None) -> int:
    """The command line: run the series with the arguments ``argv``; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(NOTEBOOKS_DIR / "params" / "demo.yaml"), help="YAML parameter set")
    parser.add_argument("--output", default=None, help="folder for executed notebooks (default runs/<set>)")
    parser.add_argument("--only", nargs="*", default=None, help="notebook name prefixes to run, e.g. 01 05")
    parser.add_argument("--quiet", action="store_true", help="do not stream the cells' output to the terminal")
    parser.add_argument("--strip", action="store_true", help="clear the outputs of notebooks/NN_*.ipynb and exit")
    args = parser.parse_args(argv)
    if args.strip:
        for path in strip_outputs(numbered_notebooks(only=args.only)):
            print(f"stripped {path.relative_to(REPO_ROOT)}")
        return 0
    try:
        run_series(args.params, args.output, args.only, stream_output=not args.quiet)
    except (NotebookFailed, ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
