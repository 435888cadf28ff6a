"""lu.evaluate: rows equal direct computation, failures are isolated, run identity, resume after SIGKILL
and damage, parallel processes on one folder, torchrun sharding."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from evaluation_toy import CLASS_NAMES, PAIRS, ToyDataset, ToyNet, run, toy_explainers, toy_metrics, toy_models

import lafam_utils as lu
from lafam_utils.evaluation import load_results
from lafam_utils.evaluation.run_store import chunk_path, run_folders
from lafam_utils.metrics import METRIC_NAMES

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "evaluation_toy.py"


def without_time(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns="seconds")


def only_run(results_dir: Path) -> Path:
    """The single run folder under ``results_dir``."""
    runs = run_folders(results_dir)
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pd.DataFrame:
    """An uninterrupted single-process run over 10 images with item 4 broken."""
    return run(tmp_path_factory.mktemp("reference"), ToyDataset(n=10, broken=(4,)))


def test_rows_equal_direct_computation(tmp_path):
    dataset = ToyDataset(n=7)  # batches of 3, 3 and 1
    table = run(tmp_path, dataset, csv=True)
    assert list(table.columns) == [
        "dataset", "index", "id", "labels", "model", "method", "prediction", "seconds", *METRIC_NAMES, "error",
    ]
    assert len(table) == 7 * len(PAIRS)
    assert [tuple(p) for p in table[["model", "method"]].drop_duplicates().to_numpy()] == PAIRS
    models, factories = toy_models(), toy_explainers()
    items = [dataset[i] for i in range(7)]
    x = torch.stack([item["image"] for item in items])
    masks = torch.stack([item["mask"] for item in items])
    for model_name, method in PAIRS:
        rows = table[(table.model == model_name) & (table.method == method)]
        assert rows["index"].tolist() == list(range(7))
        assert rows["id"].tolist() == [item["id"] for item in items]
        assert rows["labels"].tolist() == [item["labels"][0] for item in items]
        expected = toy_metrics(factories[method](models[model_name])(x), masks)
        for name in METRIC_NAMES:
            np.testing.assert_allclose(rows[name].to_numpy(), expected[name].double().numpy(), rtol=1e-6)
        model = models[model_name]
        predicted = [CLASS_NAMES[i] for i in model(x).argmax(1)] if hasattr(model, "class_names") else [""] * 7
        assert rows["prediction"].tolist() == predicted
    assert (table["seconds"] > 0).all() and (table["error"] == "").all()
    assert (table["dataset"] == "toy").all()
    run_dir = Path(table.attrs["run_dir"])
    assert run_dir == only_run(tmp_path)
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "results.parquet"), table)
    from_csv = pd.read_csv(run_dir / "results.csv", keep_default_na=False, na_values=[""])
    assert from_csv.shape == table.shape and from_csv["id"].tolist() == table["id"].tolist()


def test_failing_item_is_recorded_and_the_rest_is_unchanged(reference, tmp_path):
    broken = reference[reference["index"] == 4]
    assert len(broken) == len(PAIRS)
    assert broken["error"].str.contains("OSError: image file 4 is truncated").all()
    assert broken["id"].eq("img004").all()  # the dataset lists its ids: an error row keeps its id
    assert broken[list(METRIC_NAMES)].isna().all().all()
    clean = run(tmp_path, ToyDataset(n=10))
    others = reference["index"] != 4
    pd.testing.assert_frame_equal(without_time(reference[others]), without_time(clean[others]))
    assert (reference.loc[others, "error"] == "").all()


class NaNImages(ToyDataset):
    """Item 2 is all NaN: LaFAM's map of it is NaN."""

    def __getitem__(self, index):
        item = super().__getitem__(index)
        if index == 2:
            item["image"] = torch.full_like(item["image"], float("nan"))
        return item


class RaisesOnInf:
    """An explainer that raises for a batch containing an image with an infinite value."""

    def __init__(self, model):
        self.inner = toy_explainers()["lafam"](model)

    def __call__(self, x):
        if torch.isinf(x).any():
            raise FloatingPointError("infinite pixel")
        return self.inner(x)


class InfImages(ToyDataset):
    def __getitem__(self, index):
        item = super().__getitem__(index)
        if index == 5:
            item["image"][0, 0, 0] = float("inf")
        return item


def test_nan_map_and_raising_explainer_fail_only_their_image(tmp_path):
    table = run(tmp_path / "nan", NaNImages(n=6), metric_fn=toy_metrics)
    bad = table["index"] == 2
    assert table.loc[bad, "error"].eq("explainer returned a map with NaN or infinite values").all()
    assert table.loc[bad, list(METRIC_NAMES)].isna().all().all()
    assert (table.loc[~bad, "error"] == "").all() and table.loc[~bad, list(METRIC_NAMES)].notna().all().all()

    table = run(tmp_path / "inf", InfImages(n=6), explainers={"gradlike": RaisesOnInf, "lafam": RaisesOnInf})
    bad = table["index"] == 5
    assert table.loc[bad, "error"].eq("FloatingPointError: infinite pixel").all()
    assert table.loc[bad, "seconds"].isna().all()
    clean = run(tmp_path / "clean", ToyDataset(n=6), explainers={"gradlike": RaisesOnInf, "lafam": RaisesOnInf})
    pd.testing.assert_frame_equal(without_time(table[~bad]), without_time(clean[~bad]))


def test_resume_computes_only_missing_chunks(reference, tmp_path):
    run_dir = Path(run(tmp_path, ToyDataset(n=10, broken=(4,))).attrs["run_dir"])
    missing = chunk_path(run_dir, PAIRS[1], 2)
    missing.unlink()
    (run_dir / "results.parquet").unlink()
    stamps = {p: p.stat().st_mtime_ns for p in (run_dir / "chunks").iterdir()}
    table = run(tmp_path, ToyDataset(n=10, broken=(4,)))
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert missing.exists()
    pd.testing.assert_frame_equal(without_time(table), without_time(reference))


def test_resume_with_other_settings_is_refused(tmp_path):
    first = run(tmp_path, ToyDataset(n=4))
    second = run(tmp_path, ToyDataset(n=4), batch_size=2)
    assert first.attrs["run_dir"] != second.attrs["run_dir"]
    pd.testing.assert_frame_equal(without_time(first), without_time(second))


def test_a_folder_of_an_older_version_is_never_read_as_a_run(reference, tmp_path):
    """Older versions kept run.json (no identity) and chunks directly in results_dir."""
    stale = reference.assign(AUC=0.0)
    (tmp_path / "chunks").mkdir()
    stale.to_parquet(tmp_path / "chunks" / f"{PAIRS[0][0]}__{PAIRS[0][1]}__000000.parquet", index=False)
    (tmp_path / "run.json").write_text(json.dumps({"dataset": "ToyDataset", "pairs": [list(p) for p in PAIRS]}))
    with pytest.raises(FileNotFoundError, match="older version"):
        load_results(tmp_path)
    table = run(tmp_path, ToyDataset(n=10, broken=(4,)))
    pd.testing.assert_frame_equal(without_time(table), without_time(reference))
    pd.testing.assert_frame_equal(without_time(load_results(tmp_path)), without_time(reference))


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", "OMP_NUM_THREADS": "1"}


def test_run_killed_with_sigkill_resumes_to_the_same_table(reference, tmp_path):
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(tmp_path), "--delay", "0.3"], cwd=REPO, env=subprocess_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("*/chunks/*.parquet"))) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(list(tmp_path.glob("*/chunks/*.parquet")))
    assert 3 <= done < 4 * len(PAIRS), process.stderr.read().decode()
    assert not list(tmp_path.glob("*/results.parquet"))
    partial = load_results(tmp_path)
    assert not partial.duplicated(["model", "method", "index"]).any()
    table = run(tmp_path, ToyDataset(n=10, broken=(4,)))
    pd.testing.assert_frame_equal(without_time(table), without_time(reference))


def test_torchrun_two_processes_equal_single_process(reference, tmp_path):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = [*launcher, str(SCRIPT), str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = only_run(tmp_path)
    batches = sorted(int(p.stem.rsplit("__", 1)[1]) for p in (run_dir / "chunks").glob("*.parquet"))
    assert batches == sorted(list(range(4)) * len(PAIRS))
    merged = pd.read_parquet(run_dir / "results.parquet")
    pd.testing.assert_frame_equal(without_time(merged), without_time(reference))
    pd.testing.assert_frame_equal(without_time(load_results(tmp_path)), without_time(reference))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset": ToyDataset(n=0)}, "at least one item"),
        ({"pairs": [("toynet",)]}, "model_name, method_name"),
        ({"pairs": [("toy/net", "lafam")]}, "name the chunk files"),
        ({"pairs": [("toynet", "lafam"), ("toynet", "lafam")]}, "must not repeat"),
        ({"metrics": ["IoU"]}, "unknown or no metrics"),
        ({"batch_size": 0}, "positive integer"),
    ],
)
def test_bad_arguments_raise_clear_errors(tmp_path, kwargs, message):
    arguments = {"dataset": ToyDataset(n=2), "pairs": PAIRS, "results_dir": tmp_path, "models": toy_models(),
                 "explainers": toy_explainers(), "metric_fn": toy_metrics, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=message):
        lu.evaluate(**arguments)


def test_metric_subset_and_single_image_batches(tmp_path):
    table = run(tmp_path, ToyDataset(n=2), batch_size=1, metrics=["AUC", "Pointing-Game"])
    assert list(table.columns[8:]) == ["AUC", "Pointing-Game", "error"]
    assert set(table["Pointing-Game"]) <= {0.0, 1.0} and not math.isnan(table["AUC"].sum())


def test_explainer_kwargs_reach_the_explainer_and_map_size_is_checked(tmp_path):
    dataset = ToyDataset(n=3)
    table = run(tmp_path / "threshold", dataset, explainer_kwargs={"lafam": {"threshold": 0.5}})
    x = torch.stack([dataset[i]["image"] for i in range(3)])
    masks = torch.stack([dataset[i]["mask"] for i in range(3)])
    maps = lu.LaFAM(toy_models()["toyenc"], threshold=0.5)(x)
    rows = table[(table.model == "toyenc") & (table.method == "lafam")]
    np.testing.assert_allclose(rows["AUC"].to_numpy(), toy_metrics(maps, masks)["AUC"].double().numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match=r"maps of size \(8, 8\) but masks are \(32, 32\)"):
        run(tmp_path / "small", dataset, explainer_kwargs={"lafam": {"upsample": None}})


class EmptyMaskImages(ToyDataset):
    """Item 1 has no object pixel."""

    def __getitem__(self, index):
        item = super().__getitem__(index)
        if index == 1:
            item["mask"] = torch.zeros_like(item["mask"])
        return item


def test_library_explainers_and_metrics_by_default(tmp_path):
    dataset = EmptyMaskImages(n=4)
    pairs = [("toynet", "gradcam"), ("toynet", "lafam"), ("toyenc", "relax")]
    table = lu.evaluate(dataset, pairs, results_dir=tmp_path, batch_size=4, models=toy_models(), k=100,
                        explainer_kwargs={"relax": {"n_masks": 16}}, progress=False)
    x = torch.stack([dataset[i]["image"] for i in range(4)])
    masks = torch.stack([dataset[i]["mask"] for i in range(4)])
    models = toy_models()
    for method, explainer in [("gradcam", lu.GradCAM(models["toynet"])), ("lafam", lu.LaFAM(models["toynet"]))]:
        expected = lu.metrics.compute(explainer(x), masks, k=100)
        rows = table[table.method == method]
        for name in METRIC_NAMES:
            np.testing.assert_allclose(rows[name].to_numpy(), expected[name].numpy(), rtol=1e-12, equal_nan=True)
    assert table.loc[table["index"] == 1, "Pointing-Game"].isna().all()  # empty mask: NaN, not an error
    assert table.loc[table["index"] == 1, "Sparseness"].notna().all()
    assert (table["error"] == "").all()
    relax = table[table.method == "relax"]
    assert relax["prediction"].eq("").all() and relax["Sparseness"].between(0, 1).all()


def test_quantus_backend_is_passed_through(tmp_path):
    dataset = ToyDataset(n=3)
    chosen = ["Relevance Mass Accuracy", "AUC"]
    table = run(tmp_path, dataset, metric_fn=None, backend="quantus", metrics=chosen, k=50)
    x = torch.stack([dataset[i]["image"] for i in range(3)])
    masks = torch.stack([dataset[i]["mask"] for i in range(3)])
    expected = lu.metrics.compute(lu.LaFAM(toy_models()["toyenc"])(x), masks, backend="quantus", metrics=chosen, k=50)
    rows = table[table.model == "toyenc"]
    for name in chosen:
        np.testing.assert_allclose(rows[name].to_numpy(), expected[name].numpy(), rtol=1e-12)


def test_progress_bar_counts_images_and_quiet_mode_prints_nothing(tmp_path, capsys):
    run(tmp_path / "loud", ToyDataset(n=4), progress=True)
    assert "12/12" in capsys.readouterr().err  # 4 images x 3 pairs
    run(tmp_path / "quiet", ToyDataset(n=4), progress=False)
    assert capsys.readouterr().err == ""


def test_changed_settings_weights_or_data_never_return_old_rows(tmp_path):
    """Problem 1: each of these changes used to return the first run's table from the same folder."""
    dataset, pairs = ToyDataset(n=3), [("toyenc", "relax")]

    def relax_run(n_masks=8, models=None, data=dataset):
        return lu.evaluate(data, pairs, results_dir=tmp_path, batch_size=3, models=models or toy_models(),
                           metric_fn=toy_metrics, explainer_kwargs={"relax": {"n_masks": n_masks}}, progress=False)

    first = relax_run()
    resumed = relax_run()
    assert resumed.attrs["run_dir"] == first.attrs["run_dir"]
    pd.testing.assert_frame_equal(resumed, first)
    more_masks = relax_run(n_masks=64)
    fresh = lu.evaluate(dataset, pairs, results_dir=tmp_path / "fresh", batch_size=3, models=toy_models(),
                        metric_fn=toy_metrics, explainer_kwargs={"relax": {"n_masks": 64}}, progress=False)
    pd.testing.assert_frame_equal(without_time(more_masks), without_time(fresh))
    assert not np.allclose(more_masks["AUC"], first["AUC"])
    other_weights = relax_run(models={"toynet": ToyNet(CLASS_NAMES), "toyenc": ToyNet(None, seed=7)})
    other_data = relax_run(data=NaNImages(n=3))
    assert len({t.attrs["run_dir"] for t in (first, more_masks, other_weights, other_data)}) == 4
    assert len(run_folders(tmp_path)) == 4
    identity = json.loads((Path(more_masks.attrs["run_dir"]) / "run.json").read_text())["identity"]
    relax = identity["explainers"]["toyenc/relax"]
    assert relax["factory"] == "RELAX"
    assert relax["kwargs"] | {"n_masks": 64} == relax["kwargs"]  # defaults filled in: every setting is there
    assert {"cells", "p", "seed", "variant", "upsample", "threshold"} <= set(relax["kwargs"])
    other_identity = json.loads((Path(other_weights.attrs["run_dir"]) / "run.json").read_text())["identity"]
    assert identity["models"]["toyenc"]["weights_sha256"] != other_identity["models"]["toyenc"]["weights_sha256"]


class Scaled(toy_explainers()["gradlike"]):
    """A factory with a new constructor argument: its default enters the identity by itself."""

    def __init__(self, model, scale: float = 1.0, precision: str = "fp32"):
        super().__init__(model, scale)


def test_new_constructor_arguments_and_evaluate_settings_enter_the_identity(tmp_path):
    table = run(tmp_path, ToyDataset(n=3), explainers={"gradlike": Scaled, "lafam": toy_explainers()["lafam"]})
    identity = json.loads((Path(table.attrs["run_dir"]) / "run.json").read_text())["identity"]
    assert identity["explainers"]["toynet/gradlike"]["kwargs"] == {"scale": 1.0, "precision": "fp32"}
    expected = {"batch_size": 3, "k": 1000, "backend": "torch", "dataset_name": "toy"}
    assert expected.items() <= identity["settings"].items()
    assert identity["dataset"]["length"] == 3 and identity["dataset"]["ids_sha256"]


def test_failed_start_writes_nothing_and_the_corrected_call_runs(tmp_path):
    """Problem 4: a misspelt method or setting used to write run.json and lock the folder."""
    with pytest.raises(ValueError, match="unknown explainer 'lafma'"):
        lu.evaluate(ToyDataset(n=2), [("toynet", "lafma")], results_dir=tmp_path, models=toy_models(), progress=False)
    with pytest.raises(TypeError, match="n_mask"):
        lu.evaluate(ToyDataset(n=2), [("toyenc", "relax")], results_dir=tmp_path, models=toy_models(),
                    explainer_kwargs={"relax": {"n_mask": 8}}, progress=False)
    with pytest.raises(ValueError, match="unknown model"):
        lu.evaluate(ToyDataset(n=2), [("toynett", "lafam")], results_dir=tmp_path, models=toy_models(), progress=False)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
    table = lu.evaluate(ToyDataset(n=2), [("toynet", "lafam")], results_dir=tmp_path, models=toy_models(),
                        metric_fn=toy_metrics, progress=False)
    assert len(table) == 2 and (table["error"] == "").all()


def test_a_method_that_needs_labels_is_refused_on_an_encoder(tmp_path):
    data = lu.SyntheticShapes(n=2, split="single", seed=3)
    pairs = [("shapes-simclr", "lafam"), ("shapes-simclr", "gradcam")]
    with pytest.raises(ValueError, match="model 'shapes-simclr' with method 'gradcam'.*class score.*no classes"):
        lu.evaluate(data, pairs, results_dir=tmp_path, progress=False)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_damaged_chunks_are_recomputed_with_a_warning(reference, tmp_path):
    """Problem 3: a truncated, an emptied and a swapped chunk used to crash or give wrong rows."""
    run_dir = Path(run(tmp_path, ToyDataset(n=10, broken=(4,))).attrs["run_dir"])
    truncated = chunk_path(run_dir, PAIRS[0], 0)
    emptied, swapped = chunk_path(run_dir, PAIRS[1], 1), chunk_path(run_dir, PAIRS[2], 1)
    truncated.write_bytes(truncated.read_bytes()[:200])
    emptied.write_bytes(b"")
    swapped.write_bytes(chunk_path(run_dir, PAIRS[2], 2).read_bytes())
    foreign = tmp_path / "foreign"
    other = Path(run(foreign, ToyDataset(n=10, broken=(4,)), batch_size=2).attrs["run_dir"])
    stranger = chunk_path(run_dir, PAIRS[0], 3)
    stranger.write_bytes(chunk_path(other, PAIRS[0], 3).read_bytes())  # a chunk of another run
    with pytest.warns(UserWarning) as caught:
        table = run(tmp_path, ToyDataset(n=10, broken=(4,)))
    messages = "\n".join(str(w.message) for w in caught)
    for path in (truncated, emptied, swapped, stranger):
        assert f"chunk {path} is" in messages
    assert "unreadable" in messages and "batch" in messages and "identity_sha256" in messages
    pd.testing.assert_frame_equal(without_time(table), without_time(reference))
    assert not table.duplicated(["model", "method", "index"]).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the recomputed chunks are now valid: no warning
        pd.testing.assert_frame_equal(run(tmp_path, ToyDataset(n=10, broken=(4,))), table)


def launch(results_dir: Path, log: Path, go: Path, delay: float = 0.02, workers: int = 0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(results_dir), "--delay", str(delay), "--log", str(log), "--go", str(go),
         "--workers", str(workers)], cwd=REPO, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    "n_processes, workers",
    [(2, 0), pytest.param(4, 0, marks=pytest.mark.slow), pytest.param(2, 2, marks=pytest.mark.slow)],
)
def test_processes_sharing_a_folder_cooperate(reference, tmp_path, n_processes, workers):
    """Problem 2: processes on one folder used to crash on a shared temporary name and repeat all work.
    With loading workers, each process claims a batch before its workers load it."""
    log, go = tmp_path / "calls.log", tmp_path / "go"
    processes = [launch(tmp_path / "results", log, go, workers=workers) for _ in range(n_processes)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.*.ready"))) < n_processes and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()  # all processes are imported and start together
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * n_processes, "\n".join(errors)[-3000:]
    calls = [line.split() for line in log.read_text().splitlines()]
    work = [tuple(call[1:]) for call in calls]
    assert len(work) == len(set(work)) == 4 * len(PAIRS)  # every (pair, batch) explained exactly once
    run_dir = only_run(tmp_path / "results")
    assert not list(run_dir.rglob("*.tmp")) and not list((run_dir / "claims").glob("*.claim"))
    pd.testing.assert_frame_equal(without_time(pd.read_parquet(run_dir / "results.parquet")), without_time(reference))


def wait_for_chunks(results_dir: Path, count: int, processes: list[subprocess.Popen]) -> int:
    deadline = time.monotonic() + 120
    while (done := len(list(results_dir.glob("*/chunks/*.parquet")))) < count and time.monotonic() < deadline:
        if all(p.poll() is not None for p in processes):
            break
        time.sleep(0.02)
    return done


@pytest.mark.slow
def test_a_killed_process_leaves_its_claims_to_the_others(reference, tmp_path):
    """A process killed while holding claims: its partner retakes them (the claimer is dead) and finishes."""
    log, go = tmp_path / "calls.log", tmp_path / "go"
    victim, survivor = (launch(tmp_path / "results", log, go, delay=0.15) for _ in range(2))
    while len(list(tmp_path.glob("go.*.ready"))) < 2 and victim.poll() is None:
        time.sleep(0.05)
    go.touch()
    wait_for_chunks(tmp_path / "results", 2, [victim])
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    _, errors = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, errors[-3000:]
    run_dir = only_run(tmp_path / "results")
    pd.testing.assert_frame_equal(without_time(pd.read_parquet(run_dir / "results.parquet")), without_time(reference))


@pytest.mark.slow
def test_repeated_kills_lose_and_duplicate_nothing(reference, tmp_path):
    """SIGKILL after every few committed chunks until the run completes; the table equals an uninterrupted one."""
    results, kills = tmp_path / "results", 0
    while True:
        process = launch(results, tmp_path / "calls.log", tmp_path / "go", delay=0.1)
        (tmp_path / "go").touch()
        done = len(list(results.glob("*/chunks/*.parquet")))
        wait_for_chunks(results, done + 2, [process])
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
    assert process.returncode == 0 and kills >= 3, kills
    table = pd.read_parquet(only_run(results) / "results.parquet")
    pd.testing.assert_frame_equal(without_time(table), without_time(reference))


def test_compile_reaches_the_package_explainers_and_the_identity(tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: compiled.append(kwargs) or fn)
    models = {"toyenc": ToyNet(None, seed=1)}
    pairs = [("toyenc", "relax"), ("toyenc", "lafam")]
    kwargs = dict(results_dir=tmp_path, models=models, metric_fn=toy_metrics, batch_size=2,
                  explainer_kwargs={"relax": {"n_masks": 4, "cells": 2}})
    eager = lu.evaluate(ToyDataset(n=2), pairs, progress=False, **kwargs)
    table = lu.evaluate(ToyDataset(n=2), pairs, progress=False, compile=True, **kwargs)
    assert compiled == [{"dynamic": False}]  # RELAX's masked forwards: one compiled forward for the model
    pd.testing.assert_frame_equal(without_time(table), without_time(eager))
    assert table.attrs["run_dir"] != eager.attrs["run_dir"]
    identity = json.loads((Path(table.attrs["run_dir"]) / "run.json").read_text())["identity"]
    assert identity["settings"]["compile"] is True and "num_workers" not in identity["settings"]
    assert identity["explainers"]["toyenc/relax"]["kwargs"]["compile"] is True
