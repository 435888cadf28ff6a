"""The runner's kernels talk over IPC sockets, so ``make run`` prints no kernel-transport warning."""

import nbformat
import papermill
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from traitlets.config import Config

from lafam_utils.notebook.runner import lab_metadata, run_series

TRANSPORT_WARNING = "Kernel is running over TCP without encryption"
PROBE = "from ipykernel.kernelapp import IPKernelApp\nprint('kernel transport:', IPKernelApp.instance().transport)"


@pytest.mark.slow
def test_the_runners_kernels_use_ipc_sockets_and_print_no_transport_warning(tmp_path, capfd):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nbformat.write(new_notebook(cells=[new_code_cell(PROBE)], metadata=lab_metadata()), folder / "01_probe.ipynb")
    params = tmp_path / "p.yaml"
    params.write_text("{}")

    run_series(params, tmp_path / "out", notebooks_dir=folder)
    out, err = capfd.readouterr()
    assert "kernel transport: ipc" in out
    assert TRANSPORT_WARNING not in out + err

    # The control: the same notebook on a TCP kernel, whose warning this capture does see.
    papermill.execute_notebook(
        str(folder / "01_probe.ipynb"), str(tmp_path / "tcp.ipynb"), kernel_name="python3", progress_bar=False,
        config=Config({"KernelManager": {"transport": "tcp"}}),
    )
    assert TRANSPORT_WARNING in capfd.readouterr().err
