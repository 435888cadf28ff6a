"""The notebook series: committed clean, and executed headlessly with the smoke parameter set."""

import json
import os
import subprocess
import sys

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook

from lafam_utils.notebook import Params
from lafam_utils.notebook import runner as notebook_runner
from lafam_utils.notebook.paths import NOTEBOOKS_DIR, REPO_ROOT, repo_path
from lafam_utils.notebook.runner import numbered_notebooks, run_series, strip_outputs

SERIES = [
    "01_method_walkthrough.ipynb",
    "02_qualitative_figures.ipynb",
    "03_multi_object_scenes.ipynb",
    "04_misclassification_analysis.ipynb",
    "05_metrics.ipynb",
    "06_sanity_and_faithfulness.ipynb",
]
PARAMS_DIR = NOTEBOOKS_DIR / "params"
SANITY_ROWS = ["MPRT ↓", "eMPRT ↑", "sMPRT ↓", "ROAD ↑", "ROAD MoRF ↓", "ROAD LeRF ↑", "Deletion ↓", "Insertion ↑"]


def parameters_cells(notebook: nbformat.NotebookNode) -> list:
    return [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]


def test_the_series_is_complete_and_in_order():
    assert [path.name for path in numbered_notebooks()] == SERIES


@pytest.mark.parametrize("name", SERIES)
def test_committed_notebook_has_one_parameters_cell_and_no_outputs(name):
    notebook = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    nbformat.validate(notebook)
    assert len(parameters_cells(notebook)) == 1
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    assert "papermill" not in notebook.metadata


def test_repo_path_resolves_relative_paths_from_the_repository_root(tmp_path):
    assert repo_path("figures") == REPO_ROOT / "figures"
    assert repo_path(tmp_path) == tmp_path


def test_notebooks_02_to_05_run_the_self_supervised_families_on_voc(tmp_path, monkeypatch):
    """ssl-voc.yaml end to end on a small VOC tree in the official layout, every encoder random-init."""
    from voc_files import write_voc

    from lafam_utils.models.releases import RELEASES
    from lafam_utils.report.titles import model_title

    monkeypatch.setenv("LAFAM_CACHE", str(tmp_path / "cache"))
    write_voc(tmp_path / "voc")
    params = yaml.safe_load((PARAMS_DIR / "ssl-voc.yaml").read_text())
    assert params["encoders"] == list(RELEASES)
    params.update(
        data_root=str(tmp_path / "voc"), random_init=True, n_images=1, relax_masks=2, device="cpu", batch_size=4,
        figures_dir=str(tmp_path / "figures"), results_dir=str(tmp_path / "results"),
    )
    params_file = tmp_path / "ssl-voc.yaml"
    params_file.write_text(yaml.safe_dump(params))

    executed = run_series(params_file, tmp_path / "runs", only=["02", "03", "04", "05"])

    assert [path.name for path in executed] == SERIES[1:5]
    summary = next((tmp_path / "results").glob("voc_paper*/**/summary.md")).read_text()
    assert all(f"{model_title(name)} RELAX" in summary and f"{model_title(name)} LaFAM" in summary for name in RELEASES)
    figures = {path.name for path in (tmp_path / "figures").iterdir()}
    assert {"fig1_qualitative_voc.png", "fig2_multi_object_voc.png", "fig5_metric_distributions_voc.png"} <= figures


def test_notebooks_02_to_05_run_the_vision_transformers_on_voc(tmp_path, monkeypatch):
    """vit-voc.yaml end to end on a small VOC tree, every ViT random-init, each method at its default layer."""
    from voc_files import write_voc

    from lafam_utils.report.titles import model_title

    monkeypatch.setenv("LAFAM_CACHE", str(tmp_path / "cache"))
    write_voc(tmp_path / "voc")
    params = yaml.safe_load((PARAMS_DIR / "vit-voc.yaml").read_text())
    params.update(
        data_root=str(tmp_path / "voc"), random_init=True, n_images=1, relax_masks=2, device="cpu", batch_size=4,
        figures_dir=str(tmp_path / "figures"), results_dir=str(tmp_path / "results"),
    )
    params_file = tmp_path / "vit-voc.yaml"
    params_file.write_text(yaml.safe_dump(params))

    executed = run_series(params_file, tmp_path / "runs", only=["02", "03", "04", "05"])

    assert [path.name for path in executed] == SERIES[1:5]
    run_json = json.loads(next((tmp_path / "results").glob("voc_paper*/**/run.json")).read_text())
    pairs = [tuple(pair) for pair in run_json["identity"]["pairs"]]
    assert ("vit_b_16", "attention") not in pairs  # torchvision's ViT does not expose its attention
    for encoder in params["encoders"]:
        assert {(encoder, "relax"), (encoder, "lafam"), (encoder, "attention")} <= set(pairs)
    layers = {key: value["kwargs"].get("layer") for key, value in run_json["identity"]["explainers"].items()}
    assert layers["vit_b_16/gradcam"] == "encoder.layers.encoder_layer_11.ln_1"
    assert layers["vit_b_16/lafam"] == "encoder.layers.encoder_layer_11.mlp.1"  # the MLP activation (its GELU)
    assert layers["dinov2-vits14-reg/lafam"] == "blocks.11.mlp.act"
    assert layers["dinov2-vits14-reg/lafam-magnitude"] == "blocks.11"
    summary = next((tmp_path / "results").glob("voc_paper*/**/summary.md")).read_text()
    assert all(f"{model_title(name)} Attention" in summary for name in params["encoders"])
    figures = {path.name for path in (tmp_path / "figures").iterdir()}
    assert {"fig1_qualitative_voc.png", "fig5_metric_distributions_voc.png"} <= figures


def test_the_series_runs_the_shapes_vits(tmp_path, monkeypatch):
    """vit-synthetic.yaml end to end at the smoke sizes, random-init ViTs: Explorer, figures, table."""
    monkeypatch.setenv("LAFAM_CACHE", str(tmp_path / "cache"))
    params = yaml.safe_load((PARAMS_DIR / "vit-synthetic.yaml").read_text())
    smoke = yaml.safe_load((PARAMS_DIR / "smoke.yaml").read_text())
    sizes = ("random_init", "n_images", "n_eval", "image_size", "relax_masks", "batch_size", "sanity_images",
             "sanity_relax_masks", "smooth_samples", "perturbation_steps", "road_percentages")
    params.update({key: smoke[key] for key in sizes})
    params.update(figures_dir=str(tmp_path / "figures"), results_dir=str(tmp_path / "results"))
    params_file = tmp_path / "vit-synthetic.yaml"
    params_file.write_text(yaml.safe_dump(params))

    executed = run_series(params_file, tmp_path / "runs")

    assert [path.name for path in executed] == SERIES
    walkthrough = nbformat.read(executed[0], as_version=4)
    printed = "".join(o.get("text", "") for c in walkthrough.cells if c.cell_type == "code" for o in c.outputs)
    assert "blocks.3.mlp.act activations: (384, 4, 4)" in printed  # 64 px images: the last MLP activation, 4x4 patches
    header = next((tmp_path / "results").glob("synthetic_paper/*/summary.md")).read_text().splitlines()[0]
    titles = (
        "Shapes ViT supervised Grad-CAM",
        "Shapes ViT supervised LaFAM magnitude",
        "Shapes ViT SimCLR RELAX",
        "Shapes ViT SimCLR Attention",
    )
    assert all(f"{title} |" in header for title in titles)
    assert "walkthrough_explorer_synthetic.png" in {path.name for path in (tmp_path / "figures").iterdir()}


def test_strip_outputs_clears_outputs_and_counts(tmp_path):
    output = nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=3)
    cell = new_code_cell("1 + 1", execution_count=3, outputs=[output])
    cell.metadata["papermill"] = {"duration": 1.0}
    notebook = new_notebook(cells=[cell], metadata={"papermill": {"parameters": {}}})
    path = tmp_path / "01_x.ipynb"
    nbformat.write(notebook, path)
    assert strip_outputs([path]) == [path]
    stripped = nbformat.read(path, as_version=4)
    assert stripped.cells[0].outputs == [] and stripped.cells[0].execution_count is None
    assert "papermill" not in stripped.metadata and "papermill" not in stripped.cells[0].metadata
    assert strip_outputs([path]) == []


def test_a_failing_notebook_stops_the_series_with_its_name_and_error(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    sources = [("01_ok.ipynb", "x = 1"), ("02_bad.ipynb", "raise ValueError('no images')"), ("03_never.ipynb", "")]
    for name, source in sources:
        nbformat.write(new_notebook(cells=[new_code_cell(source)]), folder / name)
    params = tmp_path / "p.yaml"
    params.write_text("{}")
    with pytest.raises(notebook_runner.NotebookFailed, match=r"02_bad\.ipynb failed .*ValueError: no images"):
        run_series(params, tmp_path / "out", notebooks_dir=folder)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["01_ok.ipynb", "02_bad.ipynb"]


def test_papermill_does_not_call_checked_parameters_unknown(tmp_path, caplog):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    cell = new_code_cell("# parameters: defaults in Params")
    cell.metadata["tags"] = ["parameters"]
    notebook = new_notebook(cells=[cell, new_code_cell("assert seed == 3")], metadata=notebook_runner.lab_metadata())
    nbformat.write(notebook, folder / "01_p.ipynb")
    params = tmp_path / "p.yaml"
    params.write_text("seed: 3\n")
    with caplog.at_level("WARNING", logger="papermill"):
        run_series(params, tmp_path / "out", notebooks_dir=folder, stream_output=False)
    assert "Passed unknown parameter" not in caplog.text


def test_an_unknown_parameter_stops_the_series_before_any_notebook(tmp_path, monkeypatch, capsys):
    """Problem 6: papermill only warned about an unknown parameter, then the notebook failed."""
    started = []
    monkeypatch.setattr("papermill.execute_notebook", lambda *args, **kwargs: started.append(args))
    params = tmp_path / "typo.yaml"
    params.write_text("dataset: synthetic\ntrust_checkpoint: true\nrelax_mask: 64\n")
    expected = r"unknown parameter\(s\) relax_mask, trust_checkpoint; the notebooks take: .*checkpoints.*relax_masks"
    with pytest.raises(ValueError, match=expected):
        run_series(params, tmp_path / "out")
    assert started == [] and not (tmp_path / "out").exists()
    assert notebook_runner.main(["--params", str(params), "--output", str(tmp_path / "out")]) == 1
    assert "relax_mask" in capsys.readouterr().err and started == []


def code_lines(source: str) -> list[str]:
    return [line for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("name", SERIES)
def test_parameters_are_defined_once_and_set_up_by_one_call(name):
    """The parameters cell assigns nothing (``Params`` holds the defaults); the setup cell is at most six code lines."""
    notebook = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    cells = notebook.cells
    at = cells.index(parameters_cells(notebook)[0])
    assert code_lines(cells[at].source) == []
    setup_cell = cells[at + 1]
    assert setup_cell.cell_type == "code" and len(code_lines(setup_cell.source)) <= 6
    assert "run = lu.notebook.setup(globals())" in setup_cell.source


def test_the_series_runs_with_the_smoke_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("LAFAM_CACHE", str(tmp_path / "cache"))
    params = yaml.safe_load((PARAMS_DIR / "smoke.yaml").read_text())
    params.update(figures_dir=str(tmp_path / "figures"), results_dir=str(tmp_path / "results"))
    params_file = tmp_path / "smoke.yaml"
    params_file.write_text(yaml.safe_dump(params))

    executed = run_series(params_file, tmp_path / "runs")

    assert [path.name for path in executed] == SERIES
    for path in executed:
        notebook = nbformat.read(path, as_version=4)
        errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors
    figures = {path.name for path in (tmp_path / "figures").iterdir()}
    stems = [
        "walkthrough_channels",
        "walkthrough_steps",
        "walkthrough_methods",
        "walkthrough_explorer",
        "walkthrough_background_control",
        "fig1_qualitative",
        "fig1_qualitative_lafam_lrp",
        "fig2_multi_object",
        "fig2_dff_concepts",
        "fig3_misclassified",
        "fig5_metric_distributions",
        "fig6_seconds_per_image",
        *(f"fig7_cascading_randomisation_{model}" for model in ("shapes-supervised", "shapes-simclr")),
        *(f"fig8_mprt_by_layer_{model}" for model in ("shapes-supervised", "shapes-simclr")),
        *(f"fig9_{curve}_curve" for curve in ("deletion", "insertion", "road_morf", "road_lerf")),
    ]
    assert figures == {f"{stem}_synthetic.{ext}" for stem in stems for ext in ("png", "pdf")}
    results = tmp_path / "results"
    assert (results / "multi_object_coverage_synthetic.csv").is_file()
    assert (results / "correct_vs_wrong_synthetic.csv").is_file()
    run_dir = next(results.glob("synthetic_paper/*/summary.md")).parent
    header = (run_dir / "summary.md").read_text().splitlines()[0]
    assert header.startswith("| Metric |")
    assert all(f"Shapes SimCLR {title} |" in header for title in ("EigenCAM", "FEM", "Random"))
    coverage = (results / "multi_object_coverage_synthetic.csv").read_text()
    assert "Shapes supervised DFF concepts (best per object)" in coverage and "Shapes supervised FEM" in coverage
    assert (run_dir / "run.json").is_file() and (run_dir / "results.parquet").is_file()
    sanity = (next(results.glob("synthetic_sanity/*/summary.md"))).read_text().splitlines()
    assert "Shapes supervised Random |" in sanity[0] and "Shapes SimCLR RELAX |" in sanity[0]
    assert [line.split(" | ")[0] for line in sanity[2:]] == [f"| {lu_label}" for lu_label in SANITY_ROWS]
    cells = nbformat.read(executed[-1], as_version=4).cells
    printed = "".join(o.get("text", "") for c in cells for o in c.get("outputs", []))
    assert "Shapes supervised, MPRT ↓ (x100, n=4): LaFAM" in printed and "(p=" in printed


def test_notebook_defaults_are_the_demo_parameter_set():
    demo = notebook_runner.load_params(PARAMS_DIR / "demo.yaml")
    defaults = Params()
    assert {key: getattr(defaults, key) for key in demo} == demo


@pytest.mark.parametrize("name", SERIES)
def test_committed_notebook_is_in_the_form_jupyterlab_saves(name):
    text = (NOTEBOOKS_DIR / name).read_text()
    notebook = nbformat.reads(text, as_version=4)
    assert (notebook.nbformat, notebook.nbformat_minor) == (4, 5) and all(cell.get("id") for cell in notebook.cells)
    assert text == nbformat.writes(notebook) + "\n"
    expected = notebook_runner.lab_metadata()
    assert notebook.metadata.kernelspec == expected["kernelspec"]
    stored = {k: v for k, v in notebook.metadata.language_info.items() if k != "version"}
    assert stored == {k: v for k, v in expected["language_info"].items() if k != "version"}


def test_lab_metadata_is_what_the_kernel_reports():
    script = "import json; from ipykernel.ipkernel import IPythonKernel; print(json.dumps(IPythonKernel.language_info))"
    printed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    reported = json.loads(printed)
    assert notebook_runner.lab_metadata()["language_info"] == reported


def test_strip_writes_the_jupyterlab_form(tmp_path):
    path = tmp_path / "01_x.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("1")], metadata={"language_info": {"name": "python"}}), path)
    strip_outputs([path])
    assert nbformat.read(path, as_version=4).metadata == notebook_runner.lab_metadata()
    assert path.read_text().endswith("}\n")


def test_headless_environment_makes_progress_text_and_restores_the_caller_environment(monkeypatch):
    from lafam_utils.progress import PROGRESS_ENV, progress_bar

    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    monkeypatch.setenv("TQDM_MININTERVAL", "30")
    with notebook_runner.headless_environment():
        assert os.environ[PROGRESS_ENV] == "text" and os.environ["TQDM_MININTERVAL"] == "30"
        with progress_bar(total=1, disable=True) as bar:
            assert type(bar).__module__ == "tqdm.std"
    assert PROGRESS_ENV not in os.environ and os.environ["TQDM_MININTERVAL"] == "30"


@pytest.mark.slow
def test_the_runner_streams_cell_output_and_text_progress_bars(tmp_path, capsys):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    source = (
        "from lafam_utils.progress import progress_bar\nprint('cell says hi')\n"
        "for _ in progress_bar(range(3), desc='work'):\n    pass"
    )
    nbformat.write(new_notebook(cells=[new_code_cell(source)]), folder / "01_bar.ipynb")
    params = tmp_path / "p.yaml"
    params.write_text("{}")
    run_series(params, tmp_path / "out", notebooks_dir=folder)
    streamed = capsys.readouterr()
    assert "[1/1] running 01_bar.ipynb" in streamed.out and "cell says hi" in streamed.out
    assert "work: 100%" in streamed.err and "3/3" in streamed.err  # a text bar, not a widget
