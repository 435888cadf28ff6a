"""The label-free peers through the package's common paths: names, the base's options, lu.evaluate."""

import pytest
import torch
from evaluation_toy import ToyDataset, toy_models

import lafam_utils as lu

PEERS = {"fem": {}, "kpca-cam": {}, "dff": {}, "repeat": {"n_repeats": 2, "n_masks": 8, "cells": 2}, "random": {}}


@pytest.mark.parametrize("method", list(PEERS))
def test_the_bases_upsample_threshold_and_bf16(method):
    model = toy_models()["toyenc"]
    x = torch.randn(3, 3, 32, 28, generator=torch.Generator().manual_seed(8))
    options = PEERS[method]
    coarse = lu.explainer(method, model, upsample=None, **options)(x)
    assert coarse.shape == ((3, 32, 28) if method == "repeat" else (3, 8, 7))  # REPEAT: relax-xai masks, image size
    thresholded = lu.explainer(method, model, threshold=0.5, **options)(x)
    assert thresholded.shape == (3, 32, 28) and thresholded.dtype == torch.float32
    assert ((thresholded == 0) | (thresholded >= 0.5)).all() and thresholded.amax() == 1
    bf16 = lu.explainer(method, model, precision="bf16", **options)(x)
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all() and (bf16 >= 0).all() and (bf16 <= 1).all()


def test_every_peer_runs_through_evaluate_and_resumes_to_the_same_table(tmp_path):
    pairs = [(model, method) for model in ("toynet", "toyenc") for method in ("lafam", *PEERS)]
    options = dict(results_dir=tmp_path, batch_size=3, models=toy_models(), explainer_kwargs=PEERS, progress=False)
    table = lu.evaluate(ToyDataset(n=5), pairs, k=50, **options)
    assert len(table) == 5 * len(pairs) and (table["error"] == "").all()
    assert table.dropna(subset=["AUC"]).groupby("method").size().to_dict() == {m: 10 for m in ("lafam", *PEERS)}
    again = lu.evaluate(ToyDataset(n=5), pairs, k=50, **options)
    assert again.drop(columns="seconds").equals(table.drop(columns="seconds"))
