"""lu.evaluate with the metrics that query the model: columns, identity, resume, error rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from evaluation_toy import PAIRS, ToyDataset, toy_explainers, toy_models

import lafam_utils as lu
from lafam_utils.metrics import MODEL_METRIC_COLUMNS, compute_model_metrics, metric_columns

METRICS = ["AUC", "MPRT", "eMPRT", "sMPRT", "ROAD", "Deletion", "Insertion"]
OPTIONS = {
    "sMPRT": {"samples": 3},
    "ROAD": {"percentages": [20, 60]},
    "Deletion": {"steps": 8},
    "Insertion": {"steps": 8},
}
LISTS = ["MPRT layers", "MPRT curve", "ROAD MoRF curve", "ROAD LeRF curve", "Deletion curve", "Insertion curve"]


def run(results_dir, dataset, **kwargs):
    options = dict(
        batch_size=3,
        models=toy_models(),
        explainers=toy_explainers(),
        progress=False,
        num_workers=0,
        metrics=METRICS,
        metric_options=OPTIONS,
    )
    return lu.evaluate(dataset, PAIRS, results_dir=results_dir, **{**options, **kwargs})


def identity(table: pd.DataFrame) -> dict:
    return json.loads((Path(table.attrs["run_dir"]) / "run.json").read_text())["identity"]


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> pd.DataFrame:
    return run(tmp_path_factory.mktemp("model-metrics"), ToyDataset(n=5))


def test_columns_equal_a_direct_computation(table):
    columns = metric_columns(METRICS[1:])
    assert list(table.columns[8:-1]) == ["AUC", *columns]
    assert set(columns) - set(MODEL_METRIC_COLUMNS) == set(LISTS)
    dataset, models, factories = ToyDataset(n=5), toy_models(), toy_explainers()
    x = torch.stack([dataset[i]["image"] for i in range(5)])
    for model_name, method in PAIRS:
        model, factory = models[model_name], factories[method]
        expected = compute_model_metrics(METRICS[1:], model, factory, x, factory(model)(x), OPTIONS)
        rows = table[(table.model == model_name) & (table.method == method)]
        for column in MODEL_METRIC_COLUMNS:
            np.testing.assert_allclose(
                rows[column].to_numpy(), expected[column], atol=1e-6, err_msg=column
            )  # other batches
        assert [list(v) for v in rows["Deletion curve"]] == expected["Deletion curve"]
        assert [list(v) for v in rows["MPRT layers"]] == [["head", "layer4.0"]] * 5
        assert all(len(curve) == 9 for curve in rows["Insertion curve"])
    assert (table["error"] == "").all()


def test_identity_names_the_target_and_resume_reads_the_same_table(table, tmp_path):
    settings = identity(table)["model_metrics"]
    assert (
        settings["toynet"]["ROAD"]["target"] == "probability" and settings["toyenc"]["Deletion"]["target"] == "cosine"
    )
    assert settings["toynet"]["sMPRT"] == {
        "seed": 42,
        "samples": 3,
        "magnitude": 0.1,
        "similarity": "spearman",
        "abs": True,
        "normalise": True,
    }
    run_dir = Path(table.attrs["run_dir"])
    written = {path: path.stat().st_mtime_ns for path in (run_dir / "chunks").iterdir()}
    again = run(run_dir.parent, ToyDataset(n=5))
    assert again.attrs["run_dir"] == table.attrs["run_dir"]
    assert {path: path.stat().st_mtime_ns for path in (run_dir / "chunks").iterdir()} == written  # nothing recomputed
    pd.testing.assert_frame_equal(again.drop(columns=LISTS), table.drop(columns=LISTS))
    stored = pd.read_parquet(run_dir / "results.parquet")
    assert [list(v) for v in stored["ROAD MoRF curve"]] == [list(v) for v in table["ROAD MoRF curve"]]
    other = run(run_dir.parent, ToyDataset(n=5), metric_options={**OPTIONS, "ROAD": {"percentages": [30]}})
    assert other.attrs["run_dir"] != table.attrs["run_dir"]
    assert "model_metrics" not in identity(run(tmp_path, ToyDataset(n=2), metrics=["AUC"], metric_options=None))


def test_a_method_that_fails_on_the_randomised_model_fails_only_those_rows(tmp_path):
    models = toy_models()
    lafam = toy_explainers()["lafam"]

    def only_trained(model, **kwargs):
        if not any(model is m for m in models.values()):
            raise RuntimeError("cannot explain a randomised model")
        return lafam(model, **kwargs)

    table = run(
        tmp_path,
        ToyDataset(n=4, broken=(1,)),
        models=models,
        explainers={"lafam": only_trained, "gradlike": lafam},
        metrics=["AUC", "MPRT", "Deletion"],
        metric_options={"Deletion": {"steps": 4}},
    )
    failed = table[(table.method == "lafam") & (table["index"] != 1)]
    assert failed["error"].str.contains("cannot explain a randomised model").all()
    assert failed["MPRT"].isna().all() and failed["Deletion"].isna().all() and failed["AUC"].notna().all()
    fine = table[table.method == "gradlike"]
    assert (fine["error"] == "").sum() == 3 and fine.loc[fine["index"] != 1, "MPRT"].notna().all()
    assert table.loc[table["index"] == 1, "error"].str.contains("truncated").all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"metrics": ["AUC", "MPRT", "MPRT"]}, "each at most once"),
        ({"metrics": ["Sanity"]}, "choose from"),
        ({"metric_options": {"MPRT": {"layers": 3}}}, "MPRT has no option"),
        ({"metric_options": {"Deletion": {"steps": 4}}, "metrics": ["MPRT"]}, "metrics that are not computed"),
        ({"metric_options": {"ROAD": {"target": "accuracy"}}, "metrics": ["ROAD"]}, "needs a classifier"),
    ],
)
def test_bad_metric_arguments_raise_before_anything_is_written(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(tmp_path, ToyDataset(n=2), **kwargs)
    assert not any(tmp_path.iterdir())
