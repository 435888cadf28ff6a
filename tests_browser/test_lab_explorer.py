"""Notebook 01 in JupyterLab, driven by headless Chromium: Run All with the notebook's own
defaults, then the Explorer as a researcher uses it.

Needs Debian's ``chromium`` (``/usr/bin/chromium``, or ``$CHROMIUM``) and the ``playwright``
package; ``make test-browser`` runs it (``make test`` does not collect this folder). Screenshots
go to ``runs/browser/``. Every process it starts (JupyterLab, its kernel, Chromium) is stopped
at the end, also when the test fails. The figures Run All writes to ``figures/`` are compared
with the committed ones (same pixel size) and then put back byte for byte.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "notebooks/01_method_walkthrough.ipynb"
SCREENSHOTS = REPO_ROOT / "runs" / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUN_ALL_TIMEOUT_S = 900  # Run All trains the shapes models first when they are not cached (minutes on 2 cores)
VIEW_TIMEOUT_S = 120
LAB_SETTINGS = {
    # no request to the internet, no news prompt over the page
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    # the executed notebook is not saved over the committed one
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_server(url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer {url} within {timeout_s} s")


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process group (the server shuts its kernels down), SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    try:
        os.killpg(process.pid, signal.SIGKILL)  # a kernel that outlived its server
    except ProcessLookupError:
        pass


@pytest.fixture
def lab(tmp_path) -> Iterator[str]:
    """JupyterLab serving the repository on 127.0.0.1 with a token; yields its base URL with the token."""
    settings = tmp_path / "settings"
    for name, values in LAB_SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    token, port = secrets.token_hex(16), free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={REPO_ROOT}",
        f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
        "--LabApp.expose_app_in_browser=True",
    ]  # fmt: skip
    if os.geteuid() == 0:  # CI containers run as root
        command.append("--allow-root")
    log = (tmp_path / "lab.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(f"{base}/api/status?token={token}", process)
        yield f"{base}/lab/tree/{NOTEBOOK}?reset&token={token}"
    finally:
        stop_process_group(process)
        log.close()
        print((tmp_path / "lab.log").read_text()[-4000:])


@pytest.fixture
def page(lab) -> Iterator:
    """A Chromium page (Debian's chromium, launched by Playwright) on notebook 01."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}; install Debian's chromium (apt-get install chromium) or set $CHROMIUM")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(lab)
            yield page
        finally:
            browser.close()


@pytest.fixture
def committed_figures() -> Iterator[dict[Path, bytes]]:
    """The committed figures of notebook 01, put back after the test whatever Run All wrote."""
    saved = {path: path.read_bytes() for path in (REPO_ROOT / "figures").glob("walkthrough_*")}
    try:
        yield saved
    finally:
        for path in (REPO_ROOT / "figures").glob("walkthrough_*"):
            if path not in saved:
                path.unlink()
        for path, content in saved.items():
            path.write_bytes(content)


NOTEBOOK_STATE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext || !panel.context.isReady) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.map((cell) => cell.model.toJSON());
  return {
    path: panel.context.path,
    dirty: panel.context.model.dirty,
    kernel: kernel ? kernel.status : null,
    pending: cells.filter((c) => c.cell_type === "code" && c.execution_count === null).length,
    errors: cells.flatMap((c) => (c.outputs || []).filter((o) => o.output_type === "error")
      .map((o) => `${o.ename}: ${o.evalue}`)),
  };
}"""

WATCH_EXPLORER = """() => {
  const root = document.querySelector(".lafam-explorer");
  window.explorerSeen = {status: [], progress: []};
  const record = () => {
    const status = root.querySelector(".lafam-explorer-status").textContent;
    const bar = root.querySelector(".lafam-explorer-progress .progress-bar");
    window.explorerSeen.status.push(status);
    if (bar) window.explorerSeen.progress.push(bar.style.width);
  };
  new MutationObserver(record).observe(root, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def state(page) -> dict:
    return page.evaluate(NOTEBOOK_STATE)


def wait_until(page, predicate, timeout_s: float, what: str) -> dict:
    deadline = time.monotonic() + timeout_s
    current = None
    while time.monotonic() < deadline:
        current = state(page)
        if current is not None and predicate(current):
            return current
        page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOTS / "timeout.png"), full_page=True)
    raise TimeoutError(f"{what} not reached within {timeout_s} s; last state {current}")


def explorer_image(page) -> str:
    images = page.locator(".lafam-explorer img")
    assert images.count() == 1, f"expected exactly one figure in the Explorer, found {images.count()}"
    return images.get_attribute("src")


def wait_for_new_view(page, previous: str) -> str:
    page.wait_for_function(
        "(previous) => { const img = document.querySelectorAll('.lafam-explorer img');"
        " return img.length === 1 && img[0].src !== previous; }",
        arg=previous,
        timeout=VIEW_TIMEOUT_S * 1000,
    )
    return explorer_image(page)


def dropdown(page, description: str):
    return page.locator(".lafam-explorer .widget-dropdown").filter(has_text=description).locator("select")


def test_run_all_then_use_the_explorer(page, committed_figures):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    stored = (REPO_ROOT / NOTEBOOK).read_bytes()
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=120_000)
    opened = wait_until(page, lambda s: s["kernel"] == "idle", 180, "notebook open with an idle kernel")
    assert opened["path"] == NOTEBOOK
    assert not opened["dirty"], "opening the stored notebook marked it modified"

    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    done = wait_until(page, lambda s: s["pending"] == 0 and s["kernel"] == "idle", RUN_ALL_TIMEOUT_S, "Run All")
    assert done["errors"] == []
    explorer = page.locator(".lafam-explorer")
    explorer.scroll_into_view_if_needed()
    first = explorer_image(page)
    explorer.screenshot(path=str(SCREENSHOTS / "explorer.png"))

    for path, content in committed_figures.items():
        if path.suffix == ".png":
            with Image.open(path) as written:
                committed = Image.open(io.BytesIO(content))
                assert written.size == committed.size, f"{path.name}: Run All in Lab wrote another size"

    dropdown(page, "method").select_option("eigencam")
    by_method = wait_for_new_view(page, first)

    readout = page.locator(".lafam-explorer .widget-slider").filter(has_text="image").locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("1")
    page.keyboard.press("Enter")
    by_image = wait_for_new_view(page, by_method)
    assert len({first, by_method, by_image}) == 3

    dropdown(page, "model").select_option("shapes-simclr")
    on_encoder = wait_for_new_view(page, by_image)
    assert "gradcam" not in dropdown(page, "method").locator("option").all_inner_texts()
    page.evaluate(WATCH_EXPLORER)
    dropdown(page, "method").select_option("relax")
    relax_view = wait_for_new_view(page, on_encoder)
    seen = page.evaluate("() => window.explorerSeen")
    explorer.screenshot(path=str(SCREENSHOTS / "explorer_relax.png"))
    assert any(text.startswith("computing RELAX") for text in seen["status"]), seen["status"]
    assert len(set(seen["progress"])) >= 2 and seen["progress"][-1] == "100%", seen["progress"]
    assert dropdown(page, "layer").is_disabled()
    assert explorer_image(page) == relax_view
    assert state(page)["errors"] == []
    page.screenshot(path=str(SCREENSHOTS / "lab.png"), full_page=True)
    assert (REPO_ROOT / NOTEBOOK).read_bytes() == stored
