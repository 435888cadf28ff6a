"""A method written outside the package, as docs/adding-a-method.md shows, reaches every part of the comparison."""

import re

import nbformat
import pytest
import torch
import yaml

import lafam_utils as lu
from lafam_utils.explainers import EXPLAINERS
from lafam_utils.notebook.paths import NOTEBOOKS_DIR, REPO_ROOT
from lafam_utils.notebook.runner import run_series
from lafam_utils.notebook.session import load_plugins

GUIDE = REPO_ROOT / "docs" / "adding-a-method.md"


@pytest.fixture
def plugin(tmp_path):
    """The guide's first code block, saved as a user's file outside the package and imported."""
    code = re.search(r"```python\n(.*?)```", GUIDE.read_text(), re.S).group(1)
    path = tmp_path / "my_methods.py"
    path.write_text(code)
    load_plugins([str(path)])
    yield path
    EXPLAINERS.pop("channelmax", None)


def test_the_guides_method_is_short_and_registers_by_name(plugin):
    assert len(plugin.read_text().splitlines()) <= 30
    assert "lafam_utils" not in str(plugin.parent)
    model = lu.load_model("shapes-supervised", weights=None)
    x = torch.randn(3, 3, 64, 64)
    maps = lu.explainer("Channel-Max", model)(x)
    acts = lu.hooks.layer_output(model, "layer4", x).amax(dim=1)
    expected = lu.explainers.upsample_maps(lu.explainers.minmax_normalize(acts), (64, 64), "nearest")
    torch.testing.assert_close(maps, expected)
    assert lu.explainers.method_title("channel-max") == "Channel max"


def test_the_guides_method_runs_through_evaluate(plugin, tmp_path):
    model = lu.load_model("shapes-supervised", weights=None)
    data = lu.SyntheticShapes(6, size=64)
    table = lu.evaluate(
        data, [("clf", "lafam"), ("clf", "channel-max")], models={"clf": model}, results_dir=tmp_path / "runs",
        batch_size=4, progress=False,
    )
    mine = table[table["method"] == "channel-max"]
    assert len(mine) == 6 and (mine["error"] == "").all()
    assert mine[list(lu.metrics.METRIC_NAMES)].notna().all().all()
    summary = lu.report.summary.to_markdown(lu.summarize(table))
    assert "| clf Channel max |" in summary.splitlines()[0] + " |"


def test_the_guides_method_is_offered_and_computed_by_the_explorer(plugin):
    from lafam_utils.notebook.explorer import Explorer

    explorer = Explorer(lu.SyntheticShapes(2, size=64), {"clf": lu.load_model("shapes-supervised", weights=None)})
    assert "channel-max" in explorer.method.options
    explorer.method.value = "channel-max"
    assert explorer.key()[2] == "channel-max" and explorer.computed == 2
    assert "Channel max" in explorer.title()


@pytest.mark.slow
def test_the_guides_method_reaches_notebook_05_through_a_parameter_set(plugin, tmp_path, monkeypatch):
    monkeypatch.setenv("LAFAM_CACHE", str(tmp_path / "cache"))
    params = yaml.safe_load((NOTEBOOKS_DIR / "params" / "smoke.yaml").read_text())
    params.update(
        plugins=[str(plugin)], methods=["channel-max"],
        figures_dir=str(tmp_path / "figures"), results_dir=str(tmp_path / "results"),
    )
    params_file = tmp_path / "mine.yaml"
    params_file.write_text(yaml.safe_dump(params))

    (executed,) = run_series(params_file, tmp_path / "runs", only=["05"])

    notebook = nbformat.read(executed, as_version=4)
    assert not [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    header = next((tmp_path / "results").glob("synthetic_paper/*/summary.md")).read_text().splitlines()[0]
    assert "Shapes supervised Channel max" in header and "Shapes SimCLR Channel max" in header
