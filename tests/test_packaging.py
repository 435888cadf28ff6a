"""The package works outside the repository: a normal (non-editable) install finds its shipped models."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lafam_utils.notebook.paths import REPO_ROOT

PROBE = """
import json, lafam_utils as lu
model = lu.load_model("shapes-simclr")
from lafam_utils.shapes.shipped import WEIGHTS_DIR
print(json.dumps({"package": lu.__file__, "weights": str(WEIGHTS_DIR), "model": type(model).__name__,
                  "paper_table": len(lu.report.summary.paper_table("voc"))}))
"""


def source_copy(target: Path) -> Path:
    """What a source distribution holds (pyproject.toml, README.md, the package), so the build writes nothing
    into the checkout."""
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, target / name)
    shutil.copytree(REPO_ROOT / "lafam_utils", target / "lafam_utils", ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.mark.slow
def test_the_built_wheel_installed_elsewhere_loads_the_shipped_models(tmp_path):
    source = source_copy(tmp_path / "source")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
         str(source)],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("lafam_utils-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"lafam_utils/shapes/weights/MANIFEST.json", "lafam_utils/shapes/weights/shapes-simclr.pt"} <= set(names)
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert found["package"].startswith(str(target)) and found["weights"].startswith(str(target))
    assert found["model"] == "ShapesNet" and found["paper_table"] == 6
